"""Fast per-frame KDE against scipy.stats.gaussian_kde (linear and circular)."""

import numpy as np
import pytest
from scipy import stats

from ferrolens.dynamics.kde import (
    KDEPlan,
    circular_grid,
    circular_sd,
    kde_frames,
    linear_grid,
    rule_bandwidth,
    wrap,
)


def scipy_kde(x, h, grid_values):
    """scipy's Gaussian KDE with kernel standard deviation h."""
    return stats.gaussian_kde(x, bw_method=h / np.std(x, ddof=1))(grid_values)


def scipy_circular(x, h, period, grid_values):
    """scipy on wrapped copies x - P, x, x + P (three times the values: scale back)."""
    x = wrap(x, period)
    copies = np.concatenate([x - period, x, x + period])
    return 3.0 * scipy_kde(copies, h, grid_values)


@pytest.mark.parametrize("method", ["scott", "silverman"])
def test_linear_matches_scipy_rule(method):
    rng = np.random.default_rng(0)
    frames = [
        rng.normal(0, 1, 800),
        np.r_[rng.normal(-1, 0.3, 500), rng.gamma(2.0, 0.5, 300) + 1.0],
        rng.uniform(-2, 2, 300),
    ]
    grid = linear_grid(-5, 6, 300)
    h = np.array([rule_bandwidth(x, method) for x in frames])
    dens = kde_frames(frames, grid, h)
    for x, hf, d in zip(frames, h, dens, strict=True):
        ref = stats.gaussian_kde(x, bw_method=method)
        assert hf == pytest.approx(np.sqrt(ref.covariance[0, 0]), rel=1e-12)  # same rule as scipy
        want = ref(grid.values)
        assert np.abs(d - want).max() < 1e-3 * want.max()


def test_linear_fixed_bandwidth_small_and_large():
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 0.7, 1000)
    grid = linear_grid(-4, 4, 64)  # coarse grid: the internal oversampling must keep accuracy
    for h in (0.02, 0.1, 1.5):
        d = kde_frames([x], grid, h)[0]
        want = scipy_kde(x, h, grid.values)
        assert np.abs(d - want).max() < 1e-3 * want.max(), h


def test_circular_matches_scipy_on_wrapped_copies():
    rng = np.random.default_rng(2)
    period = np.pi
    # mass at both ends of the period and in the middle, values given outside [-π/2, π/2) too
    x = np.r_[rng.normal(1.45, 0.15, 400), rng.normal(-0.2, 0.3, 300), rng.normal(4.4, 0.2, 100)]
    grid = circular_grid(period, 180)
    for h in (0.05, rule_bandwidth(x, "scott", period)):
        d = kde_frames([x], grid, h)[0]
        want = scipy_circular(x, h, period, grid.values)
        assert np.abs(d - want).max() < 1e-3 * want.max()
        assert d.sum() * grid.step == pytest.approx(1.0, abs=1e-9)  # a circular density is complete


def test_lines_mass_at_both_ends_is_one_peak():
    """Lines at +π/2 and -π/2 are the same orientation: one peak across the wrap."""
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(np.pi / 2 - 0.05, 0.03, 500), rng.normal(-np.pi / 2 + 0.05, 0.03, 500)]
    grid = circular_grid(np.pi, 256)
    d = kde_frames([x], grid, 0.04)[0]
    # local maxima on the circle (neighbours wrap around)
    peaks = np.flatnonzero((d > np.roll(d, 1)) & (d >= np.roll(d, -1)) & (d > 1e-3 * d.max()))
    assert peaks.size == 1
    assert abs(wrap(grid.values[peaks[0]] - np.pi / 2, np.pi)) < 0.02  # circular distance to ±π/2
    # the density is continuous across the wrap: the ends of the grid are close
    assert abs(d[0] - d[-1]) < 0.05 * d.max()
    # a linear KDE of the same values would show two peaks
    lin = kde_frames([x], linear_grid(-np.pi / 2, np.pi / 2, 256), 0.04)[0]
    lin_peaks = np.flatnonzero((lin[1:-1] > lin[:-2]) & (lin[1:-1] >= lin[2:]) & (lin[1:-1] > 1e-3 * lin.max())) + 1
    assert lin_peaks.size == 2


