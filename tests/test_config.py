"""The config validator: built once per state of the schema files, rebuilt when one changes."""

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


def test_a_checked_section_is_remembered_but_handed_out_fresh_and_exactly_as_given():
    import pytest

    from ferrolens.errors import InputError

    a = cfgmod.section("rvae", {"latent_dim": 3})
    a["latent_dim"] = 7
    assert cfgmod.section("rvae", {"latent_dim": 3})["latent_dim"] == 3
    # integer keys and tuples would not survive a JSON round trip: such sections are checked as given
    assert cfgmod.section("rvae", {"epochs": {8: 3}})["epochs"] == {8: 3}
    for _ in range(2):
        with pytest.raises(InputError, match="latent_dim"):
            cfgmod.section("rvae", {"latent_dim": (2,)})
        with pytest.raises(InputError, match="latent_dim"):
            cfgmod.section("rvae", {"latent_dim": 0})
