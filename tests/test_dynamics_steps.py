"""The pure steps of the dynamics stage on small arrays: pixels, densities, resamples, loops and
the hysteresis table, the store layout and the sweep's per-frame statistics."""

from collections import namedtuple

import numpy as np
import pytest
import xarray as xr

from ferrolens import store
from ferrolens.config import section
from ferrolens.dynamics.bootstrap import (
    block_multiplicities,
    frame_atoms,
    replicate_weights,
    resample_kdes,
)
from ferrolens.dynamics.core import as_stimulus, check_frames
from ferrolens.dynamics.densities import bandwidths, frame_densities, variable_grid
from ferrolens.dynamics.kde import KDEPlan, kde_frames, linear_grid
from ferrolens.dynamics.layout import (
    Factorisation,
    circular_stats,
    frame_stats,
    linear_stats,
    weight_intervals,
)
from ferrolens.dynamics.nmf import NMFResult
from ferrolens.dynamics.pixels import pixel_blocks, select_from_maps, structure_mask
from ferrolens.dynamics.table import (
    describe,
    loop_specs,
    loop_table,
    stimulus_sweep,
    verdict,
)
from ferrolens.errors import InputError
from ferrolens.stimulus import Stimulus


# --- pixels ---------------------------------------------------------------------------------
def test_pixel_blocks_number_square_blocks_row_by_row():
    # 5 columns, blocks of 2: three blocks per row of blocks (the last one narrow)
    where = [np.array([0, 4, 5, 10, 14]), np.array([13])]
    blocks = pixel_blocks(where, (3, 5), 2)
    assert blocks[0].tolist() == [0, 2, 0, 3, 5]
    assert blocks[1].tolist() == [4]  # y 2, x 3


def test_select_from_maps_drops_a_pixel_not_finite_in_any_variable_and_keeps_structure_only():
    block = np.arange(2 * 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 2)  # frame, y, x, variable
    block[0, 0, 1, 1] = np.nan  # variable b missing at (0, 1) in frame 0: the pixel goes for both
    cfg = {"pixels": "all", "subsample_size": 1}
    values, where = select_from_maps(block, ["a", "b"], cfg, np.random.default_rng(0))
    assert [w.tolist() for w in where] == [[0, 2, 3], [0, 1, 2, 3]]
    assert values["a"][0].tolist() == [0, 4, 6]
    assert values["b"][1].tolist() == [9, 11, 13, 15]
    structure = np.zeros((2, 2, 2), bool)
    structure[:, 1, :] = True
    values, where = select_from_maps(block, ["a", "b"], cfg, np.random.default_rng(0), structure)
    assert [w.tolist() for w in where] == [[2, 3], [2, 3]]


def test_select_from_maps_subsamples_sorted_pixels_per_frame():
    block = np.zeros((3, 4, 4, 1))
    cfg = {"pixels": "subsample", "subsample_size": 5}
    values, where = select_from_maps(block, ["a"], cfg, np.random.default_rng(1))
    assert all(w.size == 5 and np.all(np.diff(w) > 0) for w in where)
    assert [v.size for v in values["a"]] == [5, 5, 5]


def _maps(n_frames, ny, nx, y0=0, x0=0):
    return xr.DataArray(
        np.zeros((n_frames, ny, nx, 1)),
        dims=(store.FRAME, store.Y, store.X, store.LATENT),
        coords={store.Y: np.arange(y0, y0 + ny), store.X: np.arange(x0, x0 + nx)},
    )


def test_structure_mask_aligns_a_cropped_latent_map_by_pixel_coordinates():
    label = xr.DataArray(
        np.arange(2 * 4 * 5).reshape(2, 4, 5) % 3,
        dims=(store.FRAME, store.Y, store.X),
        coords={store.Y: np.arange(4), store.X: np.arange(5)},
    )
    mask = structure_mask(label, _maps(2, 2, 3, y0=1, x0=2), 1, "seg.zarr")
    assert mask.shape == (2, 2, 3)
    np.testing.assert_array_equal(mask, label.values[:, 1:3, 2:5] == 1)
    with pytest.raises(InputError, match="3 frames"):
        structure_mask(label.isel({store.FRAME: [0, 1, 1]}), _maps(2, 4, 5), 1, "seg.zarr")
    with pytest.raises(InputError, match="do not cover"):
        structure_mask(label, _maps(2, 2, 3, y0=3), 1, "seg.zarr")


