"""Resampled KDEs and NMF weights for the intervals of the dynamics stage (no file I/O).

Each resample draws square pixel blocks with replacement, the same blocks in
every frame (a block is a piece of the sample followed through the movie),
recomputes every KDE and refits the NMF from the point estimate (components
matched to it), or re-projects the resampled KDEs on the point estimate's
components.
"""

from __future__ import annotations

import numpy as np

from ..sections import DynamicsConfig
from .kde import Grid, KDEPlan, kde_frames
from .nmf import NMFResult, nnls_weights, refit_nmf

BOOT_CHUNK = 1 << 22  # atom counts held per bootstrap pass (bounds temporaries to ~100 MB)


def block_multiplicities(
    blocks: list[np.ndarray], n_boot: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Blocks renumbered 0 … n_blocks-1 (per frame), and how often each replicate draws each block
    (n_boot, n_blocks): n_blocks draws with replacement per replicate."""
    ids, inverse = np.unique(np.concatenate(blocks), return_inverse=True)
    cuts = np.cumsum([b.size for b in blocks])[:-1]
    nb = ids.size
    mult = np.stack([np.bincount(rng.integers(0, nb, nb), minlength=nb) for _ in range(n_boot)]).astype(float)
    return np.split(inverse, cuts), mult


def frame_atoms(plan: KDEPlan, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom of each value of a frame (dropped values: the spare atom ``plan.n_atoms``), and the
    frame's exact binning minus its binning through the atoms (1, bins): added back, scaled to a
    replicate's weight, it centres replicates on the exact estimate."""
    k, t, keep = plan.positions(values)  # a circular plan wraps the values itself
    atoms = np.full(values.size, plan.n_atoms, np.int64)
    atoms[keep] = plan.atom_index(k, t)
    ones = np.bincount(atoms, minlength=plan.n_atoms + 1)[None, :-1].astype(float)
    return atoms, plan.bin(k, t, 0, 1) - plan.bin_atoms(ones)


def _resample_frame(
    f: int,
    frames: dict[str, list[np.ndarray]],
    plans: dict[str, KDEPlan],
    bws: dict[str, np.ndarray],
    out: dict[str, np.ndarray],
    rng: np.random.Generator,
    blocks: list[np.ndarray] | None,
    block_mult: np.ndarray | None,
) -> None:
    """Every replicate's KDE of frame ``f`` of every variable, into ``out[v][:, f]`` (NaN: no value drawn)."""
    names = list(frames)
    n = frames[names[0]][f].size
    n_boot = out[names[0]].shape[0]
    atoms, correction = {}, {}
    for v in names:
        atoms[v], correction[v] = frame_atoms(plans[v], frames[v][f])
    # a NaN value (an undetermined angle) is drawn with its pixel but not counted, as kde_frames does
    counted = {v: np.isfinite(frames[v][f]) for v in names}
    n_counted = {v: max(int(counted[v].sum()), 1) for v in names}
    per_pass = max(1, BOOT_CHUNK // max(plans[v].n_atoms for v in names))
    for b0 in range(0, n_boot, per_pass):
        nb_ = min(per_pass, n_boot - b0)
        counts = {v: np.empty((nb_, plans[v].n_atoms)) for v in names}
        total = {v: np.empty(nb_) for v in names}
        for r in range(nb_):
            if block_mult is not None and blocks is not None:  # the multiplicities come with the blocks
                mult = block_mult[b0 + r][blocks[f]]
            else:
                mult = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for v in names:
                total[v][r] = mult[counted[v]].sum()
                counts[v][r] = np.bincount(atoms[v], weights=mult, minlength=plans[v].n_atoms + 1)[:-1]
        for v in names:
            binned = plans[v].bin_atoms(counts[v]) + correction[v] * (total[v] / n_counted[v])[:, None]
            dens = plans[v].smooth(binned, bws[v][f])
            good = total[v] > 0  # a frame whose blocks were all left out keeps its own estimate
            out[v][b0 : b0 + nb_, f] = np.where(good[:, None], dens / np.maximum(total[v], 1)[:, None], np.nan)


def resample_kdes(
    frames: dict[str, list[np.ndarray]],
    grids: dict[str, Grid],
    bws: dict[str, np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    blocks: list[np.ndarray] | None = None,
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
        blocks, block_mult = block_multiplicities(blocks, n_boot, rng)
    for f in range(n_frames):
        if frames[names[0]][f].size:
            _resample_frame(f, frames, plans, bws, out, rng, blocks, block_mult)
    for v in names:  # frames without any drawn block: the point estimate stands in
        bad = np.isnan(out[v])
        if bad.any():
            point = kde_frames(frames[v], grids[v], bws[v])
            out[v] = np.where(bad, point[None], out[v])
    return out


def replicate_weights(
    boot: dict[str, np.ndarray], fits: dict[str, NMFResult], measures: dict[str, float], cfg: DynamicsConfig
) -> dict[str, np.ndarray]:
    """NMF weights (B, F, C) of each resampled KDE(L, t) ``boot[v]`` (B, F, G): refitted from the point
    estimate ``fits[v]`` (``nmf_resample: refit``), else projected on its components."""
    out = {}
    for v, point in fits.items():
        if cfg["nmf_resample"] == "project":
            out[v] = nnls_weights(boot[v], point.components)
        else:
            out[v] = np.stack(
                [
                    refit_nmf(boot[v][b], point, measures[v], cfg["nmf_max_iter"], cfg["nmf_tol"]).weights
                    for b in range(boot[v].shape[0])
                ]
            )
    return out
