"""Config: load a YAML config, validate it against the workflow's JSON schema
and fill every default — the same check Snakemake runs, for notebooks and tests.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeGuard, TypeVar, cast, overload

import yaml

from .errors import InputError

if TYPE_CHECKING:  # generated from the schema (sections.py); typing only, so the generator runs without it
    from .sections import (
        Config,
        DatasetConfig,
        DynamicsConfig,
        FiguresConfig,
        LatentSpaceConfig,
        RvaeConfig,
        SegmentConfig,
        SwitchingConfig,
    )

S = TypeVar("S")
#: What an entry function (paths in, a store out: called by a rule's script with the settings its
#: outputs depend on, and from notebooks) takes for a section: the checked section ``S``, or a partial
#: mapping of it that :func:`section` checks and fills on entry. Everything below takes ``S`` itself.
Partial: TypeAlias = S | Mapping[str, Any] | None

# shipped inside the package (wheel installs too); workflow/schemas is a link to it for Snakemake
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


def _schema_state(schema_path: str | Path) -> tuple[Path, tuple]:
    """The schema's resolved path and the modification times of its folder's YAML files: the key of
    everything cached from it (an edited schema is read again)."""
    schema_path = Path(schema_path).resolve()
    return schema_path, tuple(sorted((str(p), p.stat().st_mtime_ns) for p in schema_path.parent.rglob("*.yaml")))


def _validator(schema_path: Path):
    """The defaults-filling validator of a schema, built once per state of its folder's YAML files.

    Building it parses the root and ~30 fragments (0.5–0.8 s); every stage
    entry and :func:`section` validates, so it is cached.
    """
    return _build_validator(*_schema_state(schema_path))


@functools.lru_cache(maxsize=8)
def _build_validator(schema_path: Path, stamp: tuple):
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    @functools.cache
    def retrieve(uri: str):
        # fragments are referenced relative to the schema folder
        target = schema_path.parent / uri.removeprefix("file://").split("#")[0]
        contents = yaml.safe_load(target.read_text())
        # a fragment's own $schema would make jsonschema validate it with a plain
        # validator that does not fill defaults; the root's dialect applies anyway
        contents.pop("$schema", None)
        return DRAFT202012.create_resource(contents)

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    schema = yaml.safe_load(schema_path.read_text())
    return cls(schema, registry=Registry(retrieve=retrieve))  # type: ignore[call-arg]  # an attrs class


def validate(config: dict, schema: str | Path = SCHEMA, where: str = "config", whole: bool = True) -> dict:
    """Validate ``config`` in place (defaults filled) and return it: the schema, then the
    cross-field rules it cannot express (:data:`CROSS_CHECKS`, and with ``whole`` the rules
    between sections, :func:`check_workflow`).

    A violation raises :class:`InputError` naming the key path and the value.
    Defaults of objects that are filled in are themselves validated, so a run
    of this function twice gives the same result.
    """
    v = _validator(Path(schema))
    for _ in range(3):  # defaults can introduce objects whose own defaults need filling
        errors = sorted(v.iter_errors(config), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            described = {
                "pattern": e.schema.get("description") if isinstance(e.schema, dict) else None,
                "uniqueItems": "each value listed once",
            }.get(str(e.validator))
            raise InputError(
                where, f"key {key}: {e.message}", described or "a config matching workflow/schemas/config.schema.yaml"
            )
    for name, dataset in (config.get("datasets") or {}).items():
        check_dataset(f"datasets.{name}", dataset)
    try:
        for name, check in CROSS_CHECKS.items():
            if isinstance(config.get(name), dict):
                check(config[name])
        if whole:
            check_workflow(cast("Config", config))
    except InputError as exc:  # name the user's file, as the schema's messages do
        key = (exc.where or "").removeprefix("config ")
        raise InputError(where, f"key {key}: {exc.problem}", exc.expected) from None
    return config


def load_config(path: str | Path, schema: str | Path = SCHEMA) -> Config:
    """Read a YAML config file and validate it (defaults filled)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(path, f"cannot be read as YAML ({exc})", "a YAML config file") from exc
    return cast("Config", validate(config, schema, where=str(path)))


def stage_seed(seed: int, *names: Any) -> int:
    """A seed per stage and wildcard, derived from the master seed (stable across runs)."""
    text = ":".join([str(seed), *map(str, names)])
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


