"""Stores, labels and config: atomic writes, checked reads, clear errors."""

import os

import numpy as np
import pytest
import xarray as xr
import yaml
from PIL import Image

from ferrolens import store
from ferrolens.config import load_config, validate
from ferrolens.errors import InputError
from ferrolens.ingest import ingest_labels, ingest_movie, write_demo_source

CLASSES = ["background", "wall", "contaminant"]


@pytest.fixture
def demo_stores(tmp_path):
    syn = write_demo_source({"n_frames": 6, "size": 32, "seed": 1, "needles_per_family": 3}, tmp_path / "syn.zarr")
    movie = ingest_movie(
        {"frames": {"start": 1}, "crop": [0, 30, 2, 32], "bin": 2}, tmp_path / "movie.zarr", source=str(syn)
    )
    return tmp_path, syn, movie


def test_movie_store_vocabulary(demo_stores):
    _tmp, syn, movie = demo_stores
    ds = store.open_store(movie, "movie", ["image"])
    assert ds.image.dims == ("frame", "y", "x") and ds.image.shape == (5, 15, 15)
    assert ds.bias.attrs["units"] == "V" and ds.time.attrs["units"] == "s"
    assert ds.attrs["ferrolens_kind"] == "movie" and ds.attrs["source_sha256"] == store.sha256_file(syn)
    assert ds.attrs["ferrolens_version"]
    np.testing.assert_array_equal(ds.source_frame, [1, 2, 3, 4, 5])


def test_a_partial_entry_and_the_workflows_filled_one_ingest_the_same_movie(demo_stores):
    """A notebook's dict is filled once, on entry, with the schema's defaults (dataset_section): the movie
    equals the one from the filled entry the workflow's rule passes; each store records its settings as given."""
    import json

    from ferrolens.config import dataset_section, thaw

    tmp, syn, movie = demo_stores
    given = {"frames": {"start": 1}, "crop": [0, 30, 2, 32], "bin": 2}
    entry = thaw(dataset_section(given, "datasets.d"))
    assert entry["frames"] == {"start": 1, "stop": None, "step": 1} and entry["bias"]["source"] == "auto"
    rule = {k: v for k, v in entry.items() if k not in ("labels", "synthetic")}  # common.smk's movie_settings
    out = ingest_movie(rule, tmp / "rule.zarr", source=str(syn), name="d")
    a, b = store.open_store(movie, "movie"), store.open_store(out, "movie")
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert json.loads(a.attrs["config_json"]) == given and json.loads(b.attrs["config_json"]) == rule
    with pytest.raises(InputError, match=r"key datasets\.d\.bin: 0 is less than the minimum of 1"):
        ingest_movie({**given, "bin": 0}, tmp / "bad.zarr", source=str(syn), name="d")


def test_labels_from_truth_follow_the_movie_selection(demo_stores):
    tmp, syn, movie = demo_stores
    cfg = {"frames": {"start": 1}, "crop": [0, 30, 2, 32], "bin": 2, "labels": {"source": "truth", "frames": [0, 3]}}
    out = ingest_labels(cfg, CLASSES, movie, tmp / "labels.zarr", truth=syn)
    lab = store.open_store(out, "labels", ["label"])
    truth = xr.open_zarr(syn).class_map.values
    np.testing.assert_array_equal(lab.label.values[1], truth[4, 0:30:2, 2:32:2])
    assert lab.attrs["class_names"] == CLASSES and list(lab.frame.values) == [0, 3]


def test_label_files_index_and_rgb(demo_stores):
    tmp, _, movie = demo_stores
    a = np.zeros((15, 15), np.uint8)
    a[3, :] = 1
    a[7:9, 7:9] = 2
    Image.fromarray(a).save(tmp / "l0.png")
    out = ingest_labels({"labels": {"frames": [2], "path": [str(tmp / "l0.png")]}}, CLASSES, movie, tmp / "l.zarr")
    np.testing.assert_array_equal(store.open_store(out, "labels").label.values[0], a)
    rgb = np.zeros((15, 15, 3), np.uint8)
    rgb[a == 1] = [255, 0, 0]
    rgb[a == 2] = [0, 0, 255]
    Image.fromarray(rgb).save(tmp / "rgb.png")
    colors = {"background": [0, 0, 0], "wall": [255, 0, 0], "contaminant": [0, 0, 255]}
    out = ingest_labels(
        {"labels": {"frames": [2], "path": str(tmp / "rgb.png"), "format": "rgb", "colors": colors}},
        CLASSES,
        movie,
        tmp / "l2.zarr",
    )
    np.testing.assert_array_equal(store.open_store(out, "labels").label.values[0], a)
    rgb[0, 0] = [0, 255, 0]
    Image.fromarray(rgb).save(tmp / "rgb.png")
    with pytest.raises(InputError, match=r"colours \[\[0, 255, 0\]\] are not in labels.colors"):
        ingest_labels(
            {"labels": {"frames": [2], "path": str(tmp / "rgb.png"), "format": "rgb", "colors": colors}},
            CLASSES,
            movie,
            tmp / "l3.zarr",
        )
    assert not (tmp / "l3.zarr").exists()


