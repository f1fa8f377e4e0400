"""Per-pixel confidence of the latent angle (ferrolens.rvae.confidence), and the angle KDE counting
only where the angle is determined."""

import math

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from ferrolens import store
from ferrolens.dynamics import kde_nmf
from ferrolens.dynamics.bootstrap import resample_kdes
from ferrolens.dynamics.kde import circular_grid, kde_frames, linear_grid
from ferrolens.rvae.confidence import (
    angle_confidence,
    coherence_energy,
    determined,
    energy_floor,
    store_attrs,
    structure_tensor,
)
from ferrolens.rvae.config import DEFAULTS
from ferrolens.rvae.maps import centred_windows
from ferrolens.synthetic import make_demo

RULE = DEFAULTS["angle_confidence"]


def _mask(frames, n, rule=RULE):
    return determined(angle_confidence(frames, n, rule["min_contrast"]), rule["min_coherence"])


def _wall(size, angle, offset=0.0, width=1.5, contrast=0.8):
    """A straight dark line through the frame centre (+ offset px across it), on a grey 0.6 background."""
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    across = -yy * math.cos(angle) + xx * math.sin(angle) - offset
    return (0.6 - contrast * 0.6 * np.exp(-0.5 * (across / width) ** 2)).astype(np.float32), np.abs(across)


@pytest.mark.parametrize("n", [5, 8, 12, 24])
def test_flat_window_mask_is_empty(n):
    rng = np.random.default_rng(n)
    flat = np.full((2, 48, 48), 0.4, np.float32)
    noisy = np.clip(0.5 + rng.normal(0, 0.03, (2, 48, 48)), 0, 1).astype(np.float32)  # isotropic noise only
    halo = np.full((2, 48, 48), 0.02, np.float32)  # a faint wall-probability halo: a ramp of 0.02
    halo += np.linspace(0, 0.02, 48, dtype=np.float32)[None, None, :]
    for frames in (flat, noisy, halo):
        assert not _mask(frames, n).any()
    assert (angle_confidence(flat, n, RULE["min_contrast"]) == 0).all()


@pytest.mark.parametrize("n", [8, 12, 24])
@pytest.mark.parametrize("angle", [0.0, 0.5, math.pi / 4, 2.0])
def test_clear_oriented_wall_mask_is_full(n, angle):
    frame, dist = _wall(64, angle)
    mask = _mask(frame[None], n)[0]
    inner = (dist <= n / 2 - 2)[n:-n, n:-n]  # windows that hold the wall well inside (no border)
    assert mask[n:-n, n:-n][inner].all()
    far = dist > n / math.sqrt(2) + 4  # windows that do not reach the wall: flat
    assert not mask[far].any()
    # a window full of parallel walls: every pixel determined
    yy, xx = np.mgrid[0:64, 0:64]
    stripes = (0.5 + 0.4 * np.sin(2 * np.pi * (-yy * math.cos(angle) + xx * math.sin(angle)) / 6)).astype(np.float32)
    assert _mask(stripes[None], n).all()


def test_crossing_walls_are_undetermined():
    a, _ = _wall(41, 0.3)
    b, _ = _wall(41, 0.3 + math.pi / 2)
    cross = np.minimum(a, b)[None]  # two perpendicular walls: no single angle describes the centre window
    coh, energy = coherence_energy(cross, 12)
    assert energy[0, 20, 20] > energy_floor(12, RULE["min_contrast"])
    assert coh[0, 20, 20] < 0.1 and not _mask(cross, 12)[0, 20, 20]
    assert _mask(a[None], 12)[0, 20, 20]  # one of them alone is determined there


@pytest.mark.parametrize("n", [5, 8, 9, 12])
def test_tensor_is_the_mean_over_the_maps_window(n):
    rng = np.random.default_rng(0)
    frames = rng.random((2, 17, 23)).astype(np.float32)
    jyy, jxx, jyx = structure_tensor(frames, n)
    gy = ndimage.gaussian_filter(frames[1], 1.0, order=(1, 0), mode="mirror")
    gx = ndimage.gaussian_filter(frames[1], 1.0, order=(0, 1), mode="mirror")
    for got, ref in ((jyy, gy * gy), (jxx, gx * gx), (jyx, gy * gx)):  # the window the angle is read from
        np.testing.assert_allclose(got[1], centred_windows(ref, n).mean(axis=(-2, -1)), atol=1e-6)


