"""Switching stage on small arrays: a known step at a known bias, a pixel that never switches,
noise (level and power), the demo generator's truth, and the store and figure end to end."""

import numpy as np
import pytest

from ferrolens.bias import triangular_waveform
from ferrolens.dynamics.hysteresis import analyse_sweep
from ferrolens.switching.core import (
    NEVER,
    NO_SWITCH,
    SWITCHED,
    UNSETTLED,
    branch_switching,
    latent_state,
    segment_switching,
)

BIAS = triangular_waveform(40, 10.0, 1.0, 0.0)  # 0 → +10 → −10 → −1 V, 1 V steps
SWEEP = analyse_sweep(BIAS)


def hysteron(up: float, down: float) -> np.ndarray:
    """(F,) 0/1 state of a square loop switching up at ``up`` V and down at ``down`` V, from 0."""
    s, out = 0.0, []
    for v in BIAS:
        s = 1.0 if v >= up else (0.0 if v <= down else s)
        out.append(s)
    return np.array(out)


def test_known_step_at_known_bias():
    # up at +3.5 V (between the frames at 3 and 4 V), down at −2.5 V: exact state, no noise
    s = hysteron(3.5, -2.5)[:, None]
    r = branch_switching(s, np.zeros(1), SWEEP)
    assert r["rising"].status[0] == SWITCHED and r["falling"].status[0] == SWITCHED
    assert r["rising"].bias[0] == pytest.approx(3.5)  # midway between the last old and first new frame
    assert r["falling"].bias[0] == pytest.approx(-2.5)
    assert (r["rising"].low[0], r["rising"].high[0]) == pytest.approx((3.0, 4.0))
    assert (r["falling"].low[0], r["falling"].high[0]) == pytest.approx((-3.0, -2.0))


def test_virgin_curve_excluded_leaves_the_rising_switch_unseen():
    # the loop's rising branch (−10 → −1 V) never reaches +3.5 V: no switch there, not a guess
    r = branch_switching(hysteron(3.5, -2.5)[:, None], np.zeros(1), SWEEP, virgin=False)
    assert r["rising"].status[0] == NO_SWITCH and np.isnan(r["rising"].bias[0])


def test_noisy_steps_found_and_flat_pixels_never_switch():
    rng = np.random.default_rng(0)
    n = 400
    step = np.stack([hysteron(3.5, -2.5)] * n, axis=1)
    # two latents per pixel: the step in one, noise in both; then n pixels with no step
    x = np.concatenate([np.stack([step, np.zeros_like(step)], -1), np.zeros((40, n, 2))], axis=1)
    x += rng.normal(0, 0.2, x.shape)
    st = latent_state(x, BIAS)
    assert st.bistable[:n].mean() > 0.99  # power: a step of 5 noise sd is found
    assert st.bistable[n:].mean() <= 0.05  # level: flat pixels are called two-level at most alpha
    r = branch_switching(st.s[:, :n], st.sigma[:n], SWEEP)
    for d, true in (("rising", 3.5), ("falling", -2.5)):
        ok = r[d].status == SWITCHED
        assert ok.mean() > 0.9
        assert np.median(np.abs(r[d].bias[ok] - true)) < 0.5
        assert ((r[d].low[ok] <= true) & (true <= r[d].high[ok])).mean() > 0.9  # intervals hold the truth


def test_level_under_correlated_noise():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(40, 4000, 3))
    x = e.copy()
    for t in range(1, 40):
        x[t] = 0.5 * x[t - 1] + np.sqrt(0.75) * e[t]
    st = latent_state(x, BIAS)
    assert 0.35 < st.rho.mean() < 0.65
    assert st.bistable.mean() <= 0.05


def test_state_that_returns_is_not_called_switched():
    # the state leaves its old level for a while and comes back: no switch is called, no bias given
    u = np.r_[np.zeros(6), np.ones(6), np.zeros(8)][:, None]
    r = segment_switching(u + np.random.default_rng(2).normal(0, 0.05, u.shape), np.arange(20.0), np.array([0.05]))
    assert r.status[0] in (UNSETTLED, NO_SWITCH) and np.isnan(r.bias[0])
    # a state that wanders about 1/2 is undecided: unsettled, not switched
    w = 0.5 + np.random.default_rng(3).normal(0, 0.3, (20, 200))
    r = segment_switching(w, np.arange(20.0), np.full(200, 0.3))
    assert (r.status == SWITCHED).mean() < 0.1


