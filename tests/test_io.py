"""Readers and ingest options on small files the tests write and on real PFM data."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from ferrolens.errors import InputError
from ferrolens.ingest import load_movie
from ferrolens.io import read_frames

DATA = Path(__file__).parent / "data"


@pytest.fixture
def stack(rng):
    return rng.random((6, 20, 24)).astype(np.float32)


def test_multipage_tiff(tmp_path, stack):
    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, stack)
    fr = read_frames(p)
    np.testing.assert_array_equal(fr.image, stack)


def test_folder_in_natural_order_and_list_of_files(tmp_path, stack):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (0, 1, 2, 10, 11):  # frame10 must come after frame2
        Image.fromarray((stack[min(i, 5)] * 255).astype(np.uint8)).save(folder / f"frame{i}.png")
    fr = read_frames(folder)
    assert fr.image.shape == (5, 20, 24)
    np.testing.assert_array_equal(fr.image[3], (stack[5] * 255).astype(np.uint8))
    files = [tmp_path / f"f{i}.tif" for i in range(3)]
    for f, a in zip(files, stack[:3], strict=True):
        tifffile.imwrite(f, a)
    np.testing.assert_array_equal(read_frames([str(f) for f in files]).image, stack[:3])


def test_npy_npz(tmp_path, stack):
    np.save(tmp_path / "m.npy", stack)
    np.testing.assert_array_equal(read_frames(tmp_path / "m.npy").image, stack)
    np.savez(tmp_path / "m.npz", frames=stack, bias=np.arange(6.0))
    fr = read_frames(tmp_path / "m.npz")
    np.testing.assert_array_equal(fr.image, stack)
    np.testing.assert_array_equal(fr.bias, np.arange(6.0))
    with pytest.raises(InputError, match=r"key 'nope' not found.*frames"):
        read_frames(tmp_path / "m.npz", {"dataset": "nope"})


def test_hdf5_by_path_and_missing_path_lists_datasets(tmp_path, stack):
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        f["group/movie"] = stack
        f["group/other"] = stack[:, :5]
    np.testing.assert_array_equal(read_frames(p, {"dataset": "/group/movie"}).image, stack)
    with pytest.raises(InputError, match=r"'group/nope' is not there.*group/movie"):
        read_frames(p, {"dataset": "group/nope"})
    with pytest.raises(InputError, match="2 candidate image datasets"):
        read_frames(p)


def test_pzt_channel_by_quantity_series_of_files():
    files = [DATA / "PZT_final0001.h5", DATA / "PZT_final0002.h5"]
    ds = load_movie({"channel": "PhaseRetrace", "frame_interval": 1.0}, [str(f) for f in files])
    assert ds.image.dims == ("frame", "y", "x") and ds.image.shape == (2, 256, 256)
    assert ds.image.dtype == np.float32
    assert ds.image.attrs["units"] == "deg" and ds.attrs["quantity"] == "PhaseRetrace"
    with h5py.File(files[1]) as f:
        raw = f["Measurement_000/Channel_4/Channel_4/Channel_4"][()]
    # sidpy labels the array (x, y): it comes out transposed to (y, x)
    np.testing.assert_array_equal(ds.image.values[1], raw.T)
    assert ds.attrs["pixel_size"] == pytest.approx(2e-6 / 255, rel=1e-3)
    # the file stamps the phase's deg on its x/y scales; the height channel's same scales say m
    assert ds.attrs["pixel_units"] == "m"
    assert len(ds.attrs["source_sha256"]) == 2 and all(len(h) == 64 for h in ds.attrs["source_sha256"])
    np.testing.assert_allclose(ds.time.values, [0.0, 1.0])
    with pytest.raises(InputError, match=r"no dataset has quantity 'Phase'.*PhaseRetrace"):
        load_movie({"channel": "Phase"}, str(files[0]))


def test_beps_cube_bias_axis_becomes_frames():
    ds = load_movie({}, str(DATA / "BEPS_PTO_50x50.h5"))
    assert ds.image.shape == (64, 50, 50)
    assert ds.bias.attrs["units"] == "V"
    assert ds.bias.values.max() == pytest.approx(8.5) and ds.bias.values.min() == pytest.approx(-8.5)
    with h5py.File(DATA / "BEPS_PTO_50x50.h5") as f:
        raw = f["Channel_000/generic/generic"][()]
    np.testing.assert_allclose(ds.image.values[16], raw[:, :, 16].T.astype(np.float32))


def test_frame_range_crop_binning(tmp_path, stack):
    np.save(tmp_path / "m.npy", stack)
    ds = load_movie(
        {"frames": {"start": 1, "stop": 6, "step": 2}, "crop": [2, 18, 0, None], "bin": 2}, str(tmp_path / "m.npy")
    )
    assert ds.image.shape == (3, 8, 12)
    np.testing.assert_array_equal(ds.source_frame.values, [1, 3, 5])
    expect = stack[3, 2:18, :].reshape(8, 2, 12, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(ds.image.values[1], expect, rtol=1e-6)


def test_bias_sources(tmp_path, stack):
    np.save(tmp_path / "m.npy", stack)
    src = str(tmp_path / "m.npy")
    csv = tmp_path / "bias.csv"
    csv.write_text("frame,bias,time\n" + "".join(f"{i},{i * 0.5},{i * 2}\n" for i in range(6)))
    ds = load_movie({"frames": {"step": 2}, "bias": {"source": "csv", "csv": str(csv)}}, src)
    np.testing.assert_allclose(ds.bias.values, [0, 1, 2])
    np.testing.assert_allclose(ds.time.values, [0, 4, 8])
    ds = load_movie({"bias": {"source": "list", "values": [1, 2, 3, 4, 5, 6]}}, src)
    np.testing.assert_allclose(ds.bias.values, [1, 2, 3, 4, 5, 6])
    ds = load_movie({"bias": {"source": "waveform", "amplitude": 3.0, "cycles": 1.0, "phase": 0.0}}, src)
    np.testing.assert_allclose(ds.bias.values[[0, 1]], [0, 2.0])
    with pytest.raises(InputError, match="has 4 values but the movie has 6 frames"):
        load_movie({"bias": {"source": "list", "values": [1, 2, 3, 4]}}, src)
    short = tmp_path / "short.csv"
    short.write_text("frame,bias\n0,1\n1,2\n")
    with pytest.raises(InputError, match=r"short.csv: has no rows for frames \[2, 3, 4, 5\]"):
        load_movie({"bias": {"source": "csv", "csv": str(short)}}, src)


def test_nonfinite_pixels_named_or_filled(tmp_path, stack):
    bad = stack.copy()
    bad[2, 3, 4] = np.nan
    bad[4, 0, 0] = np.inf
    np.save(tmp_path / "m.npy", bad)
    with pytest.raises(InputError, match=r"non-finite pixels in source frames \[2, 4\]"):
        load_movie({}, str(tmp_path / "m.npy"))
    ds = load_movie({"nonfinite": -1.0}, str(tmp_path / "m.npy"))
    assert ds.image.values[2, 3, 4] == -1.0 and np.isfinite(ds.image.values).all()


def test_unreadable_truncated_unknown(tmp_path, stack):
    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, stack)
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(p.read_bytes()[:300])
    with pytest.raises(InputError, match=r"trunc\.tif: cannot be read as TIFF"):
        read_frames(trunc)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputError, match=r"junk\.h5: cannot be opened as HDF5"):
        read_frames(junk)
    (tmp_path / "m.xyz").write_text("x")
    with pytest.raises(InputError, match=r"unknown extension '.xyz'"):
        read_frames(tmp_path / "m.xyz")
    with pytest.raises(InputError, match="does not exist"):
        read_frames(tmp_path / "missing.tif")


def test_unequal_frames_in_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    tifffile.imwrite(folder / "a1.tif", np.zeros((8, 8), np.float32))
    tifffile.imwrite(folder / "a2.tif", np.zeros((8, 9), np.float32))
    with pytest.raises(InputError, match=r"a2.tif: frame size \(8, 9\) differs from \(8, 8\)"):
        read_frames(folder)


def test_gatan_without_rosettasciio(tmp_path):
    try:
        import rsciio  # noqa: F401

        pytest.skip("rosettasciio is installed")
    except ImportError:
        pass
    p = tmp_path / "image.dm4"
    p.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=r"needs rosettasciio.*ferrolens\[microscopy\]"):
        read_frames(p)


# --- several files must be one series (issue 12, item 4) ---------------------------------
def _pfm_scan(path, size_um, offset_um=(0.0, 0.0), n=16, seed=0):
    """A tiny sidpy/pyNSID-shaped PFM scan: PhaseRetrace (x, y) with x/y dimension scales in m."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        g = f.create_group("Measurement_000/Channel_4/Channel_4")
        d = g.create_dataset("Channel_4", data=rng.random((n, n)).astype(np.float32))
        d.attrs["quantity"], d.attrs["units"] = "PhaseRetrace", "deg"
        for i, (name, off) in enumerate(zip("xy", offset_um[::-1], strict=True)):
            s = g.create_dataset(name, data=(off + np.linspace(0.0, size_um, n)) * 1e-6)
            s.attrs["units"] = "m"
            s.make_scale(name)
            d.dims[i].attach_scale(s)
            d.dims[i].label = name
    return str(path)


