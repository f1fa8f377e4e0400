"""Latent-space maps with decoders whose output is a known function of z."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ferrolens import store
from ferrolens.config import section
from ferrolens.errors import InputError
from ferrolens.latent_space import (
    code_density,
    grid_ranges,
    intensity_histograms,
    latent_space_core,
    latent_space_map,
)

N = 8  # decoded image edge
FAST = {
    "coarse_grid": 5,
    "dense_grid": 30,
    "image_components": 2,
    "histogram_components": 2,
    "rgb_components": [0, 1, 1],
}


def ramp_decoder(z):
    """Image = a ramp 0 … 1 across the window times (1 + 0.1·z1 + 0.05·z2²): the maximum
    contrast is exactly that factor."""
    ramp = np.linspace(0.0, 1.0, N)[None, :] * np.ones((N, 1))
    factor = 1.0 + 0.1 * z[:, 0] + 0.05 * z[:, 1] ** 2
    return factor[:, None, None] * ramp[None]


def two_region_decoder(z):
    """z1 < 0: left half bright (single domain A); z1 ≥ 0: top quarter bright (domain B)."""
    a = np.zeros((N, N))
    a[:, : N // 2] = 1.0
    b = np.zeros((N, N))
    b[: N // 4] = 1.0
    return np.where((z[:, 0] < 0)[:, None, None], a, b)


def test_contrast_and_physical_mask_exact():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(500, 2))
    cfg = {**FAST, "ranges": {"z1": [-1.0, 1.0], "z2": [-2.0, 2.0]}}
    ds = latent_space_core(codes, ["z1", "z2"], ramp_decoder, cfg, seed=0)
    z1 = np.linspace(-1.0, 1.0, 30)
    z2 = np.linspace(-2.0, 2.0, 30)
    np.testing.assert_array_equal(ds["z1_dense"].values, z1)
    want = 1.0 + 0.1 * z1[:, None] + 0.05 * z2[None, :] ** 2
    np.testing.assert_array_equal(ds["contrast"].values, want)
    np.testing.assert_array_equal(ds["physical"].values, (want > 0.95) & (want < 1.05))
    assert 0 < ds["physical"].values.mean() < 1  # both kinds of region are present
    cz1, cz2 = np.linspace(-1, 1, 5), np.linspace(-2, 2, 5)
    np.testing.assert_array_equal(ds["contrast_coarse"].values, 1.0 + 0.1 * cz1[:, None] + 0.05 * cz2[None, :] ** 2)
    assert ds["decoded"].dims == ("z1", "z2", "wy", "wx") and ds["decoded"].shape == (5, 5, N, N)
    # other bounds move the mask accordingly
    tight = latent_space_core(codes, ["z1", "z2"], ramp_decoder, {**cfg, "physical_bounds": [0.99, 1.01]}, 0)
    np.testing.assert_array_equal(tight["physical"].values, (want > 0.99) & (want < 1.01))


def test_observed_contrast_reference_rescales_the_bounds():
    """A decoder drawing everything at half contrast: the absolute mask is empty, the mask relative to
    the decodings at the observed codes equals the full-contrast decoder's mask around that median."""
    rng = np.random.default_rng(0)
    codes = rng.normal(scale=0.3, size=(500, 2))
    cfg = {**FAST, "ranges": {"z1": [-1.0, 1.0], "z2": [-2.0, 2.0]}}

    def half(z):
        return 0.5 * ramp_decoder(z)

    absolute = latent_space_core(codes, ["z1", "z2"], half, cfg, seed=0)
    assert not absolute["physical"].values.any() and float(absolute["contrast_reference"]) == 1.0
    obs = latent_space_core(codes, ["z1", "z2"], half, {**cfg, "contrast_reference": "observed"}, seed=0)
    ref = float(np.median(half(codes).max(axis=(1, 2))))
    assert float(obs["contrast_reference"]) == pytest.approx(ref, rel=1e-12)
    assert 0.5 < ref < 0.56  # about the half-contrast decoder's value near z = 0
    c = obs["contrast"].values
    np.testing.assert_array_equal(obs["physical"].values, (c > 0.95 * ref) & (c < 1.05 * ref))
    assert 0 < obs["physical"].values.mean() < 1
    assert obs.attrs["contrast_reference_kind"] == "observed"
    with pytest.raises(InputError, match="contrast_reference"):
        latent_space_core(codes, ["z1", "z2"], lambda z: -ramp_decoder(z), {**cfg, "contrast_reference": "observed"}, 0)


