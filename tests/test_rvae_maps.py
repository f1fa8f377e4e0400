"""Per-pixel latent maps: the fully convolutional path equals encoding every window on its own."""

import numpy as np
import pytest
import torch
import xarray as xr

from ferrolens.errors import InputError
from ferrolens.rvae import RVAE, centred_windows, iter_latent_maps
from ferrolens.rvae.maps import padding, plan

torch.set_num_threads(2)


def _random_model(n, seed=0, architecture="paper"):
    torch.manual_seed(seed)
    model = RVAE(n, latent_dim=2, architecture=architecture, filters=128 if architecture == "paper" else 8)
    with torch.no_grad():  # larger heads than the default init: outputs of order 1-10
        if architecture == "paper":
            model.encoder.mean.weight.mul_(20)
            model.encoder.logsd.weight.mul_(20)
        else:
            model.encoder.head.weight.mul_(20)
            model.encoder.plain.mean.weight.mul_(20)
            model.encoder.plain.logsd.weight.mul_(20)
    return model


def _per_window(model, frames, n):
    means, logsds = [], []
    for f in frames:
        m, s = model.encode(centred_windows(f, n).reshape(-1, n, n), batch_size=512)
        means.append(m.reshape((*f.shape, -1)))
        logsds.append(s.reshape((*f.shape, -1)))
    return np.stack(means), np.stack(logsds)


@pytest.mark.parametrize("architecture", ["paper", "equivariant"])
@pytest.mark.parametrize("n, shape", [(8, (2, 14, 11)), (9, (2, 13, 15)), (12, (1, 17, 16)), (24, (1, 27, 25))])
def test_fully_convolutional_maps_equal_per_window_encoding(n, shape, architecture):
    model = _random_model(n, architecture=architecture)
    frames = np.random.default_rng(n).random(shape).astype(np.float32)
    mean, logsd = model.latent_maps(frames, logsd=True)
    ref_mean, ref_logsd = _per_window(model, frames, n)
    assert mean.shape == (*shape, 5)
    assert np.abs(ref_mean).max() > 1  # a meaningful scale for the 1e-4 tolerance
    if architecture == "equivariant":
        # angles on the circle (period π); a circular mean of nearly cancelling copies (random
        # weights) amplifies float rounding, hence 1e-3 rad (0.06°) for the angle
        d = np.angle(np.exp(2j * (mean[..., 0] - ref_mean[..., 0]))) / 2
        assert np.abs(d).max() <= 1e-3 and np.median(np.abs(d)) <= 1e-5
        mean, ref_mean = mean[..., 1:], ref_mean[..., 1:]
    np.testing.assert_allclose(mean, ref_mean, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logsd, ref_logsd, atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [12, 24])
def test_maps_do_not_depend_on_the_thread_count(n):
    """The same numbers on 1, 2 or 3 threads (FFT heads included): a job's thread count is no result. Both
    ways of using threads: one batch of frames (torch's threads inside it) and, with a budget of one frame
    a batch, batches mapped side by side (one thread each), which must also keep the frames' order."""
    torch.manual_seed(0)
    model = RVAE(n, latent_dim=2, architecture="equivariant", filters=16)
    frames = np.random.default_rng(0).random((3, 160, 150)).astype(np.float32)
    before = torch.get_num_threads()
    try:
        maps = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            maps.append(model.latent_maps(frames, logsd=True))  # one batch of 3 frames
            maps.append(model.latent_maps(frames, logsd=True, chunk_mb=60))  # 3 batches of one frame
    finally:
        torch.set_num_threads(before)
    for other in maps[1:]:
        np.testing.assert_array_equal(other[0], maps[0][0])
        np.testing.assert_array_equal(other[1], maps[0][1])
    alone = model.latent_maps(frames[2:], logsd=True, chunk_mb=60)  # the last frame on its own
    np.testing.assert_array_equal(alone[0][0], maps[3][0][2])


def test_centred_window_convention_and_reflect_padding():
    frame = np.arange(7 * 8, dtype=np.float32).reshape(7, 8)
    for n in (5, 6):
        before, after = padding(n)
        assert (before, after) == (n // 2, n - 1 - n // 2)
        w = centred_windows(frame, n)
        assert w.shape == (7, 8, n, n)
        # an interior pixel: its window is the plain crop around it
        y, x = 3, 4
        np.testing.assert_array_equal(w[y, x], frame[y - n // 2 : y - n // 2 + n, x - n // 2 : x - n // 2 + n])
        # corner: mirrored without repeating the edge pixel
        np.testing.assert_array_equal(w[0, 0][n // 2], np.pad(frame[0], (before, after), mode="reflect")[:n])


def test_strips_and_batches_give_the_same_maps():
    model = _random_model(8)
    frames = np.random.default_rng(0).random((3, 20, 18)).astype(np.float32)
    whole = model.latent_maps(frames)
    assert plan(20, 18, 8, 128, 0.05) == (1, 1)  # a tiny budget: one row per strip
    strips = model.latent_maps(frames, chunk_mb=0.05)
    np.testing.assert_allclose(strips, whole, atol=1e-5, rtol=0)  # other conv shapes: rounding only
    b, rows = plan(512, 512, 24, 128, 256)
    assert b == 1 and rows < 512  # a 512² frame at n = 24 is cut into strips under 256 MiB


def test_maps_stream_from_a_lazy_dataarray(tmp_path):
    model = _random_model(8)
    frames = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    xr.Dataset({"images": (("frame", "y", "x"), frames)}).to_zarr(
        tmp_path / "m.zarr", zarr_format=3, consolidated=False
    )
    lazy = xr.open_zarr(tmp_path / "m.zarr", consolidated=False)["images"]
    parts = list(iter_latent_maps(model.encoder, lazy, chunk_mb=1.0))
    assert len(parts) > 1  # streamed in several batches
    got = np.concatenate([p[2] for p in parts])
    np.testing.assert_allclose(got, model.latent_maps(frames), atol=1e-5)  # batches of other sizes: rounding only


def test_window_larger_than_frame_is_rejected():
    model = _random_model(12)
    with pytest.raises(InputError, match="smaller than the window"):
        model.latent_maps(np.zeros((1, 10, 30), np.float32))
    with pytest.raises(InputError, match="frame, y, x"):
        model.latent_maps(np.zeros((30, 30), np.float32))
