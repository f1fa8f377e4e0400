"""The rVAE's raw input scaled per frame or over the whole movie (``rvae.raw_normalize``, issue 24):
a spectroscopy cube's frames carry the polarization in their level and sign, which a per-frame
range erases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ferrolens.errors import InputError
from ferrolens.ingest import load_movie
from ferrolens.io import CUBE_BIAS_AXIS
from ferrolens.rvae.inputs import make_windows
from ferrolens.segment.images import input_image, movie_percentiles, raw_scale
from ferrolens.store import FRAME, X, Y, frame_coords, open_store

DATA = Path(__file__).parent / "data"


def cube(offsets=(-1.0, 0.0, 1.0), cube_attrs=True, seed=0):
    """Frames = one texture (sd 0.1) + a constant offset per frame: a cube whose signal is the level."""
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 0.1, (32, 30)).astype(np.float32)
    img = np.stack([texture + np.float32(o) for o in offsets])
    attrs = {"frames_from": CUBE_BIAS_AXIS} if cube_attrs else {}
    return xr.Dataset(
        {"image": ((FRAME, Y, X), img, {"units": "arb. units"})},
        coords=frame_coords(len(offsets), bias=np.asarray(offsets)),
        attrs=attrs,
    )


def test_movie_scale_keeps_the_offset_that_the_frame_scale_loses():
    mv = cube()
    frame = input_image(mv, None, "raw", "frame").values
    movie = input_image(mv, None, "raw", "movie").values
    # per frame: the three frames are one texture, the offset is gone (to float rounding)
    np.testing.assert_allclose(frame[0], frame[2], atol=1e-5)
    # whole movie: the exact affine map of one pair of percentiles over every pixel, clipped
    lo, hi = np.percentile(mv.image.values.astype(np.float64), [1, 99])
    np.testing.assert_allclose(movie, np.clip((mv.image.values - lo) / (hi - lo), 0, 1), atol=1e-6)
    means = movie.mean(axis=(1, 2))
    assert means[0] < 0.1 and 0.4 < means[1] < 0.6 and means[2] > 0.9  # the level (and its sign) kept
    assert movie.dtype == np.float32 and movie.min() >= 0 and movie.max() <= 1


def test_auto_picks_movie_for_a_spectroscopy_cube_only():
    assert raw_scale(cube(), "auto")[0] == "movie"
    assert raw_scale(cube(cube_attrs=False), "auto")[0] == "frame"
    assert raw_scale(cube(), "frame")[0] == "frame" and raw_scale(cube(cube_attrs=False), "movie")[0] == "movie"
    a = input_image(cube(), None, "raw")  # the default is auto
    assert a.attrs["raw_normalize"] == "movie" and "spectroscopy cube" in a.attrs["raw_normalize_why"]
    assert input_image(cube(cube_attrs=False), None, "raw").attrs["raw_normalize"] == "frame"
    with pytest.raises(InputError, match="raw_normalize"):
        raw_scale(cube(), "global")


def test_the_readers_mark_a_cube_and_nothing_else(tmp_path):
    beps = load_movie({}, str(DATA / "BEPS_PTO_50x50.h5"))  # bias axis of an HDF5 cube → frames
    assert beps.attrs["frames_from"] == CUBE_BIAS_AXIS
    assert raw_scale(beps, "auto")[0] == "movie"
    pzt = load_movie({"channel": "PhaseRetrace"}, [str(DATA / f"PZT_final000{i}.h5") for i in (1, 2)])
    assert "frames_from" not in pzt.attrs and raw_scale(pzt, "auto")[0] == "frame"
    np.save(tmp_path / "m.npy", cube().image.values)  # a cube laid out by hand is not known to be one
    assert raw_scale(load_movie({}, str(tmp_path / "m.npy")), "auto")[0] == "frame"


def test_movie_percentiles_exact_or_on_a_regular_subsample():
    rng = np.random.default_rng(1)
    img = xr.DataArray(rng.normal(size=(7, 11, 13)).astype(np.float32), dims=(FRAME, Y, X))
    flat = img.values.astype(np.float64).ravel()
    assert movie_percentiles(img, 1, 99, batch=3) == pytest.approx(tuple(np.percentile(flat, [1, 99])), abs=1e-12)
    # more values than max_values: every 5th of the flattened movie, whatever the batch
    for batch in (1, 2, 16):
        got = movie_percentiles(img, 5, 95, max_values=flat.size // 5 + 1, batch=batch)
        assert got == pytest.approx(tuple(np.percentile(flat[::5], [5, 95])), abs=1e-12)


def test_the_windows_store_records_the_choice(tmp_path):
    out = tmp_path / "w.zarr"
    make_windows(input_image(cube(), None, "raw"), str(out), 8, {"count": 20, "min_std": 0.0}, 0)
    ds = open_store(out, "windows")
    assert ds.attrs["raw_normalize"] == "movie" and "p_low" in ds.attrs["normalisation"]