# --- densities --------------------------------------------------------------------------------
def test_bandwidths_per_frame_fall_back_on_the_shared_median_where_a_frame_has_no_spread():
    cfg = {"bandwidth": "scott", "bandwidth_scope": "per_frame"}
    rng = np.random.default_rng(0)
    frames = [rng.normal(0, 1, 200), np.full(50, 3.0), rng.normal(0, 2, 200)]
    h = bandwidths("z1", frames, cfg, None)
    assert h[2] > 1.5 * h[0] > 0
    assert h[1] == pytest.approx(np.median([h[0], h[2]]))
    shared = bandwidths("z1", frames, {**cfg, "bandwidth_scope": "shared"}, None)
    assert np.all(shared == h[1])
    with pytest.raises(InputError, match="no spread"):
        bandwidths("z1", [np.ones(5)], cfg, None)


def test_variable_grid_fixed_range_circular_angle_and_a_widened_degenerate_range():
    cfg = section(
        "dynamics",
        {
            "variables": ["angle", "z1"],
            "bandwidth": "fixed",
            "fixed_bandwidth": {"z1": 0.5, "angle": 0.1},
            "ranges": {"z1": [-1.0, 3.0]},
            "grid_points": 9,
            "angle_period": 2.5,
        },
    )
    grid, h = variable_grid("z1", [np.zeros(3), np.ones(3)], cfg)
    assert h.tolist() == [0.5, 0.5]
    assert (grid.values[0], grid.values[-1], grid.size) == (-1.0, 3.0, 9)
    grid, _ = variable_grid("angle", [np.zeros(3)], cfg)
    assert grid.circular and grid.period == pytest.approx(2.5)
    with pytest.raises(ValueError, match="not resolved"):  # the entry functions resolve it; a step does not guess
        variable_grid("angle", [np.zeros(3)], {**cfg, "angle_period": None})
    # every value equal: the quantile range is a point, widened by one bandwidth each side
    cfg = section(
        "dynamics",
        {
            "variables": ["z2"],
            "bandwidth": "fixed",
            "fixed_bandwidth": {"z2": 0.25},
            "range_padding": 0.0,
            "grid_points": 9,
        },
    )
    grid, _ = variable_grid("z2", [np.full(4, 2.0)], cfg)
    assert (grid.values[0], grid.values[-1]) == pytest.approx((1.75, 2.25))


# --- resamples --------------------------------------------------------------------------------
def test_block_multiplicities_renumber_blocks_and_draw_as_many_as_there_are():
    blocks, mult = block_multiplicities([np.array([5, 7, 7]), np.array([9, 5])], 4, np.random.default_rng(0))
    assert [b.tolist() for b in blocks] == [[0, 1, 1], [2, 0]]
    assert mult.shape == (4, 3) and np.all(mult.sum(axis=1) == 3)


def test_frame_atoms_plus_correction_give_the_exact_binning():
    grid = linear_grid(0.0, 1.0, 11)
    plan = KDEPlan(grid, 0.05, 0.05)
    values = np.array([0.123, 0.5, 0.77, 0.771, 5.0])  # the last one outside: the spare atom
    atoms, correction = frame_atoms(plan, values)
    assert atoms[-1] == plan.n_atoms
    k, t, _ = plan.positions(values)
    ones = np.bincount(atoms, minlength=plan.n_atoms + 1)[None, :-1].astype(float)
    np.testing.assert_allclose(plan.bin_atoms(ones) + correction, plan.bin(k, t, 0, 1), atol=1e-12)


def test_resamples_of_identical_values_reproduce_the_point_estimate():
    frames = {"z1": [np.full(6, 0.4), np.full(4, 0.6)]}
    grid = linear_grid(0.0, 1.0, 21)
    h = np.array([0.1, 0.1])
    point = kde_frames(frames["z1"], grid, h)
    for blocks in (None, [np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 2, 2])]):
        boot = resample_kdes(frames, {"z1": grid}, {"z1": h}, 5, np.random.default_rng(3), blocks)["z1"]
        assert boot.shape == (5, 2, 21)
        np.testing.assert_allclose(boot, np.broadcast_to(point, boot.shape), atol=1e-12)