def test_demo_truth_from_its_variants():
    """The map from noisy one-hot variants of the generator's movie against its true switching biases:
    median error under a quarter step, > 90 % within one step, few false calls (issue 26 item 3)."""
    from ferrolens.switching.truth import switching_errors, true_switching
    from ferrolens.synthetic import make_demo

    ds = make_demo(n_frames=40, size=48, needles_per_family=3, n_contaminants=1)
    var = ds.variant_map.values.reshape(40, -1)
    true = true_switching(var, SWEEP, 0.05, True)
    x = np.stack([var == 1, var == 2], -1) + np.random.default_rng(0).normal(0, 0.1, (*var.shape, 2))
    st = latent_state(x, BIAS)
    est = branch_switching(st.s, st.sigma, SWEEP)
    for d in est:
        est[d].status[~st.bistable] = NEVER
        e = switching_errors(est[d], true[d], SWEEP.step)
        assert e["n_true"] > 100
        assert e["median_abs_error"] < 0.25 and e["within_one_step"] > 0.9, e
        assert e["recall"] > 0.9 and e["false_calls"] < 0.06, e


def test_loop_fit_recovers_known_coercive_biases():
    from ferrolens.switching.loopfit import fit_loops

    rng = np.random.default_rng(4)
    rising = (SWEEP.branches.direction == 1)[:, None]
    vr, vf = rng.uniform(1, 6, 12), rng.uniform(-6, -1, 12)
    y = 2.0 * np.tanh((BIAS[:, None] - np.where(rising, vr, vf)) / 1.0) + 0.1 * BIAS[:, None]
    y = y + rng.normal(0, 0.1, y.shape)
    y[7, 0] = 80.0  # a single-frame glitch
    fit = fit_loops(y, SWEEP)
    assert np.abs(fit["rising_coercive"] - vr).max() < 0.5
    assert np.abs(fit["falling_coercive"] - vf).max() < 0.5
    assert fit["r2"].min() > 0.9


def test_stage_writes_its_store_and_figure(tmp_path):
    """switching() end to end on a latents store made from the generator's variants (plus noise and an
    uninformative angle), with the generator's store as truth; then the figure."""
    import xarray as xr

    from ferrolens import store
    from ferrolens.figures import switching_maps
    from ferrolens.switching import switching
    from ferrolens.synthetic import make_demo

    syn = make_demo(n_frames=40, size=32, needles_per_family=2, n_contaminants=1)
    store.write_store(syn, tmp_path / "synthetic.zarr")
    var = syn.variant_map.values
    rng = np.random.default_rng(5)
    mean = np.stack([rng.uniform(0, np.pi, var.shape), var == 1, var == 2], -1).astype(np.float32)
    mean[..., 1:] += rng.normal(0, 0.1, mean[..., 1:].shape)
    lat = xr.Dataset(
        {
            "code_mean": (("sample", "latent"), np.zeros((2, 3), np.float32)),
            "code_logsd": (("sample", "latent"), np.zeros((2, 3), np.float32)),
            "mean": (("frame", "y", "x", "latent"), mean),
        },
        coords={"latent": ["angle", "z1", "z2"], "frame": np.arange(40), "bias": ("frame", BIAS, {"units": "V"})},
        attrs=store.provenance("latents", window=8, angle_period=np.pi),
    )
    store.write_store(lat, tmp_path / "latents.zarr")
    movie = xr.Dataset(
        {"image": syn["image"]},
        coords={"frame": np.arange(40), "bias": ("frame", BIAS, {"units": "V"})},
        attrs=store.provenance("movie"),
    )
    store.write_store(movie, tmp_path / "movie.zarr")
    dyn = {"stimulus": "auto", "virgin_branch": "auto"}
    errors = switching(
        str(tmp_path / "latents.zarr"), str(tmp_path / "sw.zarr"), {}, dyn, truth=str(tmp_path / "synthetic.zarr")
    )
    ds = store.open_store(tmp_path / "sw.zarr", "switching")
    assert ds["switching_bias"].shape == (2, 32, 32) and ds["state"].shape == (40, 32, 32)
    assert ds.attrs["truth_falling_median_abs_error"] == errors["falling"]["median_abs_error"]
    for d in ("rising", "falling"):
        assert errors[d]["within_one_step"] > 0.9 and errors[d]["recall"] > 0.8, errors
        sw = ds["status"].sel(direction=d).values == SWITCHED
        b = ds["switching_bias"].sel(direction=d).values
        assert np.isfinite(b[sw]).all() and np.isnan(b[~sw]).all()  # no bias where none was found
        lo, hi = ds["switching_bias_low"].sel(direction=d).values, ds["switching_bias_high"].sel(direction=d).values
        assert (lo[sw] <= b[sw]).all() and (b[sw] <= hi[sw]).all()
    assert (ds["status"].values == NEVER).any()  # the matrix far from any needle never switches
    out = switching_maps(
        str(tmp_path / "movie.zarr"), str(tmp_path / "sw.zarr"), str(tmp_path / "fig.png"), {"dpi": 50}
    )
    assert out.stat().st_size > 1000
    # spatial blocks: 4 × 4 px averaged first, one result per block at the block centres, no truth
    assert (
        switching(
            str(tmp_path / "latents.zarr"),
            str(tmp_path / "sw4.zarr"),
            {"block": 4},
            dyn,
            truth=str(tmp_path / "synthetic.zarr"),
        )
        == {}
    )
    blk = store.open_store(tmp_path / "sw4.zarr", "switching")
    assert blk["status"].shape == (2, 8, 8) and list(blk["y"].values[:2]) == [1.5, 5.5]
    assert (blk["status"].values == SWITCHED).any()