def test_nmf_loadings_recover_two_regions():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(800, 2))
    ds = latent_space_core(codes, ["z1", "z2"], two_region_decoder, FAST, seed=0)
    region_a = np.broadcast_to((ds["z1_dense"].values < 0)[:, None], (30, 30)).astype(float)
    for name in ("image_loadings", "histogram_loadings"):
        maps = ds[name].values
        corr = [np.corrcoef(m.ravel(), region_a.ravel())[0, 1] for m in maps]
        assert sorted(np.round(corr, 6)) == [-1.0, 1.0], name  # each component is one region exactly
    # image components are the two planted images (mean intensity 1)
    comps = ds["image_components"].values
    planted = {"a": two_region_decoder(np.array([[-1.0, 0]]))[0], "b": two_region_decoder(np.array([[1.0, 0]]))[0]}
    for img in planted.values():
        best = max(np.corrcoef(c.ravel(), img.ravel())[0, 1] for c in comps)
        assert best > 0.999
    np.testing.assert_allclose(comps.mean(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(ds["histogram_components"].values.sum(axis=1), 1.0)
    # deterministic order: the component with more total loading first; reruns identical
    totals = ds["image_loadings"].values.sum(axis=(1, 2))
    assert totals[0] >= totals[1]
    again = latent_space_core(codes, ["z1", "z2"], two_region_decoder, FAST, seed=0)
    xr.testing.assert_identical(again, ds)
    rgb = ds["rgb"].values
    assert rgb.shape == (30, 30, 3) and rgb.min() >= 0 and rgb.max() == pytest.approx(1.0)


def test_grid_range_follows_code_quantiles():
    rng = np.random.default_rng(2)
    codes = np.c_[rng.normal(1.0, 2.0, 2000), rng.exponential(1.0, 2000)]
    q = [0.05, 0.9]
    ds = latent_space_core(codes, ["z1", "z2"], ramp_decoder, {**FAST, "range_quantiles": q}, seed=0)
    for i, dims in enumerate((("z1", "z1_dense"), ("z2", "z2_dense"))):
        lo, hi = np.quantile(codes[:, i], q)
        for d in dims:
            assert ds[d].values[0] == pytest.approx(lo) and ds[d].values[-1] == pytest.approx(hi)
    (_r1, r2), src = grid_ranges(codes, ["z1", "z2"], ["z1", "z2"], q, {"z2": [0.0, 3.0]})
    assert r2 == (0.0, 3.0) and src == ["quantiles", "config"]


def test_density_counts_codes():
    codes = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [np.nan, 0.0]])
    axis = np.linspace(0, 1, 3)  # cells of width 0.5 centred on 0, 0.5, 1
    counts, density = code_density(codes, axis, axis)
    assert counts[0, 0] == 2 and counts[2, 2] == 1 and counts.sum() == 3  # (5, 5) is outside the grid
    assert density[0, 0] == pytest.approx(2 / (4 * 0.25))  # 4 finite codes, cell area 0.25
    hist = intensity_histograms(np.array([[[-0.5, 0.1], [0.6, 2.0]]]), 2, (0.0, 1.0))
    np.testing.assert_allclose(hist, [[0.5, 0.5]])  # out-of-range values go to the end bins


def test_more_latents_pair_and_held_medians():
    rng = np.random.default_rng(3)
    codes = np.c_[rng.normal(0, 1, 300), rng.normal(5, 1, 300), rng.normal(-2, 1, 300)]
    seen = []

    def decode(z):
        seen.append(z.copy())
        return ramp_decoder(z[:, [1, 2]])  # contrast from z2 (as "z1") and z3

    ds = latent_space_core(codes, ["z1", "z2", "z3"], decode, {**FAST, "pair": ["z2", "z3"]}, seed=0)
    z = np.concatenate(seen)
    assert np.allclose(z[:, 0], np.median(codes[:, 0]))  # z1 held at its median
    assert ds.attrs["mapped_latents"] == '["z2", "z3"]'
    assert ds["z1_dense"].values[0] == pytest.approx(np.quantile(codes[:, 1], 0.01))
    assert ds["z1_dense"].attrs["long_name"].startswith("latent z2")


