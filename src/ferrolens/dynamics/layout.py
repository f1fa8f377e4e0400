"""The stores of the dynamics stage as xarray Datasets (no file I/O): the dynamics store of one
window size (kind "dynamics") and the sweep of all window sizes (kind "sweep"), as declared in
:data:`ferrolens.store.STORE_KINDS`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import cast

import numpy as np
import xarray as xr

from .. import store
from ..sections import DynamicsConfig
from ..stimulus import Stimulus
from . import hysteresis as hy
from .densities import Densities
from .nmf import NMFResult

STACKED = "stacked"
VARIABLE_NMF, DIRECTION, STIM_POINT = store.VARIABLE_NMF, store.DIRECTION, store.STIM_POINT  # dims: store's vocabulary
#: What sweep_merge keeps of each window's dynamics store.
SWEEP_VARIABLES = [
    "kde",
    "kde_mass",
    "bandwidth",
    "n_values",
    "components",
    "stacked_components",
    "weights",
    "weights_ci_low",
    "weights_ci_high",
    "reconstruction_error",
    "branch_weight",
]


@dataclass(frozen=True)
class Factorisation:
    """The NMFs of one window size: per variable and ``stacked`` (in that order), the point fit and
    the resampled weights (B, F, C), None without resamples."""

    fits: dict[str, NMFResult]
    replicates: dict[str, np.ndarray | None]

    @property
    def names(self) -> list[str]:
        return list(self.fits)


def branch_weights(nmf: Factorisation, pooled: hy.LoopOperator, n_comp: int, n_points: int) -> np.ndarray:
    """(variable_nmf, component, direction, stimulus_point) weights of the pooled loop's branches (NaN: no loop)."""
    out = np.full((len(nmf.names), n_comp, 2, n_points), np.nan)
    if not pooled.note:
        for i, v in enumerate(nmf.names):
            r, f = pooled.branches_of(nmf.fits[v].weights.T)
            out[i, :, 0], out[i, :, 1] = r, f
    return out