def test_files_of_different_scans_are_not_joined_silently(tmp_path):
    sizes = [1, 5, 1, 3, 1, 5, 1]  # µm, as in the seven PFM scans
    files = [_pfm_scan(tmp_path / f"scan{i}.h5", s, offset_um=(0.5 * i, 0.0), seed=i) for i, s in enumerate(sizes)]
    opts = {"channel": "PhaseRetrace"}
    with pytest.raises(InputError) as err:
        read_frames(files, opts)
    msg = str(err.value)
    assert msg.startswith(f"{files[1]}: the 7 files are not one series: their pixel size (y, x) differ (")
    assert "scan0.h5: (6.667e-08, 6.667e-08) m; scan1.h5: (3.333e-07, 3.333e-07) m;" in msg
    assert "scan3.h5: (2e-07, 2e-07) m" in msg and "`mixed_series: true`" in msg
    # one scan size but moved: the offsets are named
    moved = [_pfm_scan(tmp_path / f"moved{i}.h5", 2, offset_um=(0.0, x), seed=i) for i, x in enumerate((0, 0, 1.5))]
    with pytest.raises(
        InputError,
        match=r"moved2.h5: the 3 files are not one series: their position/offset \(y, x\) "
        r"differ \(moved0.h5: \(0, 0\) m; moved1.h5: \(0, 0\) m; "
        r"moved2.h5: \(0, 1.5e-06\) m\)",
    ):
        load_movie(opts, moved)
    # the key that says to join them anyway
    ds = load_movie({**opts, "mixed_series": True}, files)
    assert ds.image.shape == (7, 16, 16) and ds.attrs["mixed_series"]
    assert "pixel_size" not in ds.attrs  # no one pixel size stamped on the movie
    assert [p[1] for p in ds.attrs["source_pixel_size"]] == pytest.approx([s * 1e-6 / 15 for s in sizes])
    # one scan repeated (same size and place) is one series
    same = [_pfm_scan(tmp_path / f"same{i}.h5", 2, seed=i) for i in range(3)]
    assert load_movie(opts, same).attrs["pixel_size"] == pytest.approx(2e-6 / 15)


