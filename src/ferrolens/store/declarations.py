"""The one vocabulary of dimension names and the declaration of every store kind.

Every dimension of every store is named here, and only here (the declarations
use nothing else; tests/test_store.py checks it and README's data model
against it). Each store kind states once its variables and their dims, its
coordinates, its attrs with their types (:class:`Attr`) and its units;
:func:`check_layout` refuses a write that breaks the declaration, and
:meth:`StoreKind.problems` is what ``open_store`` checks on read.
"""

from __future__ import annotations

import json
import numbers
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

# --- one vocabulary of names (DESIGN.md, README: data model) -------------------------
FRAME, Y, X = "frame", "y", "x"
CLASS, SAMPLE, WY, WX = "class", "sample", "wy", "wx"
LATENT, WINDOW, VARIABLE, GRID, COMPONENT = "latent", "window", "variable", "grid", "component"
Z1, Z2 = "z1", "z2"  # latent-space coarse grid: first / second latent of the mapped pair
Z1D, Z2D = "z1_dense", "z2_dense"  # latent-space dense grid (same two latents)
VARIANT = "variant"  # synthetic: polarisation variant of the needles
VARIABLE_NMF, DIRECTION, STIM_POINT = "variable_nmf", "direction", "stimulus_point"  # dynamics: NMFs, loop branches
HIST_COMPONENT, HIST_BIN, CHANNEL = "hist_component", "hist_bin", "channel"  # latent space: histogram NMF, RGB
DIMS = (
    FRAME,
    Y,
    X,
    CLASS,
    SAMPLE,
    WY,
    WX,
    LATENT,
    WINDOW,
    VARIABLE,
    GRID,
    COMPONENT,
    Z1,
    Z2,
    Z1D,
    Z2D,
    VARIANT,
    VARIABLE_NMF,
    DIRECTION,
    STIM_POINT,
    HIST_COMPONENT,
    HIST_BIN,
    CHANNEL,
)

BIAS, TIME = "bias", "time"  # coordinates along `frame`
UNITS = {BIAS: "V", TIME: "s"}


def latent_labels(n_free: int) -> list[str]:
    """Labels of the rVAE latent axis: ``angle, dx, dy, z1 … zL``."""
    return ["angle", "dx", "dy"] + [f"z{i + 1}" for i in range(n_free)]


# --- typed attrs ---------------------------------------------------------------------------
def _conforms(value: Any, kind: Any) -> bool:
    """Whether ``value`` is of the declared type ``kind`` (``int``, ``float``, ``str``, ``list[T]``,
    ``dict[str, T]`` or ``Any``); numpy scalars count as their Python types, a tuple as a list."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, Mapping) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items()
        )
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    return kind.__name__ if typing.get_origin(kind) is None and hasattr(kind, "__name__") else str(kind)


@dataclass(frozen=True)
class Attr:
    """One declared attr: the type a reader gets (``int``, ``float``, ``str``, ``list[str]`` …) and how
    the store holds it.

    json : held as JSON text, written by :func:`json_attr` and decoded by :func:`read_attr` (a
        reader never parses it by hand). The attrs that came from the config as lists or mappings
        are kept that way so that stores stay byte for byte what earlier versions wrote; every
        other attr is held natively (zarr 3 attrs are JSON: a list stays a list).
    """

    type: Any
    json: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (as found in a store's attrs) is not of this type; None when it is."""
        want = self.describe()
        if self.json:
            if not isinstance(value, str):
                return f"is {value!r} ({type(value).__name__}), not {want}"
            try:
                value = json.loads(value)
            except ValueError:
                return f"is {value[:60]!r}, not {want}"
        return None if _conforms(value, self.type) else f"is {str(value)[:60]!r} ({type(value).__name__}), not {want}"

    def describe(self) -> str:
        return f"{'JSON text of ' if self.json else ''}{_type_name(self.type)}"


def json_attr(value: list | tuple | Mapping) -> str:
    """The JSON text an :class:`Attr` with ``json=True`` holds (the one writer of such attrs)."""
    return json.dumps(value)


#: Attrs of every store (see ``ferrolens.store.provenance``); the kind's own attrs come on top.
PROVENANCE_ATTRS: Mapping[str, Attr] = MappingProxyType(
    {
        "ferrolens_kind": Attr(str),
        "ferrolens_version": Attr(str),
        "config_digest": Attr(str),
        "config_json": Attr(Any, json=True),
    }
)

_NO_DEFAULT: Any = object()


