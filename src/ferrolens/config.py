"""Config: load a YAML config, validate it against the workflow's JSON schema
and fill every default — the same check Snakemake runs, for notebooks and tests.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

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
    return cls(schema, registry=Registry(retrieve=retrieve))


def validate(config: dict, schema: str | Path = SCHEMA, where: str = "config") -> dict:
    """Validate ``config`` in place (defaults filled) and return it.

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
            described = {"pattern": e.schema.get("description") if isinstance(e.schema, dict) else None,
                         "uniqueItems": "each value listed once"}.get(str(e.validator))
            raise InputError(where, f"key {key}: {e.message}",
                             described or "a config matching workflow/schemas/config.schema.yaml")
    for name, dataset in (config.get("datasets") or {}).items():
        check_dataset(f"datasets.{name}", dataset)
    return config


def load_config(path: str | Path, schema: str | Path = SCHEMA) -> dict:
    """Read a YAML config file and validate it (defaults filled)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(path, f"cannot be read as YAML ({exc})", "a YAML config file") from exc
    return validate(config, schema, where=str(path))


def stage_seed(seed: int, *names: Any) -> int:
    """A seed per stage and wildcard, derived from the master seed (stable across runs)."""
    text = ":".join([str(seed), *map(str, names)])
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def section(name: str, cfg: dict | None = None, schema: str | Path = SCHEMA) -> dict:
    """One stage's config section (``segment``, ``rvae`` …), validated with defaults filled.

    For notebooks and tests that call a stage function with a partial dict:
    ``section("rvae", {"latent_dim": 3})`` gives the complete section exactly
    as the workflow would pass it. Returns a new dict each call (the caller may
    change it); a section already checked is not validated again (validation is
    ~20 ms of single-threaded work, paid by every stage call), a bad one raises
    every time.
    """
    try:
        key = json.dumps(cfg or {}, sort_keys=True)
    except (TypeError, ValueError):  # not plain JSON (numpy numbers, ...): checked afresh
        return _section(name, cfg, schema)
    if json.loads(key) != (cfg or {}):  # JSON would change it (tuples, integer keys): checked as given
        return _section(name, cfg, schema)
    return copy.deepcopy(_section_cached(name, key, *_schema_state(schema)))


def _section(name: str, cfg: dict | None, schema: str | Path) -> dict:
    full = validate({name: copy.deepcopy(cfg) if cfg else {}, "datasets": {"_": {"path": "_"}}}, schema)
    return full[name]


@functools.lru_cache(maxsize=128)
def _section_cached(name: str, key: str, schema_path: Path, stamp: tuple) -> dict:
    return _section(name, json.loads(key), schema_path)


# --- checks the schema cannot express (cross-field rules), shared by the stages ----------
def require(section_name: str, cond: bool, key: str, value: Any, expected: str) -> None:
    """Raise :class:`InputError` naming ``config <section>.<key>`` and ``value`` unless ``cond``."""
    if not cond:
        raise InputError(f"config {section_name}.{key}", f"value {value!r}", expected)


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


FLOAT32_MAX = 3.4028234663852886e38  # movies are stored as float32


def check_dataset(key: str, cfg: dict) -> None:
    """Cross-field checks of one dataset's section (``key`` = ``datasets.<name>``),
    run by :func:`validate` and again by ingest for a dict given directly."""
    policy = cfg.get("nonfinite", "error")
    if policy not in ("error", "median", None):
        require(key, is_number(policy) and abs(policy) <= FLOAT32_MAX, "nonfinite", policy,
                "'error', 'median' or a finite fill value within the float32 range (|value| <= 3.4e38)")
    bias = cfg.get("bias") or {}
    if bias.get("source") == "csv":
        require(key, isinstance(bias.get("csv"), str) and bias.get("csv") != "", "bias.csv", bias.get("csv"),
                "the CSV file (columns frame,bias[,time]) when bias.source is 'csv'")
    if bias.get("source") == "list":
        require(key, bool(bias.get("values")), "bias.values", bias.get("values"),
                "one bias value per kept frame when bias.source is 'list'")
