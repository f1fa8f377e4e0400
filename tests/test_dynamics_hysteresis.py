"""Bias branches, loop metrics, and planted hysteresis recovered through KDE → NMF → bootstrap."""

import numpy as np
import pytest

from ferrolens.bias import triangular_waveform
from ferrolens.dynamics import dynamics_core
from ferrolens.dynamics.hysteresis import (
    FALLING,
    RISING,
    BranchOperator,
    hysteresis_summary,
    loop_metrics,
    split_branches,
)
from ferrolens.errors import InputError


def seg_tuples(br):
    return [(s.start, s.stop, s.direction) for s in br.segments]


# --- branches ------------------------------------------------------------------------
def test_one_triangular_cycle():
    bias = triangular_waveform(40, 10.0, cycles=1.0, phase=0.0)  # 0 → +10 → -10 → 0
    br = split_branches(bias)
    assert seg_tuples(br) == [(0, 10, RISING), (10, 30, FALLING), (30, 39, RISING)]
    assert br.n_reversals == 2
    assert (br.direction[:11] == RISING).all() and (br.direction[11:31] == FALLING).all()
    assert (br.direction[31:] == RISING).all()
    # the rising branch has a gap between its last frame (-1 V) and its first (0 V): bridged,
    # so a curve linear in bias comes back exactly on the whole common range
    op = BranchOperator.build(bias, br, 81)
    assert op.bias_values[0] == -10 and op.bias_values[-1] == 10
    r, f = op.branches_of(3.0 * bias + 1.0)
    np.testing.assert_allclose(r, 3.0 * op.bias_values + 1.0, atol=1e-12)
    np.testing.assert_allclose(f, 3.0 * op.bias_values + 1.0, atol=1e-12)


def test_two_triangular_cycles():
    bias = triangular_waveform(80, 5.0, cycles=2.0, phase=0.0)
    br = split_branches(bias)
    assert seg_tuples(br) == [(0, 10, RISING), (10, 30, FALLING), (30, 50, RISING), (50, 70, FALLING),
                              (70, 79, RISING)]
    assert np.all(np.diff(bias)[br.direction[1:] == RISING] > 0)
    assert np.all(np.diff(bias)[br.direction[1:] == FALLING] < 0)


def test_bias_starting_at_a_peak():
    bias = triangular_waveform(40, 10.0, cycles=1.0, phase=0.25)  # +10 → -10 → +10
    assert bias[0] == pytest.approx(10.0)
    br = split_branches(bias)
    assert seg_tuples(br) == [(0, 20, FALLING), (20, 39, RISING)]
    assert br.direction[0] == FALLING


def test_plateaus_noise_and_degenerate_sweeps():
    # a plateau at an extreme belongs to the segment that reaches it
    bias = np.r_[0, 1, 2, 2, 2, 1, 0, -1, -1, 0]
    assert seg_tuples(split_branches(bias, 0.0)) == [(0, 4, RISING), (4, 8, FALLING), (8, 9, RISING)]
    # small noise on a measured bias does not create branches; tolerance 0 would
    rng = np.random.default_rng(0)
    noisy = triangular_waveform(60, 1.0) + rng.normal(0, 0.03, 60)
    assert len(split_branches(noisy, 0.05).segments) == 3
    assert len(split_branches(noisy, 0.0).segments) > 3
    # constant and monotone sweeps: no loop, metrics NaN with a note
    flat = split_branches(np.zeros(10))
    assert flat.segments == () and (flat.direction == 0).all()
    ramp = np.linspace(0, 1, 10)
    op = BranchOperator.build(ramp, split_branches(ramp))
    assert "only one branch" in op.note
    assert np.isnan(loop_metrics(ramp, op)["loop_area"]).all()
    with pytest.raises(InputError):
        split_branches(np.array([0.0, np.nan]))


# --- metrics on analytic loops ----------------------------------------------------------
def test_metrics_of_a_known_loop():
    """Lens-shaped loop y = V ∓ a(1 - V²) (rising / falling) over V ∈ [-1, 1], branches meeting at
    the turning points: area 8a/3, largest difference 2a at 0 V, midpoint level 0 crossed at
    V = ±(sqrt(1 + 4a²) - 1) / 2a."""
    a = 0.2
    bias = np.r_[np.linspace(1, -1, 101), np.linspace(-1, 1, 101)[1:]]  # starts at a peak
    br = split_branches(bias)
    assert seg_tuples(br) == [(0, 100, FALLING), (100, 200, RISING)]
    y = bias + np.where(br.direction == RISING, -1, 1) * a * (1 - bias**2)
    op = BranchOperator.build(bias, br, 201)
    m = {k: v[0] for k, v in loop_metrics(y, op).items()}
    assert m["loop_area"] == pytest.approx(8 * a / 3, rel=1e-3)
    assert m["max_difference"] == pytest.approx(2 * a, rel=1e-9)
    assert m["max_difference_bias"] == pytest.approx(0.0, abs=1e-9)
    assert m["midpoint_level"] == pytest.approx(0.0, abs=1e-9)
    coercive = (np.sqrt(1 + 4 * a**2) - 1) / (2 * a)
    assert m["rising_midpoint_bias"] == pytest.approx(coercive, abs=1e-4)
    assert m["falling_midpoint_bias"] == pytest.approx(-coercive, abs=1e-4)
    # the opposite sense of traversal flips the sign of the area
    assert loop_metrics(-y, op)["loop_area"][0] == pytest.approx(-m["loop_area"])
    # two cycles of the same loop average to the same metrics
    bias2 = np.r_[bias, bias[1:]]
    y2 = np.r_[y, y[1:]]
    op2 = BranchOperator.build(bias2, split_branches(bias2), 201)
    assert op2.n_reversals == 3
    assert loop_metrics(y2, op2)["loop_area"][0] == pytest.approx(m["loop_area"], rel=1e-9)


