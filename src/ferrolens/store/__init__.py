"""Zarr stores: the one vocabulary of dimension names, provenance attrs,
atomic writes and checked reads.

Every store the workflow writes is an :class:`xarray.Dataset` on zarr (format 3)
carrying ``attrs["ferrolens_kind"]`` (what the store is), the package version,
a digest of the config that made it and, where it came from a file, that
file's path and sha256.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from .. import __version__
from ..errors import InputError

# Snakemake leaves a .snakemake_timestamp file in directory outputs; zarr warns
# about it on every read of a store, though it is harmless.
warnings.filterwarnings("ignore", message=".*snakemake_timestamp")

# --- one vocabulary of names (DESIGN.md: data model) -------------------------
# Every dimension of every store is named here, and only here (the declarations
# below use nothing else; tests/test_store.py checks it).
FRAME, Y, X = "frame", "y", "x"
CLASS, SAMPLE, WY, WX = "class", "sample", "wy", "wx"
LATENT, WINDOW, VARIABLE, GRID, COMPONENT = "latent", "window", "variable", "grid", "component"
Z1, Z2 = "z1", "z2"  # latent-space coarse grid: first / second latent of the mapped pair
Z1D, Z2D = "z1_dense", "z2_dense"  # latent-space dense grid (same two latents)
VARIANT = "variant"  # synthetic: polarisation variant of the needles
VARIABLE_NMF, DIRECTION, STIM_POINT = "variable_nmf", "direction", "stimulus_point"  # dynamics: NMFs, loop branches
HIST_COMPONENT, HIST_BIN, CHANNEL = "hist_component", "hist_bin", "channel"  # latent space: histogram NMF, RGB
DIMS = (FRAME, Y, X, CLASS, SAMPLE, WY, WX, LATENT, WINDOW, VARIABLE, GRID, COMPONENT, Z1, Z2,
        Z1D, Z2D, VARIANT, VARIABLE_NMF, DIRECTION, STIM_POINT, HIST_COMPONENT, HIST_BIN, CHANNEL)

BIAS, TIME = "bias", "time"  # coordinates along `frame`
UNITS = {BIAS: "V", TIME: "s"}


def latent_labels(n_free: int) -> list[str]:
    """Labels of the rVAE latent axis: ``angle, dx, dy, z1 … zL``."""
    return ["angle", "dx", "dy"] + [f"z{i + 1}" for i in range(n_free)]


# --- declared stores: what each kind holds, stated once ------------------------------
@dataclass(frozen=True)
class StoreKind:
    """What one kind of store holds, checked on every write and every read.

    name : the ``ferrolens_kind`` attr.
    variables : data variables always written, name → dims (in order).
    optional_variables : data variables written only in some configurations.
    coords : coordinates always written, name → dims (``()`` for a scalar).
    optional_coords : coordinates written when known (e.g. ``bias``, ``time``).
    attrs : attrs readers rely on, beyond the :func:`provenance` ones.
    units : ``units`` attr of a variable or coordinate, where it is fixed.

    A writer may add coordinates that are not declared (e.g. a stimulus such as
    ``temperature`` along ``frame``), never undeclared data variables.
    """

    name: str
    variables: Mapping[str, tuple[str, ...]]
    optional_variables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    coords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    optional_coords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    attrs: tuple[str, ...] = ()
    units: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for f in ("variables", "optional_variables", "coords", "optional_coords", "units"):
            object.__setattr__(self, f, MappingProxyType({k: tuple(v) if f != "units" else v
                                                          for k, v in getattr(self, f).items()}))

    @property
    def dims(self) -> set[str]:
        """Every dimension a store of this kind may have."""
        return {d for group in (self.variables, self.optional_variables, self.coords, self.optional_coords)
                for dims in group.values() for d in dims}

    def declared(self, name: str) -> tuple[str, ...] | None:
        """Declared dims of variable or coordinate ``name`` (None: not declared)."""
        for group in (self.variables, self.optional_variables, self.coords, self.optional_coords):
            if name in group:
                return group[name]
        return None

    def spec(self, name: str) -> str:
        """``name(dim, …)`` as declared, for messages."""
        return f"{name}({', '.join(self.declared(name) or ())})"

    def problems(self, ds: xr.Dataset, required: Iterable[str] = (), writing: bool = False,
                 part: bool = False) -> list[tuple[str, str]]:
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
                    out.append((f"attr {a!r} is missing", (f"attrs {list(self.attrs)} of a {self.name} store "
                                                           "and those of ferrolens.store.provenance()")))
            need = [*self.variables, *(v for v in required if v not in self.variables)]
            missing = [v for v in need if v not in ds.data_vars]
            if missing:
                out.append((f"store lacks variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}",
                            (f"{', '.join(self.spec(v) if self.declared(v) is not None else v for v in need)} "
                             f"in a {self.name} store")))
            for c in self.coords:
                if c not in ds.coords:
                    out.append((f"store lacks coordinate {c!r}", f"coordinate {self.spec(c)} in a {self.name} store"))
        for name, var in ds.variables.items():
            name = str(name)
            dims = self.declared(name)
            if dims is None:
                if writing and name in ds.data_vars:
                    out.append((f"variable {name!r}{tuple(var.dims)} is not declared",
                                (f"only the variables declared for a {self.name} store "
                                 f"({', '.join(self.spec(v) for v in (*self.variables, *self.optional_variables))})")))
                continue
            if tuple(var.dims) != dims:
                out.append((f"{'coordinate' if name in ds.coords else 'variable'} {name!r} has dims {tuple(var.dims)}",
                            f"{self.spec(name)} in a {self.name} store"))
            unit = self.units.get(name)
            if unit is not None and var.attrs.get("units", None if writing else unit) != unit:
                out.append((f"{name!r} has units {var.attrs.get('units')!r}", f"units {unit!r} for {name}"))
        return out


def _kind(name: str, variables: dict, optional_variables: dict | None = None, coords: dict | None = None,
          optional_coords: dict | None = None, attrs: tuple = (), units: dict | None = None) -> StoreKind:
    return StoreKind(name, variables, optional_variables or {}, coords or {}, optional_coords or {}, attrs,
                     units or {})


_FYX = (FRAME, Y, X)
_ALONG_FRAME = {BIAS: (FRAME,), TIME: (FRAME,)}  # the stimulus coordinates, when the movie has them
_SAMPLES = {"sample_frame": (SAMPLE,), "sample_y": (SAMPLE,), "sample_x": (SAMPLE,), "sample_bias": (SAMPLE,)}
_SAMPLE_UNITS = {"sample_y": "px", "sample_x": "px", "sample_bias": UNITS[BIAS]}
# dynamics variables; the sweep holds the per-frame ones of every window size along `window`
_DYN = {
    "kde": (VARIABLE, FRAME, GRID), "kde_mass": (VARIABLE, FRAME), "bandwidth": (VARIABLE, FRAME),
    "n_values": (FRAME,), "components": (COMPONENT, VARIABLE, GRID),
    "stacked_components": (COMPONENT, VARIABLE, GRID), "weights": (VARIABLE_NMF, COMPONENT, FRAME),
    "weights_ci_low": (VARIABLE_NMF, COMPONENT, FRAME), "weights_ci_high": (VARIABLE_NMF, COMPONENT, FRAME),
    "reconstruction_error": (VARIABLE_NMF,), "branch_weight": (VARIABLE_NMF, COMPONENT, DIRECTION, STIM_POINT),
}
_DYN_UNITS = {"kde": "1/unit of the variable", "kde_mass": "1", "bandwidth": "unit of the variable",
              "components": "1/unit of the variable", "stacked_components": "1/unit of the variable",
              "weights": "1", "weights_ci_low": "1", "weights_ci_high": "1", "reconstruction_error": "1",
              "branch_weight": "1"}
_DYN_COORDS = {VARIABLE: (VARIABLE,), GRID: (GRID,), COMPONENT: (COMPONENT,), VARIABLE_NMF: (VARIABLE_NMF,),
               DIRECTION: (DIRECTION,), STIM_POINT: (STIM_POINT,), "variable_units": (VARIABLE,),
               "period": (VARIABLE,), "branch_stimulus": (STIM_POINT,), "cycle": (FRAME,)}
_DENSE = (Z1D, Z2D)

#: The declaration of every store kind (see :class:`StoreKind`), in the order the workflow writes them.
STORE_KINDS: Mapping[str, StoreKind] = MappingProxyType({k.name: k for k in (
    _kind("synthetic",  # ferrolens.synthetic.make_demo: the demo movie with its ground truth
          {"image": _FYX, "class_map": _FYX, "variant_map": _FYX, "orientation": _FYX, "fraction": (FRAME, VARIANT)},
          coords={FRAME: (FRAME,), VARIANT: (VARIANT,)}, optional_coords=_ALONG_FRAME,
          attrs=("class_names",), units={"orientation": "rad", "fraction": "1", **UNITS}),
    _kind("movie",  # ferrolens.ingest.ingest_movie
          {"image": _FYX}, coords={FRAME: (FRAME,)}, optional_coords={"source_frame": (FRAME,), **_ALONG_FRAME},
          units=UNITS),
    _kind("labels",  # ferrolens.ingest.ingest_labels: frame = the movie frame each label belongs to
          {"label": _FYX}, coords={FRAME: (FRAME,)}, optional_coords=_ALONG_FRAME, attrs=("class_names",),
          units=UNITS),
    _kind("segmentation",  # ferrolens.segment.predict
          {"probability": (FRAME, CLASS, Y, X), "label": _FYX, "norm_low": (FRAME,), "norm_high": (FRAME,)},
          coords={FRAME: (FRAME,), CLASS: (CLASS,)}, optional_coords={Y: (Y,), X: (X,), **_ALONG_FRAME},
          attrs=("class_names", "norm_percentiles"), units={"probability": "1", **UNITS}),
    _kind("windows",  # ferrolens.rvae.make_windows: window centres in sample_y/sample_x
          {"windows": (SAMPLE, WY, WX)}, coords={SAMPLE: (SAMPLE,), **_SAMPLES}, attrs=("window", "origin"),
          units=_SAMPLE_UNITS),
    _kind("latents",  # ferrolens.rvae.encode: codes of the sampled windows, per-pixel maps
          {"code_mean": (SAMPLE, LATENT), "code_logsd": (SAMPLE, LATENT), "mean": (FRAME, Y, X, LATENT)},
          optional_variables={"logsd": (FRAME, Y, X, LATENT), "angle_confidence": _FYX},
          coords={LATENT: (LATENT,)},
          optional_coords={SAMPLE: (SAMPLE,), **_SAMPLES, "latent_units": (LATENT,), FRAME: (FRAME,), Y: (Y,),
                           X: (X,), WINDOW: (), **_ALONG_FRAME},
          attrs=("window",), units={**_SAMPLE_UNITS, "angle_confidence": "1", **UNITS}),
    _kind("dynamics",  # ferrolens.dynamics.kde_nmf
          {**_DYN, "nmf_n_iter": (VARIABLE_NMF,), "nmf_converged": (VARIABLE_NMF,)},
          coords={FRAME: (FRAME,), **_DYN_COORDS, "grid_value": (VARIABLE, GRID), "branch": (FRAME,),
                  "segment": (FRAME,)},
          optional_coords=_ALONG_FRAME,
          attrs=("stimulus", "stimulus_units"), units={**_DYN_UNITS, "period": "rad", **UNITS}),
    _kind("latent_space",  # ferrolens.latent_space.latent_space_map
          {"decoded": (Z1, Z2, WY, WX), "contrast_coarse": (Z1, Z2), "physical_coarse": (Z1, Z2),
           "contrast": _DENSE, "contrast_reference": (), "physical": _DENSE, "density": _DENSE,
           "code_count": _DENSE, "image_components": (COMPONENT, WY, WX), "image_loadings": (COMPONENT, *_DENSE),
           "image_nmf_error": (), "histogram_components": (HIST_COMPONENT, HIST_BIN),
           "histogram_loadings": (HIST_COMPONENT, *_DENSE), "histogram_nmf_error": (), "rgb": (*_DENSE, CHANNEL)},
          optional_variables={"decoded_dense": (*_DENSE, WY, WX)},
          coords={Z1: (Z1,), Z2: (Z2,), Z1D: (Z1D,), Z2D: (Z2D,), CHANNEL: (CHANNEL,)},
          optional_coords={WY: (WY,), WX: (WX,), COMPONENT: (COMPONENT,), HIST_COMPONENT: (HIST_COMPONENT,),
                           HIST_BIN: (HIST_BIN,), "hist_bin_low": (HIST_BIN,), "hist_bin_high": (HIST_BIN,)},
          attrs=("mapped_latents", "window"), units={"density": "1/latent unit²"}),
    _kind("switching",  # ferrolens.switching.switching: per-pixel switching biases against the stimulus
          {"state": _FYX, "noise": (Y, X), "p_no_switch": (Y, X), "separation": (Y, X), "status": (DIRECTION, Y, X),
           "switching_bias": (DIRECTION, Y, X), "switching_bias_low": (DIRECTION, Y, X),
           "switching_bias_high": (DIRECTION, Y, X), "loop_area": (Y, X), "loop_area_low": (Y, X),
           "loop_area_high": (Y, X), "imprint": (Y, X), "imprint_low": (Y, X), "imprint_high": (Y, X)},
          optional_variables={"true_switching_bias": (DIRECTION, Y, X), "true_status": (DIRECTION, Y, X)},
          coords={FRAME: (FRAME,), DIRECTION: (DIRECTION,), Y: (Y,), X: (X,)}, optional_coords=_ALONG_FRAME,
          attrs=("stimulus", "stimulus_units", "status_meanings"),
          units={"state": "1", "noise": "1", "p_no_switch": "1", "separation": "1", **UNITS}),
    _kind("sweep",  # ferrolens.dynamics.sweep_merge: every window size's dynamics along `window`
          {**{k: (WINDOW, *d) for k, d in _DYN.items()},
           "latent_mean": (WINDOW, FRAME, LATENT), "latent_sd": (WINDOW, FRAME, LATENT)},
          coords={WINDOW: (WINDOW,), FRAME: (FRAME,), **_DYN_COORDS, "grid_value": (WINDOW, VARIABLE, GRID),
                  "branch": (FRAME,), "segment": (FRAME,), LATENT: (LATENT,)},
          optional_coords=_ALONG_FRAME,
          units={**_DYN_UNITS, "period": "rad", WINDOW: "px", **UNITS}),
)})

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
        raise ValueError("a store needs attrs from ferrolens.store.provenance()"
                         + (f" (unknown kind {kind!r}; known: {', '.join(KINDS)})" if kind is not None else ""))
    decl = STORE_KINDS[kind]
    found = decl.problems(ds, writing=True, part=part)
    if found:
        listed = "; ".join(f"{p} (expected {e})" for p, e in found)
        raise LayoutError(f"{kind} store {path} not written: {listed}. The declaration is "
                          f"ferrolens.store.STORE_KINDS[{kind!r}]")
    return decl


# --- provenance ---------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of every file below a folder in sorted order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def config_digest(cfg: Any) -> str:
    """Short, stable digest of a JSON-able config fragment."""
    text = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(kind: str, cfg: Any = None, **extra: Any) -> dict[str, Any]:
    """The attrs every store carries: kind, package version, config digest (+ extras)."""
    if kind not in KINDS:
        raise ValueError(f"unknown store kind {kind!r}; known: {', '.join(KINDS)}")
    attrs: dict[str, Any] = {"ferrolens_kind": kind, "ferrolens_version": __version__}
    if cfg is not None:
        attrs["config_digest"] = config_digest(cfg)
        attrs["config_json"] = json.dumps(cfg, sort_keys=True, default=str)
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


# --- atomic write --------------------------------------------------------------
def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | Path, suffix: str = "") -> list[Path]:
    """Remove temporaries that killed writers left beside ``path``; return what was removed.

    Only siblings named exactly like this module's temporaries of *this*
    target (``.<name>.tmp-<pid>-<8 hex>``, or ``.<stem>.tmp-<pid>-<8 hex><suffix>``
    for plain files) are candidates, so another store's temporaries are never
    touched; of those, one whose writing process is still alive on this host
    (a concurrent writer) is left alone.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stem = path.stem if suffix else path.name
    pattern = re.compile(rf"\.{re.escape(stem)}\.tmp-(\d+)-[0-9a-f]{{8}}{re.escape(suffix)}")
    removed = []
    for sib in path.parent.iterdir():
        m = pattern.fullmatch(sib.name)
        if m and not _pid_alive(int(m.group(1))):
            _remove(sib)
            removed.append(sib)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_atomically(tmp: Path, path: Path) -> None:
    """Move a finished ``tmp`` (file or folder) onto ``path``.

    A folder cannot be renamed over a non-empty folder, so an old target is
    first renamed aside; a reader sees either the old or the new store, never
    a half-written one.
    """
    old = None
    if path.exists() or path.is_symlink():
        old = _tmp_beside(path)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        _remove(old)


