"""Which pixels the dynamics stage uses, per frame, and their spatial blocks (no file I/O).

The same pixels serve every variable of a frame, so a resample draws pixels
(blocks) jointly: a pixel carries all its latents.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import store
from ..errors import InputError
from ..sections import DynamicsConfig
from .densities import ANGLE


def structure_mask(label: xr.DataArray, mean: xr.DataArray, structure_class: int, where: str) -> np.ndarray:
    """(frame, y, x) bool: pixels ``label`` (frame, y, x) marks ``structure_class``, aligned to the
    latent maps ``mean`` (frame, y, x, latent); ``where`` names the segmentation in errors.

    Per-pixel maps may cover a crop of the frame: frames of another size are aligned by
    their y/x pixel coordinates.
    """
    if label.sizes[store.FRAME] != mean.sizes[store.FRAME]:
        raise InputError(
            where,
            f"has {label.sizes[store.FRAME]} frames, the latents {mean.sizes[store.FRAME]}",
            "the segmentation of the same movie",
        )
    same_shape = (label.sizes[store.Y], label.sizes[store.X]) == (mean.sizes[store.Y], mean.sizes[store.X])
    if not same_shape:
        if all(d in label.coords and d in mean.coords for d in (store.Y, store.X)):
            try:
                label = label.sel({store.Y: mean[store.Y].values, store.X: mean[store.X].values})
            except KeyError as exc:
                raise InputError(
                    where,
                    "pixel coordinates y/x do not cover those of the latent maps",
                    "a segmentation covering every latent-map pixel",
                ) from exc
        else:
            raise InputError(
                where,
                f"frames are {label.sizes[store.Y]}×{label.sizes[store.X]}, the latent maps "
                f"{mean.sizes[store.Y]}×{mean.sizes[store.X]}",
                "the same frame size",
            )
    return label.transpose(store.FRAME, store.Y, store.X).values == structure_class


def select_from_maps(
    block: np.ndarray,
    variables: list[str],
    cfg: DynamicsConfig,
    rng: np.random.Generator,
    structure: np.ndarray | None = None,
    determined: np.ndarray | None = None,
) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """:func:`select_pixels` on the maps as one array ``block`` (frame, y, x, variable)."""
    maps = {v: block[..., i] for i, v in enumerate(variables)}
    ok = np.isfinite(block).all(axis=-1)
    if structure is not None:
        ok &= structure
    out: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    where: list[np.ndarray] = []
    for f in range(block.shape[0]):
        idx = np.flatnonzero(ok[f])
        if cfg["pixels"] == "subsample" and idx.size > cfg["subsample_size"]:
            idx = np.sort(rng.choice(idx, size=cfg["subsample_size"], replace=False))
        where.append(idx)
        for v in variables:
            values = maps[v][f].ravel()[idx]
            if v == ANGLE and determined is not None:  # the pixel stays (its other latents count), its angle not
                values = np.where(determined[f].ravel()[idx], values, np.float32(np.nan))
            out[v].append(values)
    return out, where


def select_pixels(
    lat: xr.Dataset,
    variables: list[str],
    cfg: DynamicsConfig,
    rng: np.random.Generator,
    structure: np.ndarray | None = None,
    determined: np.ndarray | None = None,
) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Per-frame values of each variable at the selected pixels, and those pixels' flat indices.

    Pixels: those finite in every variable, and (``pixels: structure``) where
    ``structure`` is True; ``pixels: subsample`` then keeps a seeded random
    ``subsample_size`` of them per frame. The same pixels serve every variable,
    so a resample draws pixels (blocks) jointly. ``determined`` (frame, y, x)
    bool, optional: where the angle is determined (the latents store's
    ``angle_confidence``, :func:`ferrolens.rvae.confidence.determined_in`);
    elsewhere the angle's value is NaN, which the angle's KDE and bandwidth
    do not count.

    Returns ``({variable: [values of frame 0 (n_0,), …]}`` (float32), ``[flat index y·X + x of frame 0, …]``).
    """
    # one read of the maps: the rVAE store chunks all latents of a frame together
    block = lat["mean"].sel({store.LATENT: variables}).transpose(store.FRAME, store.Y, store.X, store.LATENT).values
    return select_from_maps(block, variables, cfg, rng, structure, determined)


def select_values(
    lat: xr.Dataset,
    variables: list[str],
    cfg: DynamicsConfig,
    rng: np.random.Generator,
    structure: np.ndarray | None = None,
) -> dict[str, list[np.ndarray]]:
    """:func:`select_pixels` without the pixel indices."""
    return select_pixels(lat, variables, cfg, rng, structure)[0]


def pixel_blocks(where: list[np.ndarray], shape: tuple[int, int], size: int) -> list[np.ndarray]:
    """Square block (``size`` px) of each selected pixel, numbered alike in every frame."""
    _, nx = shape
    per_row = -(-nx // size)
    return [(idx // nx // size) * per_row + (idx % nx) // size for idx in where]