def weight_intervals(nmf: Factorisation, weights: np.ndarray, cfg: DynamicsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Quantile interval (variable_nmf, component, frame) at ``ci_level`` of the resampled weights
    (NaN without resamples)."""
    if cfg["bootstrap"] == 0:
        nan = np.full_like(weights, np.nan)
        return nan, nan
    a = (1 - cfg["ci_level"]) / 2
    reps = np.stack([cast(np.ndarray, nmf.replicates[v]) for v in nmf.names])  # (nmf, B, frame, component)
    lo, hi = np.quantile(reps, [a, 1 - a], axis=1).transpose(0, 1, 3, 2)
    return lo, hi


def _coords(
    dens: Densities,
    nmf: Factorisation,
    cfg: DynamicsConfig,
    stim: Stimulus,
    sweep: hy.Sweep,
    pooled: hy.LoopOperator,
    n_frames: int,
    bias: np.ndarray | None,
    time: np.ndarray | None,
) -> dict:
    names = dens.names
    V, F = store.VARIABLE, store.FRAME
    coords = store.frame_coords(n_frames, bias, time)
    if stim.name not in ("bias", "time", "frame"):
        coords[stim.name] = (F, stim.values, {"units": stim.units, "long_name": stim.name})
    coords.update(
        {
            V: names,
            store.GRID: np.arange(cfg["grid_points"]),
            "grid_value": (
                (V, store.GRID),
                np.stack([dens.grids[v].values for v in names]),
                {"long_name": "variable value at each grid point", "units": "see variable_units"},
            ),
            "variable_units": (V, ["rad" if dens.grids[v].circular else "latent units" for v in names]),
            "period": (
                V,
                [dens.grids[v].period if dens.grids[v].circular else np.nan for v in names],
                {"units": "rad", "long_name": "period of a circular variable (NaN: linear)"},
            ),
            store.COMPONENT: np.arange(cfg["n_components"]),
            VARIABLE_NMF: nmf.names,
            DIRECTION: ["rising", "falling"],
            STIM_POINT: np.arange(cfg["bias_points"]),
            "branch_stimulus": (
                STIM_POINT,
                pooled.grid,
                {"units": stim.units, "long_name": f"common {stim.name} values of the closed loop's branches"},
            ),
            "branch": (
                F,
                sweep.branches.direction,
                {"long_name": f"{stim.name} direction (+1 rising, -1 falling, 0 none)"},
            ),
            "segment": (F, sweep.branches.segment_index, {"long_name": f"monotone {stim.name} segment index"}),
            "cycle": (
                F,
                sweep.frame_cycle,
                {"long_name": "cycle of the closed loop (from 1); 0: virgin curve; -1: none"},
            ),
        }
    )
    return coords


def _data_vars(
    dens: Densities, nmf: Factorisation, cfg: DynamicsConfig, counts: np.ndarray, branch_weight: np.ndarray
) -> dict:
    names, n_comp, G = dens.names, cfg["n_components"], cfg["grid_points"]
    V, F, C, NM = store.VARIABLE, store.FRAME, store.COMPONENT, VARIABLE_NMF
    fits = nmf.fits
    weights = np.stack([fits[v].weights.T for v in nmf.names])  # (nmf, component, frame)
    w_lo, w_hi = weight_intervals(nmf, weights, cfg)
    comps = np.stack([fits[v].components for v in names], axis=1)  # densities: (component, variable, grid)
    stacked_h = fits[STACKED].components.reshape(n_comp, len(names), G)
    stacked_h = stacked_h / np.array([dens.grids[v].step for v in names])[None, :, None]
    mass = np.stack([dens.kdes[v].sum(axis=1) * dens.grids[v].step for v in names])
    return {
        "kde": (
            (V, F, store.GRID),
            np.stack([dens.kdes[v] for v in names]),
            {"units": "1/unit of the variable", "long_name": "kernel density per frame"},
        ),
        "kde_mass": ((V, F), mass, {"units": "1", "long_name": "fraction of the frame's values inside the grid"}),
        "bandwidth": (
            (V, F),
            np.stack([dens.bandwidths[v] for v in names]),
            {"units": "unit of the variable", "long_name": "Gaussian kernel standard deviation"},
        ),
        "n_values": (F, counts, {"long_name": "pixels used per frame"}),
        "components": (
            (C, V, store.GRID),
            comps,
            {
                "units": "1/unit of the variable",
                "long_name": "NMF components of each variable's own KDE(L, t) (densities, integrate to 1)",
            },
        ),
        "stacked_components": (
            (C, V, store.GRID),
            stacked_h,
            {
                "units": "1/unit of the variable",
                "long_name": "NMF components of the stacked KDEs (mean integral over variables 1)",
            },
        ),
        "weights": ((NM, C, F), weights, {"units": "1", "long_name": "NMF weight of each component per frame"}),
        "weights_ci_low": (
            (NM, C, F),
            w_lo,
            {"units": "1", "long_name": "interval low of the weights (pixel blocks resampled, NMF refitted)"},
        ),
        "weights_ci_high": ((NM, C, F), w_hi, {"units": "1", "long_name": "interval high of the weights"}),
        "reconstruction_error": (
            NM,
            [fits[v].relative_error for v in nmf.names],
            {"units": "1", "long_name": "relative Frobenius error ‖X − WH‖ / ‖X‖"},
        ),
        "nmf_n_iter": (NM, [fits[v].n_iter for v in nmf.names]),
        "nmf_converged": (NM, [fits[v].converged for v in nmf.names]),
        "branch_weight": (
            (NM, C, DIRECTION, STIM_POINT),
            branch_weight,
            {"units": "1", "long_name": "weights of the closed loop's branches at branch_stimulus"},
        ),
    }


def _attrs(cfg: DynamicsConfig, stim: Stimulus, pooled: hy.LoopOperator, blocked: bool, window: int | None) -> dict:
    attrs = {
        "pixels": cfg["pixels"],
        "bandwidth_method": cfg["bandwidth"],
        "bandwidth_scope": cfg["bandwidth_scope"],
        "angle_period": cfg["angle_period"],
        "n_bootstrap": cfg["bootstrap"],
        "ci_level": cfg["ci_level"],
        "stimulus": stim.name,
        "stimulus_units": stim.units,
        "hysteresis_note": pooled.note,
        "resampling": (
            "pixels in spatial blocks (the same blocks in every frame), NMF "
            f"{'refitted' if cfg['nmf_resample'] == 'refit' else 're-projected'}; "
            "the loop model's residuals in "
            f"time blocks ({cfg['time_block']} frames) within branches, whole cycles where several"
            if blocked
            else "pixels resampled within frames (no positions given)"
        ),
        "layout": (
            "kde(variable, frame, grid) is evaluated at grid_value(variable, grid); components are per "
            "variable NMFs, stacked_components the NMF of all variables side by side; weights(variable_nmf, "
            "component, frame) with variable_nmf = variables + 'stacked'. Weights are fractions: components "
            "integrate to 1 over the grid. Angle densities are per rad over one period."
        ),
    }
    if window is not None:
        attrs["window"] = int(window)
    return attrs


def dynamics_dataset(
    dens: Densities,
    nmf: Factorisation,
    counts: np.ndarray,
    stim: Stimulus,
    sweep: hy.Sweep,
    pooled: hy.LoopOperator,
    cfg: DynamicsConfig,
    bias: np.ndarray | None = None,
    time: np.ndarray | None = None,
    window: int | None = None,
    blocked: bool = True,
) -> xr.Dataset:
    """The dynamics dataset of one window size, without the store's provenance attrs (layout: see
    :func:`ferrolens.dynamics.api.kde_nmf`). ``counts``: values per frame; ``pooled``: the pooled loop;
    ``blocked``: resamples drew spatial pixel blocks (else pixels within frames)."""
    n_frames = counts.size
    branch_weight = branch_weights(nmf, pooled, cfg["n_components"], cfg["bias_points"])
    coords = _coords(dens, nmf, cfg, stim, sweep, pooled, n_frames, bias, time)
    data = _data_vars(dens, nmf, cfg, counts, branch_weight)
    return xr.Dataset(data, coords=coords, attrs=_attrs(cfg, stim, pooled, blocked, window))


# --- the sweep of all window sizes --------------------------------------------------------
def circular_stats(arr: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Circular mean (in ``[-period/2, period/2)``) and standard deviation (``sqrt(-2 ln R)``) per row of
    ``arr`` (rows, values), NaN ignored (a row with no value: NaN); values and results in the variable's
    units with the given period. :func:`scipy.stats.circmean` and :func:`scipy.stats.circstd`."""
    from scipy.stats import circmean, circstd

    half = period / 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row is NaN, as said
        mu = np.asarray(circmean(arr, high=half, low=-half, axis=1, nan_policy="omit"), dtype=float)
        sd = np.asarray(circstd(arr, high=half, low=-half, axis=1, nan_policy="omit"), dtype=float)
    return mu, sd