def read_attr(attrs: Mapping[str, Any], name: str, default: Any = _NO_DEFAULT) -> Any:
    """Attr ``name`` of a store's ``attrs`` as its declared type (JSON text decoded, see :class:`Attr`).

    The declaration is that of the store's kind (``attrs["ferrolens_kind"]``) or of
    :data:`PROVENANCE_ATTRS`; ``default`` is returned when the attr is absent (KeyError without one).
    An attr no declaration names is a bug of the caller: ValueError.
    """
    kind = STORE_KINDS.get(str(attrs.get("ferrolens_kind")))
    decl = PROVENANCE_ATTRS.get(name) or (kind.attr(name) if kind is not None else None)
    if decl is None:
        raise ValueError(
            f"attr {name!r} is not declared for a {attrs.get('ferrolens_kind')!r} store (ferrolens.store.STORE_KINDS)"
        )
    if name not in attrs:
        if default is _NO_DEFAULT:
            raise KeyError(name)
        return default
    return json.loads(attrs[name]) if decl.json else attrs[name]


# --- declared stores: what each kind holds, stated once ------------------------------
@dataclass(frozen=True)
class StoreKind:
    """What one kind of store holds, checked on every write and every read.

    name : the ``ferrolens_kind`` attr.
    variables : data variables always written, name → dims (in order).
    optional_variables : data variables written only in some configurations.
    coords : coordinates always written, name → dims (``()`` for a scalar).
    optional_coords : coordinates written when known (e.g. ``bias``, ``time``).
    attrs : attrs readers rely on, beyond the ``provenance()`` ones, name → :class:`Attr`.
    optional_attrs : attrs written in some configurations, typed the same way.
    units : ``units`` attr of a variable or coordinate, where it is fixed.

    A writer may add coordinates that are not declared (e.g. a stimulus such as
    ``temperature`` along ``frame``), never undeclared data variables.
    """

    name: str
    variables: Mapping[str, tuple[str, ...]]
    optional_variables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    coords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    optional_coords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    optional_attrs: Mapping[str, Attr] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in ("variables", "optional_variables", "coords", "optional_coords"):
            object.__setattr__(self, f, MappingProxyType({k: tuple(v) for k, v in getattr(self, f).items()}))
        for f in ("attrs", "optional_attrs", "units"):
            object.__setattr__(self, f, MappingProxyType(dict(getattr(self, f))))

    def attr(self, name: str) -> Attr | None:
        """Declared type of attr ``name`` (None: not declared for this kind)."""
        return self.attrs.get(name) or self.optional_attrs.get(name)

    @property
    def dims(self) -> set[str]:
        """Every dimension a store of this kind may have."""
        return {
            d
            for group in (self.variables, self.optional_variables, self.coords, self.optional_coords)
            for dims in group.values()
            for d in dims
        }

    def declared(self, name: str) -> tuple[str, ...] | None:
        """Declared dims of variable or coordinate ``name`` (None: not declared)."""
        for group in (self.variables, self.optional_variables, self.coords, self.optional_coords):
            if name in group:
                return group[name]
        return None

    def spec(self, name: str) -> str:
        """``name(dim, …)`` as declared, for messages."""
        return f"{name}({', '.join(self.declared(name) or ())})"

    def problems(
        self, ds: xr.Dataset, required: Iterable[str] = (), writing: bool = False, part: bool = False
    ) -> list[tuple[str, str]]:
        """What in ``ds`` (metadata only) breaks this declaration: ``(problem, expected)`` pairs.

        required : data variables needed beyond :attr:`variables`.
        writing : a store being written: undeclared data variables and missing or
            other units are refused too (on read only other units are).
        part : a later part of a streamed write (variables along the appended
            dimension only): nothing is required, what is there is checked.
        """
        out: list[tuple[str, str]] = []
        if not part:
            for a in ("ferrolens_kind", "ferrolens_version", *self.attrs):
                if a not in ds.attrs:
                    out.append(
                        (
                            f"attr {a!r} is missing",
                            (
                                f"attrs {list(self.attrs)} of a {self.name} store "
                                "and those of ferrolens.store.provenance()"
                            ),
                        )
                    )
            need = [*self.variables, *(v for v in required if v not in self.variables)]
            missing = [v for v in need if v not in ds.data_vars]
            if missing:
                out.append(
                    (
                        f"store lacks variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}",
                        (
                            f"{', '.join(self.spec(v) if self.declared(v) is not None else v for v in need)} "
                            f"in a {self.name} store"
                        ),
                    )
                )
            for c in self.coords:
                if c not in ds.coords:
                    out.append((f"store lacks coordinate {c!r}", f"coordinate {self.spec(c)} in a {self.name} store"))
            for a, value in ds.attrs.items():
                decl = PROVENANCE_ATTRS.get(a) or self.attr(a)
                problem = decl.problem(value) if decl is not None else None
                if decl is not None and problem is not None:
                    out.append((f"attr {a!r} {problem}", f"attr {a} of a {self.name} store: {decl.describe()}"))
        for name, var in ds.variables.items():
            name = str(name)
            dims = self.declared(name)
            if dims is None:
                if writing and name in ds.data_vars:
                    out.append(
                        (
                            f"variable {name!r}{tuple(var.dims)} is not declared",
                            (
                                f"only the variables declared for a {self.name} store "
                                f"({', '.join(self.spec(v) for v in (*self.variables, *self.optional_variables))})"
                            ),
                        )
                    )
                continue
            if tuple(var.dims) != dims:
                out.append(
                    (
                        f"{'coordinate' if name in ds.coords else 'variable'} {name!r} has dims {tuple(var.dims)}",
                        f"{self.spec(name)} in a {self.name} store",
                    )
                )
            unit = self.units.get(name)
            if unit is not None and var.attrs.get("units", None if writing else unit) != unit:
                out.append((f"{name!r} has units {var.attrs.get('units')!r}", f"units {unit!r} for {name}"))
        return out


