"""Entry functions of the dynamics stage (paper Fig. 5) and their array core.

``kde_nmf``: per-pixel latent maps → per-frame KDE of each variable on one
fixed grid → NMF of every KDE(L, t) and of all of them stacked → weights
against the stimulus (bias, else temperature, time or frame index) →
hysteresis with intervals from what varies and a p-value against no loop
(:mod:`.hysteresis`). ``sweep_merge``: every window size's per-frame outputs
in one store.

Uncertainty: each resample draws square pixel blocks (``spatial_block``, at
least the rVAE window: overlapping windows are not independent) with
replacement, the same blocks in every frame (a block is a piece of the sample
followed through the movie), recomputes every KDE and refits the NMF from the
point estimate (components matched to it); the hysteresis statistics then
resample frames in time blocks within branches (whole cycles where there are
several) and test against exchanged branch labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import store
from ..errors import InputError
from ..stimulus import CANDIDATES, Stimulus
from ..stimulus import stimulus as pick_stimulus
from . import hysteresis as hy
from .config import resolve_config
from .kde import Grid, KDEPlan, circular_grid, kde_frames, linear_grid, rule_bandwidth
from .nmf import fit_nmf, nnls_weights, refit_nmf

STACKED = "stacked"
VARIABLE_NMF, DIRECTION, STIM_POINT = store.VARIABLE_NMF, store.DIRECTION, store.STIM_POINT  # dims: store's vocabulary
ANGLE = "angle"
BOOT_CHUNK = 1 << 22  # atom counts held per bootstrap pass (bounds temporaries to ~100 MB)
DEFAULT_BLOCK = 16  # spatial block (px) when the latents store does not record its window

TABLE_COLUMNS = {
    "window": "rVAE window size n (pixels), when the latents store records it",
    "variable": "the NMF: a latent variable's own KDE(L, t), or 'stacked' (all variables side by side)",
    "component": "NMF component index (ordered by the frame of peak weight)",
    "cycle": "'all': the closed loop pooled over its cycles; 1, 2 …: one cycle (rows only with several); "
             "'none': no loop",
    "stimulus": "what the weights are looped against: bias, temperature, time or frame",
    "stimulus_units": "units of the stimulus (V for bias)",
    "loop_area": "signed loop area ∫(falling − rising) d(stimulus) over the common range of the closed loop's "
                 "branches (weight·stimulus units); > 0 when the falling branch lies above the rising one. "
                 "The virgin curve is left out",
    "p_value": "test against no hysteresis: fraction of exchanges of rising/falling labels of matched time "
               "blocks (sign patterns) giving an area at least as large in magnitude",
    "p_adjusted": "p_value Holm-adjusted over the loops tested in this table (the pooled rows, cycle 'all', "
                  "one per NMF and component); empty for per-cycle rows, which describe",
    "significant": "p_adjusted < alpha and the loop-area interval excludes 0 (it also carries the resampled "
                   "pixel blocks and the refitted NMF)",
    "p_floor": "smallest p-value the matched units allow (2^(1-U)); a loop cannot be significant when "
               "p_floor ≥ alpha",
    "max_difference": "falling − rising where |falling − rising| is largest (weight)",
    "max_difference_at": "stimulus value of the largest branch difference",
    "rising_coercive": "stimulus where the rising branch crosses the level midway between its saturated values "
                       "(its values at the two ends of the sweep); empty when it does not span the sweep",
    "falling_coercive": "the same for the falling branch (scanning downwards)",
    "range_low": "low end of the common stimulus range of the branches",
    "range_high": "high end of the common stimulus range of the branches",
    "virgin_frames": "frames of the virgin curve (first quarter-cycle from the initial state), left out",
    "n_cycles": "cycles (both branches) in this row's loop: for the pooled row, those pooled",
    "n_units": "matched units (cycle × stimulus block of time_block frames per branch) of the test",
    "kappa": "widening of the null for noise correlated between neighbouring time blocks (≥ 1)",
    "n_resamples": "resamples behind the intervals (spatial pixel blocks with NMF refit; time blocks)",
    "ci_level": "confidence level of the *_ci_low / *_ci_high intervals",
    "alpha": "significance level applied to p_adjusted",
    "verdict": "the result in words",
    "note": "what is left out and why",
}


# --- reading the inputs -----------------------------------------------------------
def _structure_mask(seg_path: str, lat: xr.Dataset, structure_class: int) -> np.ndarray:
    """(frame, y, x) bool: pixels the segmentation labels ``structure_class``, aligned to the latents."""
    seg = store.open_store(seg_path, "segmentation")
    label = seg["label"]
    mean = lat["mean"]
    if label.sizes[store.FRAME] != mean.sizes[store.FRAME]:
        raise InputError(seg_path, f"has {label.sizes[store.FRAME]} frames, the latents {mean.sizes[store.FRAME]}",
                         "the segmentation of the same movie")
    same_shape = (label.sizes[store.Y], label.sizes[store.X]) == (mean.sizes[store.Y], mean.sizes[store.X])
    if not same_shape:
        if all(d in seg.coords and d in lat.coords for d in (store.Y, store.X)):
            try:  # per-pixel maps may cover a crop of the frame: align by pixel coordinates
                label = label.sel({store.Y: lat[store.Y].values, store.X: lat[store.X].values})
            except KeyError as exc:
                raise InputError(seg_path, "pixel coordinates y/x do not cover those of the latent maps",
                                 "a segmentation covering every latent-map pixel") from exc
        else:
            raise InputError(seg_path, f"frames are {label.sizes[store.Y]}×{label.sizes[store.X]}, the latent maps "
                             f"{mean.sizes[store.Y]}×{mean.sizes[store.X]}", "the same frame size")
    return label.transpose(store.FRAME, store.Y, store.X).values == structure_class


def select_pixels(lat: xr.Dataset, variables: list[str], cfg: dict, rng: np.random.Generator,
                  structure: np.ndarray | None = None) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Per-frame values of each variable at the selected pixels, and those pixels' flat indices.

    Pixels: those finite in every variable, and (``pixels: structure``) where
    ``structure`` is True; ``pixels: subsample`` then keeps a seeded random
    ``subsample_size`` of them per frame. The same pixels serve every variable,
    so a resample draws pixels (blocks) jointly.

    Returns ``({variable: [values of frame 0 (n_0,), …]}`` (float32), ``[flat index y·X + x of frame 0, …]``).
    """
    mean = lat["mean"]
    # one read of the maps: the rVAE store chunks all latents of a frame together
    block = mean.sel({store.LATENT: variables}).transpose(store.FRAME, store.Y, store.X, store.LATENT).values
    maps = {v: block[..., i] for i, v in enumerate(variables)}
    n_frames = mean.sizes[store.FRAME]
    ok = np.isfinite(block).all(axis=-1)
    if structure is not None:
        ok &= structure
    out: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    where: list[np.ndarray] = []
    for f in range(n_frames):
        idx = np.flatnonzero(ok[f])
        if cfg["pixels"] == "subsample" and idx.size > cfg["subsample_size"]:
            idx = np.sort(rng.choice(idx, size=cfg["subsample_size"], replace=False))
        where.append(idx)
        for v in variables:
            out[v].append(maps[v][f].ravel()[idx])
    return out, where


