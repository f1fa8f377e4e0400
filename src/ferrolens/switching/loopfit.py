"""The classical reading of a measured loop: a per-pixel parametric fit of the piezoresponse
against the bias (after Jesse, Lee and Kalinin, Rev. Sci. Instrum. 77, 073702 (2006), simplified).

Each branch is ``offset + amplitude · tanh((V − V_c) / width) + slope · V`` with its own coercive
bias ``V_c`` (rising, falling) and shared offset, amplitude, width and slope; fitted by robust
least squares (soft-L1 loss: single-frame glitches of the spectroscopy do not pull the fit).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from ..dynamics.hysteresis import RISING, Sweep
from .core import level_frames

PARAMS = ("offset", "amplitude", "rising_coercive", "falling_coercive", "width", "slope")


def _model(p: np.ndarray, v: np.ndarray, rising: np.ndarray) -> np.ndarray:
    vc = np.where(rising, p[2], p[3])
    return p[0] + p[1] * np.tanh((v - vc) / p[4]) + p[5] * v


def fit_loops(signal: np.ndarray, sweep: Sweep, margin: float = 0.05) -> dict[str, np.ndarray]:
    """Fit every pixel's loop: ``signal`` (F, P) against ``sweep.values`` (F,); frames of the rising
    segments (the virgin curve's too, if it rises) take the rising coercive bias, the others the falling.

    Returns each of :data:`PARAMS` (P,) and ``r2`` (P,), the fraction of the signal's variance the
    loop explains. Coercive biases are clipped to the sweep's range.
    """
    y = np.asarray(signal, float)
    v = sweep.values
    rising = sweep.branches.direction == RISING
    lo, hi = float(v.min()), float(v.max())
    top, bottom = level_frames(v, margin)
    out = {k: np.full(y.shape[1], np.nan) for k in (*PARAMS, "r2")}
    for j in range(y.shape[1]):
        yj = y[:, j]
        ok = np.isfinite(yj)
        if ok.sum() < 8:
            continue
        scale = float(np.nanstd(yj)) or 1.0
        z = yj / scale
        amp = 0.5 * (np.nanmean(z[top]) - np.nanmean(z[bottom]))
        p0 = [float(np.nanmedian(z)), amp if amp != 0 else 1.0, 0.25 * hi, 0.25 * lo, 0.1 * (hi - lo), 0.0]
        bounds = ([-np.inf, -np.inf, lo, lo, 0.01 * (hi - lo), -np.inf], [np.inf, np.inf, hi, hi, hi - lo, np.inf])
        res = least_squares(lambda p: _model(p, v[ok], rising[ok]) - z[ok], p0, bounds=bounds, loss="soft_l1",
                            f_scale=0.5)
        p = res.x
        resid = _model(p, v[ok], rising[ok]) - z[ok]
        for k, val in zip(PARAMS, p):
            out[k][j] = val * scale if k in ("offset", "amplitude", "slope") else val
        out["r2"][j] = 1.0 - np.mean(resid**2) / np.var(z[ok])
    return out
