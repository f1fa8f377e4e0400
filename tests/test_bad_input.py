"""Bad input (issue 13): each case ends in one InputError naming the file or config key,
the value and what was expected — at config validation or ingest, before any model trains.

Inputs are tiny and written in tmp_path; nothing here trains a model.
"""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from ferrolens import store
from ferrolens.config import load_config, validate
from ferrolens.errors import InputError
from ferrolens.ingest import ingest_labels, ingest_movie, load_movie
from ferrolens.io import read_frames

CLASSES = ["background", "wall", "contaminant"]


def _movie(tmp_path: Path, arr: np.ndarray, name: str = "m.npy") -> str:
    p = tmp_path / name
    np.save(p, arr)
    return str(p)


@pytest.fixture
def movie_store(tmp_path, rng):
    """A 4-frame 12×12 movie store to label."""
    src = _movie(tmp_path, rng.random((4, 12, 12)))
    return ingest_movie({}, tmp_path / "movie.zarr", source=src, name="d")


def _config(tmp_path: Path, dataset: dict, name: str = "d") -> Path:
    p = tmp_path / "my.yaml"
    p.write_text(yaml.safe_dump({"datasets": {name: {"path": "x.tif", **dataset}}}))
    return p


# --- silent -------------------------------------------------------------------------
def test_planar_rgb_tiff_is_one_image_not_three_frames(tmp_path, rng):
    rgb = rng.integers(0, 256, (3, 8, 10), dtype=np.uint8)
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, rgb, photometric="rgb", planarconfig="separate")  # pages read as (3, 8, 10)
    fr = read_frames(p)
    assert fr.image.shape == (1, 8, 10)
    np.testing.assert_allclose(fr.image[0], 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    np.testing.assert_array_equal(read_frames(p, {"channel": 1}).image[0], rgb[1])
    # interleaved RGB pages of a stack: one grey frame per page
    stack = rng.integers(0, 256, (5, 8, 10, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgbs.tif", stack, photometric="rgb")
    assert read_frames(tmp_path / "rgbs.tif").image.shape == (5, 8, 10)
    with pytest.raises(InputError, match=r"rgb.tif: channel 3 for an RGB image of 3 samples.*0 … 2"):
        read_frames(p, {"channel": 3})
    # ingested alone it is a one-frame movie, which ingest refuses by name
    with pytest.raises(InputError, match=r"datasets.d: rgb.tif: the movie has 1 frame.*at least 2 frames"):
        ingest_movie({}, tmp_path / "movie.zarr", source=str(p), name="d")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+39"])
def test_nonfinite_policy_must_be_a_finite_float32_fill(tmp_path, value):
    p = tmp_path / "my.yaml"
    p.write_text(f"datasets:\n  d:\n    path: x.tif\n    nonfinite: {value}\n")
    with pytest.raises(
        InputError,
        match=r"config datasets.d.nonfinite: value (nan|inf|-inf|1e\+39) "
        r"\(expected 'error', 'median' or a finite fill value within the float32",
    ):
        load_config(p)


def test_nonfinite_policy_checked_for_a_notebook_dict_too(tmp_path, rng):
    src = _movie(tmp_path, rng.random((3, 8, 8)))
    with pytest.raises(InputError, match=r"datasets.d.nonfinite: value nan"):
        load_movie({"nonfinite": float("nan")}, src, where="datasets.d")


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_constant_movie_refused(tmp_path, value):
    src = _movie(tmp_path, np.full((4, 8, 8), value))
    with pytest.raises(
        InputError,
        match=rf"datasets.d: m.npy: every pixel of all 4 frames is {value:g} "
        r"\(expected a movie whose pixels vary",
    ):
        ingest_movie({}, tmp_path / "movie.zarr", source=src, name="d")
    assert not (tmp_path / "movie.zarr").exists()


@pytest.mark.parametrize("name", ["..", "a/b", "my movie", "x.y"])
def test_dataset_name_outside_the_pattern(tmp_path, name):
    with pytest.raises(
        InputError,
        match=rf"key datasets: '{name}' does not match '\^\[A-Za-z0-9_-\]\+\$'.*"
        r"letters, digits, _ and -",
    ):
        load_config(_config(tmp_path, {}, name=name))
    validate({"datasets": {"My_movie-2": {"path": "x.tif"}}})  # the allowed characters pass


def test_fractional_label_value_refused(tmp_path, movie_store):
    lab = np.zeros((12, 12))
    lab[3, 4] = 0.5
    np.save(tmp_path / "l.npy", lab)
    with pytest.raises(InputError, match=r"l.npy: label values \[0.5\] are not whole numbers.*integer class"):
        ingest_labels(
            {"labels": {"frames": [1], "path": str(tmp_path / "l.npy")}}, CLASSES, movie_store, tmp_path / "labels.zarr"
        )
    assert not (tmp_path / "labels.zarr").exists()
    lab[3, 4] = 1.0  # whole numbers in a float file are fine
    np.save(tmp_path / "l.npy", lab)
    out = ingest_labels(
        {"labels": {"frames": [1], "path": str(tmp_path / "l.npy")}}, CLASSES, movie_store, tmp_path / "labels.zarr"
    )
    assert store.open_store(out, "labels").label.values[0, 3, 4] == 1


def test_repeated_label_frames_refused(tmp_path, movie_store):
    with pytest.raises(
        InputError,
        match=r"key datasets.d.labels.frames: \[0, 0\] has non-unique elements "
        r"\(expected each value listed once\)",
    ):
        load_config(_config(tmp_path, {"labels": {"frames": [0, 0]}}))
    np.save(tmp_path / "l.npy", np.zeros((2, 12, 12), np.int16))
    # a notebook's dict is checked as the config is (ferrolens.config.dataset_section), naming its entry
    with pytest.raises(
        InputError,
        match=r"key datasets.d.labels.frames: \[0, 0\] has non-unique elements "
        r"\(expected each value listed once\)",
    ):
        ingest_labels(
            {"labels": {"frames": [0, 0], "path": str(tmp_path / "l.npy")}},
            CLASSES,
            movie_store,
            tmp_path / "labels.zarr",
            name="d",
        )


# --- late -----------------------------------------------------------------------------
def test_all_nan_frame_refused_whatever_the_fill(tmp_path, rng):
    arr = rng.random((5, 8, 8))
    arr[2] = np.nan
    arr[4, 0, 0] = np.nan
    src = _movie(tmp_path, arr)
    for policy in ("median", -1.0):
        with pytest.raises(InputError, match=r"datasets.d: source frames \[2\] \(1 of 5\) have no finite pixel"):
            load_movie({"nonfinite": policy}, src, where="datasets.d")
    arr[2] = 0.5  # with only scattered NaN, the fill applies
    ds = load_movie({"nonfinite": "median"}, _movie(tmp_path, arr))
    assert np.isfinite(ds.image.values).all()


def test_values_beyond_float32_refused_after_the_cast(tmp_path, rng):
    arr = rng.random((3, 8, 8))
    arr[1, 2, 2] = 1e39  # finite as float64, inf as float32
    with pytest.raises(InputError, match=r"m.npy: values beyond the float32 range .* source frames \[1\]"):
        load_movie({}, _movie(tmp_path, arr), where="datasets.d")


def test_window_larger_than_the_frame_and_one_frame_movie(tmp_path, rng):
    src = _movie(tmp_path, rng.random((3, 20, 32)))
    with pytest.raises(
        InputError,
        match=r"config windows: window size 24 is larger than the 10×16 frames of "
        r"datasets.d \(after crop and bin\).*no larger than 10 pixels",
    ):
        ingest_movie({"bin": 2}, tmp_path / "movie.zarr", source=src, name="d", windows=[8, 24])
    assert not (tmp_path / "movie.zarr").exists()
    ingest_movie({"bin": 2}, tmp_path / "movie.zarr", source=src, name="d", windows=[8, 10])
    with pytest.raises(InputError, match=r"datasets.d: m.npy: the movie has 1 frame \(source frames \[2\]\)"):
        ingest_movie({"frames": {"start": 2}}, tmp_path / "one.zarr", source=src, name="d")


# --- tracebacks -------------------------------------------------------------------------
def test_non_numeric_bias_column(tmp_path, rng):
    src = _movie(tmp_path, rng.random((3, 8, 8)))
    csv = tmp_path / "bias.csv"
    csv.write_text("frame,bias\n0,0.5\n1,high\n2,1.5\n")
    with pytest.raises(InputError, match=r"bias.csv: column 'bias' has 1 non-numeric .*row 3: 'high'.*finite numbers"):
        load_movie({"bias": {"source": "csv", "csv": str(csv)}}, src)


def test_bias_csv_source_without_a_file(tmp_path, rng):
    with pytest.raises(InputError, match=r"config datasets.d.bias.csv: value None \(expected the CSV file"):
        load_config(_config(tmp_path, {"bias": {"source": "csv"}}))
    src = _movie(tmp_path, rng.random((3, 8, 8)))
    with pytest.raises(InputError, match=r"datasets.d.bias.csv: value None"):
        load_movie({"bias": {"source": "csv"}}, src, where="datasets.d")


def test_truncated_label_png(tmp_path, movie_store):
    Image.fromarray(np.arange(144, dtype=np.uint8).reshape(12, 12) % 3).save(tmp_path / "l.png")
    data = (tmp_path / "l.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) - 30])
    with pytest.raises(
        InputError,
        match=r"cut.png: cannot be read as an image \((OSError|SyntaxError).*"
        r"a complete PNG/TIFF/.npy file",
    ):
        ingest_labels(
            {"labels": {"frames": [0], "path": str(tmp_path / "cut.png")}},
            CLASSES,
            movie_store,
            tmp_path / "labels.zarr",
        )


def test_colour_label_images(tmp_path, movie_store):
    """An RGB label image is one colour mask, never three class maps; as a class map it is refused."""
    cls = np.zeros((12, 12), np.uint8)
    cls[2, :] = 1
    rgb = np.zeros((3, 12, 12), np.uint8)
    rgb[0][cls == 1] = 255
    tifffile.imwrite(tmp_path / "mask.tif", rgb, photometric="rgb", planarconfig="separate")
    colors = {"background": [0, 0, 0], "wall": [255, 0, 0]}
    out = ingest_labels(
        {"labels": {"frames": [1], "path": str(tmp_path / "mask.tif"), "format": "rgb", "colors": colors}},
        CLASSES,
        movie_store,
        tmp_path / "labels.zarr",
    )
    np.testing.assert_array_equal(store.open_store(out, "labels").label.values, cls[None])
    Image.fromarray(np.moveaxis(rgb, 0, -1)).save(tmp_path / "mask.png")
    for name in ("mask.tif", "mask.png"):
        with pytest.raises(InputError, match=rf"{name}: label image is RGB colour \(12, 12, 3\).*labels.format: rgb"):
            ingest_labels(
                {"labels": {"frames": [1, 2, 3], "path": str(tmp_path / name)}},
                CLASSES,
                movie_store,
                tmp_path / "l2.zarr",
            )


# --- what already holds -----------------------------------------------------------------
def test_inputs_are_never_modified(tmp_path, rng):
    """Checksums of every input file are the same after ingesting the movie and its labels."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        tifffile.imwrite(frames / f"f{i}.tif", rng.random((12, 12)).astype(np.float32))
    (tmp_path / "bias.csv").write_text("frame,bias\n0,0\n1,1\n2,2\n")
    np.save(tmp_path / "l.npy", np.ones((12, 12), np.int16))
    inputs = [*sorted(frames.iterdir()), tmp_path / "bias.csv", tmp_path / "l.npy"]
    before = {p: (store.sha256_file(p), p.stat().st_mtime_ns) for p in inputs}
    cfg = {
        "path": str(frames),
        "bias": {"source": "csv", "csv": str(tmp_path / "bias.csv")},
        "labels": {"frames": [1], "path": str(tmp_path / "l.npy")},
    }
    movie = ingest_movie(cfg, tmp_path / "out" / "movie.zarr", name="d")
    ingest_labels(cfg, CLASSES, movie, tmp_path / "out" / "labels.zarr")
    assert {p: (store.sha256_file(p), p.stat().st_mtime_ns) for p in inputs} == before
    assert store.open_store(movie, "movie").attrs["source_sha256"] == [before[p][0] for p in inputs[:3]]