@overload
def section(
    name: Literal["segment"], cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA
) -> SegmentConfig: ...
@overload
def section(name: Literal["rvae"], cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA) -> RvaeConfig: ...
@overload
def section(
    name: Literal["dynamics"], cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA
) -> DynamicsConfig: ...
@overload
def section(
    name: Literal["latent_space"], cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA
) -> LatentSpaceConfig: ...
@overload
def section(
    name: Literal["switching"], cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA
) -> SwitchingConfig: ...
@overload
def section(
    name: Literal["figures"], cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA
) -> FiguresConfig: ...
def section(name: str, cfg: Mapping[str, Any] | None = None, schema: str | Path = SCHEMA) -> Any:
    """One stage's config section (``segment``, ``rvae`` …: :data:`SECTIONS`), validated with defaults
    filled and frozen: the code trusts it and cannot change it by mistake. Its type is the section's
    ``TypedDict`` of :mod:`ferrolens.sections` (``section("dynamics", cfg)`` is a ``DynamicsConfig``).

    ``section("rvae", {"latent_dim": 3})`` gives the complete section exactly as the
    workflow passes it (the workflow's config is validated once, in the Snakefile;
    a stage given the section checks it again here, which costs ~1 ms once seen: a
    section already checked is not validated again, a bad one raises every time).
    """
    return _checked(name, cfg, schema)


def _checked(name: str, cfg: Mapping[str, Any] | None, schema: str | Path) -> Frozen:
    if isinstance(cfg, Frozen) and cfg.checked_as == name:
        return cfg
    try:
        key = json.dumps(cfg or {}, sort_keys=True)
    except (TypeError, ValueError):  # not plain JSON (numpy numbers, ...): checked afresh
        return _section(name, cfg, schema)
    if json.loads(key) != (cfg or {}):  # JSON would change it (tuples, integer keys): checked as given
        return _section(name, cfg, schema)
    return _section_cached(name, key, *_schema_state(schema))


_ENTRY = "datasets._"  # the name a lone dataset entry is checked under (messages then name the caller's)


def dataset_section(
    cfg: Mapping[str, Any] | None, where: str = "dataset", schema: str | Path = SCHEMA
) -> DatasetConfig:
    """One entry of ``datasets:`` checked as :func:`validate` checks it in a whole config (the schema,
    then :func:`check_dataset`), every default filled, frozen: a ``DatasetConfig``. ``where`` names it
    in messages (``datasets.<name>``). A checked entry is returned as it is.

    The workflow's entries come filled from the Snakefile's validation (a rule's params drop what its
    outputs do not depend on, e.g. ``labels``: filled here again, unread); a notebook's dict is filled here.
    """
    try:
        return cast("DatasetConfig", _checked(_ENTRY, cfg, schema))
    except InputError as exc:  # name the caller's entry, as a whole config names its own

        def named(text: str | None) -> str | None:
            return text.replace(_ENTRY, where) if text else text

        raise InputError(named(exc.where), named(exc.problem) or "", named(exc.expected)) from None


def _section(name: str, cfg: Mapping[str, Any] | None, schema: str | Path) -> Frozen:
    if name.startswith("datasets."):  # one dataset entry (dataset_section)
        entry = name.removeprefix("datasets.")
        full = validate({"datasets": {entry: thaw(cfg) if cfg else {}}}, schema, whole=False)
        return freeze(full["datasets"][entry], checked_as=name)
    full = validate({name: thaw(cfg) if cfg else {}, "datasets": {"_": {"path": "_"}}}, schema, whole=False)
    return freeze(full[name], checked_as=name)


@functools.lru_cache(maxsize=128)
def _section_cached(name: str, key: str, schema_path: Path, stamp: tuple) -> Frozen:
    return _section(name, json.loads(key), schema_path)


class Frozen(dict):
    """A config mapping that cannot be changed (nested mappings and lists frozen too). A plain
    ``dict`` to everything that reads it (``json.dumps``, ``**``, pickling);
    ``{**cfg, "key": value}`` or :func:`thaw` make a changeable copy."""

    checked_as: str | None = None

    def _refuse(self, *args, **kwargs):
        raise TypeError("a checked config section is read-only: build a new dict, e.g. {**cfg, 'key': value}")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse

    def __deepcopy__(self, memo):
        return self  # immutable

    def __copy__(self):
        return self

    def __reduce__(self):
        return freeze, (thaw(self), self.checked_as)


