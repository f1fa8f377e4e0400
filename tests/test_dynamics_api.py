"""Entry functions of the dynamics stage on small stores, NMF order/seeding, config checks."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ferrolens import store
from ferrolens.bias import triangular_waveform
from ferrolens.config import section
from ferrolens.dynamics import kde_nmf, sweep_merge
from ferrolens.dynamics.nmf import coordinate_descent, fit_nmf, nnls_weights, refit_nmf
from ferrolens.errors import InputError

LABELS = ["angle", "dx", "dy", "z1", "z2"]


def make_latents(
    path, n_frames=24, size=24, seed=0, bias=True, hysteretic=True, cycles=1.0, window=8, angle_period=None
):
    """A latents store in the rVAE layout: a region of state A (z1 ≈ -2, angle ≈ 0.4) whose
    area follows a hysteretic function of a triangular bias (from 0 V: the first quarter-cycle
    is the virgin curve); state B elsewhere (z1 ≈ 2, angle near the π/2 wrap). Structure
    (segmentation class 1) is a band of rows."""
    rng = np.random.default_rng(seed)
    b = triangular_waveform(n_frames, 2.0, cycles=cycles)
    direction = np.sign(np.gradient(b))
    shift = 0.6 * direction if hysteretic else 0.0
    frac = np.clip(0.5 + 0.75 * np.tanh((b - shift) / 0.4), 0, 1)
    mean = np.empty((n_frames, size, size, len(LABELS)), np.float32)
    cols = np.arange(size)[None, :] * np.ones((size, 1))
    for f in range(n_frames):
        in_a = cols < frac[f] * size
        mean[f, ..., 0] = np.where(in_a, rng.normal(0.4, 0.1, (size, size)), rng.normal(1.5, 0.1, (size, size)))
        mean[f, ..., 1:3] = rng.normal(0, 0.5, (size, size, 2))
        mean[f, ..., 3] = np.where(in_a, rng.normal(-2, 0.3, (size, size)), rng.normal(2, 0.3, (size, size)))
        mean[f, ..., 4] = rng.normal(0, 1, (size, size))
    mean[:, 0, 0, :] = np.nan  # a padded pixel: must be ignored
    n_samples = 50
    coords = store.frame_coords(n_frames, bias=b if bias else None, time=np.arange(n_frames) * 1.0)
    coords[store.LATENT] = LABELS
    coords["latent_units"] = (store.LATENT, ["rad", "grid", "grid", "1", "1"])
    sample_frame = rng.integers(0, n_frames, n_samples)
    coords["sample_frame"] = (store.SAMPLE, sample_frame)
    ds = xr.Dataset(
        {
            "mean": ((store.FRAME, store.Y, store.X, store.LATENT), mean),
            "code_mean": ((store.SAMPLE, store.LATENT), rng.normal(size=(n_samples, len(LABELS)))),
            "code_logsd": ((store.SAMPLE, store.LATENT), np.full((n_samples, len(LABELS)), -2.0)),
        },
        coords=coords,
        attrs=store.provenance("latents", {"test": True}, window=window, angle_period=angle_period),
    )
    store.write_store(ds, path)
    return frac


def make_segmentation(path, n_frames=24, size=24):
    label = np.zeros((n_frames, size, size), np.uint8)
    label[:, : size // 2] = 1  # structure in the upper half
    prob = np.stack([label == 0, label == 1], axis=1).astype(np.float32)
    F = store.FRAME
    ds = xr.Dataset(
        {
            "label": ((F, store.Y, store.X), label),
            "probability": ((F, store.CLASS, store.Y, store.X), prob, {"units": "1"}),
            "norm_low": ((F,), np.zeros(n_frames)),
            "norm_high": ((F,), np.ones(n_frames)),
        },
        coords={**store.frame_coords(n_frames), store.CLASS: ["domain", "wall"]},
        attrs=store.provenance("segmentation", {}, class_names=["domain", "wall"], norm_percentiles=[1.0, 99.0]),
    )
    store.write_store(ds, path)


FAST = {"grid_points": 64, "bootstrap": 20}


def test_kde_nmf_writes_store_and_table(tmp_path):
    lat = tmp_path / "latents.zarr"
    make_latents(lat)
    out, table = tmp_path / "dynamics.zarr", tmp_path / "hysteresis.csv"
    kde_nmf(str(lat), None, str(out), str(table), FAST, seed=1)

    ds = xr.open_zarr(out)
    assert ds.attrs["ferrolens_kind"] == "dynamics"
    assert ds["kde"].dims == ("variable", "frame", "grid")
    assert list(ds["variable"].values) == ["angle", "z1", "z2"]
    assert list(ds["variable_nmf"].values) == ["angle", "z1", "z2", "stacked"]
    assert ds["grid_value"].dims == ("variable", "grid")
    assert list(ds["variable_units"].values) == ["rad", "1", "1"]  # taken from the latents store
    assert ds["components"].dims == ("component", "variable", "grid")
    assert ds["weights"].dims == ("variable_nmf", "component", "frame")
    assert ds["bias"].attrs["units"] == "V" and "time" in ds.coords
    assert (ds["n_values"].values == 24 * 24 - 1).all()  # the NaN pixel is left out
    # densities integrate to ~1 (the grid sum of a density sampled at 64 points)
    np.testing.assert_allclose(ds["kde_mass"].sel(variable="angle"), 1.0, atol=1e-3)
    np.testing.assert_allclose(ds["kde_mass"].sel(variable="z1"), 1.0, atol=5e-3)
    step = np.diff(ds["grid_value"].values, axis=1)[:, :1]
    np.testing.assert_allclose((ds["components"].values * step[None]).sum(-1), 1.0, atol=1e-9)
    stacked_integrals = (ds["stacked_components"].values * step[None]).sum(-1)  # (component, variable)
    np.testing.assert_allclose(stacked_integrals.mean(axis=1), 1.0, atol=1e-9)
    lo, w, hi = (ds[k].values for k in ("weights_ci_low", "weights", "weights_ci_high"))
    assert (lo <= w + 1e-9).mean() > 0.9 and (w <= hi + 1e-9).mean() > 0.9

    tab = pd.read_csv(table)
    assert len(tab) == 4 * 2 and set(tab.variable) == {"angle", "z1", "z2", "stacked"}
    assert (tab.window == 8).all() and (tab.stimulus == "bias").all() and (tab.stimulus_units == "V").all()
    doc = json.loads(table.with_suffix(".json").read_text())
    assert len(doc["rows"]) == len(tab) and set(doc["columns"]) == set(tab.columns)
    assert doc["rows"][0]["variable"] == tab.variable[0]
    # one cycle from 0 V: the virgin curve (frames 0–6) is left out, the closed loop is half traced
    assert (tab.virgin_frames == "0–6").all() and (tab.cycle == "all").all()
    assert tab.note.str.contains("virgin curve").all() and tab.note.str.contains("rising branch covers only").all()
    assert tab.rising_coercive.isna().all()  # the rising branch of the closed loop never reaches +2 V
    assert tab.range_low.iloc[0] == pytest.approx(-2.0) and tab.range_high.iloc[0] < 0
    # a planted loop in angle and z1 (the falling branch above the rising one for state A's weight) ...
    for v in ("angle", "z1"):
        a = tab[(tab.variable == v)].set_index("component")
        assert abs(a.loop_area).min() > 0.2 and a.loop_area.prod() < 0  # mirror components
    # ... but one half-traced cycle is open at 0 V, where a drift in time cannot be told from a loop: no test
    assert tab.p_value.isna().all() and not tab.significant.any()
    assert tab.verdict.str.contains("not testable: the loop is open").all()
    assert ds.attrs["spatial_block"] == 8 and ds.attrs["stimulus"] == "bias"
    assert list(ds["cycle"].values[:8]) == [0] * 7 + [1]
    # reruns with the same seed give identical numbers
    out2, table2 = tmp_path / "again.zarr", tmp_path / "again.csv"
    kde_nmf(str(lat), None, str(out2), str(table2), FAST, seed=1)
    xr.testing.assert_identical(xr.open_zarr(out2).drop_attrs(), ds.drop_attrs())
    pd.testing.assert_frame_equal(pd.read_csv(table2), tab)


def test_structure_pixels_and_subsample(tmp_path):
    lat, seg = tmp_path / "latents.zarr", tmp_path / "seg.zarr"
    make_latents(lat)
    make_segmentation(seg)
    cfg = {**FAST, "pixels": "structure", "bootstrap": 0, "variables": ["z1"]}
    kde_nmf(str(lat), str(seg), str(tmp_path / "d.zarr"), str(tmp_path / "t.csv"), cfg, seed=0)
    ds = xr.open_zarr(tmp_path / "d.zarr")
    assert (ds["n_values"].values == 12 * 24 - 1).all()
    t = pd.read_csv(tmp_path / "t.csv")
    assert t.falling_coercive_ci_low.isna().all()  # no resamples, one cycle: no interval for crossings ...
    assert t.loop_area_ci_low.isna().all() and t.p_value.isna().all()  # ... the half loop open at 0 V: no test
    cfg = {**FAST, "pixels": "subsample", "subsample_size": 100, "bootstrap": 0, "variables": ["z1"]}
    kde_nmf(str(lat), None, str(tmp_path / "s.zarr"), str(tmp_path / "s.csv"), cfg, seed=0)
    assert (xr.open_zarr(tmp_path / "s.zarr")["n_values"].values == 100).all()


def test_no_bias_gives_table_with_note(tmp_path):
    lat = tmp_path / "latents.zarr"
    make_latents(lat, bias=False)
    kde_nmf(
        str(lat),
        None,
        str(tmp_path / "d.zarr"),
        str(tmp_path / "t.csv"),
        {**FAST, "bootstrap": 5, "variables": ["z1"]},
        seed=0,
    )
    tab = pd.read_csv(tmp_path / "t.csv")
    assert (tab.stimulus == "time").all() and (tab.cycle == "none").all()
    assert tab.note.str.contains("time, which never turns back").all() and tab.loop_area.isna().all()
    assert tab.verdict.str.startswith("no loop").all()
    assert xr.open_zarr(tmp_path / "d.zarr").attrs["stimulus"] == "time"


def test_several_cycles_spatial_blocks_and_significance(tmp_path):
    """Four cycles from 0 V: the pooled loop of the three complete cycles is significant after Holm,
    and each cycle has its own (descriptive) row; blocks smaller than the window are refused."""
    lat = tmp_path / "latents.zarr"
    make_latents(lat, n_frames=96, cycles=4.0)
    cfg = {**FAST, "bootstrap": 20, "variables": ["z1"], "time_block": 2}
    kde_nmf(str(lat), None, str(tmp_path / "d.zarr"), str(tmp_path / "t.csv"), cfg, seed=0)
    tab = pd.read_csv(tmp_path / "t.csv", dtype={"cycle": str})
    assert set(tab.cycle) == {"all", "1", "2", "3", "4"}
    pooled = tab[tab.cycle == "all"]
    assert pooled.significant.all() and (pooled.p_adjusted < 0.05).all()
    assert tab.note[tab.cycle == "all"].str.contains("Cycle 4 does not cover the whole sweep").all()
    assert tab[tab.cycle != "all"].p_adjusted.isna().all()
    # the pooled loop holds 0 nowhere near its interval; the rising coercive value sits near +0.6 V
    z = pooled[pooled.variable == "z1"].set_index("component")
    assert (z.loop_area_ci_low * z.loop_area_ci_high > 0).all()
    assert z.rising_coercive.abs().max() == pytest.approx(0.6, abs=0.3)
    with pytest.raises(InputError, match="spatial_block"):
        kde_nmf(str(lat), None, str(tmp_path / "e.zarr"), str(tmp_path / "e.csv"), {**cfg, "spatial_block": 4}, 0)


def test_bad_input(tmp_path):
    lat = tmp_path / "latents.zarr"
    make_latents(lat, n_frames=6)
    seg = tmp_path / "seg.zarr"
    make_segmentation(seg, n_frames=6)
    args = (str(tmp_path / "d.zarr"), str(tmp_path / "t.csv"))
    with pytest.raises(InputError, match="kind"):
        kde_nmf(str(seg), None, *args, FAST, 0)  # a segmentation store is not latents
    with pytest.raises(InputError, match="z7"):
        kde_nmf(str(lat), None, *args, {"variables": ["angle", "z7"]}, 0)
    with pytest.raises(InputError, match="n_components"):
        kde_nmf(str(lat), None, *args, {"n_components": 0}, 0)
    with pytest.raises(InputError, match="n_components"):
        kde_nmf(str(lat), None, *args, {"n_components": 7}, 0)  # more than frames
    with pytest.raises(InputError, match="segmentation"):
        kde_nmf(str(lat), None, *args, {"pixels": "structure"}, 0)
    with pytest.raises(InputError, match="fixed_bandwidth"):
        kde_nmf(str(lat), None, *args, {"bandwidth": "fixed", "fixed_bandwidth": {"angle": 0.1}}, 0)
    with pytest.raises(InputError, match="was unexpected"):
        section("dynamics", {"n_component": 2})
    small_seg = tmp_path / "small.zarr"
    make_segmentation(small_seg, n_frames=6, size=12)
    with pytest.raises(InputError, match="frame"):
        kde_nmf(str(lat), str(small_seg), *args, {"pixels": "structure"}, 0)
    assert not (tmp_path / "d.zarr").exists()


def test_sweep_merge(tmp_path):
    dyn, lats = [], []
    for w in (8, 12):
        lat = tmp_path / f"n{w}" / "latents.zarr"
        make_latents(lat, seed=w)
        out = tmp_path / f"n{w}" / "dynamics.zarr"
        kde_nmf(
            str(lat),
            None,
            str(out),
            str(tmp_path / f"n{w}" / "h.csv"),
            {**FAST, "bootstrap": 0, "variables": ["angle", "z1"]},
            seed=0,
        )
        dyn.append(str(out))
        lats.append(str(lat))
    sweep_merge(dyn, lats, [8, 12], str(tmp_path / "sweep.zarr"))
    sw = xr.open_zarr(tmp_path / "sweep.zarr")
    assert sw.attrs["ferrolens_kind"] == "sweep"
    assert list(sw["window"].values) == [8, 12]
    assert sw["kde"].dims == ("window", "variable", "frame", "grid")
    assert sw["grid_value"].dims == ("window", "variable", "grid")  # grids differ per window
    assert sw["weights"].dims == ("window", "variable_nmf", "component", "frame")
    assert sw["bias"].dims == ("frame",) and sw["branch"].dims == ("frame",)
    assert sw["latent_mean"].dims == ("window", "frame", "latent")
    one = xr.open_zarr(dyn[1])
    np.testing.assert_array_equal(sw["kde"].sel(window=12).values, one["kde"].values)
    # per-frame latent statistics: circular mean of the angle stays in (-π/2, π/2]
    ang = sw["latent_mean"].sel(latent="angle").values
    assert np.all(np.abs(ang) <= np.pi / 2 + 1e-9)
    with pytest.raises(InputError):
        sweep_merge(dyn, lats[:1], [8, 12], str(tmp_path / "bad.zarr"))
    other = tmp_path / "other.zarr"
    make_latents(other, n_frames=10)
    with pytest.raises(InputError, match="frames"):
        sweep_merge(dyn, [lats[0], str(other)], [8, 12], str(tmp_path / "bad.zarr"))


def test_nmf_seeded_ordered_and_normalised():
    rng = np.random.default_rng(0)
    grid = np.linspace(-4, 4, 80)
    step = grid[1] - grid[0]
    a = np.exp(-0.5 * ((grid + 1.5) / 0.4) ** 2)
    b = np.exp(-0.5 * ((grid - 1.5) / 0.6) ** 2)
    a, b = a / (a.sum() * step), b / (b.sum() * step)
    t = np.linspace(0, 1, 30)
    wa = np.clip(1.3 * np.sin(np.pi * t), 0, 1)  # a rises then falls; b peaks at the start
    X = np.outer(wa, a) + np.outer(1 - wa, b) + rng.normal(0, 1e-4, (30, 80)).clip(0)
    r1 = fit_nmf(X, 2, seed=3, measure=step)
    r2 = fit_nmf(X, 2, seed=3, measure=step)
    np.testing.assert_array_equal(r1.components, r2.components)
    np.testing.assert_allclose(r1.components.sum(axis=1) * step, 1.0)
    # b's weight is at its high level from frame 0: it is first
    assert np.argmax(r1.components[0]) == np.argmax(b)
    np.testing.assert_allclose(r1.weights[:, 1], wa, atol=0.01)
    assert r1.relative_error < 1e-3
    np.testing.assert_allclose(nnls_weights(X, r1.components), r1.weights)
    with pytest.raises(ValueError):
        fit_nmf(X, 0, seed=0)


@pytest.mark.parametrize("shape, iters", [((30, 80), 2000), ((19, 300), 7)])
def test_refit_coordinate_descent_is_scikit_learns_to_the_bit(shape, iters):
    """The bootstrap's lean refit loop gives scikit-learn's NMF(init="custom", solver="cd") exactly, converged
    or stopped at max_iter, and refit_nmf keeps a resample's components matched to the point fit."""
    import warnings

    from sklearn.decomposition import NMF

    rng = np.random.default_rng(1)
    w, h = rng.random((shape[0], 2)), rng.random((2, shape[1]))
    X = w @ h + 0.05 * rng.random(shape)
    w0, h0 = np.ascontiguousarray(w * 1.2 + 0.01), np.ascontiguousarray(h * 0.8 + 0.01)
    model = NMF(n_components=2, init="custom", solver="cd", max_iter=iters, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_ref = model.fit_transform(X, W=w0.copy(), H=h0.copy())
    w_new, h_new, n_iter = coordinate_descent(X, w0.copy(), h0.copy(), iters, 1e-6)
    assert n_iter == model.n_iter_ and (iters > 10 or n_iter == iters)
    np.testing.assert_array_equal(w_new, w_ref)
    np.testing.assert_array_equal(h_new, model.components_)
    point = fit_nmf(X, 2, seed=0)
    swapped = type(point)(point.components[::-1], point.weights[:, ::-1], 0.0, 0, True)
    again = refit_nmf(X + 0.01 * rng.random(shape), swapped)  # a perturbed copy, refitted from swapped factors
    corr = np.corrcoef(again.components, swapped.components)[:2, 2:]
    assert np.diag(corr).min() > 0.95 > np.abs(corr[[0, 1], [1, 0]]).max()  # matched to the point's order


def test_figure_names_its_stimulus_and_says_what_is_left_out(tmp_path, monkeypatch):
    """Fig. 5 says what the weights are plotted against; without a cycling stimulus it draws no
    loop and says why in one sentence instead of a table."""
    from ferrolens.figures import latent

    shown = {}

    def keep(fig, out, cfg=None):
        shown["texts"] = [t.get_text() for ax in fig.axes for t in (ax.title, ax.xaxis.label, *ax.texts)]
        shown["texts"].append(fig._suptitle.get_text())
        shown["tables"] = sum(len(ax.tables) for ax in fig.axes)
        return Path(out)

    monkeypatch.setattr(latent, "save", keep)
    cfg = {**FAST, "bootstrap": 4, "variables": ["z1"]}
    for bias, stim in ((True, "bias"), (False, "time")):
        lat = tmp_path / f"{stim}.zarr"
        make_latents(lat, bias=bias)
        kde_nmf(str(lat), None, str(tmp_path / f"{stim}_d.zarr"), str(tmp_path / f"{stim}.csv"), cfg, seed=0)
        latent.dynamics(str(tmp_path / f"{stim}_d.zarr"), str(tmp_path / f"{stim}.csv"), str(tmp_path / "f.png"), {})
        text = "\n".join(shown["texts"])
        assert f"latent dynamics against {stim}" in text and f"weights of z1 vs {stim}" in text
        if stim == "bias":
            assert shown["tables"] == 1 and "bias (V)" in text and "virgin curve" in text
            assert "Not testable: the loop is open" in text  # one half-traced cycle: said, not hidden
        else:
            assert shown["tables"] == 0 and "against bias" not in text
            assert "time (s)" in text and "which never turns back" in text


def test_the_angle_period_is_the_one_the_rvae_recorded(tmp_path):
    """The latents store owns the angle's period (2π / rvae.angle_symmetry): dynamics takes it, a config
    value that contradicts it is refused before any computation, and π is taken when neither says."""
    import math

    cfg = {"variables": ["angle"], "n_components": 2, "bootstrap": 0, "permutations": 99}
    for recorded, given, expected in ((2 * math.pi, None, 2 * math.pi), (None, None, math.pi), (None, 2.0, 2.0)):
        lat = tmp_path / f"lat_{recorded}_{given}.zarr"
        make_latents(lat, n_frames=12, size=16, angle_period=recorded)
        out = tmp_path / f"dyn_{recorded}_{given}.zarr"
        kde_nmf(
            str(lat), None, str(out), str(tmp_path / f"t_{recorded}_{given}.csv"), {**cfg, "angle_period": given}, 0
        )
        ds = store.open_store(out, "dynamics")
        assert ds.attrs["angle_period"] == pytest.approx(expected)
        grid = ds["grid_value"].sel(variable="angle").values
        assert grid[-1] - grid[0] == pytest.approx(expected * (1 - 1 / grid.size))  # one period, circular
    with pytest.raises(InputError, match=r"dynamics\.angle_period.*recorded an angle period of 6\.28319"):
        kde_nmf(
            str(tmp_path / f"lat_{2 * math.pi}_None.zarr"),
            None,
            str(tmp_path / "x.zarr"),
            str(tmp_path / "x.csv"),
            {**cfg, "angle_period": math.pi},
            0,
        )
    assert not (tmp_path / "x.zarr").exists()
