"""The ``segment:`` schema fragment: complete, documented, and in step with the package defaults."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from ferrolens.errors import InputError
from ferrolens.segment import DEFAULTS, resolve_config

FRAGMENT = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "fragments" / "segment.yaml"


def _schema():
    return yaml.safe_load(FRAGMENT.read_text())


def _walk(schema, path="segment"):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")


def test_every_key_has_description_and_default_and_objects_are_closed():
    for path, sub in _walk(_schema()):
        assert sub.get("description"), f"{path} lacks a description"
        assert "default" in sub, f"{path} lacks a default"
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, f"{path} allows unknown keys"


def test_schema_defaults_make_a_consistent_unet():
    """The defaults are valid and fit together: the paper's 2- and 3-class models, patches and tiles
    that the U-Net's pooling divides, an overlap smaller than a tile, percentiles in order."""
    jsonschema.Draft202012Validator(_schema()).validate(DEFAULTS)
    assert DEFAULTS["n_classes"] == [2, 3]
    step = 2 ** DEFAULTS["model"]["depth"]
    assert DEFAULTS["train"]["patch_size"] % step == 0 and DEFAULTS["predict"]["tile"] % step == 0
    assert 0 <= DEFAULTS["predict"]["overlap"] < DEFAULTS["predict"]["tile"] // 2
    assert DEFAULTS["normalize"]["low_percentile"] < DEFAULTS["normalize"]["high_percentile"]
    assert resolve_config(None) == DEFAULTS  # no config: the defaults, as the workflow passes them


def test_schema_rejects_unknown_and_bad_values():
    v = jsonschema.Draft202012Validator(_schema())
    assert not v.is_valid({"train": {"patch": 64}})
    assert not v.is_valid({"n_classes": [4]})
    assert not v.is_valid({"train": {"class_weights": "inverse"}})
    assert v.is_valid({"train": {"class_weights": [1.0, 5.0, 9.0]}, "predict": {"tile": 256}})


def test_resolve_config_fills_nested_defaults_and_names_bad_keys():
    cfg = resolve_config({"augment": {"zoom": {"enabled": False}}})
    assert cfg["augment"]["zoom"] == {**DEFAULTS["augment"]["zoom"], "enabled": False}
    assert cfg["train"] == DEFAULTS["train"]
    with pytest.raises(InputError, match=r"segment.augment.zoom.*'factor' was unexpected"):
        resolve_config({"augment": {"zoom": {"factor": 2}}})
    with pytest.raises(InputError, match=r"segment\.normalize"):
        resolve_config({"normalize": {"low_percentile": 99, "high_percentile": 1}})


def test_resolve_config_is_read_only_and_checks_every_call():
    """Checked configs are remembered (schema validation costs ~30 ms a call) and frozen: a
    caller cannot change what the next call returns; cross-field rules are the config's."""
    a = resolve_config({"predict": {"tile": 256}})
    with pytest.raises(TypeError, match="read-only"):
        a["predict"]["tile"] = 1
    assert resolve_config({"predict": {"tile": 256}})["predict"]["tile"] == 256
    with pytest.raises(InputError, match=r"segment\.predict\.overlap.*overlap < tile \(128\)"):
        resolve_config({"predict": {"tile": 128, "overlap": 128}})
    with pytest.raises(InputError, match=r"segment\.normalize.*\[50, 50\]"):
        resolve_config({"normalize": {"low_percentile": 50, "high_percentile": 50}})
    for _ in range(2):  # a bad config raises every time, not only the first
        with pytest.raises(InputError, match=r"segment\.predict\.precision"):
            resolve_config({"predict": {"precision": "fp16"}})