def test_replicate_weights_projected_recover_the_mixture():
    H = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    point = NMFResult(H, np.zeros((2, 2)), 0.0, 1, True)
    W = np.array([[[0.2, 0.8], [0.6, 0.4]]])  # (B=1, F=2, C=2)
    boot = {"z1": W @ H}
    cfg = {"nmf_resample": "project", "nmf_max_iter": 10, "nmf_tol": 1e-4}
    out = replicate_weights(boot, {"z1": point}, {"z1": 1.0}, cfg)
    np.testing.assert_allclose(out["z1"], W, atol=1e-12)


# --- stimulus, loops and the table ---------------------------------------------------------
def test_as_stimulus_prefers_bias_then_a_moving_time_then_the_frame_index():
    assert as_stimulus(None, np.array([0.0, 1.0]), np.array([0.0, 1.0]), 2).name == "bias"
    assert as_stimulus(None, None, np.array([0.0, 2.0]), 2).units == "s"
    still = as_stimulus(None, None, np.array([1.0, 1.0]), 2)
    assert still.name == "frame" and still.values.tolist() == [0.0, 1.0]


def test_check_frames_wants_the_same_pixels_for_every_variable():
    cfg = section("dynamics", {"n_components": 1})
    counts = check_frames({"a": [np.ones(2), np.ones(3)], "b": [np.ones(2), np.ones(3)]}, cfg, None)
    assert counts.tolist() == [2, 3]
    with pytest.raises(ValueError, match="same number"):
        check_frames({"a": [np.ones(2)], "b": [np.ones(3)]}, cfg, None)
    with pytest.raises(ValueError, match="one block index"):
        check_frames({"a": [np.ones(2)]}, cfg, [np.zeros(1)])
    with pytest.raises(InputError, match="no pixels"):
        check_frames({"a": [np.ones(0)]}, cfg, None)


def test_a_frame_index_stimulus_has_no_loop_and_says_the_movie_has_no_bias():
    cfg = section("dynamics", {})
    stim = Stimulus("frame", np.arange(10.0), "")
    assert stimulus_sweep(stim, cfg, has_bias=False).note.endswith("(the movie has no bias)")
    assert not stimulus_sweep(stim, cfg, has_bias=True).note.endswith("(the movie has no bias)")


def test_loop_specs_pool_the_cycles_and_give_each_its_own_row_when_several():
    up, down = np.linspace(-1, 1, 9), np.linspace(1, -1, 9)[1:-1]
    bias = np.concatenate([up, down, up, down, [-1.0]])
    sweep = stimulus_sweep(Stimulus("bias", bias, "V"), section("dynamics", {"virgin_branch": "none"}), True)
    specs = loop_specs(sweep, section("dynamics", {"bias_points": 11, "time_block": 2}))
    assert [name for name, _ in specs] == ["all", "1", "2"]
    assert specs[0][1].cycles == (0, 1)


def _row(**kw):
    base = {
        "cycle": "all",
        "loop_area": 0.3,
        "loop_area_ci_low": 0.1,
        "loop_area_ci_high": 0.5,
        "p_value": 0.01,
        "p_adjusted": 0.02,
        "alpha": 0.05,
        "significant": True,
        "p_floor": 0.001,
        "detectable_area": 0.2,
        "note": "",
    }
    base.update(kw)
    return namedtuple("Row", base)(**base)


def test_verdict_words():
    assert verdict(_row(), 1).startswith("significant loop (falling above rising): area 0.3 [0.1, 0.5]")
    assert "rising above falling" in verdict(_row(loop_area=-0.3, loop_area_ci_low=-0.5, loop_area_ci_high=-0.1), 1)
    assert "no loop larger than 0.2" in verdict(_row(p_value=0.5, p_adjusted=0.5, significant=False), 1)
    assert "holds 0" in verdict(_row(loop_area_ci_low=-0.1, significant=False), 1)
    assert "not testable" in verdict(_row(p_value=np.nan), 1)
    assert verdict(_row(cycle="2"), 1).startswith("cycle 2:")
    assert verdict(_row(cycle="none", note="Never turns back."), 1) == "no loop: never turns back."
    floor = verdict(_row(p_value=0.5, p_adjusted=0.5, significant=False, p_floor=0.25), 2)
    assert "p cannot go below 0.25" in floor


