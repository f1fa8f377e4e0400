"""The classical reading of a measured loop: a per-pixel parametric fit of the piezoresponse
against the bias (after Jesse, Lee and Kalinin, Rev. Sci. Instrum. 77, 073702 (2006), simplified).

Each branch is ``offset + amplitude · tanh((V − V_c) / width) + slope · V`` with its own coercive
bias ``V_c`` (rising, falling) and shared offset, amplitude, width and slope. Fitted for all pixels
at once: for given ``V_c`` and width the model is linear in the other three, solved exactly
(batched 3×3 normal equations); ``V_c`` rising and falling and the width are searched on grids, first
jointly on a coarse one, then each on a fine one (a quarter of the bias step) with the others held.
Single-frame glitches of the spectroscopy are replaced by the median of their neighbours first.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from ..dynamics.hysteresis import RISING, Sweep

PARAMS = ("offset", "amplitude", "rising_coercive", "falling_coercive", "width", "slope")


def despike(y: np.ndarray, k: float = 6.0) -> np.ndarray:
    """(F, P) with frames further than ``k`` robust sd from the 3-frame running median replaced by it."""
    med = median_filter(y, size=(3, 1), mode="nearest")
    dev = y - med
    sd = 1.4826 * np.median(np.abs(dev), axis=0) + 1e-30
    return np.where(np.abs(dev) > k * sd, med, y)


def _solve(t: np.ndarray, v: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of y (F, P) on [1, t, v] per pixel, t (F, P) or (F, 1): coefficients (P, 3), SSE (P,)."""
    t = np.broadcast_to(t, y.shape)
    cols = np.stack([np.ones_like(y), t, np.broadcast_to(v[:, None], y.shape)], axis=-1)  # (F, P, 3)
    xtx = np.einsum("fpi,fpj->pij", cols, cols) + 1e-9 * np.eye(3)
    coef = np.linalg.solve(xtx, np.einsum("fpi,fp->pi", cols, y)[..., None])[..., 0]
    resid = y - np.einsum("fpi,pi->fp", cols, coef)
    return coef, (resid**2).sum(axis=0)


def fit_loops(
    signal: np.ndarray, sweep: Sweep, widths: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
) -> dict[str, np.ndarray]:
    """Fit every pixel's loop: ``signal`` (F, P) against ``sweep.values`` (F,); frames of rising
    segments (the virgin curve's too when it rises) take the rising coercive bias, the others the
    falling one. ``widths``: candidate widths as fractions of the bias range.

    Returns each of :data:`PARAMS` (P,) and ``r2`` (P,), the fraction of the (despiked) signal's
    variance the loop explains. Coercive biases lie in the sweep's range (grid resolution a quarter step).
    """
    v = sweep.values
    rising = (sweep.branches.direction == RISING)[:, None]
    y = despike(np.asarray(signal, float))
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    fine = np.arange(lo, hi + 1e-9, max(sweep.step, span / 64) / 4)
    coarse = np.linspace(lo, hi, 13)
    n = y.shape[1]
    best = np.full(n, np.inf)
    vr, vf, wd = np.zeros(n), np.zeros(n), np.full(n, widths[0] * span)

    def consider(r, f, w):
        t = np.where(rising, np.tanh((v[:, None] - r) / w), np.tanh((v[:, None] - f) / w))
        _, sse = _solve(t, v, y)
        better = sse < best
        best[better] = sse[better]
        vr[better] = np.broadcast_to(r, (n,))[better] if np.ndim(r) else r
        vf[better] = np.broadcast_to(f, (n,))[better] if np.ndim(f) else f
        wd[better] = np.broadcast_to(w, (n,))[better] if np.ndim(w) else w

    for w in widths:
        for r in coarse:
            for f in coarse:
                consider(r, f, w * span)
    for _ in range(2):  # each parameter on its fine grid, the others held at their best
        r0, f0, w0 = vr.copy(), vf.copy(), wd.copy()
        for r in fine:
            consider(r, f0, w0)
        r0 = vr.copy()
        for f in fine:
            consider(r0, f, w0)
        f0 = vf.copy()
        for w in widths:
            consider(r0, f0, w * span)
    t = np.where(rising, np.tanh((v[:, None] - vr) / wd), np.tanh((v[:, None] - vf) / wd))
    coef, sse = _solve(t, v, y)
    var = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return {
        "offset": coef[:, 0],
        "amplitude": coef[:, 1],
        "rising_coercive": vr,
        "falling_coercive": vf,
        "width": wd,
        "slope": coef[:, 2],
        "r2": 1.0 - sse / np.where(var > 0, var, np.nan),
    }