def test_label_errors(demo_stores):
    tmp, _, movie = demo_stores
    np.save(tmp / "wrong.npy", np.zeros((14, 15), np.int16))
    with pytest.raises(InputError, match=r"label of frame 1 has shape \(14, 15\).*frame shape \(15, 15\)"):
        ingest_labels({"labels": {"frames": [1], "path": str(tmp / "wrong.npy")}}, CLASSES, movie, tmp / "x.zarr")
    np.save(tmp / "vals.npy", np.full((15, 15), 5, np.int16))
    with pytest.raises(InputError, match=r"has values \[5\].*0 … 2"):
        ingest_labels({"labels": {"frames": [1], "path": str(tmp / "vals.npy")}}, CLASSES, movie, tmp / "x.zarr")
    with pytest.raises(InputError, match=r"frames \[9\] are out of range.*0 … 4"):
        ingest_labels({"labels": {"frames": [9], "path": str(tmp / "vals.npy")}}, CLASSES, movie, tmp / "x.zarr")
    with pytest.raises(InputError, match="is empty"):
        ingest_labels({"labels": {"frames": []}}, CLASSES, movie, tmp / "x.zarr")
    assert not (tmp / "x.zarr").exists()


def test_open_store_checks_kind_and_variables(demo_stores):
    tmp, _syn, movie = demo_stores
    with pytest.raises(InputError, match=r"store kind is 'movie'.*'labels'"):
        store.open_store(movie, "labels")
    with pytest.raises(InputError, match=r"lacks variable\(s\) \['probability'\]"):
        store.open_store(movie, "movie", ["probability"])
    with pytest.raises(InputError, match="does not exist"):
        store.open_store(tmp / "nothing.zarr", "movie")


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    ds = xr.Dataset(
        {"image": (("frame", "y", "x"), np.arange(3.0)[:, None, None])},
        coords=store.frame_coords(3),
        attrs=store.provenance("movie"),
    )
    out = tmp_path / "s.zarr"
    store.write_store(ds, out)
    store.write_store(ds * 2, out)  # replacing an existing store works
    np.testing.assert_array_equal(xr.open_zarr(out).image.values.ravel(), [0, 2, 4])

    bad = ds.copy()
    bad["source_frame"] = (("frame",), np.array([object(), object(), object()]))  # cannot be encoded
    with pytest.raises(ValueError):  # zarr refuses to encode the object array
        store.write_store(bad, out)
    np.testing.assert_array_equal(xr.open_zarr(out).image.values.ravel(), [0, 2, 4])  # old store intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no temporaries left


def test_config_defaults_and_misspelled_keys(tmp_path):
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "config", "config.yaml"))
    assert cfg["datasets"]["demo"]["bin"] == 1 and cfg["datasets"]["demo"]["frames"]["step"] == 1
    assert cfg["seed"] == 0
    with pytest.raises(InputError, match=r"key datasets.demo: Additional properties.*'bining' was unexpected"):
        validate({"datasets": {"demo": {"bining": 2}}})
    with pytest.raises(InputError, match=r"key windows.0: 'twelve' is not of type 'integer'"):
        validate({"windows": ["twelve"], "datasets": {"d": {"path": "x.tif"}}})
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"sed": 1, "datasets": {"d": {"path": "x.tif"}}}))
    with pytest.raises(InputError, match=r"c.yaml: key \(top level\).*'sed' was unexpected"):
        load_config(p)


def test_every_config_key_has_a_description_and_a_default():
    """The whole schema, stage fragments included: described, defaulted, closed objects."""
    from ferrolens.config import SCHEMA

    def walk(node, path, base):
        if isinstance(node, dict) and "$ref" in node and not node["$ref"].startswith("#"):
            node = {
                **yaml.safe_load((base / node["$ref"]).read_text()),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
        for key, sub in (node.get("properties") or {}).items():
            here = f"{path}.{key}".strip(".")
            if "$ref" in sub and not sub["$ref"].startswith("#"):
                sub = {
                    **yaml.safe_load((base / sub["$ref"]).read_text()),
                    **{k: v for k, v in sub.items() if k != "$ref"},
                }
            assert sub.get("description") or here in ("segment", "rvae", "dynamics", "latent_space", "figures"), here
            assert "default" in sub, here
            if sub.get("type") == "object" and "properties" in sub:
                assert sub.get("additionalProperties") is False, here
            yield here
            yield from walk(sub, here, base)

    root = yaml.safe_load(SCHEMA.read_text())
    keys = list(walk(root, "", SCHEMA.parent)) + list(walk(root["$defs"]["dataset"], "datasets.*", SCHEMA.parent))
    assert len(keys) > 100  # the stage fragments were followed