def linear_stats(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per row of ``arr`` (rows, values) over its finite values (NaN: none)."""
    finite = np.isfinite(arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.nanmean(np.where(finite, arr, np.nan), axis=1)
        sd = np.nanstd(np.where(finite, arr, np.nan), axis=1)
    return mu, sd


def latent_stats(arr: np.ndarray, period: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean and standard deviation of one latent map ``arr`` (frame, pixel) float64 over its
    finite pixels: circular with ``period`` when given (the angle), else linear."""
    return linear_stats(arr) if period is None else circular_stats(arr, period)


def frame_stats(labels: list[str], stats: list[tuple[np.ndarray, np.ndarray]]) -> xr.Dataset:
    """latent_mean/latent_sd(frame, latent) from each latent's :func:`latent_stats`, in the order of ``labels``."""
    mu = np.full((stats[0][0].size if stats else 0, len(labels)), np.nan)
    sd = np.full_like(mu, np.nan)
    for j, (m, s) in enumerate(stats):
        mu[:, j], sd[:, j] = m, s
    L, F = store.LATENT, store.FRAME
    return xr.Dataset(
        {
            "latent_mean": (
                (F, L),
                mu,
                {"long_name": "per-frame mean of each latent over the pixels (circular for angle)"},
            ),
            "latent_sd": ((F, L), sd, {"long_name": "per-frame standard deviation (circular for angle)"}),
        },
        coords={L: labels},
    )


def sweep_part(dyn: xr.Dataset, stats: xr.Dataset, window: int) -> xr.Dataset:
    """One window size's part of the sweep: what it keeps of the (loaded) dynamics store, and the
    latents' frame statistics, along a new ``window`` dimension."""
    part = dyn[SWEEP_VARIABLES].load()  # the dynamics declaration (store.STORE_KINDS) guarantees these and the coords
    part = part.reset_coords(["grid_value", "branch", "segment"])
    part = xr.merge([part, stats], compat="override", join="outer")
    part.attrs = {}
    return part.expand_dims({store.WINDOW: [int(window)]})


def merge_windows(parts: list[xr.Dataset]) -> xr.Dataset:
    """The parts of :func:`sweep_part` in one dataset along ``window`` (without provenance attrs)."""
    merged = xr.concat(parts, dim=store.WINDOW, join="outer", coords="minimal", compat="override", data_vars="all")
    merged = merged.set_coords(["grid_value"])
    for name in ("branch", "segment"):  # identical across windows (same bias): a frame coordinate again
        merged = merged.assign_coords({name: merged[name].isel({store.WINDOW: 0}, drop=True)})
    merged[store.WINDOW].attrs = {"units": "px", "long_name": "rVAE window size n"}
    return merged
