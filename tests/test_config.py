"""The config validator: built once per state of the schema files, rebuilt when one changes."""

import copy
import shutil
import time
from pathlib import Path

from ferrolens import config as cfgmod


def test_validator_is_cached_and_an_edited_fragment_is_read_again(tmp_path):
    folder = tmp_path / "schemas"
    shutil.copytree(Path(cfgmod.SCHEMA).parent, folder)
    schema = folder / "config.schema.yaml"
    v1 = cfgmod._validator(schema)
    assert cfgmod._validator(schema) is v1  # no rebuild while nothing changed
    assert cfgmod.section("rvae", schema=schema)["latent_dim"] == 2
    frag = folder / "fragments" / "rvae.yaml"
    text = frag.read_text()
    marker = "  latent_dim:\n"
    head, tail = text.split(marker, 1)
    tail = tail.replace("default: 2", "default: 3", 1)
    time.sleep(0.01)  # a new modification time even on coarse clocks
    frag.write_text(head + marker + tail)
    assert cfgmod._validator(schema) is not v1
    assert cfgmod.section("rvae", schema=schema)["latent_dim"] == 3


def test_a_checked_section_is_remembered_frozen_and_exactly_as_given():
    import json
    import pickle

    import pytest

    from ferrolens.errors import InputError

    a = cfgmod.section("rvae", {"latent_dim": 3})
    for change in (
        lambda: a.__setitem__("latent_dim", 7),
        lambda: a["quality"].update(min_r2=0),
        lambda: a.pop("lr"),
        lambda: cfgmod.section("segment")["n_classes"].append(4),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert cfgmod.section("rvae", {"latent_dim": 3})["latent_dim"] == 3
    assert cfgmod.section("rvae", a) is a  # a checked section is trusted as it is
    # a frozen section reads, dumps, pickles and merges as the plain dict it was made from
    plain = cfgmod.thaw(a)
    assert type(plain) is dict and plain == a and json.dumps(a, sort_keys=True) == json.dumps(plain, sort_keys=True)
    assert pickle.loads(pickle.dumps(a)) == a
    assert {**a, "latent_dim": 5}["latent_dim"] == 5 and cfgmod.section("segment")["n_classes"] + [4] == [2, 3, 4]
    # integer keys and tuples would not survive a JSON round trip: such sections are checked as given
    assert cfgmod.section("rvae", {"epochs": {8: 3}})["epochs"] == {8: 3}
    for _ in range(2):
        with pytest.raises(InputError, match="latent_dim"):
            cfgmod.section("rvae", {"latent_dim": (2,)})
        with pytest.raises(InputError, match="latent_dim"):
            cfgmod.section("rvae", {"latent_dim": 0})


def test_cross_field_rules_are_checked_once_with_the_schema_at_validation():
    """Rules between fields (low < high, a bandwidth per variable, component indices, an epoch count per
    window, a trained segmentation) fail the config itself, naming the key, before any job runs."""
    import pytest

    from ferrolens.errors import InputError

    base = {"datasets": {"d": {"path": "m.tif"}}}
    bad = [
        ({"dynamics": {"ranges": {"z1": [1.0, -1.0]}}}, r"dynamics\.ranges\.z1.*\[1\.0, -1\.0\]"),
        (
            {"dynamics": {"bandwidth": "fixed", "variables": ["angle", "z1"], "fixed_bandwidth": {"angle": 0.1}}},
            r"dynamics\.fixed_bandwidth.*missing \['z1'\]",
        ),
        ({"latent_space": {"rgb_components": [0, 1, 7]}}, r"latent_space\.rgb_components.*0 … 2 of the image NMF"),
        ({"latent_space": {"physical_bounds": [1.05, 0.95]}}, r"latent_space\.physical_bounds"),
        ({"windows": [8, 12], "rvae": {"epochs": {8: 3}}}, r"rvae\.epochs.*missing \[12\]"),
        ({"segment": {"n_classes": [2]}, "rvae": {"segmentation": 3}}, r"rvae\.segmentation.*n_classes = \[2\]"),
    ]
    for extra, message in bad:
        with pytest.raises(InputError, match=message):
            cfgmod.validate({**copy.deepcopy(base), **copy.deepcopy(extra)})
    # named as the schema's errors are: the user's file, then the key
    with pytest.raises(InputError, match=r"^my\.yaml: key rvae\.epochs: "):
        cfgmod.validate({**copy.deepcopy(base), "windows": [8, 12], "rvae": {"epochs": {8: 3}}}, where="my.yaml")
    # the same configs are fine where the rule holds
    cfgmod.validate({**copy.deepcopy(base), "windows": [8, 12], "rvae": {"epochs": {8: 3, 12: 2}}})
    cfgmod.validate({**copy.deepcopy(base), "segment": {"n_classes": [2]}, "rvae": {"segmentation": 2}})
    cfgmod.validate({**copy.deepcopy(base), "segment": {"n_classes": [2]}, "rvae": {"input": "raw"}})


def test_the_typed_sections_are_generated_from_the_current_schema_and_cover_every_key():
    """ferrolens/sections.py (TypedDicts of the checked sections) is what the schema gives today, and
    each section's type names exactly the keys the checked section holds, nested ones too."""
    import typing
    from pathlib import Path

    from ferrolens import sections

    current = Path(sections.__file__).read_text()
    assert current == cfgmod.typed_sections(), "regenerate: python -m ferrolens.config > src/ferrolens/sections.py"

    def keys_match(cls, value, where):
        hints = typing.get_type_hints(cls)
        assert set(hints) == set(value), where
        for key, hint in hints.items():
            if typing.is_typeddict(hint):
                keys_match(hint, value[key], f"{where}.{key}")

    for name in cfgmod.SECTIONS:
        cls = getattr(sections, cfgmod._camel(name) + "Config")
        keys_match(cls, cfgmod.section(name), name)
    assert typing.get_type_hints(sections.DynamicsConfig)["angle_period"] == float | None


def test_section_is_typed_for_every_section_and_a_dataset_entry_is_typed_and_filled_once():
    """section(name) is declared to return each section's TypedDict (one overload per SECTIONS name);
    a datasets: entry checked alone (dataset_section) is the DatasetConfig the whole config holds:
    every key, nested ones too, defaults filled, frozen; its errors name the caller's entry."""
    import typing

    import pytest

    from ferrolens import sections
    from ferrolens.errors import InputError

    returns = {
        typing.get_args(typing.get_type_hints(f, globalns=vars(sections) | vars(cfgmod))["name"])[0]: f.__annotations__[
            "return"
        ]
        for f in typing.get_overloads(cfgmod.section)
    }
    assert returns == {name: cfgmod._camel(name) + "Config" for name in cfgmod.SECTIONS}

    def keys_match(cls, value, where):
        hints = typing.get_type_hints(cls)
        assert set(hints) == set(value), where
        for key, hint in hints.items():
            if typing.get_origin(hint) is dict:  # datasets: {name: DatasetConfig}
                for name, item in value[key].items():
                    if typing.is_typeddict(typing.get_args(hint)[1]):
                        keys_match(typing.get_args(hint)[1], item, f"{where}.{key}.{name}")
                continue
            inner = [h for h in typing.get_args(hint) if typing.is_typeddict(h)] or [hint]
            if typing.is_typeddict(inner[0]) and value[key] is not None:
                keys_match(inner[0], value[key], f"{where}.{key}")

    given = {"path": "m.tif", "bias": {"source": "waveform", "amplitude": 2.0}, "synthetic": {"size": 32}}
    entry = cfgmod.dataset_section(given, "datasets.d")
    keys_match(sections.DatasetConfig, entry, "datasets.d")
    whole = cfgmod.validate({"datasets": {"d": dict(given)}})
    keys_match(sections.Config, whole, "config")
    assert entry == whole["datasets"]["d"]
    assert entry["frames"] == {"start": 0, "stop": None, "step": 1} and entry["bias"]["cycles"] == 1.0
    assert entry["nonfinite"] == "error" and entry["labels"]["format"] == "index" and entry["bin"] == 1
    assert cfgmod.dataset_section(entry, "datasets.d") is entry  # checked once
    with pytest.raises(TypeError, match="read-only"):
        entry["bias"]["source"] = "none"
    with pytest.raises(InputError, match=r"^config: key datasets\.movie\.crop: \[1, 2\] is not valid"):
        cfgmod.dataset_section({"crop": [1, 2]}, "datasets.movie")
    with pytest.raises(InputError, match=r"^config datasets\.movie\.bias\.csv: value None"):
        cfgmod.dataset_section({"bias": {"source": "csv"}}, "datasets.movie")
    with pytest.raises(InputError, match=r"key dataset\.labels: Additional properties"):
        cfgmod.dataset_section({"labels": {"unlabelled": -2}})