def _kind(
    name: str,
    variables: dict,
    optional_variables: dict | None = None,
    coords: dict | None = None,
    optional_coords: dict | None = None,
    attrs: dict | None = None,
    units: dict | None = None,
    optional_attrs: dict | None = None,
) -> StoreKind:
    return StoreKind(
        name,
        variables,
        optional_variables or {},
        coords or {},
        optional_coords or {},
        attrs or {},
        optional_attrs or {},
        units or {},
    )


_FYX = (FRAME, Y, X)
_ALONG_FRAME = {BIAS: (FRAME,), TIME: (FRAME,)}  # the stimulus coordinates, when the movie has them
_SAMPLES = {"sample_frame": (SAMPLE,), "sample_y": (SAMPLE,), "sample_x": (SAMPLE,), "sample_bias": (SAMPLE,)}
_SAMPLE_UNITS = {"sample_y": "px", "sample_x": "px", "sample_bias": UNITS[BIAS]}
# dynamics variables; the sweep holds the per-frame ones of every window size along `window`
_DYN = {
    "kde": (VARIABLE, FRAME, GRID),
    "kde_mass": (VARIABLE, FRAME),
    "bandwidth": (VARIABLE, FRAME),
    "n_values": (FRAME,),
    "components": (COMPONENT, VARIABLE, GRID),
    "stacked_components": (COMPONENT, VARIABLE, GRID),
    "weights": (VARIABLE_NMF, COMPONENT, FRAME),
    "weights_ci_low": (VARIABLE_NMF, COMPONENT, FRAME),
    "weights_ci_high": (VARIABLE_NMF, COMPONENT, FRAME),
    "reconstruction_error": (VARIABLE_NMF,),
    "branch_weight": (VARIABLE_NMF, COMPONENT, DIRECTION, STIM_POINT),
}
_DYN_UNITS = {
    "kde": "1/unit of the variable",
    "kde_mass": "1",
    "bandwidth": "unit of the variable",
    "components": "1/unit of the variable",
    "stacked_components": "1/unit of the variable",
    "weights": "1",
    "weights_ci_low": "1",
    "weights_ci_high": "1",
    "reconstruction_error": "1",
    "branch_weight": "1",
}
_DYN_COORDS = {
    VARIABLE: (VARIABLE,),
    GRID: (GRID,),
    COMPONENT: (COMPONENT,),
    VARIABLE_NMF: (VARIABLE_NMF,),
    DIRECTION: (DIRECTION,),
    STIM_POINT: (STIM_POINT,),
    "variable_units": (VARIABLE,),
    "period": (VARIABLE,),
    "branch_stimulus": (STIM_POINT,),
    "cycle": (FRAME,),
}
_DENSE = (Z1D, Z2D)
_NAMES = Attr(list[str])
_WINDOW = Attr(int)  # window size n, px
_STIMULUS = {"stimulus": Attr(str), "stimulus_units": Attr(str)}