class FrozenList(list):
    """A config list that cannot be changed; ``list + list`` and slices give plain lists."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a checked config section is read-only: build a new list, e.g. [*items, value]")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def __reduce__(self):
        return FrozenList, (list(self),)


def freeze(value: Any, checked_as: str | None = None) -> Any:
    """``value`` with every mapping a :class:`Frozen` and every list a :class:`FrozenList`."""
    if isinstance(value, dict):
        out = Frozen((k, freeze(v)) for k, v in value.items())
        out.checked_as = checked_as
        return out
    if isinstance(value, (list, tuple)):
        return FrozenList(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A changeable copy: plain dicts and lists (the inverse of :func:`freeze`)."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# --- checks the schema cannot express (cross-field rules), shared by the stages ----------
def require(section_name: str, cond: bool, key: str, value: Any, expected: str) -> None:
    """Raise :class:`InputError` naming ``config <section>.<key>`` and ``value`` unless ``cond``."""
    if not cond:
        raise InputError(f"config {section_name}.{key}", f"value {value!r}", expected)


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> TypeGuard[float]:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


FLOAT32_MAX = 3.4028234663852886e38  # movies are stored as float32


def check_dataset(key: str, cfg: DatasetConfig) -> None:
    """Cross-field checks of one dataset's entry (``key`` = ``datasets.<name>``), run by :func:`validate`
    after the schema (defaults filled): a whole config's entries, and one alone (:func:`dataset_section`)."""
    policy = cfg["nonfinite"]
    if policy not in ("error", "median"):
        require(
            key,
            is_number(policy) and abs(policy) <= FLOAT32_MAX,
            "nonfinite",
            policy,
            "'error', 'median' or a finite fill value within the float32 range (|value| <= 3.4e38)",
        )
    bias = cfg["bias"]
    if bias["source"] == "csv":
        require(
            key,
            isinstance(bias["csv"], str) and bias["csv"] != "",
            "bias.csv",
            bias["csv"],
            "the CSV file (columns frame,bias[,time]) when bias.source is 'csv'",
        )
    if bias["source"] == "list":
        require(
            key,
            bool(bias["values"]),
            "bias.values",
            thaw(bias["values"]),
            "one bias value per kept frame when bias.source is 'list'",
        )


def _ordered(section_name: str, key: str, pair: Any, what: str = "[low, high] with low < high") -> None:
    require(section_name, pair[0] < pair[1], key, thaw(pair), what)


def _check_segment(c: SegmentConfig) -> None:
    """``segment:`` rules between fields (types and ranges are the schema's)."""
    lo, hi = c["normalize"]["low_percentile"], c["normalize"]["high_percentile"]
    require("segment", lo < hi, "normalize", [lo, hi], "0 ≤ low_percentile < high_percentile ≤ 100")
    p = c["predict"]
    require(
        "segment",
        p["overlap"] < p["tile"],
        "predict.overlap",
        p["overlap"],
        f"an integer 0 ≤ overlap < tile ({p['tile']})",
    )
    a = c["augment"]
    for k, rng in (
        ("contrast.scale_range", a["contrast"]["scale_range"]),
        ("contrast.gamma_range", a["contrast"]["gamma_range"]),
        ("poisson_noise.peak_range", a["poisson_noise"]["peak_range"]),
    ):
        require("segment", rng[0] <= rng[1], f"augment.{k}", thaw(rng), "[low, high] with 0 < low ≤ high")


def _check_dynamics(c: DynamicsConfig) -> None:
    """``dynamics:`` rules between fields."""
    _ordered("dynamics", "range_quantiles", c["range_quantiles"], "[low, high] with 0 ≤ low < high ≤ 1")
    for name, r in c["ranges"].items():
        _ordered("dynamics", f"ranges.{name}", r)
    if c["bandwidth"] == "fixed":
        missing = [v for v in c["variables"] if v not in c["fixed_bandwidth"]]
        require(
            "dynamics",
            not missing,
            "fixed_bandwidth",
            thaw(c["fixed_bandwidth"]),
            f"a bandwidth for every variable (missing {missing})",
        )


def _check_latent_space(c: LatentSpaceConfig) -> None:
    """``latent_space:`` rules between fields."""
    _ordered("latent_space", "range_quantiles", c["range_quantiles"], "[low, high] with 0 ≤ low < high ≤ 1")
    for name, r in c["ranges"].items():
        _ordered("latent_space", f"ranges.{name}", r)
    _ordered("latent_space", "physical_bounds", c["physical_bounds"])
    _ordered("latent_space", "histogram_range", c["histogram_range"])
    n_src = c["image_components"] if c["rgb_source"] == "image" else c["histogram_components"]
    require(
        "latent_space",
        all(i < n_src for i in c["rgb_components"]),
        "rgb_components",
        thaw(c["rgb_components"]),
        f"three component indices 0 … {n_src - 1} of the {c['rgb_source']} NMF",
    )


#: Rules between the fields of one section, run by :func:`validate` (so once, in the Snakefile,
#: for the workflow) after the schema: each section's checks live here, beside its schema.
CROSS_CHECKS: dict[str, Callable[[Any], None]] = {
    "segment": _check_segment,
    "dynamics": _check_dynamics,
    "latent_space": _check_latent_space,
}