def make_latents(path, labels=("angle", "dx", "dy", "z1", "z2"), **attrs):
    rng = np.random.default_rng(4)
    ds = xr.Dataset(
        {
            "code_mean": ((store.SAMPLE, store.LATENT), rng.normal(size=(200, len(labels)))),
            "code_logsd": ((store.SAMPLE, store.LATENT), np.full((200, len(labels)), -1.0)),
            "mean": ((store.FRAME, store.Y, store.X, store.LATENT), np.zeros((2, 3, 3, len(labels)), np.float32)),
        },
        coords={store.LATENT: list(labels)},
        attrs={**store.provenance("latents", {}, window=8), **attrs},
    )
    store.write_store(ds, path)


def test_latent_space_map_store(tmp_path):
    lat = tmp_path / "latents.zarr"
    make_latents(lat)
    out = tmp_path / "latent_space.zarr"
    latent_space_map(str(lat), two_region_decoder, str(out), {**FAST, "store_dense_decoded": True}, seed=0, window=8)
    ds = xr.open_zarr(out)
    assert ds.attrs["ferrolens_kind"] == "latent_space" and ds.attrs["window"] == 8
    assert ds["decoded"].dims == ("z1", "z2", "wy", "wx")
    assert ds["decoded_dense"].dims == ("z1_dense", "z2_dense", "wy", "wx")
    assert ds["image_loadings"].dims == ("component", "z1_dense", "z2_dense")
    assert ds["histogram_loadings"].dims == ("hist_component", "z1_dense", "z2_dense")
    assert ds["density"].sum() * np.diff(ds["z1_dense"])[0] * np.diff(ds["z2_dense"])[0] <= 1.0 + 1e-9
    assert "quality_warning" not in ds.attrs  # a latents store without checks passes none on


def test_the_models_checks_travel_with_its_latent_space_and_fig6_warns(tmp_path, monkeypatch):
    from ferrolens.figures.latent import latent_space_maps

    lat = tmp_path / "latents.zarr"
    warning = "rVAE n=8 has NOT learned to reconstruct its windows: held-out R² = 0.05 < 0.8"
    make_latents(lat, quality_r2=0.05, quality_angle_follow=0.5, quality_warning=warning)
    out = tmp_path / "latent_space.zarr"
    latent_space_map(str(lat), two_region_decoder, str(out), FAST, seed=0, window=8)
    ds = xr.open_zarr(out)
    assert ds.attrs["quality_r2"] == 0.05 and ds.attrs["quality_warning"] == warning
    import matplotlib.figure

    texts = []
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **k):  # the words on the figure as it is saved
        texts.extend(t.get_text() for t in fig.texts)
        return orig(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    latent_space_maps(str(out), str(tmp_path / "fig6.png"), {})
    assert any("held-out R² 0.05" in t for t in texts) and any(t.startswith("WARNING: " + warning) for t in texts)


def test_bad_input(tmp_path):
    lat = tmp_path / "latents.zarr"
    make_latents(lat)
    wrong = tmp_path / "wrong.zarr"  # a store of another kind
    store.write_store(
        xr.Dataset(
            {"image": ((store.FRAME, store.Y, store.X), np.zeros((2, 3, 3)))},
            coords=store.frame_coords(2),
            attrs=store.provenance("movie", {}),
        ),
        wrong,
    )
    out = str(tmp_path / "ls.zarr")
    with pytest.raises(InputError, match="kind"):
        latent_space_map(str(wrong), ramp_decoder, out, {}, 0, 8)
    with pytest.raises(InputError, match="z3"):
        latent_space_map(str(lat), ramp_decoder, out, {"pair": ["z1", "z3"]}, 0, 8)
    with pytest.raises(InputError, match="image_components"):
        latent_space_map(str(lat), ramp_decoder, out, {"image_components": 0}, 0, 8)
    with pytest.raises(InputError, match="rgb_components"):
        section("latent_space", {"image_components": 2})  # default RGB needs three components
    with pytest.raises(InputError, match="decoder"):
        latent_space_map(str(lat), lambda z: np.zeros((len(z), N)), out, FAST, 0, 8)
    with pytest.raises(InputError, match="decoder"):
        latent_space_map(str(lat), lambda z: np.full((len(z), N, N), np.nan), out, FAST, 0, 8)
    with pytest.raises(InputError, match="was unexpected"):
        section("latent_space", {"dense": 10})
    assert not Path(out).exists()