def select_values(lat: xr.Dataset, variables: list[str], cfg: dict, rng: np.random.Generator,
                  structure: np.ndarray | None = None) -> dict[str, list[np.ndarray]]:
    """:func:`select_pixels` without the pixel indices."""
    return select_pixels(lat, variables, cfg, rng, structure)[0]


def pixel_blocks(where: list[np.ndarray], shape: tuple[int, int], size: int) -> list[np.ndarray]:
    """Square block (``size`` px) of each selected pixel, numbered alike in every frame."""
    ny, nx = shape
    per_row = -(-nx // size)
    return [(idx // nx // size) * per_row + (idx % nx) // size for idx in where]


# --- the array core ---------------------------------------------------------------
def _check_n_components(cfg: dict, n_frames: int) -> None:
    limit = min(n_frames, cfg["grid_points"])
    if cfg["n_components"] > limit:
        raise InputError("config dynamics.n_components", f"value {cfg['n_components']}",
                         f"at most min(frames, grid_points) = {limit}")


def _variable_grid(name: str, frames: list[np.ndarray], cfg: dict) -> tuple[Grid, np.ndarray]:
    """Grid and per-frame bandwidths (F,) of one variable."""
    period = cfg["angle_period"] if name == ANGLE else None
    if cfg["bandwidth"] == "fixed":
        h = np.full(len(frames), float(cfg["fixed_bandwidth"][name]))
    else:
        per_frame = np.array([rule_bandwidth(v, cfg["bandwidth"], period) for v in frames])
        good = per_frame[np.isfinite(per_frame) & (per_frame > 0)]
        if good.size == 0:
            raise InputError(f"latents variable {name}", "values have no spread in any frame (or < 2 values)",
                             "at least two distinct values in some frame")
        shared = float(np.median(good))
        if cfg["bandwidth_scope"] == "shared":
            h = np.full(len(frames), shared)
        else:
            h = np.where(np.isfinite(per_frame) & (per_frame > 0), per_frame, shared)
    if period:
        return circular_grid(period, cfg["grid_points"]), h
    if name in cfg["ranges"]:
        lo, hi = cfg["ranges"][name]
    else:
        pooled = np.concatenate(frames)
        if pooled.size == 0:
            raise InputError(f"latents variable {name}", "no finite values at the selected pixels",
                             "some pixels with finite latent values")
        lo, hi = np.quantile(pooled, cfg["range_quantiles"])
        pad = cfg["range_padding"] * float(np.median(h))
        lo, hi = lo - pad, hi + pad
    if not hi > lo:
        lo, hi = lo - float(np.median(h)), hi + float(np.median(h))
    return linear_grid(lo, hi, cfg["grid_points"]), h


def _resample_kdes(frames: dict[str, list[np.ndarray]], grids: dict[str, Grid], bws: dict[str, np.ndarray],
                   n_boot: int, rng: np.random.Generator, blocks: list[np.ndarray] | None = None
                   ) -> dict[str, np.ndarray]:
    """KDEs (B, F, G) of every variable from resampled pixels.

    With ``blocks`` (per frame, the spatial block of each value): every replicate
    draws the blocks with replacement, the same draw in every frame, and a value
    counts as often as its block was drawn. Without: pixels are drawn with
    replacement within each frame (independent values, e.g. synthetic data).
    One draw serves all variables of a frame (a pixel carries all its latents).
    Each variable's binned counts are one weighted ``bincount`` over its
    precomputed atoms (:meth:`KDEPlan.atom_index`), plus the frame's
    exact-minus-atom binning (scaled to the replicate's weight) so that
    replicates are centred on the exact estimate.
    """
    names = list(frames)
    n_frames = len(frames[names[0]])
    out = {v: np.zeros((n_boot, n_frames, grids[v].size)) for v in names}
    plans = {v: KDEPlan(grids[v], float(bws[v].min()), float(bws[v].max())) for v in names}
    block_mult = None
    if blocks is not None:
        ids, inverse = np.unique(np.concatenate(blocks), return_inverse=True)
        # renumber to 0 … n_blocks-1, per frame
        cuts = np.cumsum([b.size for b in blocks])[:-1]
        blocks = np.split(inverse, cuts)
        nb = ids.size
        block_mult = np.stack([np.bincount(rng.integers(0, nb, nb), minlength=nb) for _ in range(n_boot)]).astype(float)
    for f in range(n_frames):
        n = frames[names[0]][f].size
        if n == 0:
            continue
        atoms, correction = {}, {}
        for v in names:
            plan = plans[v]
            k, t, keep = plan.positions(frames[v][f])  # a circular plan wraps the values itself
            a = np.full(n, plan.n_atoms, np.int64)  # dropped values go to the spare atom
            a[keep] = plan.atom_index(k, t)
            atoms[v] = a
            ones = np.bincount(a, minlength=plan.n_atoms + 1)[None, :-1].astype(float)
            correction[v] = plan.bin(k, t, 0, 1) - plan.bin_atoms(ones)
        per_pass = max(1, BOOT_CHUNK // max(plans[v].n_atoms for v in names))
        for b0 in range(0, n_boot, per_pass):
            nb_ = min(per_pass, n_boot - b0)
            counts = {v: np.empty((nb_, plans[v].n_atoms)) for v in names}
            total = np.empty(nb_)
            for r in range(nb_):
                if block_mult is not None:
                    mult = block_mult[b0 + r][blocks[f]]
                else:
                    mult = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
                total[r] = mult.sum()
                for v in names:
                    counts[v][r] = np.bincount(atoms[v], weights=mult, minlength=plans[v].n_atoms + 1)[:-1]
            for v in names:
                binned = plans[v].bin_atoms(counts[v]) + correction[v] * (total / n)[:, None]
                dens = plans[v].smooth(binned, bws[v][f])
                good = total > 0  # a frame whose blocks were all left out keeps its own estimate
                out[v][b0:b0 + nb_, f] = np.where(good[:, None], dens / np.maximum(total, 1)[:, None], np.nan)
    for v in names:  # frames without any drawn block: the point estimate stands in
        bad = np.isnan(out[v])
        if bad.any():
            point = kde_frames(frames[v], grids[v], bws[v])
            out[v] = np.where(bad, point[None], out[v])
    return out


def _as_stimulus(stimulus: Stimulus | None, bias: np.ndarray | None, time: np.ndarray | None,
                 n_frames: int) -> Stimulus:
    if stimulus is not None:
        return stimulus
    if bias is not None:
        return Stimulus("bias", np.asarray(bias, float), "V")
    if time is not None and np.ptp(np.asarray(time, float)) > 0:
        return Stimulus("time", np.asarray(time, float), "s")
    return Stimulus("frame", np.arange(n_frames, dtype=float), "")


def _chosen_stimulus(lat: xr.Dataset, choice: str, path: Any) -> Stimulus:
    """The stimulus named by ``dynamics.stimulus`` (``auto``: :func:`ferrolens.stimulus.stimulus`)."""
    if choice == "auto":
        return pick_stimulus(lat)
    if choice == "frame":
        return Stimulus("frame", np.arange(lat.sizes[store.FRAME], dtype=float), "")
    if choice not in lat.coords or not np.isfinite(np.asarray(lat[choice].values, float)).all():
        raise InputError(path, f"has no finite {choice!r} coordinate along frame",
                         "config dynamics.stimulus: auto, or a coordinate the latents store has")
    units = str(lat[choice].attrs.get("units", dict(CANDIDATES).get(choice, "")))
    return Stimulus(choice, np.asarray(lat[choice].values, float), units)


def dynamics_core(frames: dict[str, list[np.ndarray]], bias: np.ndarray | None, cfg: dict | None,
                  seed: int, time: np.ndarray | None = None, window: int | None = None,
                  blocks: list[np.ndarray] | None = None, stimulus: Stimulus | None = None
                  ) -> tuple[xr.Dataset, pd.DataFrame]:
    """KDE, NMF and hysteresis of per-frame latent values (no I/O).

    Parameters
    ----------
    frames : ``{variable: [values of frame 0, …]}``, the same pixels for every variable
        of a frame (see :func:`select_pixels`). ``angle`` is circular with period
        ``cfg['angle_period']`` (rad); other variables are linear (latent units).
    bias : (F,) bias per frame in V, or None.
    cfg : the ``dynamics:`` section (partial is fine; defaults filled).
    seed : seeds the NMF initialisation and every resample.
    time : (F,) time per frame in s, optional. window : recorded in the table.
    blocks : per frame, the spatial block of each value (:func:`pixel_blocks`); None: values
        are independent pixels (resampled within frames).
    stimulus : what the loop runs against; default bias, else time, else the frame index.

    Returns
    -------
    (dataset, table): the dynamics dataset (without store attrs; see
    :func:`kde_nmf` for its layout) and the hysteresis table, one row per
    (variable or 'stacked', component, cycle), columns :data:`TABLE_COLUMNS`.
    """
    cfg = resolve_config(cfg)
    names = list(frames)
    if not names:
        raise InputError("config dynamics.variables", "is empty", "at least one variable")
    n_frames = len(frames[names[0]])
    n_comp = cfg["n_components"]
    _check_n_components(cfg, n_frames)
    counts = np.array([v.size for v in frames[names[0]]])
    if any(len(frames[v]) != n_frames or [a.size for a in frames[v]] != counts.tolist() for v in names):
        raise ValueError("every variable needs the same number of values per frame (the same pixels)")
    if blocks is not None and [b.size for b in blocks] != counts.tolist():
        raise ValueError("blocks need one block index per value of each frame")
    if counts.sum() == 0:
        raise InputError("latents", "no pixels selected in any frame", "finite latent values at selected pixels")
    if bias is not None:
        bias = np.asarray(bias, dtype=float)
        if bias.shape != (n_frames,):
            raise InputError("bias", f"has shape {bias.shape}", f"one value per frame ({n_frames})")
    stim = _as_stimulus(stimulus, bias, time, n_frames)
    if stim.values.shape != (n_frames,) or not np.isfinite(stim.values).all():
        raise InputError(stim.name, f"has shape {stim.values.shape} or non-finite values",
                         f"one finite value per frame ({n_frames})")
    boot_seed, _, stat_seed = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(boot_seed)

    # 1. KDE per variable on one grid shared by all frames
    grids, bws, kdes = {}, {}, {}
    for v in names:
        grids[v], bws[v] = _variable_grid(v, frames[v], cfg)
        kdes[v] = kde_frames(frames[v], grids[v], bws[v])

    # 2. NMF per variable (densities; components integrate to 1) and stacked (mass per bin)
    def stack(per_var: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([per_var[v] * grids[v].step for v in names], axis=-1)

    nmf_names = names + [STACKED]
    inputs = {v: kdes[v] for v in names}
    inputs[STACKED] = stack(kdes)
    measures = {v: grids[v].step for v in names}
    measures[STACKED] = 1.0 / len(names)  # stacked rows sum to n_variables: weights stay fractions
    fits = {v: fit_nmf(inputs[v], n_comp, seed, measures[v], cfg["nmf_max_iter"], cfg["nmf_tol"])
            for v in nmf_names}

    # 3. resamples: pixels in spatial blocks → KDEs → NMF refitted (or re-projected) → weights
    n_boot = cfg["bootstrap"]
    rep_weights: dict[str, np.ndarray | None] = {v: None for v in nmf_names}
    if n_boot > 0:
        boot = _resample_kdes(frames, grids, bws, n_boot, rng, blocks)
        boot[STACKED] = stack(boot)
        for v in nmf_names:
            if cfg["nmf_resample"] == "project":
                rep_weights[v] = nnls_weights(boot[v], fits[v].components)
            else:
                rep_weights[v] = np.stack([refit_nmf(boot[v][b], fits[v], measures[v], cfg["nmf_max_iter"],
                                                     cfg["nmf_tol"]).weights for b in range(n_boot)])

    # 4. hysteresis of every weight against the stimulus: the pooled loop, and each cycle when several
    p = cfg["bias_points"]
    if stim.name in ("time", "frame"):
        sweep = hy.Sweep(stim.values, stim.name, stim.units, hy.split_branches(stim.values, 0.0), None, (),
                         cfg["reversal_tolerance"],
                         f"the stimulus is {'the frame index' if stim.name == 'frame' else 'time'}, which never "
                         "turns back: no rising and falling branches, so no loop" +
                         ("" if stim.name != "frame" or bias is not None else " (the movie has no bias)"))
    else:
        sweep = hy.analyse_sweep(stim.values, cfg["reversal_tolerance"], cfg["virgin_branch"], stim.name, stim.units)
    L = cfg["time_block"]
    # the pooled loop: the complete cycles (both branches over the whole sweep) when there are any, so
    # that every matched unit compares like with like; else whatever the movie has (one partial cycle)
    complete = sweep.complete_cycles()
    specs = [("all", hy.LoopOperator.build(sweep, p, L, cycles=complete or None))]
    if sweep.n_cycles >= 2:
        specs += [(str(k + 1), hy.LoopOperator.build(sweep, p, L, cycles=(k,))) for k in range(len(sweep.cycles))
                  if len({s.direction for s in sweep.cycles[k]}) == 2]
    stat_rng = np.random.default_rng(stat_seed)
    rows = []
    for v in nmf_names:
        curves = fits[v].weights.T  # (C, F)
        reps = None if rep_weights[v] is None else np.transpose(rep_weights[v], (0, 2, 1))  # (B, C, F)
        for cycle, op in specs:
            st = hy.loop_statistics(curves, op, reps, cfg["ci_level"], n_boot, cfg["permutations"], stat_rng)
            for c in range(n_comp):
                row = {"window": window, "variable": v, "component": c, "cycle": cycle if not op.note else "none",
                       "stimulus": stim.name, "stimulus_units": stim.units}
                row.update({k: float(a[c]) for k, a in st.items()})
                row.update({"range_low": float(op.grid[0]), "range_high": float(op.grid[-1]),
                            "virgin_frames": (f"{sweep.virgin.start}–{sweep.virgin.stop}" if sweep.virgin else ""),
                            "n_cycles": sum(len({s.direction for s in sweep.cycles[k]}) == 2 for k in op.cycles),
                            "n_units": op.n_units,
                            "n_resamples": n_boot, "ci_level": cfg["ci_level"], "alpha": cfg["alpha"],
                            "note": _loop_note(sweep, op, complete if cycle == "all" else None)})
                rows.append(row)
            if op.note:
                break  # no loop: one row per component says why
    table = pd.DataFrame(rows)
    # the loops tested are the pooled ones (one per NMF and component); per-cycle rows describe
    pooled_rows = (table["cycle"] == "all").to_numpy()
    table["p_adjusted"] = hy.holm(np.where(pooled_rows, table["p_value"].to_numpy(), np.nan))
    # a loop is called when the test rejects and its interval (which also carries the pixel blocks and
    # the refitted NMF: an unstable factorisation can make a curve look looped) keeps clear of 0
    lo, hi = table["loop_area_ci_low"].to_numpy(), table["loop_area_ci_high"].to_numpy()
    clear = ~((lo <= 0) & (hi >= 0))  # NaN interval (nothing resampled): the test alone
    table["significant"] = (table["p_adjusted"] < cfg["alpha"]) & clear
    n_tests = int(np.isfinite(table["p_adjusted"]).sum())
    table["verdict"] = [_verdict(r, n_tests) for r in table.itertuples()]
    metric_cols = []
    for m in hy.METRICS:
        metric_cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
        if m == "loop_area":
            metric_cols += ["p_value", "p_adjusted", "significant", "p_floor"]
    order = (["window", "variable", "component", "cycle", "stimulus", "stimulus_units"] + metric_cols +
             ["range_low", "range_high", "virgin_frames", "n_cycles", "n_units", "kappa", "n_resamples",
              "ci_level", "alpha", "verdict", "note"])
    table = table[order]

    # 5. dataset
    pooled = specs[0][1]
    branch_weight = np.full((len(nmf_names), n_comp, 2, p), np.nan)
    if not pooled.note:
        for i, v in enumerate(nmf_names):
            r, f = pooled.branches_of(fits[v].weights.T)
            branch_weight[i, :, 0], branch_weight[i, :, 1] = r, f
    G = cfg["grid_points"]
    weights = np.stack([fits[v].weights.T for v in nmf_names])  # (nmf, component, frame)
    if n_boot > 0:
        a = (1 - cfg["ci_level"]) / 2
        reps = np.stack([rep_weights[v] for v in nmf_names])  # (nmf, B, frame, component)
        w_lo, w_hi = np.quantile(reps, [a, 1 - a], axis=1).transpose(0, 1, 3, 2)
    else:
        w_lo = w_hi = np.full_like(weights, np.nan)
    comps = np.stack([fits[v].components for v in names], axis=1)  # densities: (component, variable, grid)
    stacked_h = fits[STACKED].components.reshape(n_comp, len(names), G)
    stacked_h = stacked_h / np.array([grids[v].step for v in names])[None, :, None]
    units = ["rad" if grids[v].circular else "latent units" for v in names]
    V, F, C, NM = store.VARIABLE, store.FRAME, store.COMPONENT, VARIABLE_NMF
    coords = store.frame_coords(n_frames, bias, time)
    if stim.name not in ("bias", "time", "frame"):
        coords[stim.name] = (F, stim.values, {"units": stim.units, "long_name": stim.name})
    coords.update({
        V: names,
        store.GRID: np.arange(G),
        "grid_value": ((V, store.GRID), np.stack([grids[v].values for v in names]),
                       {"long_name": "variable value at each grid point", "units": "see variable_units"}),
        "variable_units": (V, units),
        "period": (V, [grids[v].period if grids[v].circular else np.nan for v in names],
                   {"units": "rad", "long_name": "period of a circular variable (NaN: linear)"}),
        C: np.arange(n_comp),
        NM: nmf_names,
        DIRECTION: ["rising", "falling"],
        STIM_POINT: np.arange(p),
        "branch_stimulus": (STIM_POINT, pooled.grid,
                            {"units": stim.units, "long_name": f"common {stim.name} values of the closed loop's "
                                                                "branches"}),
        "branch": (F, sweep.branches.direction, {"long_name": f"{stim.name} direction (+1 rising, -1 falling, 0 none)"}),
        "segment": (F, sweep.branches.segment_index, {"long_name": f"monotone {stim.name} segment index"}),
        "cycle": (F, sweep.frame_cycle, {"long_name": "cycle of the closed loop (from 1); 0: virgin curve; -1: none"}),
    })
    mass = np.stack([kdes[v].sum(axis=1) * grids[v].step for v in names])
    data = {
        "kde": ((V, F, store.GRID), np.stack([kdes[v] for v in names]),
                {"units": "1/unit of the variable", "long_name": "kernel density per frame"}),
        "kde_mass": ((V, F), mass, {"units": "1", "long_name": "fraction of the frame's values inside the grid"}),
        "bandwidth": ((V, F), np.stack([bws[v] for v in names]),
                      {"units": "unit of the variable", "long_name": "Gaussian kernel standard deviation"}),
        "n_values": (F, counts, {"long_name": "pixels used per frame"}),
        "components": ((C, V, store.GRID), comps,
                       {"units": "1/unit of the variable",
                        "long_name": "NMF components of each variable's own KDE(L, t) (densities, integrate to 1)"}),
        "stacked_components": ((C, V, store.GRID), stacked_h,
                               {"units": "1/unit of the variable",
                                "long_name": "NMF components of the stacked KDEs (mean integral over variables 1)"}),
        "weights": ((NM, C, F), weights, {"units": "1", "long_name": "NMF weight of each component per frame"}),
        "weights_ci_low": ((NM, C, F), w_lo, {"units": "1", "long_name": "interval low of the weights (pixel "
                                                                          "blocks resampled, NMF refitted)"}),
        "weights_ci_high": ((NM, C, F), w_hi, {"units": "1", "long_name": "interval high of the weights"}),
        "reconstruction_error": (NM, [fits[v].relative_error for v in nmf_names],
                                 {"units": "1", "long_name": "relative Frobenius error ‖X − WH‖ / ‖X‖"}),
        "nmf_n_iter": (NM, [fits[v].n_iter for v in nmf_names]),
        "nmf_converged": (NM, [fits[v].converged for v in nmf_names]),
        "branch_weight": ((NM, C, DIRECTION, STIM_POINT), branch_weight,
                          {"units": "1", "long_name": "weights of the closed loop's branches at branch_stimulus"}),
    }
    attrs = {
        "pixels": cfg["pixels"],
        "bandwidth_method": cfg["bandwidth"],
        "bandwidth_scope": cfg["bandwidth_scope"],
        "angle_period": cfg["angle_period"],
        "n_bootstrap": n_boot,
        "ci_level": cfg["ci_level"],
        "stimulus": stim.name,
        "stimulus_units": stim.units,
        "hysteresis_note": pooled.note,
        "resampling": ("pixels in spatial blocks (the same blocks in every frame), NMF "
                       f"{'refitted' if cfg['nmf_resample'] == 'refit' else 're-projected'}; frames in time blocks "
                       f"of {L} within branches, whole cycles where several"
                       if blocks is not None else "pixels resampled within frames (no positions given)"),
        "layout": ("kde(variable, frame, grid) is evaluated at grid_value(variable, grid); components are per "
                   "variable NMFs, stacked_components the NMF of all variables side by side; weights(variable_nmf, "
                   "component, frame) with variable_nmf = variables + 'stacked'. Weights are fractions: components "
                   "integrate to 1 over the grid. Angle densities are per rad over one period."),
    }
    if window is not None:
        attrs["window"] = int(window)
    return xr.Dataset(data, coords=coords, attrs=attrs), table


def _loop_note(sweep: hy.Sweep, op: hy.LoopOperator, complete: tuple[int, ...] | None = None) -> str:
    """What is left out of a loop row, and why, in words."""
    if op.note:
        return op.note[0].upper() + op.note[1:] + "."
    parts = []
    if complete:
        left = [k + 1 for k in range(len(sweep.cycles)) if k not in complete]
        if left:
            parts.append(f"Cycle{'s' if len(left) > 1 else ''} {', '.join(map(str, left))} "
                         f"{'do' if len(left) > 1 else 'does'} not cover the whole sweep in both directions "
                         "(the movie stops mid-branch): left out of the pooled loop.")
    if sweep.virgin is not None:
        parts.append(f"The virgin curve (frames {sweep.virgin.start}–{sweep.virgin.stop}, "
                     f"{sweep.text(sweep.values[sweep.virgin.start])} → {sweep.text(sweep.values[sweep.virgin.stop])}) "
                     "is its own branch, left out.")
    for d, name in ((hy.RISING, "rising"), (hy.FALLING, "falling")):
        if not op.spans[d]:
            g = op.own_grid[d]
            parts.append(f"The {name} branch covers only {sweep.text(g[0])} … {sweep.text(g[-1])}, not the whole "
                         "sweep: no saturated values at both ends, so no coercive value.")
    return " ".join(parts)


def _verdict(r, n_tests: int) -> str:
    if r.cycle == "none" or not np.isfinite(r.loop_area):
        return "no loop: " + (r.note[0].lower() + r.note[1:] if r.note else "")
    if not np.isfinite(r.p_value):
        return f"loop area {r.loop_area:.3g}, not testable (no matched time blocks)"
    if r.cycle != "all":
        return (f"cycle {r.cycle}: area {r.loop_area:.3g} [{r.loop_area_ci_low:.3g}, {r.loop_area_ci_high:.3g}], "
                f"p = {r.p_value:.2g} (not corrected: the pooled row carries the test)")
    if r.p_adjusted < r.alpha and not r.significant:
        return (f"no significant loop: p = {r.p_value:.2g} (Holm {r.p_adjusted:.2g} < {r.alpha:g}), but the area's "
                f"interval [{r.loop_area_ci_low:.3g}, {r.loop_area_ci_high:.3g}] from resampled pixel blocks (NMF "
                "refitted) holds 0: the curve itself is not stable enough to call it a loop")
    if r.significant:
        return (f"significant loop: area {r.loop_area:.3g} [{r.loop_area_ci_low:.3g}, {r.loop_area_ci_high:.3g}], "
                f"p = {r.p_value:.2g} (Holm {r.p_adjusted:.2g} < {r.alpha:g})")
    text = (f"no significant loop: area {r.loop_area:.3g} [{r.loop_area_ci_low:.3g}, {r.loop_area_ci_high:.3g}], "
            f"p = {r.p_value:.2g} (Holm {r.p_adjusted:.2g} ≥ {r.alpha:g})")
    if r.p_floor * 1.0 >= r.alpha / max(n_tests, 1):
        text += (f"; with {r.n_units} matched time block{'s' if r.n_units != 1 else ''} p cannot go below "
                 f"{r.p_floor:.2g}")
    return text


# --- entry functions ----------------------------------------------------------------
def _describe(column: str) -> str:
    for end, what in (("_ci_low", "low"), ("_ci_high", "high")):
        if column.endswith(end):
            return f"{what} end of the interval of {column[:-len(end)]} (level ci_level)"
    return TABLE_COLUMNS.get(column, "")


def _write_table(table: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    store.write_file_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    rows = json.loads(table.to_json(orient="records"))  # NaN → null
    doc = {"columns": {c: _describe(c) for c in table.columns}, "rows": rows}
    store.write_file_atomic(path.with_suffix(".json"),
                            lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1, ensure_ascii=False)))


def kde_nmf(latents: str, segmentation: str | None, out: str, table: str, cfg: dict, seed: int) -> None:
    """Dynamics of one window size: KDE(L, t), NMF and hysteresis → ``out`` (dynamics.zarr) and ``table``.

    Parameters
    ----------
    latents : latents.zarr (kind "latents") with mean(frame, y, x, latent); bias(frame) [V]
        and time(frame) [s] coordinates when known.
    segmentation : segmentation store (kind "segmentation", label(frame, y, x)); needed
        only for ``pixels: structure`` (pixels labelled ``structure_class``, default 1 = wall).
    out : dynamics.zarr, kind "dynamics". Dims ``variable, frame, grid, component,
        variable_nmf, direction, stimulus_point``:

        * kde(variable, frame, grid) [1/unit] at grid_value(variable, grid) (units in
          variable_units(variable)); bandwidth(variable, frame); kde_mass; n_values(frame);
        * components(component, variable, grid): each variable's own NMF;
          stacked_components(component, variable, grid): NMF of the stacked KDEs;
        * weights(variable_nmf, component, frame) with bootstrap weights_ci_low/high,
          reconstruction_error(variable_nmf), nmf_n_iter, nmf_converged;
        * branch_weight(variable_nmf, component, direction, stimulus_point) at branch_stimulus
          (the closed loop's branches); branch(frame), segment(frame), cycle(frame: 0 virgin
          curve, -1 none) coordinates; bias/time (and temperature) on frame; attrs stimulus,
          stimulus_units, spatial_block, resampling.
    table : CSV of the hysteresis per (variable, component, cycle) (columns in
        :data:`TABLE_COLUMNS`, metrics with ``_ci_low``/``_ci_high``, p-values, a verdict in
        words), and a JSON beside it (same stem, ``.json``) ``{"columns": {name: description}, "rows": [...]}``.
    cfg : the ``dynamics:`` config section. seed : NMF initialisation, resampling and subsample seed.
    """
    cfg = resolve_config(cfg)
    lat = store.open_store(latents, "latents")  # mean(frame, y, x, latent) and latent labels: declared
    labels = [str(v) for v in lat[store.LATENT].values]
    unknown = [v for v in cfg["variables"] if v not in labels]
    if unknown:
        raise InputError("config dynamics.variables", f"{unknown} not among the latents' labels {labels}",
                         "latent labels of the rVAE")
    if cfg["pixels"] == "structure" and not segmentation:
        raise InputError("config dynamics.pixels", "is 'structure' but no segmentation store was given",
                         "a segmentation store, or pixels: all / subsample")
    _check_n_components(cfg, lat.sizes[store.FRAME])
    structure = (_structure_mask(segmentation, lat, cfg["structure_class"])
                 if cfg["pixels"] == "structure" else None)
    pixel_seed, _ = np.random.SeedSequence(seed).spawn(2)
    frames, where = select_pixels(lat, cfg["variables"], cfg, np.random.default_rng(pixel_seed), structure)
    window = lat.attrs.get("window")
    size = cfg["spatial_block"] or (int(window) if window is not None else DEFAULT_BLOCK)
    if window is not None and size < int(window):
        raise InputError("config dynamics.spatial_block", f"value {size} px is smaller than the rVAE window "
                         f"n = {window}", "0 (the window) or at least the window: overlapping windows are not "
                         "independent")
    blocks = pixel_blocks(where, (lat.sizes[store.Y], lat.sizes[store.X]), size)
    bias = lat[store.BIAS].values if store.BIAS in lat.coords else None
    if bias is not None and not np.isfinite(bias).any():
        bias = None  # the rVAE writes NaN when the movie had no bias: no hysteresis, said in the table
    time = lat[store.TIME].values if store.TIME in lat.coords else None
    stim = _chosen_stimulus(lat, cfg["stimulus"], latents)
    ds, tab = dynamics_core(frames, bias, cfg, seed, time=time, window=window, blocks=blocks, stimulus=stim)
    ds.attrs["spatial_block"] = int(size)
    if "latent_units" in lat.coords:  # the rVAE records units per latent (rad, grid, 1 …)
        units = dict(zip(labels, (str(u) for u in lat["latent_units"].values)))
        ds = ds.assign_coords(variable_units=(store.VARIABLE, [units[v] for v in cfg["variables"]]))
    extra = {"source_latents": str(latents), "source_latents_sha256": store.sha256_file(latents), "seed": seed}
    if segmentation:
        extra["source_segmentation"] = str(segmentation)
    ds.attrs = {**store.provenance("dynamics", cfg, **extra), **store.inherited_quality(lat.attrs), **ds.attrs}
    store.write_store(ds, out)
    _write_table(tab, table)


# --- sweep ----------------------------------------------------------------------------
def _frame_stats(lat: xr.Dataset, angle_period: float) -> xr.Dataset:
    """Per-frame mean and standard deviation of every latent over the pixels (circular for the angle)."""
    mean = lat["mean"]
    labels = [str(v) for v in mean[store.LATENT].values]
    mu = np.full((mean.sizes[store.FRAME], len(labels)), np.nan)
    sd = np.full_like(mu, np.nan)
    for j, name in enumerate(labels):
        arr = mean.sel({store.LATENT: name}).transpose(store.FRAME, store.Y, store.X).values
        arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
        finite = np.isfinite(arr)
        n = finite.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if name == ANGLE:
                theta = np.where(finite, arr, 0.0) * (2 * np.pi / angle_period)
                c = np.where(finite, np.cos(theta), 0.0).sum(axis=1) / n
                s = np.where(finite, np.sin(theta), 0.0).sum(axis=1) / n
                mu[:, j] = np.arctan2(s, c) * angle_period / (2 * np.pi)
                r = np.clip(np.hypot(c, s), 1e-300, 1.0)
                sd[:, j] = np.sqrt(-2 * np.log(r)) * angle_period / (2 * np.pi)
            else:
                mu[:, j] = np.nanmean(np.where(finite, arr, np.nan), axis=1)
                sd[:, j] = np.nanstd(np.where(finite, arr, np.nan), axis=1)
    L, F = store.LATENT, store.FRAME
    return xr.Dataset({
        "latent_mean": ((F, L), mu,
                        {"long_name": "per-frame mean of each latent over the pixels (circular for angle)"}),
        "latent_sd": ((F, L), sd, {"long_name": "per-frame standard deviation (circular for angle)"}),
    }, coords={L: labels})


def sweep_merge(dynamics: list[str], latents: list[str], windows: list[int], out: str) -> None:
    """Every window size's per-frame outputs in one store ``out`` (kind "sweep").

    Parameters
    ----------
    dynamics, latents : dynamics.zarr and latents.zarr per window size, in the order of ``windows``.
    windows : window sizes n (pixels).

    The result is indexed by ``window``, ``frame`` (with bias/time coordinates)
    and holds, per window: kde(window, variable, frame, grid) with
    grid_value(window, variable, grid), bandwidth, n_values, components,
    stacked_components, weights(window, variable_nmf, component, frame) with
    CIs, reconstruction_error, branch_weight, and latent_mean/latent_sd(window,
    frame, latent) (circular mean/sd for the angle, period from the dynamics
    store). All windows must describe the same frames and bias.
    """
    if not (len(dynamics) == len(latents) == len(windows)) or not windows:
        raise InputError("sweep_merge", f"{len(dynamics)} dynamics, {len(latents)} latents, {len(windows)} windows",
                         "one dynamics and one latents store per window size")
    if len(set(windows)) != len(windows):
        raise InputError("sweep_merge", f"windows {windows} repeat", "distinct window sizes")
    parts = []
    ref_bias = None
    for dyn_path, lat_path, w in zip(dynamics, latents, windows):
        dyn = store.open_store(dyn_path, "dynamics")
        lat = store.open_store(lat_path, "latents")
        if lat.sizes[store.FRAME] != dyn.sizes[store.FRAME]:
            raise InputError(lat_path, f"has {lat.sizes[store.FRAME]} frames, {dyn_path} {dyn.sizes[store.FRAME]}",
                             "the latents the dynamics store was made from")
        bias = dyn[store.BIAS].values if store.BIAS in dyn.coords else None
        if ref_bias is None:
            ref_bias, ref_path, n_frames = bias, dyn_path, dyn.sizes[store.FRAME]
        elif dyn.sizes[store.FRAME] != n_frames or (bias is None) != (ref_bias is None) or (
                bias is not None and not np.allclose(bias, ref_bias, equal_nan=True)):
            raise InputError(dyn_path, f"frames or bias differ from those of {ref_path}",
                             "every window size computed from the same movie")
        keep = ["kde", "kde_mass", "bandwidth", "n_values", "components", "stacked_components", "weights",
                "weights_ci_low", "weights_ci_high", "reconstruction_error", "branch_weight"]
        part = dyn[keep].load()  # the dynamics declaration (store.STORE_KINDS) guarantees these and the coords
        part = part.reset_coords(["grid_value", "branch", "segment"])
        part = xr.merge([part, _frame_stats(lat, float(dyn.attrs.get("angle_period", math.pi)))],
                        compat="override", join="outer")
        part.attrs = {}
        parts.append(part.expand_dims({store.WINDOW: [int(w)]}))
    merged = xr.concat(parts, dim=store.WINDOW, join="outer", coords="minimal", compat="override",
                       data_vars="all")
    merged = merged.set_coords(["grid_value"])
    for name in ("branch", "segment"):  # identical across windows (same bias): a frame coordinate again
        merged = merged.assign_coords({name: merged[name].isel({store.WINDOW: 0}, drop=True)})
    merged[store.WINDOW].attrs = {"units": "px", "long_name": "rVAE window size n"}
    merged.attrs = store.provenance("sweep", {"windows": [int(w) for w in windows]},
                                    sources=json.dumps([str(p) for p in dynamics]),
                                    latents=json.dumps([str(p) for p in latents]))
    store.write_store(merged, out)
