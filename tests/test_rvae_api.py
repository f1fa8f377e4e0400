"""rVAE stage entry points: windows store, config schema, input checks, checkpoint loading."""

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from ferrolens.errors import InputError
from ferrolens.rvae import DEFAULTS, RVAE, load, make_windows, sample_windows
from ferrolens.rvae.config import resolve_config as config
from ferrolens.rvae.inputs import check_images
from ferrolens.rvae.toy import oriented_bars
from ferrolens.rvae.windows import window_std
from ferrolens.store import open_store

torch.set_num_threads(1)

FRAGMENT = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "fragments" / "rvae.yaml"


def _movie(n_frames=4, h=40, w=36, seed=0):
    """Frames with a few bars on a flat background, values in [0, 1], a bias per frame."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n_frames, h, w), np.float32)
    for f in range(n_frames):
        for _ in range(3):
            y, x = rng.integers(6, h - 6), rng.integers(6, w - 6)
            bar = oriented_bars(11, rng.uniform(0, np.pi, 1))[0]
            frames[f, y - 5 : y + 6, x - 5 : x + 6] = np.maximum(frames[f, y - 5 : y + 6, x - 5 : x + 6], bar)
    return xr.DataArray(
        frames,
        dims=("frame", "y", "x"),
        name="walls",
        coords={"frame": np.arange(10, 10 + n_frames), "bias": ("frame", np.linspace(-2, 2, n_frames))},
    )


def test_schema_fragment_defaults_build_the_documented_model():
    schema = yaml.safe_load(FRAGMENT.read_text())
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    props = schema["properties"]
    # the defaults make a model: the paper's two free latents, the equivariant encoder, the image decoder
    from ferrolens.rvae.config import model_hparams
    from ferrolens.rvae.modules import ImageDecoder, RotationEncoder

    model = RVAE(**model_hparams(DEFAULTS, 12))
    assert model.labels == ["angle", "dx", "dy", "z1", "z2"]
    assert isinstance(model.encoder, RotationEncoder) and isinstance(model.decoder, ImageDecoder)
    paper = RVAE(**model_hparams({**DEFAULTS, "architecture": "paper"}, 12))
    assert paper.encoder.filters == 128 and paper.decoder.units == 128 and paper.decoder.fourier == 0
    for key, sub in props.items():
        assert sub.get("description"), key
    import jsonschema

    jsonschema.Draft202012Validator(schema).validate(DEFAULTS)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**DEFAULTS, "latnt_dim": 2})
    assert config({"latent_dim": 3})["latent_dim"] == 3
    with pytest.raises(InputError, match="latnt_dim"):
        config({"latnt_dim": 3})


def test_make_windows_random_store(tmp_path):
    images = _movie()
    cfg = {"count": 50, "min_std": 0.0}
    make_windows(images, str(tmp_path / "w.zarr"), 9, cfg, seed=1)
    ds = open_store(tmp_path / "w.zarr", "windows", ["windows"])
    assert ds["windows"].dims == ("sample", "wy", "wx") and ds["windows"].shape == (50, 9, 9)
    assert ds["windows"].dtype == np.float32
    assert ds.attrs["window"] == 9 and "centre" in ds.attrs["origin"]
    frames = images.values
    for i in range(50):
        f = int(ds.sample_frame[i]) - 10  # frame coordinate starts at 10
        y, x = int(ds.sample_y[i]), int(ds.sample_x[i])
        crop = frames[f, y - 4 : y + 5, x - 4 : x + 5]
        np.testing.assert_array_equal(ds["windows"].values[i], crop)
        assert float(ds.sample_bias[i]) == pytest.approx(float(images.bias[f]))
    # same seed, same windows; another seed, others
    make_windows(images, str(tmp_path / "w2.zarr"), 9, cfg, seed=1)
    make_windows(images, str(tmp_path / "w3.zarr"), 9, cfg, seed=2)
    a, b, c = (xr.open_zarr(tmp_path / f"{p}.zarr")["sample_y"].values for p in ("w", "w2", "w3"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_structure_filter_and_dense_sampling():
    images = _movie()
    std = window_std(images.values[0], 9)
    ref = np.lib.stride_tricks.sliding_window_view(images.values[0].astype(np.float64), (9, 9)).std(axis=(-1, -2))
    np.testing.assert_allclose(std, ref, atol=1e-6)
    s = sample_windows(images, 9, count=200, min_std=0.1, seed=0)
    assert len(s.frame) == 200 and s.windows.std(axis=(1, 2)).min() >= 0.1 - 1e-6
    d = sample_windows(images, 9, mode="dense", stride=5, min_std=0.0)
    assert len(d.frame) == 4 * len(range(0, 40 - 8, 5)) * len(range(0, 36 - 8, 5))
    assert set(np.unique(d.y - 4) % 5) == {0}
    with pytest.raises(InputError, match="min_std"):
        sample_windows(images * 0, 9, min_std=0.1)


def test_content_weighting_draws_windows_in_proportion_to_their_mean():
    # left half 0.2, right half 0.8: windows wholly inside the right half carry four times the content
    frame = np.full((1, 40, 80), 0.2, np.float32)
    frame[:, :, 40:] = 0.8
    n, count = 5, 300
    right = lambda s: int((s.x - n // 2 >= 40).sum())  # noqa: E731
    left = lambda s: int((s.x + n // 2 < 40).sum())  # noqa: E731
    w = sample_windows(frame, n, count=count, seed=0, weighting="content")
    u = sample_windows(frame, n, count=count, seed=0)
    assert len(w.frame) == count and len(np.unique(w.y * 1000 + w.x)) == count  # without replacement
    assert 3.0 < right(w) / left(w) < 5.5  # ~4 (slightly less: drawn without replacement)
    assert 0.7 < right(u) / left(u) < 1.4
    np.testing.assert_array_equal(
        w.windows,
        frame[0][np.add.outer(w.y - 2, np.arange(5))[:, :, None], np.add.outer(w.x - 2, np.arange(5))[:, None, :]],
    )
    # windows of no content are drawn only when nothing else is left
    frame[:, :, :40] = 0.0
    w0 = sample_windows(frame, n, count=count, seed=1, weighting="content")
    assert left(w0) == 0
    with pytest.raises(InputError, match=r"rvae\.weighting"):
        sample_windows(frame, n, count=10, weighting="walls")


@pytest.mark.parametrize("window", [2, 4, 41, 9.5])
def test_bad_window_sizes(tmp_path, window):
    with pytest.raises(InputError, match="window"):
        make_windows(_movie(), str(tmp_path / "w.zarr"), window, {}, seed=0)
    assert not (tmp_path / "w.zarr").exists()


def test_bad_images(tmp_path):
    good = _movie()
    with pytest.raises(InputError, match=r"dims \('y', 'x', 'frame'\).*expected dims \(frame, y, x\)"):
        make_windows(good.transpose("y", "x", "frame"), str(tmp_path / "w.zarr"), 9, {}, seed=0)
    with pytest.raises(InputError, match="DataArray"):
        make_windows(good.values, str(tmp_path / "w.zarr"), 9, {}, seed=0)
    with pytest.raises(InputError, match=r"values in \[0, 1\]"):
        check_images(good * 5, 9)
    with pytest.raises(InputError, match="NaN"):
        check_images(good.where(good.y != 3), 9)


def test_load_rejects_other_checkpoints(tmp_path):
    missing = tmp_path / "none.ckpt"
    with pytest.raises(InputError, match="does not exist"):
        load(missing)
    other = tmp_path / "unet.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"classes": 3}, "ferrolens_model": "segment"}, other)
    with pytest.raises(InputError, match=r"unet\.ckpt.*'segment'"):
        load(other)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(InputError, match=r"plain\.ckpt"):
        load(plain)
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.ckpt"):
        load(junk)