def test_drift_is_not_a_switch():
    # latents that drift steadily with time (the image moving under the window), no switching: the
    # two levels differ, but along each branch a line fits better than a step
    rng = np.random.default_rng(6)
    x = 0.05 * np.arange(40)[:, None, None] + rng.normal(0, 0.05, (40, 300, 2))
    st = latent_state(x, BIAS)
    assert st.bistable.mean() > 0.9
    r = branch_switching(st.s, st.sigma, SWEEP)
    for d in r:
        assert (r[d].status == SWITCHED).mean() < 0.1, d


def test_a_stimulus_that_never_moves_marks_every_pixel_no_data():
    one = analyse_sweep(np.zeros(1))
    r = branch_switching(np.full((1, 5), np.nan), np.full(5, np.nan), one)
    assert all((r[d].status == 4).all() and np.isnan(r[d].bias).all() for d in r)


def _calls(x: np.ndarray, min_separation: float) -> dict:
    """The stage's calls on features x (F, P, D): statuses and biases per direction."""
    st = latent_state(x, BIAS, min_separation=min_separation)
    r = branch_switching(st.s, st.sigma, SWEEP)
    for d in r:
        r[d].status[~st.bistable] = NEVER
    return r


def test_separation_calls_a_step_and_not_a_flat_pixel_or_a_slight_steady_change():
    """Three kinds of pixel among 300 switching ones (which set the features' spread): a step of one
    spread at +3.5 / −2.5 V is called with its bias; a flat noisy pixel is never switching; a pixel
    whose latents move steadily by 2 % of their spread with tiny noise (a window whose content stays
    outside, its codes drifting: significant, not a switch) is called switched by the test alone and
    never switching with the separation floor."""
    rng = np.random.default_rng(7)
    step = hysteron(3.5, -2.5)
    x = np.concatenate([np.stack([step] * 300, 1), np.zeros((40, 100)), np.stack([0.02 * step] * 100, 1)], axis=1)
    noise = np.r_[np.full(300, 0.1), np.full(100, 0.1), np.full(100, 0.001)]
    x = (x + rng.normal(size=x.shape) * noise)[..., None]
    st = latent_state(x, BIAS)
    assert np.median(st.separation[:300]) > 1.5 and np.median(st.separation[400:]) < 0.05
    assert np.percentile(st.separation[300:400], 95) < 0.3  # noise alone: near 0, not its sd
    for floor, slight in ((0.0, SWITCHED), (0.2, NEVER)):
        r = _calls(x, floor)
        for d, true in (("rising", 3.5), ("falling", -2.5)):
            assert (r[d].status[:300] == SWITCHED).mean() > 0.9
            assert np.median(np.abs(r[d].bias[:300][r[d].status[:300] == SWITCHED] - true)) < 0.5
            assert (r[d].status[300:400] == SWITCHED).mean() <= 0.05
            assert (r[d].status[400:] == slight).mean() > 0.9, (floor, d)