def test_tiff_files_with_different_pixel_sizes_refused(tmp_path, stack):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, stack[0], resolution=(1e4, 1e4), resolutionunit="CENTIMETER")  # 1 µm pixels
    tifffile.imwrite(b, stack[1], resolution=(5e3, 5e3), resolutionunit="CENTIMETER")  # 2 µm pixels
    with pytest.raises(
        InputError,
        match=r"b.tif: the 2 files are not one series: their pixel size \(y, x\) differ "
        r"\(a.tif: \(1e-06, 1e-06\) m; b.tif: \(2e-06, 2e-06\) m\)",
    ):
        read_frames([a, b])
    assert read_frames([a, b], {"mixed_series": True}).image.shape == (2, 20, 24)


@pytest.mark.skipif(
    not Path("/work/shared/data/dtmicroscope/PZT_final0003.h5").exists(),
    reason="the full PZT series lives in ../shared/data",
)
def test_three_pzt_scans_are_one_series():
    files = [f"/work/shared/data/dtmicroscope/PZT_final000{i}.h5" for i in (1, 2, 3)]
    fr = read_frames(files, {"channel": "PhaseRetrace"})
    assert fr.image.shape == (3, 256, 256)
    assert fr.attrs["pixel_size"] == pytest.approx(2e-6 / 255, rel=1e-3) and "mixed_series" not in fr.attrs