#: The declaration of every store kind (see :class:`StoreKind`), in the order the workflow writes them.
STORE_KINDS: Mapping[str, StoreKind] = MappingProxyType(
    {
        k.name: k
        for k in (
            _kind(
                "synthetic",  # ferrolens.synthetic.make_demo: the demo movie with its ground truth
                {
                    "image": _FYX,
                    "class_map": _FYX,
                    "variant_map": _FYX,
                    "orientation": _FYX,
                    "fraction": (FRAME, VARIANT),
                },
                coords={FRAME: (FRAME,), VARIANT: (VARIANT,)},
                optional_coords=_ALONG_FRAME,
                attrs={"class_names": _NAMES},
                units={"orientation": "rad", "fraction": "1", **UNITS},
            ),
            _kind(
                "movie",  # ferrolens.ingest.ingest_movie
                {"image": _FYX},
                coords={FRAME: (FRAME,)},
                optional_coords={"source_frame": (FRAME,), **_ALONG_FRAME},
                units=UNITS,
            ),
            _kind(
                "labels",  # ferrolens.ingest.ingest_labels: frame = the movie frame each label belongs to
                {"label": _FYX},
                coords={FRAME: (FRAME,)},
                optional_coords=_ALONG_FRAME,
                attrs={"class_names": _NAMES},
                units=UNITS,
            ),
            _kind(
                "segmentation",  # ferrolens.segment.predict
                {"probability": (FRAME, CLASS, Y, X), "label": _FYX, "norm_low": (FRAME,), "norm_high": (FRAME,)},
                coords={FRAME: (FRAME,), CLASS: (CLASS,)},
                optional_coords={Y: (Y,), X: (X,), **_ALONG_FRAME},
                attrs={"class_names": _NAMES, "norm_percentiles": Attr(list[float])},
                units={"probability": "1", **UNITS},
            ),
            _kind(
                "windows",  # ferrolens.rvae.make_windows: window centres in sample_y/sample_x
                {"windows": (SAMPLE, WY, WX)},
                coords={SAMPLE: (SAMPLE,), **_SAMPLES},
                attrs={"window": _WINDOW, "origin": Attr(str)},
                units=_SAMPLE_UNITS,
            ),
            _kind(
                "latents",  # ferrolens.rvae.encode: codes of the sampled windows, per-pixel maps
                {"code_mean": (SAMPLE, LATENT), "code_logsd": (SAMPLE, LATENT), "mean": (FRAME, Y, X, LATENT)},
                optional_variables={"logsd": (FRAME, Y, X, LATENT), "angle_confidence": _FYX},
                coords={LATENT: (LATENT,)},
                optional_coords={
                    SAMPLE: (SAMPLE,),
                    **_SAMPLES,
                    "latent_units": (LATENT,),
                    FRAME: (FRAME,),
                    Y: (Y,),
                    X: (X,),
                    WINDOW: (),
                    **_ALONG_FRAME,
                },
                attrs={"window": _WINDOW},
                units={**_SAMPLE_UNITS, "angle_confidence": "1", **UNITS},
            ),
            _kind(
                "dynamics",  # ferrolens.dynamics.kde_nmf
                {**_DYN, "nmf_n_iter": (VARIABLE_NMF,), "nmf_converged": (VARIABLE_NMF,)},
                coords={
                    FRAME: (FRAME,),
                    **_DYN_COORDS,
                    "grid_value": (VARIABLE, GRID),
                    "branch": (FRAME,),
                    "segment": (FRAME,),
                },
                optional_coords=_ALONG_FRAME,
                attrs=_STIMULUS,
                units={**_DYN_UNITS, "period": "rad", **UNITS},
            ),
            _kind(
                "latent_space",  # ferrolens.latent_space.latent_space_map
                {
                    "decoded": (Z1, Z2, WY, WX),
                    "contrast_coarse": (Z1, Z2),
                    "physical_coarse": (Z1, Z2),
                    "contrast": _DENSE,
                    "contrast_reference": (),
                    "physical": _DENSE,
                    "density": _DENSE,
                    "code_count": _DENSE,
                    "image_components": (COMPONENT, WY, WX),
                    "image_loadings": (COMPONENT, *_DENSE),
                    "image_nmf_error": (),
                    "histogram_components": (HIST_COMPONENT, HIST_BIN),
                    "histogram_loadings": (HIST_COMPONENT, *_DENSE),
                    "histogram_nmf_error": (),
                    "rgb": (*_DENSE, CHANNEL),
                },
                optional_variables={"decoded_dense": (*_DENSE, WY, WX)},
                coords={Z1: (Z1,), Z2: (Z2,), Z1D: (Z1D,), Z2D: (Z2D,), CHANNEL: (CHANNEL,)},
                optional_coords={
                    WY: (WY,),
                    WX: (WX,),
                    COMPONENT: (COMPONENT,),
                    HIST_COMPONENT: (HIST_COMPONENT,),
                    HIST_BIN: (HIST_BIN,),
                    "hist_bin_low": (HIST_BIN,),
                    "hist_bin_high": (HIST_BIN,),
                },
                attrs={"mapped_latents": Attr(list[str], json=True), "window": _WINDOW},
                optional_attrs={
                    "physical_bounds": Attr(list[float], json=True),
                    "held_latents": Attr(dict[str, float], json=True),
                    "range_source": Attr(dict[str, str], json=True),
                },
                units={"density": "1/latent unit²"},
            ),
            _kind(
                "switching",  # ferrolens.switching.switching: per-pixel switching biases against the stimulus
                {
                    "state": _FYX,
                    "noise": (Y, X),
                    "p_no_switch": (Y, X),
                    "separation": (Y, X),
                    "status": (DIRECTION, Y, X),
                    "switching_bias": (DIRECTION, Y, X),
                    "switching_bias_low": (DIRECTION, Y, X),
                    "switching_bias_high": (DIRECTION, Y, X),
                    "loop_area": (Y, X),
                    "loop_area_low": (Y, X),
                    "loop_area_high": (Y, X),
                    "imprint": (Y, X),
                    "imprint_low": (Y, X),
                    "imprint_high": (Y, X),
                },
                optional_variables={"true_switching_bias": (DIRECTION, Y, X), "true_status": (DIRECTION, Y, X)},
                coords={FRAME: (FRAME,), DIRECTION: (DIRECTION,), Y: (Y,), X: (X,)},
                optional_coords=_ALONG_FRAME,
                attrs={**_STIMULUS, "status_meanings": _NAMES},
                units={"state": "1", "noise": "1", "p_no_switch": "1", "separation": "1", **UNITS},
            ),
            _kind(
                "sweep",  # ferrolens.dynamics.sweep_merge: every window size's dynamics along `window`
                {
                    **{k: (WINDOW, *d) for k, d in _DYN.items()},
                    "latent_mean": (WINDOW, FRAME, LATENT),
                    "latent_sd": (WINDOW, FRAME, LATENT),
                },
                coords={
                    WINDOW: (WINDOW,),
                    FRAME: (FRAME,),
                    **_DYN_COORDS,
                    "grid_value": (WINDOW, VARIABLE, GRID),
                    "branch": (FRAME,),
                    "segment": (FRAME,),
                    LATENT: (LATENT,),
                },
                optional_coords=_ALONG_FRAME,
                optional_attrs={"sources": Attr(list[str], json=True), "latents": Attr(list[str], json=True)},
                units={**_DYN_UNITS, "period": "rad", WINDOW: "px", **UNITS},
            ),
        )
    }
)

