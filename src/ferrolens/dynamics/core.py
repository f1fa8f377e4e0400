"""The array core of the dynamics stage (no file I/O): per-frame latent values → KDE(L, t) of each
variable → NMF of each and of all stacked → resampled intervals → hysteresis of every weight against
the stimulus → the dynamics dataset and the hysteresis table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from ..config import Partial, section
from ..errors import InputError
from ..sections import DynamicsConfig
from ..stimulus import Stimulus
from .bootstrap import replicate_weights, resample_kdes
from .densities import Densities, frame_densities
from .layout import STACKED, Factorisation, dynamics_dataset
from .nmf import fit_nmf
from .table import loop_rows, loop_specs, loop_table, stimulus_sweep


def check_n_components(cfg: DynamicsConfig, n_frames: int) -> None:
    """``n_components`` at most min(frames, grid_points), else :class:`InputError`."""
    limit = min(n_frames, cfg["grid_points"])
    if cfg["n_components"] > limit:
        raise InputError(
            "config dynamics.n_components",
            f"value {cfg['n_components']}",
            f"at most min(frames, grid_points) = {limit}",
        )


def as_stimulus(stimulus: Stimulus | None, bias: np.ndarray | None, time: np.ndarray | None, n_frames: int) -> Stimulus:
    """``stimulus`` when given, else the bias (V), else a time that moves (s), else the frame index."""
    if stimulus is not None:
        return stimulus
    if bias is not None:
        return Stimulus("bias", np.asarray(bias, float), "V")
    if time is not None and np.ptp(np.asarray(time, float)) > 0:
        return Stimulus("time", np.asarray(time, float), "s")
    return Stimulus("frame", np.arange(n_frames, dtype=float), "")


def check_frames(
    frames: dict[str, list[np.ndarray]], cfg: DynamicsConfig, blocks: list[np.ndarray] | None
) -> np.ndarray:
    """Values per frame (F,) after checking that every variable has the same pixels (and blocks)."""
    names = list(frames)
    if not names:
        raise InputError("config dynamics.variables", "is empty", "at least one variable")
    n_frames = len(frames[names[0]])
    check_n_components(cfg, n_frames)
    counts = np.array([v.size for v in frames[names[0]]])
    if any(len(frames[v]) != n_frames or [a.size for a in frames[v]] != counts.tolist() for v in names):
        raise ValueError("every variable needs the same number of values per frame (the same pixels)")
    if blocks is not None and [b.size for b in blocks] != counts.tolist():
        raise ValueError("blocks need one block index per value of each frame")
    if counts.sum() == 0:
        raise InputError("latents", "no pixels selected in any frame", "finite latent values at selected pixels")
    return counts


def checked_stimulus(
    stimulus: Stimulus | None, bias: np.ndarray | None, time: np.ndarray | None, n_frames: int
) -> tuple[Stimulus, np.ndarray | None]:
    """The stimulus (:func:`as_stimulus`) and the bias as float, each checked to hold one finite value per frame."""
    if bias is not None:
        bias = np.asarray(bias, dtype=float)
        if bias.shape != (n_frames,):
            raise InputError("bias", f"has shape {bias.shape}", f"one value per frame ({n_frames})")
    stim = as_stimulus(stimulus, bias, time, n_frames)
    if stim.values.shape != (n_frames,) or not np.isfinite(stim.values).all():
        raise InputError(
            stim.name, f"has shape {stim.values.shape} or non-finite values", f"one finite value per frame ({n_frames})"
        )
    return stim, bias


def factorise(
    frames: dict[str, list[np.ndarray]],
    dens: Densities,
    cfg: DynamicsConfig,
    seed: int,
    rng: np.random.Generator,
    blocks: list[np.ndarray] | None,
) -> Factorisation:
    """NMF of each variable's KDE(L, t) (densities: components integrate to 1) and of all of them
    stacked (mass per bin), and (``bootstrap`` > 0) the weights of every resample: pixels in
    spatial blocks → KDEs → NMF refitted (or re-projected)."""
    names = dens.names
    inputs = {v: dens.kdes[v] for v in names}
    inputs[STACKED] = dens.stack(dens.kdes)
    measures = {v: dens.grids[v].step for v in names}
    measures[STACKED] = 1.0 / len(names)  # stacked rows sum to n_variables: weights stay fractions
    fits = {
        v: fit_nmf(inputs[v], cfg["n_components"], seed, measures[v], cfg["nmf_max_iter"], cfg["nmf_tol"])
        for v in inputs
    }
    replicates: dict[str, np.ndarray | None] = {v: None for v in fits}
    if cfg["bootstrap"] > 0:
        boot = resample_kdes(frames, dens.grids, dens.bandwidths, cfg["bootstrap"], rng, blocks)
        boot[STACKED] = dens.stack(boot)
        replicates = {**replicate_weights(boot, fits, measures, cfg)}
    return Factorisation(fits, replicates)


def dynamics_core(
    frames: dict[str, list[np.ndarray]],
    bias: np.ndarray | None,
    cfg: Partial[DynamicsConfig],
    seed: int,
    time: np.ndarray | None = None,
    window: int | None = None,
    blocks: list[np.ndarray] | None = None,
    stimulus: Stimulus | None = None,
) -> tuple[xr.Dataset, pd.DataFrame]:
    """KDE, NMF and hysteresis of per-frame latent values (no I/O).

    Parameters
    ----------
    frames : ``{variable: [values of frame 0, …]}``, the same pixels for every variable
        of a frame (see :func:`~ferrolens.dynamics.pixels.select_pixels`); a NaN value is not counted
        (an angle where it is not determined: its pixel counts for the other variables). ``angle`` is circular
        with period ``cfg['angle_period']`` (rad; None: π, lines and walls); other variables are
        linear (latent units).
    bias : (F,) bias per frame in V, or None.
    cfg : the ``dynamics:`` section (partial is fine; defaults filled).
    seed : seeds the NMF initialisation and every resample.
    time : (F,) time per frame in s, optional. window : recorded in the table.
    blocks : per frame, the spatial block of each value (:func:`~ferrolens.dynamics.pixels.pixel_blocks`);
        None: values are independent pixels (resampled within frames).
    stimulus : what the loop runs against; default bias, else time, else the frame index.

    Returns
    -------
    (dataset, table): the dynamics dataset (without store attrs; see
    :func:`ferrolens.dynamics.api.kde_nmf` for its layout) and the hysteresis table, one row per
    (variable or 'stacked', component, cycle), columns :data:`~ferrolens.dynamics.table.TABLE_COLUMNS`.
    """
    cfg = section("dynamics", cfg)
    if cfg["angle_period"] is None:  # no latents store to ask (kde_nmf passes the one it records)
        cfg = section("dynamics", {**cfg, "angle_period": math.pi})
    counts = check_frames(frames, cfg, blocks)
    stim, bias = checked_stimulus(stimulus, bias, time, counts.size)
    boot_seed, _, stat_seed = np.random.SeedSequence(seed).spawn(3)
    dens = frame_densities(frames, cfg)  # 1. KDE per variable on one grid shared by all frames
    nmf = factorise(frames, dens, cfg, seed, np.random.default_rng(boot_seed), blocks)  # 2.-3. NMF, resamples
    # 4. hysteresis of every weight against the stimulus: the pooled loop, and each cycle when several
    sweep = stimulus_sweep(stim, cfg, bias is not None)
    specs = loop_specs(sweep, cfg)
    curves = {v: nmf.fits[v].weights.T for v in nmf.names}  # (C, F)
    reps = {v: None if r is None else np.transpose(r, (0, 2, 1)) for v, r in nmf.replicates.items()}  # (B, C, F)
    rows = loop_rows(curves, reps, sweep, specs, cfg, window, np.random.default_rng(stat_seed))
    table = loop_table(rows, cfg["alpha"])
    # 5. dataset
    ds = dynamics_dataset(
        dens, nmf, counts, stim, sweep, specs[0][1], cfg, bias, time, window, blocked=blocks is not None
    )
    return ds, table
