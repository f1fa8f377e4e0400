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
