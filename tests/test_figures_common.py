"""figures.common.save: what a call leaves out takes the schema's figures: defaults, so a notebook's
call writes exactly what the workflow's (its rule passes the checked dpi and vector) writes."""

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from ferrolens.config import section
from ferrolens.errors import InputError
from ferrolens.figures.common import save


def _figure():
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    return fig


def _written(folder):
    return sorted(p.name for p in folder.iterdir())


def test_save_defaults_are_the_schemas(tmp_path):
    defaults = section("figures")
    assert (defaults["dpi"], defaults["vector"]) == (200, "pdf")
    notebook, workflow = tmp_path / "notebook", tmp_path / "workflow"
    notebook.mkdir()
    workflow.mkdir()
    save(_figure(), notebook / "f.png")
    save(_figure(), workflow / "f.png", {"dpi": defaults["dpi"], "vector": defaults["vector"]})
    assert _written(notebook) == _written(workflow) == ["f.pdf", "f.png"]
    with Image.open(notebook / "f.png") as a, Image.open(workflow / "f.png") as b:
        assert a.size == b.size and a.info.get("dpi", (0,))[0] == pytest.approx(200, abs=1)
    # what is given is what is written: PNG only, or an SVG; a smaller dpi, a smaller image
    for vector, expected in (("none", ["g.png"]), ("svg", ["g.png", "g.svg"])):
        folder = tmp_path / vector
        folder.mkdir()
        save(_figure(), folder / "g.png", {"vector": vector, "dpi": 50})
        assert _written(folder) == expected
        with Image.open(folder / "g.png") as small, Image.open(notebook / "f.png") as full:
            assert small.size[0] < full.size[0] / 3
    with pytest.raises(InputError, match=r"figures\.vector"):
        save(_figure(), tmp_path / "bad.png", {"vector": "eps"})
