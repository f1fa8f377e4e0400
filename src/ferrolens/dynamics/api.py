"""Entry functions of the dynamics stage (paper Fig. 5) and their array core.

``kde_nmf``: per-pixel latent maps → per-frame KDE of each variable on one
fixed grid → NMF of every KDE(L, t) and of all of them stacked → weights
against bias → hysteresis metrics with bootstrap CIs (pixels resampled within
frames). ``sweep_merge``: every window size's per-frame outputs in one store.
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
from . import hysteresis as hy
from .config import resolve_config
from .kde import Grid, KDEPlan, circular_grid, kde_frames, linear_grid, rule_bandwidth
from .nmf import fit_nmf, nnls_weights

STACKED = "stacked"
VARIABLE_NMF = "variable_nmf"
DIRECTION, BIAS_POINT = "direction", "bias_point"
ANGLE = "angle"
BOOT_CHUNK = 1 << 22  # atom counts held per bootstrap pass (bounds temporaries to ~100 MB)

TABLE_COLUMNS = {
    "window": "rVAE window size n (pixels), when the latents store records it",
    "variable": "the NMF: a latent variable's own KDE(L, t), or 'stacked' (all variables side by side)",
    "component": "NMF component index (ordered by the frame of peak weight)",
    "loop_area": "signed loop area ∫(falling − rising) dV over the common bias range (weight·V); "
                 "> 0 when the falling branch lies above the rising one",
    "loop_area_excludes_zero": "whether the loop-area confidence interval excludes 0",
    "max_difference": "falling − rising at the bias where |falling − rising| is largest (weight)",
    "max_difference_bias": "bias of the largest branch difference (V)",
    "midpoint_level": "(min + max)/2 of the two branch curves (weight)",
    "rising_midpoint_bias": "bias where the rising branch first crosses the midpoint level (V)",
    "falling_midpoint_bias": "bias where the falling branch first crosses the midpoint level, scanning down (V)",
    "bias_low": "low end of the common bias range of the branches (V)",
    "bias_high": "high end of the common bias range of the branches (V)",
    "n_reversals": "number of bias reversals (turning points) in the sweep",
    "n_bootstrap": "bootstrap replicates (pixels resampled within frames)",
    "ci_level": "confidence level of the *_ci_low / *_ci_high percentile intervals",
    "note": "why metrics are missing, if they are",
}


# --- reading the inputs -----------------------------------------------------------
def _latent_labels(ds: xr.Dataset, path: Any) -> list[str]:
    if store.LATENT not in ds["mean"].dims:
        raise InputError(path, f"variable 'mean' has dims {ds['mean'].dims}", "mean(frame, y, x, latent)")
    if store.LATENT in ds.coords:
        return [str(v) for v in ds[store.LATENT].values]
    raise InputError(path, "has no latent coordinate labels", "labels such as angle, dx, dy, z1, z2")


def _structure_mask(seg_path: str, lat: xr.Dataset, structure_class: int) -> np.ndarray:
    """(frame, y, x) bool: pixels the segmentation labels ``structure_class``, aligned to the latents."""
    seg = store.open_store(seg_path, "segmentation", ["label"])
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


def select_values(lat: xr.Dataset, variables: list[str], cfg: dict, rng: np.random.Generator,
                  structure: np.ndarray | None = None) -> dict[str, list[np.ndarray]]:
    """Per-frame values of each variable at the selected pixels.

    Pixels: those finite in every variable, and (``pixels: structure``) where
    ``structure`` is True; ``pixels: subsample`` then keeps a seeded random
    ``subsample_size`` of them per frame. The same pixels serve every variable,
    so a bootstrap can resample pixels jointly.

    Returns ``{variable: [values of frame 0 (n_0,), …]}`` (float32).
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
    for f in range(n_frames):
        idx = np.flatnonzero(ok[f])
        if cfg["pixels"] == "subsample" and idx.size > cfg["subsample_size"]:
            idx = np.sort(rng.choice(idx, size=cfg["subsample_size"], replace=False))
        for v in variables:
            out[v].append(maps[v][f].ravel()[idx])
    return out


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