KINDS = tuple(STORE_KINDS)


class LayoutError(ValueError):
    """A writer made a store that its kind's declaration (:data:`STORE_KINDS`) does not allow: a bug."""


def check_layout(ds: xr.Dataset, path: str | Path, part: bool = False) -> StoreKind:
    """Refuse to write ``ds`` to ``path`` unless it matches the declaration of its ``ferrolens_kind``.

    Raises :class:`LayoutError` naming the kind, the variable and what was
    expected. ``part``: a later part of a streamed write (see
    :meth:`StoreKind.problems`). Metadata only: no data is computed.
    """
    kind = ds.attrs.get("ferrolens_kind")
    if kind not in STORE_KINDS:
        raise ValueError(
            "a store needs attrs from ferrolens.store.provenance()"
            + (f" (unknown kind {kind!r}; known: {', '.join(KINDS)})" if kind is not None else "")
        )
    decl = STORE_KINDS[str(kind)]
    found = decl.problems(ds, writing=True, part=part)
    if found:
        listed = "; ".join(f"{p} (expected {e})" for p, e in found)
        raise LayoutError(
            f"{kind} store {path} not written: {listed}. The declaration is ferrolens.store.STORE_KINDS[{kind!r}]"
        )
    return decl


def frame_coords(n_frames: int, bias: np.ndarray | None = None, time: np.ndarray | None = None) -> dict:
    """Coordinates along ``frame``: index, and bias (V) / time (s) when known."""
    coords: dict[str, Any] = {FRAME: np.arange(n_frames)}
    if bias is not None:
        coords[BIAS] = (FRAME, np.asarray(bias, dtype="float64"), {"units": UNITS[BIAS], "long_name": "applied bias"})
    if time is not None:
        coords[TIME] = (FRAME, np.asarray(time, dtype="float64"), {"units": UNITS[TIME], "long_name": "time"})
    return coords
