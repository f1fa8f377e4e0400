"""Per-frame densities of the latent variables on one grid per variable (no file I/O).

``angle`` is circular with period ``cfg['angle_period']`` (rad); the other variables are linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..sections import DynamicsConfig
from .kde import Grid, circular_grid, kde_frames, linear_grid, rule_bandwidth

ANGLE = "angle"


def bandwidths(name: str, frames: list[np.ndarray], cfg: DynamicsConfig, period: float | None) -> np.ndarray:
    """Per-frame kernel bandwidths (F,) of one variable: fixed, or a rule's (``scott``/``silverman``)
    median over frames (``bandwidth_scope: shared``) or per frame, the median where a frame has none."""
    if cfg["bandwidth"] == "fixed":
        return np.full(len(frames), float(cfg["fixed_bandwidth"][name]))
    # NaN: a value not counted (an undetermined angle); the rule sees the counted ones
    per_frame = np.array([rule_bandwidth(v[np.isfinite(v)], cfg["bandwidth"], period) for v in frames])
    good = per_frame[np.isfinite(per_frame) & (per_frame > 0)]
    if good.size == 0:
        raise InputError(
            f"latents variable {name}",
            "values have no spread in any frame (or < 2 values)",
            "at least two distinct values in some frame",
        )
    shared = float(np.median(good))
    if cfg["bandwidth_scope"] == "shared":
        return np.full(len(frames), shared)
    return np.where(np.isfinite(per_frame) & (per_frame > 0), per_frame, shared)


def variable_grid(name: str, frames: list[np.ndarray], cfg: DynamicsConfig) -> tuple[Grid, np.ndarray]:
    """Grid and per-frame bandwidths (F,) of one variable.

    Circular (``angle``): one period. Linear: ``cfg['ranges'][name]`` when given, else the
    ``range_quantiles`` of all frames' values padded by ``range_padding`` median bandwidths.
    """
    period = cfg["angle_period"] if name == ANGLE else None
    if name == ANGLE and period is None:
        raise ValueError("the angle's period is not resolved (null): kde_nmf takes the rVAE's, dynamics_core π")
    h = bandwidths(name, frames, cfg, period)
    if period:
        return circular_grid(period, cfg["grid_points"]), h
    if name in cfg["ranges"]:
        lo, hi = cfg["ranges"][name]
    else:
        pooled = np.concatenate(frames)
        pooled = pooled[np.isfinite(pooled)]
        if pooled.size == 0:
            raise InputError(
                f"latents variable {name}",
                "no finite values at the selected pixels",
                "some pixels with finite latent values",
            )
        lo, hi = np.quantile(pooled, cfg["range_quantiles"])
        pad = cfg["range_padding"] * float(np.median(h))
        lo, hi = lo - pad, hi + pad
    if not hi > lo:
        lo, hi = lo - float(np.median(h)), hi + float(np.median(h))
    return linear_grid(lo, hi, cfg["grid_points"]), h


@dataclass(frozen=True)
class Densities:
    """Per-variable grids, bandwidths (F,) and KDEs (F, G) of the frames, in the variables' order."""

    grids: dict[str, Grid]
    bandwidths: dict[str, np.ndarray]
    kdes: dict[str, np.ndarray]

    @property
    def names(self) -> list[str]:
        return list(self.grids)

    def stack(self, per_var: dict[str, np.ndarray]) -> np.ndarray:
        """The variables' densities (…, G) side by side as masses per bin (…, V·G)."""
        return np.concatenate([per_var[v] * self.grids[v].step for v in self.names], axis=-1)


def frame_densities(frames: dict[str, list[np.ndarray]], cfg: DynamicsConfig) -> Densities:
    """KDE of every frame of every variable on one grid per variable, shared by all frames."""
    grids, bws, kdes = {}, {}, {}
    for v, values in frames.items():
        grids[v], bws[v] = variable_grid(v, values, cfg)
        kdes[v] = kde_frames(values, grids[v], bws[v])
    return Densities(grids, bws, kdes)
