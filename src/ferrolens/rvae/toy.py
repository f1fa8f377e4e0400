"""Small synthetic inputs with known geometry, for tests, benchmarks and notebooks."""

from __future__ import annotations

import numpy as np


def oriented_bars(
    n: int,
    angles: np.ndarray,
    *,
    width: float = 0.18,
    half_length: float = 0.75,
    shifts: np.ndarray | None = None,
) -> np.ndarray:
    """``(N, n, n)`` float32 windows, each a soft bar through the centre at an angle.

    Parameters
    ----------
    n : window size (pixels).
    angles : ``(N,)`` bar orientations in radians, counter-clockwise as displayed
        (row 0 at the top) from the x axis; a bar is the same after a half turn.
    width : Gaussian half-width of the bar across its axis (grid units; the
        window spans ``[-1, 1]``).
    half_length : half the bar's length (grid units). Shorter than the
        window's inscribed circle, so every orientation fits the same bar.
    shifts : optional ``(N, 2)`` ``(x, y)`` offsets of the bar centre (grid units).

    Values lie in ``[0, 1]``.
    """
    angles = np.asarray(angles, dtype=np.float64).reshape(-1)
    t = np.linspace(-1.0, 1.0, n)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    px, py = xx[None], yy[None]
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
        px = px - shifts[:, 0, None, None]
        py = py - shifts[:, 1, None, None]
    # direction (cos a, -sin a) in (x, y-down) coordinates = counter-clockwise as displayed
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    along = px * c - py * s
    across = px * s + py * c
    profile = np.exp(-0.5 * (across / width) ** 2)
    ends = 1.0 / (1.0 + np.exp((np.abs(along) - half_length) / 0.05))
    return (profile * ends).astype(np.float32)