def write_store(ds: xr.Dataset, path: str | Path, encoding: Mapping | None = None) -> Path:
    """Write ``ds`` to a zarr (v3) store at ``path`` atomically.

    ``ds`` is first checked against the declaration of its kind
    (:data:`STORE_KINDS`, :func:`check_layout`): a store the declaration does
    not allow raises :class:`LayoutError` before anything is written. The store is written beside the target under a hidden temporary name and
    renamed into place only when complete; on any error the temporary is
    removed and an existing target is left untouched.
    """
    path = Path(path)
    check_layout(ds, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # fixed-width numpy strings have no zarr v3 spec yet; variable-length ones do
    ds = ds.assign_coords({k: v.astype(object) for k, v in ds.coords.items() if v.dtype.kind == "U"})
    ds = ds.assign({k: v.astype(object) for k, v in ds.data_vars.items() if v.dtype.kind == "U"})
    tmp = _tmp_beside(path)
    try:
        with warnings.catch_warnings():
            # consolidated metadata is not in the v3 spec yet, but it lets a plain
            # `xr.open_zarr(path)` in a notebook open the store quickly and quietly
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            # every chunk is written, even one equal to the fill value, so that a chunk
            # missing on disk is damage that open_store can name (not a silent fill value)
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True, encoding=dict(encoding or {}),
                       write_empty_chunks=True)
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_store_streamed(
    parts: Iterable[xr.Dataset],
    path: str | Path,
    encoding: Mapping | None = None,
    append_dim: str = FRAME,
) -> Path:
    """Write a store part by part (e.g. batches of frames) with bounded memory, atomically.

    The first part creates the store (with ``encoding``; it must carry the
    provenance attrs and every variable the kind declares); every later
    part holds only variables along ``append_dim`` and is appended along it.
    Each part is checked against the kind's declaration before it is written.
    The finished store is consolidated and renamed into place; on any error
    nothing is left behind.
    """
    import zarr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_beside(path)
    try:
        attrs = None
        for part in parts:
            if attrs is None:
                check_layout(part, path)
                attrs = dict(part.attrs)
                part = part.assign_coords({k: v.astype(object) for k, v in part.coords.items() if v.dtype.kind == "U"})
                part.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=dict(encoding or {}),
                            write_empty_chunks=True)
            else:
                # an append rewrites the group's attrs with the part's: keep the store's
                part = part.copy()
                part.attrs = attrs
                check_layout(part, path, part=True)
                part.to_zarr(tmp, append_dim=append_dim, zarr_format=3, consolidated=False, write_empty_chunks=True)
        if attrs is None:
            raise ValueError(f"nothing to write to {path}: no parts")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(str(tmp))
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_file_atomic(path: str | Path, writer) -> Path:
    """Call ``writer(tmp_path)`` then rename the result onto ``path``.

    For files other than zarr stores (CSV, JSON, PNG, checkpoints). The
    temporary keeps the target's suffix so writers that dispatch on it work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix=path.suffix)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        writer(tmp)
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


# --- checked read ----------------------------------------------------------------
REWRITE = "an intact store: delete it and run the rule (or function) that writes it again"


def _chunk_name(arr, coords: tuple[int, ...]) -> str:
    return f"{arr.path}/{arr.metadata.encode_chunk_key(tuple(coords))}"


def check_chunks(path: str | Path, variables: Iterable[str] | None = None) -> None:
    """Raise :class:`InputError` naming the store and chunk when a chunk file is missing.

    ferrolens writes every chunk (``write_empty_chunks``), so a missing one is
    damage (a deleted or lost file) that would otherwise read as the fill value
    (NaN, or 0 for integers) without a word. ``variables``: the arrays to check
    (default: all of the group's arrays).
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        arrays = dict(group.arrays())
    except Exception as exc:
        raise InputError(path, f"cannot be opened as a zarr group ({type(exc).__name__}: {exc})",
                         "a zarr store") from exc
    for name in (arrays if variables is None else [v for v in variables if v in arrays]):
        arr = arrays[name]
        if arr.nchunks_initialized >= arr.nchunks:
            continue
        missing = [c for c in itertools.product(*(range(n) for n in arr.cdata_shape))
                   if not (path / _chunk_name(arr, c)).exists()]
        if not missing:  # not a local folder layout: trust the count
            raise InputError(path, f"variable {name!r} has {arr.nchunks - arr.nchunks_initialized} of "
                                   f"{arr.nchunks} chunks missing", REWRITE)
        shown = ", ".join(f"{c} ({_chunk_name(arr, c)})" for c in missing[:3])
        raise InputError(path, f"variable {name!r}: {len(missing)} of {arr.nchunks} chunks missing, e.g. chunk {shown}; "
                               f"they would read as the fill value {np.asarray(arr.metadata.fill_value).item()!r}", REWRITE)


def _covered_chunks(arr, key: tuple) -> Iterable[tuple[int, ...]]:
    """Chunk coordinates an (outer) indexing key touches."""
    per_axis = []
    for k, n, c in zip(key, arr.shape, arr.chunks):
        if isinstance(k, slice):
            idx = np.arange(n)[k]
        else:
            idx = np.atleast_1d(np.asarray(k)) % max(n, 1)
        per_axis.append(sorted(set((idx // c).tolist())))
    return itertools.product(*per_axis)


class CheckedArray(BackendArray):
    """Lazy read of one zarr array that turns any decoding failure into an InputError
    naming the store, the variable and the damaged chunk (an xarray backend array)."""

    def __init__(self, arr, store_path: Path, name: str):
        self._arr, self._path, self._name = arr, Path(store_path), name
        self.shape, self.dtype = tuple(arr.shape), np.dtype(arr.dtype)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._read)

    def _read(self, key: tuple):
        try:
            if any(isinstance(k, np.ndarray) for k in key):
                return self._arr.oindex[key]
            return self._arr[key]
        except Exception as exc:
            bad = None
            for c in _covered_chunks(self._arr, key):
                try:
                    self._arr.get_block_selection(c)
                except Exception:
                    bad = c
                    break
            where = f"chunk {bad} ({_chunk_name(self._arr, bad)})" if bad is not None else "a chunk"
            raise InputError(self._path, f"variable {self._name!r}: {where} cannot be read "
                                         f"({type(exc).__name__}: {exc})", REWRITE) from exc


def _guard_reads(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """Route lazy reads of ``ds`` (opened from ``path``) through :class:`CheckedArray`.

    Only variables that xarray reads unchanged (no scale/offset, no integer
    fill masking, same dtype as on disk) are rerouted; they are all that
    ferrolens writes. Already loaded (index) and dask-backed variables stay as they are.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r")
    arrays = dict(group.arrays())
    new_data, new_coords = {}, {}
    for name, var in ds.variables.items():
        if name in ds.indexes or var.chunks is not None or name not in arrays:
            continue
        arr, enc = arrays[name], var.encoding
        if np.dtype(arr.dtype) != var.dtype or var.dtype.kind not in "fiub":
            continue
        if "scale_factor" in enc or "add_offset" in enc:
            continue
        fill = enc.get("_FillValue")
        if fill is not None and not (var.dtype.kind == "f" and np.isnan(fill)):
            continue
        lazy = indexing.MemoryCachedArray(indexing.CopyOnWriteArray(
            indexing.LazilyIndexedArray(CheckedArray(arr, path, str(name)))))
        checked = xr.Variable(var.dims, lazy, var.attrs, var.encoding)
        (new_data if name in ds.data_vars else new_coords)[name] = checked
    return ds.assign_coords(new_coords).assign(new_data)


def open_zarr_checked(path: str | Path, expected: str, variables: Iterable[str] | None = None,
                      **open_kw: Any) -> xr.Dataset:
    """``xr.open_zarr`` that names the store on any failure: unreadable metadata,
    missing chunks (``check_chunks`` on ``variables``, default all) and, later,
    chunks that do not decode (reads go through :class:`CheckedArray`).
    ``expected`` says what should be there."""
    path = Path(path)
    try:
        ds = xr.open_zarr(path, **open_kw)
    except Exception as exc:  # zarr raises many types for a broken folder
        raise InputError(path, f"cannot be opened as a zarr store ({type(exc).__name__}: {exc})", expected) from exc
    check_chunks(path, variables)
    return _guard_reads(ds, path)


def open_store(
    path: str | Path,
    kind: str | Iterable[str],
    variables: Iterable[str] | None = None,
) -> xr.Dataset:
    """Open a ferrolens store lazily and check it against its kind's declaration.

    Parameters
    ----------
    path : the ``.zarr`` folder.
    kind : expected ``ferrolens_kind`` (or several accepted kinds).
    variables : data variables that must be present besides the declared ones
        (default: just those, :attr:`StoreKind.variables`).

    Checked, from metadata only (:meth:`StoreKind.problems`): the kind, the
    declared variables and coordinates and their dims, the declared attrs,
    and declared units where the store states units. Raises
    :class:`~ferrolens.errors.InputError` naming the store, what it holds and
    what was expected; also for a missing chunk (at once) and for a chunk that
    cannot be decoded (when it is read), naming the chunk.
    """
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    expected = f"a {' or '.join(kinds)} store written by ferrolens"
    if not path.exists():
        raise InputError(path, "store does not exist", expected)
    ds = open_zarr_checked(path, expected)
    found = ds.attrs.get("ferrolens_kind")
    if found not in kinds or found not in STORE_KINDS:
        raise InputError(path, f"store kind is {found!r}", f"kind {' or '.join(map(repr, kinds))}")
    problems = STORE_KINDS[found].problems(ds, variables or ())
    if problems:
        problem, want = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InputError(path, problem + more, want)
    return ds


def check_checkpoint(path: str | Path, kind: str, expected: str) -> Path:
    """Check that ``path`` is a readable PyTorch checkpoint of ferrolens model ``kind``.

    Loaded with ``weights_only=True`` (no arbitrary unpickling). A missing or
    unreadable file, or a checkpoint of another model kind, raises
    :class:`InputError` naming the file; ``expected`` says what should be there.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file does not exist", expected)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a non-checkpoint
        raise InputError(path, f"is not a readable PyTorch checkpoint ({type(exc).__name__})", expected) from exc
    found = ckpt.get("ferrolens_model") if isinstance(ckpt, dict) else None
    if found != kind:
        if found is None and isinstance(ckpt, dict) and "hyper_parameters" in ckpt:
            found = f"a Lightning checkpoint with hyper-parameters {sorted(ckpt['hyper_parameters'])[:8]}"
        elif found is None:
            found = "no ferrolens model kind"
        else:
            found = repr(found)
        raise InputError(path, f"checkpoint of another model kind ({found})", f"model kind {kind!r}: {expected}")
    return path


def frame_coords(n_frames: int, bias: np.ndarray | None = None, time: np.ndarray | None = None) -> dict:
    """Coordinates along ``frame``: index, and bias (V) / time (s) when known."""
    coords: dict[str, Any] = {FRAME: np.arange(n_frames)}
    if bias is not None:
        coords[BIAS] = (FRAME, np.asarray(bias, dtype="float64"), {"units": UNITS[BIAS], "long_name": "applied bias"})
    if time is not None:
        coords[TIME] = (FRAME, np.asarray(time, dtype="float64"), {"units": UNITS[TIME], "long_name": "time"})
    return coords


#: Attributes of a latents store that carry the model's checks on to every store derived from it
#: (dynamics, latent space), so that each figure of those latents can say whether they were earned.
QUALITY_ATTRS = ("quality_r2", "quality_angle_follow", "quality_warning")


def inherited_quality(attrs: dict) -> dict:
    """The :data:`QUALITY_ATTRS` of a latents store's ``attrs`` (those present)."""
    return {k: attrs[k] for k in QUALITY_ATTRS if k in attrs}