def test_rotation_and_shape():
    rng = np.random.default_rng(1)
    frames = ndimage.gaussian_filter(rng.random((3, 30, 30)), (0, 2, 2)).astype(np.float32)
    coh, energy = coherence_energy(frames, 9)  # odd n: the window is symmetric about its centre
    assert coh.shape == energy.shape == frames.shape and coh.dtype == np.float32
    assert (coh >= 0).all() and (coh <= 1).all() and (energy >= 0).all()
    coh_r, energy_r = coherence_energy(np.rot90(frames, 1, axes=(1, 2)).copy(), 9)
    np.testing.assert_allclose(coh_r, np.rot90(coh, 1, axes=(1, 2)), atol=1e-4)
    np.testing.assert_allclose(energy_r, np.rot90(energy, 1, axes=(1, 2)), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("n", [8, 24])
def test_energy_floor_is_that_of_a_step_of_the_contrast(n):
    step = np.zeros((1, 64, 64), np.float32)
    step[0, :, 32:] = 0.3
    _, energy = coherence_energy(step, n)
    assert energy[0, 32, 32] == pytest.approx(energy_floor(n, 0.3), rel=0.06)
    assert energy_floor(n, 0.3) < energy[0, 32, 32] < energy_floor(n, 0.32)


def test_store_attrs_record_the_rule():
    a = store_attrs(12, 0.3, 0.4)
    assert a["units"] == "1" and a["min_coherence"] == 0.4 and a["min_contrast"] == 0.3
    assert a["energy_floor"] == pytest.approx(0.09 / (2 * math.sqrt(math.pi) * 12))


@pytest.mark.parametrize("n", [8, 12])
def test_default_rule_on_the_demo_truth(n):
    """The defaults' calibration (benchmarks/bench_angle_confidence.py), on a small demo: flat windows (no
    wall or contaminant of the truth within the window or 2 px around it, the gradients' reach) kept at
    most 5 %, wall pixels at least 60 % (junctions and needle tips are not one orientation), for the wall
    probability (the truth mask blurred: the U-Net's stand-in) and for the raw frames."""
    syn = make_demo(n_frames=2, size=256, seed=3)
    cls, ori = syn["class_map"].values, syn["orientation"].values
    walls = ndimage.gaussian_filter((cls == 1).astype(np.float32), (0, 0.7, 0.7))
    im = syn["image"].values
    lo, hi = np.percentile(im, [0.5, 99.5])
    wall = (cls == 1) & np.isfinite(ori)
    flat = ndimage.maximum_filter((cls > 0).astype(np.uint8), size=(1, n + 4, n + 4), mode="mirror") == 0
    assert flat.mean() > 0.1 and wall.mean() > 0.03
    for frames in (np.clip(walls / walls.max(), 0, 1), np.clip((im - lo) / (hi - lo), 0, 1)):
        keep = _mask(frames.astype(np.float32), n)
        assert keep[flat].mean() <= 0.05, keep[flat].mean()
        assert keep[wall].mean() >= 0.6, keep[wall].mean()


# --- the angle KDE counts the angle only where determined ----------------------------------------
def test_resampled_angle_kdes_count_only_finite_values():
    rng = np.random.default_rng(0)
    period = math.pi
    grid = circular_grid(period, 64)
    frames = {"angle": [], "z1": []}
    for _ in range(4):
        angle = rng.normal(0.4, 0.1, 400)
        angle[200:] = np.nan  # undetermined: drawn with their pixel, not counted
        frames["angle"].append(angle)
        frames["z1"].append(rng.normal(0, 1, 400))
    grids = {"angle": grid, "z1": linear_grid(-5, 5, 64)}
    bws = {"angle": np.full(4, 0.05), "z1": np.full(4, 0.3)}
    boot = resample_kdes(frames, grids, bws, 12, rng, blocks=[np.arange(400) // 20] * 4)
    mass = boot["angle"].sum(-1) * grid.step
    np.testing.assert_allclose(mass, 1.0, atol=1e-6)  # normalised by the counted values, not the drawn pixels
    point = kde_frames(frames["angle"], grid, bws["angle"])
    np.testing.assert_allclose(boot["angle"].mean(0), point, atol=0.15 * point.max())


def _latents(path, n_frames=6, size=24):
    """A latents store: the left half of every frame holds an oriented structure whose angle is 0.4 rad
    (determined, confidence 0.9), the right half is flat, its angle noise (confidence 0)."""
    rng = np.random.default_rng(2)
    labels = ["angle", "dx", "dy", "z1", "z2"]
    mean = rng.normal(0, 1, (n_frames, size, size, len(labels))).astype(np.float32)
    left = np.arange(size)[None, :] < size // 2
    mean[..., 0] = np.where(
        left,
        rng.normal(0.4, 0.05, (n_frames, size, size)),
        rng.uniform(-math.pi / 2, math.pi / 2, (n_frames, size, size)),
    )
    conf = np.broadcast_to(np.where(left, 0.9, 0.0), (n_frames, size, size)).astype(np.float32)
    coords = store.frame_coords(n_frames, bias=np.linspace(-1, 1, n_frames))
    coords.update({store.LATENT: labels, "latent_units": (store.LATENT, ["rad", "grid", "grid", "1", "1"])})
    ds = xr.Dataset(
        {
            "mean": ((store.FRAME, store.Y, store.X, store.LATENT), mean),
            "code_mean": ((store.SAMPLE, store.LATENT), np.zeros((3, 5), np.float32)),
            "code_logsd": ((store.SAMPLE, store.LATENT), np.zeros((3, 5), np.float32)),
            "angle_confidence": ((store.FRAME, store.Y, store.X), conf, store_attrs(8, 0.3, 0.4)),
        },
        coords=coords,
        attrs=store.provenance("latents", {}, window=8, angle_period=math.pi),
    )
    store.write_store(ds, path)


def test_angle_kde_uses_only_determined_pixels(tmp_path):
    _latents(tmp_path / "latents.zarr")
    out = tmp_path / "dynamics.zarr"
    kde_nmf(
        str(tmp_path / "latents.zarr"),
        None,
        str(out),
        str(tmp_path / "h.csv"),
        {"grid_points": 90, "bootstrap": 5, "n_components": 2},
        seed=0,
    )
    ds = xr.open_zarr(out)
    g = ds["grid_value"].sel(variable="angle").values
    kde = ds["kde"].sel(variable="angle").values
    step = g[1] - g[0]
    np.testing.assert_allclose(kde.sum(-1) * step, 1.0, atol=0.01)  # over the counted pixels (all: 0.5)
    near = np.abs(g - 0.4) < 0.3
    assert (kde[:, near].sum(-1) * step > 0.99).all()  # the flat half's noise angles are not in it
    assert (ds["n_values"].values == 24 * 24).all()  # every pixel still counts for the other latents
    z1 = ds["kde"].sel(variable="z1").values
    assert (z1.sum(-1) * np.diff(ds["grid_value"].sel(variable="z1").values)[0] > 0.95).all()
    assert "50.0%" in ds.attrs["angle_counted"] and "coherence ≥ 0.4" in ds.attrs["angle_counted"]


def test_no_determined_angle_counts_every_pixel_and_says_so(tmp_path):
    # a flat input (a barely trained U-Net, a single domain) must not stop the run: the angle falls back
    # to every pixel, as before the rule, and the store says why
    _latents(tmp_path / "latents.zarr")
    ds = xr.open_zarr(tmp_path / "latents.zarr").load()
    ds["angle_confidence"] = ds["angle_confidence"] * 0
    store.write_store(ds, tmp_path / "flat.zarr")
    kde_nmf(
        str(tmp_path / "flat.zarr"),
        None,
        str(tmp_path / "d.zarr"),
        str(tmp_path / "h.csv"),
        {"grid_points": 90, "bootstrap": 0, "n_components": 2},
        seed=0,
    )
    out = xr.open_zarr(tmp_path / "d.zarr")
    g = out["grid_value"].sel(variable="angle").values
    kde = out["kde"].sel(variable="angle").values
    np.testing.assert_allclose(kde.sum(-1) * (g[1] - g[0]), 1.0, atol=0.01)
    near = np.abs(g - 0.4) < 0.3
    assert (kde[:, near].sum(-1) * (g[1] - g[0]) < 0.9).all()  # the flat half's noise angles are counted
    assert "every selected pixel's angle is counted" in out.attrs["angle_counted"]