def test_loop_table_adjusts_only_the_pooled_rows_and_calls_a_loop_only_clear_of_zero():
    def row(cycle, p, lo):
        r = {
            c: 0.0
            for c in (
                "window",
                "variable",
                "component",
                "stimulus",
                "stimulus_units",
                "range_low",
                "range_high",
                "virgin_frames",
                "n_cycles",
                "drift_degree",
                "noise_rho",
                "reference_rho",
                "time_block",
                "n_resamples",
                "loop_area_raw",
                "detectable_area",
                "ci_level",
                "note",
            )
        }
        r.update({"cycle": cycle, "alpha": 0.05, "p_value": p, "p_floor": 1e-4, "note": ""})
        for m in ("loop_area", "max_difference", "max_difference_at", "rising_coercive", "falling_coercive"):
            r.update({m: 1.0, f"{m}_ci_low": lo, f"{m}_ci_high": 2.0})
        return r

    table = loop_table([row("all", 0.01, 0.5), row("all", 0.02, -0.5), row("1", 0.001, 0.5)], alpha=0.05)
    np.testing.assert_allclose(table["p_adjusted"].to_numpy()[:2], [0.02, 0.02])
    assert np.isnan(table["p_adjusted"].iloc[2])
    assert table["significant"].tolist() == [True, False, False]
    assert list(table.columns[:9]) == [
        "window",
        "variable",
        "component",
        "cycle",
        "stimulus",
        "stimulus_units",
        "loop_area",
        "loop_area_ci_low",
        "loop_area_ci_high",
    ]
    assert describe("detectable_area").startswith("smallest |loop area|")
    assert describe("max_difference_ci_high") == "high end of the interval of max_difference (level ci_level)"


# --- layout and the sweep's statistics ---------------------------------------------------------
def test_weight_intervals_are_quantiles_of_the_replicates_and_nan_without():
    reps = np.arange(5.0)[:, None, None] * np.ones((5, 1, 2))  # (B, F=1, C=2)
    nmf = Factorisation({"a": None}, {"a": reps})
    weights = np.zeros((1, 2, 1))
    lo, hi = weight_intervals(nmf, weights, {"bootstrap": 5, "ci_level": 0.5})
    assert lo.shape == hi.shape == (1, 2, 1)
    np.testing.assert_allclose(lo.ravel(), [1.0, 1.0])
    np.testing.assert_allclose(hi.ravel(), [3.0, 3.0])
    lo, hi = weight_intervals(Factorisation({"a": None}, {"a": None}), weights, {"bootstrap": 0, "ci_level": 0.5})
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_circular_stats_wrap_across_the_period_and_linear_stats_ignore_nan():
    period = np.pi
    mu, sd = circular_stats(np.array([[0.1, period - 0.1, np.nan], [0.5, 0.5, 0.5]]), period)
    assert mu[0] == pytest.approx(0.0, abs=1e-12)  # not π/2, the linear mean
    assert mu[1] == pytest.approx(0.5) and sd[1] == pytest.approx(0.0, abs=1e-6)
    assert 0.09 < sd[0] < 0.11
    mu, sd = linear_stats(np.array([[1.0, 3.0, np.nan]]))
    assert (mu[0], sd[0]) == (2.0, 1.0)


def test_frame_stats_lay_out_one_column_per_latent():
    ds = frame_stats(
        ["angle", "z1"], [(np.array([0.1, 0.2]), np.array([0.0, 0.1])), (np.array([1.0, 2.0]), np.array([0.5, 0.6]))]
    )
    assert ds["latent_mean"].dims == (store.FRAME, store.LATENT)
    assert ds["latent_mean"].sel({store.LATENT: "z1"}).values.tolist() == [1.0, 2.0]
    assert ds["latent_sd"].sel({store.LATENT: "angle"}).values.tolist() == [0.0, 0.1]


def test_frame_densities_stack_masses_side_by_side():
    cfg = section(
        "dynamics",
        {
            "variables": ["z1", "z2"],
            "bandwidth": "fixed",
            "fixed_bandwidth": {"z1": 0.2, "z2": 0.2},
            "ranges": {"z1": [-2.0, 2.0], "z2": [-4.0, 4.0]},
            "grid_points": 41,
        },
    )
    rng = np.random.default_rng(0)
    dens = frame_densities({"z1": [rng.normal(0, 0.5, 300)], "z2": [rng.normal(0, 0.5, 300)]}, cfg)
    stacked = dens.stack(dens.kdes)
    assert stacked.shape == (1, 82)
    # each half holds the mass of one variable on its own grid step
    assert stacked[0, :41].sum() == pytest.approx(1.0, abs=0.01)
    assert stacked[0, 41:].sum() == pytest.approx(1.0, abs=0.01)
