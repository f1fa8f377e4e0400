"""Has the rVAE learned? Two checks that need no ground truth, and plain warnings.

* :func:`reconstruction_r2` — held-out reconstruction ``R² = 1 - SSE / SST``:
  windows decoded from their posterior means (angle, shift and z) against the
  windows, ``SST`` the sum of squares about the windows' mean value. 0 is a
  decoder that draws the average; 1 is perfect.
* :func:`rotation_check` — turn each window by known angles ``φ`` and encode
  it again: the latent angle must move by ``φ`` (modulo ``2π / m`` for
  content with ``m``-fold symmetry, ``m = 2`` for walls). Reported as the
  fraction of (window, ``φ``) pairs that follow to within ``tolerance``
  (default 15°). Both the turned and the unturned window are cut to the
  inscribed disc (outside it: the window's median, the background of a wall
  map), so that no content enters or leaves the window as it turns; turned
  windows are resampled bilinearly. The angles avoid multiples of 45°, which
  the equivariant encoder follows by construction.

:func:`judge` compares both with thresholds (``rvae.quality`` in the config)
and returns the warnings; :func:`warn` writes them to the log.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import coordinate_grid, rotate_translate

#: The turns of the rotation check (degrees): twelve, 30° apart, none a multiple of 45°.
CHECK_ANGLES = tuple(11.0 + 30.0 * j for j in range(12))


def reconstruction_r2(model: Any, windows: np.ndarray, batch_size: int = 1024) -> float:
    """``1 - Σ(x - x̂)² / Σ(x - x̄)²`` over windows ``(N, n, n)``, ``x̂`` decoded from the posterior means."""
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] == 0:
        return float("nan")
    sse = 0.0
    for a in range(0, w.shape[0], batch_size):
        x = w[a : a + batch_size]
        m, _ = model.encode(x, batch_size=batch_size)
        rec = model.decode(m[:, 3:], angle=m[:, 0], shift=m[:, 1:3])
        sse += float(((rec.astype(np.float64) - x) ** 2).sum())
    sst = float(((w.astype(np.float64) - w.mean(dtype=np.float64)) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")


def turned(windows: np.ndarray, angle: float) -> np.ndarray:
    """Windows ``(N, n, n)`` turned counter-clockwise as displayed by ``angle`` (radians), cut to a disc.

    Pixels outside the inscribed disc take each window's median; inside,
    bilinear resampling about the window's centre (``angle = 0`` is exact).
    ``angle = π/2`` is ``np.rot90`` of the disc-cut window.
    """
    w = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    n = w.shape[-1]
    grid = coordinate_grid(n)
    disc = (grid.pow(2).sum(-1) <= 1.0 + 1e-6).reshape(n, n)
    fill = w.reshape(w.shape[0], -1).median(dim=1).values[:, None, None]
    if angle == 0.0:
        out = w
    else:
        # the decoder's convention: sampling the content at R(angle)·p turns it counter-clockwise by angle
        src = rotate_translate(grid, float(angle))[0].reshape(1, n, n, 2).expand(w.shape[0], n, n, 2)
        out = F.grid_sample(w.unsqueeze(1), src, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
    return torch.where(disc, out, fill).numpy()


def rotation_check(model: Any, windows: np.ndarray, symmetry: int = 2, tolerance_deg: float = 15.0,
                   angles_deg: tuple[float, ...] = CHECK_ANGLES, batch_size: int = 1024) -> dict[str, float]:
    """Does the latent angle follow known turns of the input?

    Returns ``follow`` (fraction of (window, turn) pairs whose angle moved by
    the turn to within ``tolerance_deg``, modulo ``360° / symmetry``) and
    ``median_error_deg`` (median of the absolute misses, degrees).
    """
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] == 0:
        return {"follow": float("nan"), "median_error_deg": float("nan")}
    period = 2 * math.pi / symmetry
    base = model.encode(turned(w, 0.0), batch_size=batch_size)[0][:, 0].astype(np.float64)
    errors = []
    for deg in angles_deg:
        phi = math.radians(deg)
        got = model.encode(turned(w, phi), batch_size=batch_size)[0][:, 0].astype(np.float64)
        miss = (got - base - phi + period / 2) % period - period / 2
        errors.append(np.abs(miss))
    err = np.degrees(np.concatenate(errors))
    return {"follow": float(np.mean(err < tolerance_deg)), "median_error_deg": float(np.median(err))}


def assess(model: Any, windows: np.ndarray, symmetry: int, max_windows: int = 512, seed: int = 0) -> dict[str, Any]:
    """Both checks on (up to ``max_windows`` of, seeded) held-out windows ``(N, n, n)``."""
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] > max_windows:
        w = w[np.sort(np.random.default_rng(seed).permutation(w.shape[0])[:max_windows])]
    rot = rotation_check(model, w, symmetry)
    return {"r2": reconstruction_r2(model, w), "angle_follow": rot["follow"],
            "angle_median_error_deg": rot["median_error_deg"], "windows": int(w.shape[0]),
            "angle_symmetry": int(symmetry), "angle_tolerance_deg": 15.0,
            "angle_turns_deg": list(CHECK_ANGLES)}


def judge(quality: dict[str, Any], min_r2: float, min_angle: float, what: str = "rVAE") -> list[str]:
    """Plain warnings for every check below its threshold (empty when the model passes)."""
    out = []
    r2, follow = quality.get("r2", float("nan")), quality.get("angle_follow", float("nan"))
    if not r2 >= min_r2:
        out.append(f"{what} has NOT learned to reconstruct its windows: held-out R² = {r2:.3f} < {min_r2} "
                   f"(rvae.quality.min_r2); its latents and decoded maps are not to be trusted")
    if not follow >= min_angle:
        out.append(f"{what}'s latent angle does NOT follow rotations of its input: "
                   f"{100 * follow:.0f}% of turned held-out windows within "
                   f"{quality.get('angle_tolerance_deg', 15.0):.0f}° < {100 * min_angle:.0f}% "
                   f"(rvae.quality.min_angle_follow); the angle maps are not orientations")
    return out


def summary(quality: dict[str, Any]) -> str:
    """One line: held-out R² and the rotation check."""
    return (f"held-out R² {quality.get('r2', float('nan')):.3f}; latent angle follows "
            f"{100 * quality.get('angle_follow', float('nan')):.0f}% of known turns within "
            f"{quality.get('angle_tolerance_deg', 15.0):.0f}° (median miss "
            f"{quality.get('angle_median_error_deg', float('nan')):.1f}°, {quality.get('windows', 0)} windows)")


def warn(log: logging.Logger, quality: dict[str, Any], min_r2: float, min_angle: float, what: str = "rVAE") -> list[str]:
    """Log the summary, then each warning at WARNING level; returns the warnings."""
    log.info("%s quality: %s", what, summary(quality))
    msgs = judge(quality, min_r2, min_angle, what)
    for m in msgs:
        log.warning("%s", m)
    return msgs