def test_summary_cis_from_replicates():
    bias = triangular_waveform(40, 1.0)
    op = BranchOperator.build(bias, split_branches(bias))
    rng = np.random.default_rng(1)
    curve = np.tanh(bias / 0.3)
    reps = curve + rng.normal(0, 0.02, (300, 40))
    s = hysteresis_summary(curve, reps, op, 0.9)
    assert s["loop_area_ci_low"] < 0 < s["loop_area_ci_high"]  # no hysteresis: CI holds 0
    assert s["loop_area"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(hysteresis_summary(curve, None, op)["loop_area_ci_low"])


# --- planted two-component KDE(L, t) with hysteretic weights ------------------------------
def planted_frames(fraction, n_pixels, rng):
    """Per-frame values of angle (lines) and z1 from two well separated states mixed with
    exactly round(fraction·n) pixels in state A."""
    frames = {"angle": [], "z1": []}
    for w in fraction:
        na = int(round(w * n_pixels))
        z = np.r_[rng.normal(-2.0, 0.3, na), rng.normal(2.0, 0.3, n_pixels - na)]
        ang = np.r_[rng.normal(0.4, 0.1, na), rng.normal(1.5, 0.1, n_pixels - na)]  # B straddles the π/2 wrap
        perm = rng.permutation(n_pixels)
        frames["z1"].append(z[perm].astype(np.float32))
        frames["angle"].append(ang[perm].astype(np.float32))
    return frames


CFG = {"variables": ["angle", "z1"], "grid_points": 128, "bootstrap": 100}


def test_nmf_recovers_planted_hysteresis_within_ci():
    rng = np.random.default_rng(2)
    bias = triangular_waveform(40, 1.0)
    br = split_branches(bias)
    # saturating loop with coercive bias ±0.3 V: pure states at the ends make NMF identifiable
    fraction = np.clip(0.5 + 0.75 * np.tanh((bias - 0.3 * br.direction) / 0.2), 0.0, 1.0)
    frames = planted_frames(fraction, 1500, rng)
    ds, table = dynamics_core(frames, bias, CFG, seed=0)

    op = BranchOperator.build(bias, br, CFG.get("bias_points", 101))
    planted = loop_metrics(fraction, op)
    # component order is by the frame of peak weight: state B (fraction 0 at frame 0) comes first
    z = ds["grid_value"].sel(variable="z1").values
    comps = ds["components"].sel(variable="z1").values
    assert z[np.argmax(comps[0])] == pytest.approx(2.0, abs=0.1)  # the planted state densities
    assert z[np.argmax(comps[1])] == pytest.approx(-2.0, abs=0.1)
    a_comp = 1
    for variable in ("angle", "z1", "stacked"):
        w = ds["weights"].sel(variable_nmf=variable).values
        np.testing.assert_allclose(w[a_comp], fraction, atol=0.04)
        np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=0.03)
        row = table[(table.variable == variable) & (table.component == a_comp)].iloc[0]
        assert row.loop_area_ci_low <= planted["loop_area"][0] <= row.loop_area_ci_high
        assert row.loop_area_excludes_zero
        assert row.rising_midpoint_bias == pytest.approx(0.3, abs=0.06)
        assert row.falling_midpoint_bias == pytest.approx(-0.3, abs=0.06)
        # state B's weight is the mirror image: a negative area
        other = table[(table.variable == variable) & (table.component == 1 - a_comp)].iloc[0]
        assert other.loop_area_ci_high < 0
    assert ds["reconstruction_error"].max() < 0.1


def test_non_hysteretic_curve_gives_ci_containing_zero():
    """Frames at equal bias hold the same pixels on both branches: no loop at all, so the
    estimate is 0 and the bootstrap CI (pixels resampled independently per frame) holds 0."""
    rng = np.random.default_rng(3)
    bias = triangular_waveform(40, 1.0)
    fraction = np.clip(0.5 + 0.75 * np.tanh(bias / 0.2), 0.0, 1.0)
    levels = np.round(bias, 9)
    unique, first = np.unique(levels, return_index=True)
    per_level = planted_frames(fraction[first], 1500, rng)
    where = {lv: i for i, lv in enumerate(unique)}
    frames = {v: [per_level[v][where[lv]] for lv in levels] for v in per_level}
    _, table = dynamics_core(frames, bias, CFG, seed=0)
    np.testing.assert_allclose(table.loop_area, 0.0, atol=1e-9)
    assert (table.loop_area_ci_low < 0).all() and (table.loop_area_ci_high > 0).all()
    assert not table.loop_area_excludes_zero.any()