def test_vectors_use_two_pi():
    rng = np.random.default_rng(4)
    x = rng.vonmises(3.0, 2.0, 600)  # near ±π
    grid = circular_grid(2 * np.pi, 128)
    d = kde_frames([x], grid, 0.2)[0]
    want = scipy_circular(x, 0.2, 2 * np.pi, grid.values)
    assert np.abs(d - want).max() < 1e-3 * want.max()


def test_frames_of_different_length_empty_and_nan():
    rng = np.random.default_rng(5)
    grid = linear_grid(-3, 3, 100)
    x = rng.normal(size=300)
    frames = [x, np.array([]), np.r_[x[:100], np.nan, np.inf]]
    d = kde_frames(frames, grid, 0.3)
    assert d.shape == (3, 100)
    assert np.all(d[1] == 0)
    # non-finite values are ignored, not counted
    np.testing.assert_allclose(d[2], scipy_kde(x[:100], 0.3, grid.values), atol=1e-4 * d[2].max())


def test_per_frame_bandwidths():
    rng = np.random.default_rng(6)
    frames = [rng.normal(size=400) for _ in range(3)]
    grid = linear_grid(-5, 5, 128)
    hs = np.array([0.1, 0.3, 0.6])
    d = kde_frames(frames, grid, hs)
    for x, h, row in zip(frames, hs, d, strict=True):
        want = scipy_kde(x, h, grid.values)
        assert np.abs(row - want).max() < 1e-3 * want.max()


def test_values_outside_the_grid_count_in_the_normalisation():
    x = np.r_[np.zeros(50), np.full(50, 100.0)]  # half the mass far outside the grid
    grid = linear_grid(-2, 2, 200)
    d = kde_frames([x], grid, 0.2)[0]
    assert d.sum() * grid.step == pytest.approx(0.5, abs=1e-3)


def test_circular_sd_and_rules():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.1, 5000)
    assert circular_sd(x, np.pi) == pytest.approx(np.std(x), rel=0.02)  # concentrated: ≈ linear sd
    assert circular_sd(wrap(x + np.pi / 2, np.pi), np.pi) == pytest.approx(np.std(x), rel=0.02)  # across the wrap
    assert circular_sd(rng.uniform(-np.pi / 2, np.pi / 2, 5000), np.pi) <= np.pi / np.sqrt(12) + 1e-12
    assert np.isnan(rule_bandwidth(np.array([1.0]), "scott"))
    with pytest.raises(ValueError):
        rule_bandwidth(x, "nope")


def test_plan_rejects_bad_bandwidth():
    with pytest.raises(ValueError):
        KDEPlan(linear_grid(0, 1, 10), 0.0)
    with pytest.raises(ValueError):
        linear_grid(1, 1, 10)


@pytest.mark.parametrize("circular", [False, True])
def test_atom_binning_matches_exact_weighted_binning(circular):
    """The bootstrap re-bins resampled values through atoms (bin, rounded fraction): with
    multiplicity weights it must match exact linear binning closely."""
    rng = np.random.default_rng(8)
    grid = circular_grid(np.pi, 64) if circular else linear_grid(-3, 3, 64)
    x = wrap(rng.normal(0.5, 0.6, 3000), np.pi) if circular else rng.normal(0.5, 0.6, 3000)
    h = 0.05
    plan = KDEPlan(grid, h)
    k, t, _keep = plan.positions(x)
    a = plan.atom_index(k, t)
    mult = np.bincount(rng.integers(0, k.size, k.size), minlength=k.size).astype(float)
    exact = plan.smooth(plan.bin(k, t, 0, 1, weights=mult), h)
    atoms = np.bincount(a, weights=mult, minlength=plan.n_atoms)[None]
    approx = plan.smooth(plan.bin_atoms(atoms), h)
    assert np.abs(approx - exact).max() < 5e-4 * exact.max()
    # with the frame's exact-minus-atom binning added (as the bootstrap does) it is closer still
    ones = np.bincount(a, minlength=plan.n_atoms)[None].astype(float)
    centred = plan.smooth(plan.bin_atoms(atoms) + plan.bin(k, t, 0, 1) - plan.bin_atoms(ones), h)
    assert np.abs(centred - exact).max() < 1e-4 * exact.max()