def check_workflow(config: Config) -> None:
    """Rules between sections of a whole config (validated by the schema, defaults filled): every
    window size has its rVAE epochs, and the rVAE reads a segmentation that is trained."""
    rvae, windows, n_classes = config["rvae"], config["windows"], config["segment"]["n_classes"]
    epochs = rvae["epochs"]
    if isinstance(epochs, dict):
        given = {int(k) for k in epochs}
        missing = [w for w in windows if int(w) not in given]
        require(
            "rvae",
            not missing,
            "epochs",
            thaw(epochs),
            f"an entry for every window size (windows {list(windows)}; missing {missing})",
        )
    if rvae["input"] != "raw":
        require(
            "rvae",
            rvae["segmentation"] in n_classes,
            "segmentation",
            rvae["segmentation"],
            f"one of segment.n_classes = {list(n_classes)} (a trained segmentation), or rvae.input: raw",
        )


# --- typed sections: ferrolens/sections.py is generated from the schema fragments -------------
SECTIONS = ("segment", "rvae", "dynamics", "latent_space", "switching", "figures")


def _camel(*parts: str) -> str:
    return "".join(p.replace("_", " ").title().replace(" ", "") for p in parts)


def _python_type(schema: dict, name: tuple[str, ...], classes: list[str], refs: dict[str, str]) -> str:
    """The Python annotation of a schema node; nested objects with properties become TypedDicts
    (their source appended to ``classes``); a ``$ref`` is the class ``refs`` names for it."""
    if "$ref" in schema:
        return refs[schema["$ref"]]
    if "oneOf" in schema or "anyOf" in schema:
        kinds = [_python_type(s, name, classes, refs) for s in schema.get("oneOf") or schema["anyOf"]]
        return " | ".join(sorted(dict.fromkeys(kinds), key=lambda k: k == "None"))  # None last
    if "enum" in schema:
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"]) + "]"
    types = schema.get("type", "object")
    if isinstance(types, list):
        return " | ".join(_python_type({**schema, "type": t}, name, classes, refs) for t in types)
    if types == "object" and schema.get("properties"):
        return _typed_dict(schema, name, classes, refs)
    if types == "object":
        extra = schema.get("additionalProperties")
        return f"dict[str, {_python_type(extra, name, classes, refs)}]" if isinstance(extra, dict) else "dict[str, Any]"
    if types == "array":
        return f"list[{_python_type(schema.get('items', {}), name, classes, refs)}]"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "None"}[types]


def _typed_dict(
    schema: dict, name: tuple[str, ...], classes: list[str], refs: dict[str, str] | None = None, doc: str | None = None
) -> str:
    cls = _camel(*name) + "Config"
    lines = []
    for key, sub in schema["properties"].items():
        lines.append(f"    {key}: {_python_type(sub, (*name, key), classes, refs or {})}")
        text = " ".join(str(sub.get("description", "")).split()).replace(chr(92), chr(92) * 2)
        if text:  # wrapped to the line length (docstrings of generated code are read in editors)
            wrapped = textwrap.wrap(f'"""{text}"""', 116, break_long_words=False, break_on_hyphens=False)
            lines.extend("    " + line for line in wrapped)
    path = ".".join(name)
    if name[:1] == ("dataset",):  # one entry of datasets:
        path = "datasets.<name>" + path.removeprefix("dataset")
    doc = doc or f"``{path}:`` (checked, defaults filled, read-only)."
    classes.append(f"class {cls}(TypedDict):\n" + f'    """{doc}"""\n\n' + "\n".join(lines))
    return cls


def typed_sections(schema: str | Path = SCHEMA) -> str:
    """The source of ``ferrolens/sections.py``: one ``TypedDict`` per config section (and nested
    object) with each key's type and description, from the schema fragments; one for an entry of
    ``datasets:`` (``DatasetConfig``) and one for the whole config (``Config``)."""
    root_path = Path(schema).resolve()
    folder = root_path.parent / "fragments"
    classes: list[str] = []
    refs = {}
    for name in SECTIONS:
        refs[f"fragments/{name}.yaml"] = _typed_dict(
            yaml.safe_load((folder / f"{name}.yaml").read_text()), (name,), classes
        )
    root = yaml.safe_load(root_path.read_text())
    refs["#/$defs/dataset"] = _typed_dict(root["$defs"]["dataset"], ("dataset",), classes)
    _typed_dict(root, (), classes, refs, doc="The whole config (:func:`load_config`: checked, defaults filled).")
    head = (
        '"""Types of the checked config sections, generated from the schema fragments by\n'
        "``python -m ferrolens.config > src/ferrolens/sections.py``; ``tests/test_config.py`` checks it\n"
        'is current. :func:`ferrolens.config.section` hands these out, frozen."""\n\n'
        "from __future__ import annotations\n\nfrom typing import "
        + ("Any, " if any("Any]" in c for c in classes) else "")
        + "Literal, TypedDict\n\n__all__ = [\n"
        + "".join(f'    "{c.split("(")[0].removeprefix("class ")}",\n' for c in sorted(classes))
        + "]\n"
    )
    return head + "\n\n" + "\n\n\n".join(classes) + "\n"


if __name__ == "__main__":
    print(typed_sections(), end="")