def _bootstrap_kdes(frames: dict[str, list[np.ndarray]], grids: dict[str, Grid], bws: dict[str, np.ndarray],
                    n_boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """KDEs (B, F, G) of every variable with the pixels of each frame resampled with replacement.

    One resample of pixel indices serves all variables of a frame (a pixel
    carries all its latents), so the stacked NMF sees the joint variability.
    A resample is drawn as pixel multiplicities (multinomial: counts of n
    uniform draws); each variable's binned counts are then one weighted
    ``bincount`` over its precomputed atoms (:meth:`KDEPlan.atom_index`), plus
    the frame's exact-minus-atom binning so that replicates are centred on the
    exact estimate.
    """
    names = list(frames)
    n_frames = len(frames[names[0]])
    out = {v: np.zeros((n_boot, n_frames, grids[v].size)) for v in names}
    plans = {v: KDEPlan(grids[v], float(bws[v].min()), float(bws[v].max())) for v in names}
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
            nb = min(per_pass, n_boot - b0)
            counts = {v: np.empty((nb, plans[v].n_atoms)) for v in names}
            for r in range(nb):
                mult = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
                for v in names:
                    counts[v][r] = np.bincount(atoms[v], weights=mult, minlength=plans[v].n_atoms + 1)[:-1]
            for v in names:
                binned = plans[v].bin_atoms(counts[v]) + correction[v]
                out[v][b0:b0 + nb, f] = plans[v].smooth(binned, bws[v][f]) / n
    return out


def dynamics_core(frames: dict[str, list[np.ndarray]], bias: np.ndarray | None, cfg: dict | None,
                  seed: int, time: np.ndarray | None = None, window: int | None = None
                  ) -> tuple[xr.Dataset, pd.DataFrame]:
    """KDE, NMF and hysteresis of per-frame latent values (no I/O).

    Parameters
    ----------
    frames : ``{variable: [values of frame 0, …]}``, the same pixels for every variable
        of a frame (see :func:`select_values`). ``angle`` is circular with period
        ``cfg['angle_period']`` (rad); other variables are linear (latent units).
    bias : (F,) bias per frame in V, or None (then no hysteresis metrics).
    cfg : the ``dynamics:`` section (partial is fine; defaults filled).
    seed : seeds the NMF initialisation and the bootstrap.
    time : (F,) time per frame in s, optional. window : recorded in the table.

    Returns
    -------
    (dataset, table): the dynamics dataset (without store attrs; see
    :func:`kde_nmf` for its layout) and the hysteresis table, one row per
    (variable or 'stacked', component).
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
    if counts.sum() == 0:
        raise InputError("latents", "no pixels selected in any frame", "finite latent values at selected pixels")
    if bias is not None:
        bias = np.asarray(bias, dtype=float)
        if bias.shape != (n_frames,):
            raise InputError("bias", f"has shape {bias.shape}", f"one value per frame ({n_frames})")
    boot_seed, _ = np.random.SeedSequence(seed).spawn(2)
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

    # 3. bootstrap: pixels resampled within frames → KDEs → weights on the fitted components
    n_boot = cfg["bootstrap"]
    rep_weights: dict[str, np.ndarray | None] = {v: None for v in nmf_names}
    if n_boot > 0:
        boot = _bootstrap_kdes(frames, grids, bws, n_boot, rng)
        for v in names:
            rep_weights[v] = nnls_weights(boot[v], fits[v].components)
        rep_weights[STACKED] = nnls_weights(stack(boot), fits[STACKED].components)

    # 4. hysteresis of every weight against bias
    p = cfg["bias_points"]
    if bias is not None:
        branches = hy.split_branches(bias, cfg["reversal_tolerance"])
        op = hy.BranchOperator.build(bias, branches, p)
    else:
        branches = None
        op = hy.BranchOperator(np.full(p, np.nan), np.zeros((p, n_frames)), np.zeros((p, n_frames)), 0,
                               "no bias values in the latents store")
    rows = []
    branch_weight = np.full((len(nmf_names), n_comp, 2, p), np.nan)
    for i, v in enumerate(nmf_names):
        for c in range(n_comp):
            curve = fits[v].weights[:, c]
            reps = rep_weights[v][:, :, c] if rep_weights[v] is not None else None
            summary = hy.hysteresis_summary(curve, reps, op, cfg["ci_level"])
            lo, hi = summary["loop_area_ci_low"], summary["loop_area_ci_high"]
            rows.append({
                "window": window, "variable": v, "component": c, **summary,
                "loop_area_excludes_zero": bool(lo > 0 or hi < 0),
                "bias_low": float(op.bias_values[0]), "bias_high": float(op.bias_values[-1]),  # NaN with a note
                "n_reversals": op.n_reversals, "n_bootstrap": n_boot, "ci_level": cfg["ci_level"],
                "note": op.note,
            })
            if not op.note:
                r, f = op.branches_of(curve)
                branch_weight[i, c] = [r, f]
    first = ["window", "variable", "component"]
    metric_cols = [col for m in hy.METRICS for col in (m, f"{m}_ci_low", f"{m}_ci_high")]
    metric_cols.insert(3, "loop_area_excludes_zero")
    table = pd.DataFrame(rows)[first + metric_cols + ["bias_low", "bias_high", "n_reversals", "n_bootstrap",
                                                      "ci_level", "note"]]

    # 5. dataset
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
        BIAS_POINT: np.arange(p),
        "branch_bias": (BIAS_POINT, op.bias_values, {"units": "V", "long_name": "common bias values of the branches"}),
    })
    if branches is not None:
        coords["branch"] = (F, branches.direction, {"long_name": "bias direction (+1 rising, -1 falling, 0 none)"})
        coords["segment"] = (F, branches.segment_index, {"long_name": "monotone bias segment index"})
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
        "weights_ci_low": ((NM, C, F), w_lo, {"units": "1", "long_name": "bootstrap CI low of the weights"}),
        "weights_ci_high": ((NM, C, F), w_hi, {"units": "1", "long_name": "bootstrap CI high of the weights"}),
        "reconstruction_error": (NM, [fits[v].relative_error for v in nmf_names],
                                 {"units": "1", "long_name": "relative Frobenius error ‖X − WH‖ / ‖X‖"}),
        "nmf_n_iter": (NM, [fits[v].n_iter for v in nmf_names]),
        "nmf_converged": (NM, [fits[v].converged for v in nmf_names]),
        "branch_weight": ((NM, C, DIRECTION, BIAS_POINT), branch_weight,
                          {"units": "1", "long_name": "weights interpolated onto branch_bias per direction"}),
    }
    attrs = {
        "pixels": cfg["pixels"],
        "bandwidth_method": cfg["bandwidth"],
        "bandwidth_scope": cfg["bandwidth_scope"],
        "angle_period": cfg["angle_period"],
        "n_bootstrap": n_boot,
        "ci_level": cfg["ci_level"],
        "hysteresis_note": op.note,
        "layout": ("kde(variable, frame, grid) is evaluated at grid_value(variable, grid); components are per "
                   "variable NMFs, stacked_components the NMF of all variables side by side; weights(variable_nmf, "
                   "component, frame) with variable_nmf = variables + 'stacked'. Weights are fractions: components "
                   "integrate to 1 over the grid. Angle densities are per rad over one period."),
    }
    if window is not None:
        attrs["window"] = int(window)
    return xr.Dataset(data, coords=coords, attrs=attrs), table


# --- entry functions ----------------------------------------------------------------
def _write_table(table: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    store.write_file_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    rows = json.loads(table.to_json(orient="records"))  # NaN → null
    doc = {"columns": TABLE_COLUMNS, "rows": rows}
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
        variable_nmf, direction, bias_point``:

        * kde(variable, frame, grid) [1/unit] at grid_value(variable, grid) (units in
          variable_units(variable)); bandwidth(variable, frame); kde_mass; n_values(frame);
        * components(component, variable, grid): each variable's own NMF;
          stacked_components(component, variable, grid): NMF of the stacked KDEs;
        * weights(variable_nmf, component, frame) with bootstrap weights_ci_low/high,
          reconstruction_error(variable_nmf), nmf_n_iter, nmf_converged;
        * branch_weight(variable_nmf, component, direction, bias_point) at branch_bias;
          branch(frame) / segment(frame) coordinates; bias/time on frame.
    table : CSV of the hysteresis metrics per (variable, component) (columns in
        :data:`TABLE_COLUMNS`, each metric with ``_ci_low``/``_ci_high``), and a JSON beside it
        (same stem, ``.json``) ``{"columns": {name: description}, "rows": [...]}``.
    cfg : the ``dynamics:`` config section. seed : NMF initialisation and bootstrap/subsample seed.
    """
    cfg = resolve_config(cfg)
    lat = store.open_store(latents, "latents", ["mean"])
    labels = _latent_labels(lat, latents)
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
    frames = select_values(lat, cfg["variables"], cfg, np.random.default_rng(pixel_seed), structure)
    bias = lat[store.BIAS].values if store.BIAS in lat.coords else None
    if bias is not None and not np.isfinite(bias).any():
        bias = None  # the rVAE writes NaN when the movie had no bias: no hysteresis, said in the table
    time = lat[store.TIME].values if store.TIME in lat.coords else None
    window = lat.attrs.get("window")
    ds, tab = dynamics_core(frames, bias, cfg, seed, time=time, window=window)
    if "latent_units" in lat.coords:  # the rVAE records units per latent (rad, grid, 1 …)
        units = dict(zip(labels, (str(u) for u in lat["latent_units"].values)))
        ds = ds.assign_coords(variable_units=(store.VARIABLE, [units[v] for v in cfg["variables"]]))
    extra = {"source_latents": str(latents), "source_latents_sha256": store.sha256_file(latents), "seed": seed}
    if segmentation:
        extra["source_segmentation"] = str(segmentation)
    ds.attrs = {**store.provenance("dynamics", cfg, **extra), **ds.attrs}
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
        dyn = store.open_store(dyn_path, "dynamics", ["kde", "weights"])
        lat = store.open_store(lat_path, "latents", ["mean"])
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
        part = dyn[[k for k in keep if k in dyn.data_vars]].load()
        part = part.reset_coords([c for c in ("grid_value", "branch", "segment") if c in part.coords])
        part = xr.merge([part, _frame_stats(lat, float(dyn.attrs.get("angle_period", math.pi)))],
                        compat="override", join="outer")
        part.attrs = {}
        parts.append(part.expand_dims({store.WINDOW: [int(w)]}))
    merged = xr.concat(parts, dim=store.WINDOW, join="outer", coords="minimal", compat="override",
                       data_vars="all")
    merged = merged.set_coords(["grid_value"])
    for name in ("branch", "segment"):
        if name in merged:  # identical across windows (same bias): a frame coordinate again
            merged = merged.assign_coords({name: merged[name].isel({store.WINDOW: 0}, drop=True)})
    merged[store.WINDOW].attrs = {"units": "px", "long_name": "rVAE window size n"}
    merged.attrs = store.provenance("sweep", {"windows": [int(w) for w in windows]},
                                    sources=json.dumps([str(p) for p in dynamics]),
                                    latents=json.dumps([str(p) for p in latents]))
    store.write_store(merged, out)
