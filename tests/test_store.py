"""Store faults (issue 13): damaged chunks are named, temporaries of killed writers are
removed by the next write of that store, checkpoints are read weights-only."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from ferrolens import store
from ferrolens.errors import InputError
from ferrolens.ingest import load_movie


def _write(path, n=3, value=None):
    image = np.arange(n * 16, dtype=np.float32).reshape(n, 4, 4) if value is None else np.full((n, 4, 4), value, np.float32)
    ds = xr.Dataset({"image": (("frame", "y", "x"), image),
                     "label": (("frame", "y", "x"), np.zeros((n, 4, 4), np.int16))},
                    coords={"bias": ("frame", np.arange(n, dtype=float))}, attrs=store.provenance("movie"))
    return store.write_store(ds, path, encoding={"image": {"chunks": (1, 4, 4)}, "label": {"chunks": (1, 4, 4)}})


def test_chunks_equal_to_the_fill_value_are_written(tmp_path):
    """An all-zero integer frame equals zarr's fill value: it must still be on disk,
    or a missing chunk could not be told from it."""
    out = _write(tmp_path / "s.zarr")
    assert sorted(os.listdir(out / "label" / "c")) == ["0", "1", "2"]
    np.testing.assert_array_equal(store.open_store(out, "movie", ["label"]).label.values, 0)


def test_missing_chunk_named_at_open(tmp_path):
    out = _write(tmp_path / "s.zarr")
    os.remove(out / "image" / "c" / "1" / "0" / "0")
    with pytest.raises(InputError, match=r"s.zarr: variable 'image': 1 of 3 chunks missing, e.g. chunk \(1, 0, 0\) "
                                         r"\(image/c/1/0/0\); they would read as the fill value nan.*intact store"):
        store.open_store(out, "movie", ["image"])
    # a user's zarr movie read by ingest: the same
    with pytest.raises(InputError, match=r"s.zarr: variable 'image': 1 of 3 chunks missing"):
        load_movie({}, str(out))


def test_corrupt_chunk_named_when_read(tmp_path):
    out = _write(tmp_path / "s.zarr")
    (out / "image" / "c" / "2" / "0" / "0").write_bytes(b"not zstd")
    ds = store.open_store(out, "movie", ["image"])  # lazy: opens
    np.testing.assert_array_equal(ds.image.isel(frame=0).values, np.arange(16).reshape(4, 4))  # intact chunks read
    with pytest.raises(InputError, match=r"s.zarr: variable 'image': chunk \(2, 0, 0\) \(image/c/2/0/0\) cannot be "
                                         r"read \(RuntimeError: .*[Dd]ecompress.*\) \(expected an intact store"):
        ds.image.values
    with pytest.raises(InputError, match=r"s.zarr: variable 'image': chunk \(2, 0, 0\)"):
        load_movie({}, str(out))


def test_checked_reads_equal_plain_xarray(tmp_path):
    out = _write(tmp_path / "s.zarr", n=5)
    checked = store.open_store(out, "movie", ["image"])
    plain = xr.open_zarr(out)
    xr.testing.assert_identical(checked.load(), plain.load())
    np.testing.assert_array_equal(checked.image[[0, 3], 1:3, ::2].values, plain.image[[0, 3], 1:3, ::2].values)
    mask = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(checked.image[mask, ::-1, -1].values, plain.image[mask, ::-1, -1].values)
    pts = xr.DataArray([1, 3], dims="pts")  # vectorised (pointwise) indexing
    np.testing.assert_array_equal(checked.image.isel(frame=pts, y=pts).values, plain.image.isel(frame=pts, y=pts).values)
    import pickle  # DataLoader workers get the dataset pickled

    xr.testing.assert_identical(pickle.loads(pickle.dumps(checked)).load(), plain.load())


def _kill_during_write(target, path):
    """Run ``target`` (write_store or write_store_streamed) in a child killed after it wrote its temporary."""
    code = textwrap.dedent(f"""
        import numpy as np, xarray as xr, os, signal
        from ferrolens import store
        real = store.replace_atomically
        def die(tmp, path):
            os.kill(os.getpid(), signal.SIGKILL)  # dies after writing, before the rename
        store.replace_atomically = die
        ds = xr.Dataset({{"a": (("frame",), np.arange(3.0))}}, attrs=store.provenance("movie"))
        if {target!r} == "write_store":
            store.write_store(ds, r"{path}")
        else:
            store.write_store_streamed([ds.isel(frame=[0]), ds.isel(frame=[1, 2])], r"{path}")
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("target", ["write_store", "write_store_streamed"])
def test_next_write_removes_temporaries_of_killed_writers(tmp_path, target):
    path = tmp_path / "movie.zarr"
    _kill_during_write(target, path)
    left = [p.name for p in tmp_path.iterdir()]
    assert not path.exists() and len(left) == 1 and left[0].startswith(".movie.zarr.tmp-")  # no complete-looking store
    # another store's temporary and a live writer's temporary of this store must survive
    other = tmp_path / ".labels.zarr.tmp-999999-0123abcd"
    other.mkdir()
    live = tmp_path / f".movie.zarr.tmp-{os.getppid()}-89abcdef"
    live.mkdir()
    similar = tmp_path / ".movie.zarr.tmp-notapid"
    similar.mkdir()
    ds = xr.Dataset({"a": (("frame",), np.arange(3.0))}, attrs=store.provenance("movie"))
    if target == "write_store":
        store.write_store(ds, path)
    else:
        store.write_store_streamed([ds], path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["movie.zarr", other.name, live.name, similar.name])
    np.testing.assert_array_equal(xr.open_zarr(path).a.values, [0, 1, 2])


def test_write_file_atomic_removes_its_stale_temporaries(tmp_path):
    stale = tmp_path / ".model.tmp-999999-0123abcd.ckpt"
    stale.write_text("half")
    keep = tmp_path / ".model.tmp-999999-0123abcd.csv"  # another file with the same stem
    keep.write_text("x")
    store.write_file_atomic(tmp_path / "model.ckpt", lambda p: p.write_text("done"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.ckpt", keep.name])


class _Payload:
    """Unpickling this runs code: a weights-only load must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoints_are_read_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    marker = str(tmp_path / "code_ran")
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"ferrolens_model": "unet", "state_dict": {}, "x": _Payload(marker)}, ckpt)
    with pytest.raises(InputError, match=r"evil.ckpt: is not a readable PyTorch checkpoint \(UnpicklingError\)"):
        store.check_checkpoint(ckpt, "unet", "a U-Net checkpoint")
    assert not os.path.exists(marker)
    good = tmp_path / "good.ckpt"
    torch.save({"ferrolens_model": "unet", "state_dict": {"w": torch.zeros(2)}}, good)
    assert store.check_checkpoint(good, "unet", "a U-Net checkpoint") == good
