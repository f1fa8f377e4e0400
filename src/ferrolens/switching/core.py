"""Per-pixel switching from a state against a cycling stimulus: pure arrays, no I/O.

A pixel (or spatial block) is described per frame by a feature vector ``x`` (F, P, D): its latent
codes (the angle as a point on the circle). Its *state* is its position between its own two
saturated levels: the mean of ``x`` over the frames near the largest stimulus (*top* level) and
near the smallest (*bottom*), ``s = 0`` at the bottom level, ``1`` at the top
(:func:`latent_state`; projection weighted by each feature's noise). Where the two levels do not
differ beyond the noise the pixel *never switches* (a test per pixel at level ``alpha``;
noise correlated between neighbouring frames allowed for, see :func:`noise_model`); nor where they
differ by less than ``min_separation`` of the features' spread over the movie (:func:`separation`:
a latent that moves by a hundredth of its range, however steadily, is not a switch).

Per branch (monotone segment of the stimulus, :func:`ferrolens.dynamics.hysteresis.analyse_sweep`),
:func:`branch_switching` fits the state in the sweep's direction with a step from the old level to
the new one (least squares, :func:`segment_switching`): the pixel is *switched* where the step is
decided against no step at all and both sides settle on their levels. The switching
bias is where ``s`` crosses 1/2 (linear between frames); its interval spans every step position the
data do not reject (at least one stimulus step: the data do not resolve more). A state the data do
not decide, that wanders between the levels or drifts like a line is *unsettled*; a branch whose
best fit has no step holds *no switch* (within its range); neither is given a bias.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..dynamics.hysteresis import FALLING, RISING, LoopOperator, Segment, Sweep

# status codes of a pixel on one branch direction (the store's ``status``)
SWITCHED, NO_SWITCH, NEVER, UNSETTLED, NO_DATA = 0, 1, 2, 3, 4
STATUS_MEANINGS = ("switched", "no_switch_in_branch", "never_switches", "unsettled", "no_data")
DIRECTIONS = {"rising": RISING, "falling": FALLING}
MAD = 1.482602218505602  # sd of a normal per median absolute deviation


@dataclass(frozen=True)
class State:
    """The state of P pixels over F frames (:func:`latent_state`).

    s (F, P): 0 at the bottom level, 1 at the top; NaN where a feature is missing.
    sigma (P,): sd of ``s`` in one frame from noise alone. p_value (P,): of the test that
    the two levels are equal (no switching). bistable (P,): ``p_value < alpha``.
    top, bottom (D,)-index arrays are not kept: only what readers use.
    """

    s: np.ndarray
    sigma: np.ndarray
    p_value: np.ndarray
    bistable: np.ndarray
    rho: np.ndarray  # (D,) lag-1 correlation of each feature's frame noise (pooled over pixels)
    separation: np.ndarray  # (P,) level separation in units of the features' spread (:func:`separation`)


def level_frames(values: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the top and bottom levels: stimulus within ``margin`` × range of its maximum / minimum."""
    v = np.asarray(values, float)
    span = margin * (v.max() - v.min())
    return np.flatnonzero(v >= v.max() - span), np.flatnonzero(v <= v.min() + span)


def _robust_var(d: np.ndarray) -> np.ndarray:
    """Robust variance along axis 0 (median absolute deviation from 0: differences have mean 0)."""
    a = np.abs(d)
    # np.median is several times faster than np.nanmedian; the latent maps are mostly complete
    med = np.nanmedian(a, axis=0) if np.isnan(a).any() else np.median(a, axis=0)
    return (MAD * med) ** 2


def noise_model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel noise sd (P, D) of each feature in one frame, and each feature's lag-1
    correlation (D,) pooled over pixels, as AR(1) noise.

    Robust to the few steps a switching pixel makes: the variances of first and second
    differences along frames come from their median absolute values. For AR(1) noise of sd σ
    and lag-1 correlation ρ, var Δ1 = 2σ²(1 − ρ) and var Δ2 = 2σ²(1 − ρ)(3 − ρ), so
    ρ = 3 − var Δ2 / var Δ1 (pooled over pixels as the median of the variances) and σ² = var Δ1 / (2(1 − ρ)).
    """
    d1 = np.diff(x, axis=0)
    v1 = _robust_var(d1)
    v2 = _robust_var(np.diff(d1, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(3.0 - np.nanmedian(v2, axis=0) / np.nanmedian(v1, axis=0), 0.0, 0.95)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    sigma = np.sqrt(v1 / (2.0 * (1.0 - rho)))
    return sigma, rho


def _mean_variance_factor(frames_a: np.ndarray, frames_b: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """(D,) var(mean over frames_a − mean over frames_b) / σ² for AR(1) noise of lag-1 correlation ρ."""

    def block(f, g):
        lag = np.abs(f[:, None] - g[None, :])
        return (rho[:, None, None] ** lag[None]).mean(axis=(1, 2))

    return block(frames_a, frames_a) + block(frames_b, frames_b) - 2 * block(frames_a, frames_b)


def separation(delta: np.ndarray, sigma: np.ndarray, factor: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(P,) size of each pixel's level difference ``delta`` (P, D) in units of each feature's ``spread``
    (D,) over the movie: √Σ_d max(Δ_d² − factor_d σ_d², 0) / spread_d², the noise's expected share of
    Δ² (``factor`` (D,) × ``sigma`` (P, D)², see :func:`_mean_variance_factor`) taken off, so that a
    pixel whose levels differ by noise alone has a separation near 0. A feature with no spread adds 0.
    An effect size, beside the test's significance: a latent that moves steadily by a hundredth of
    its range (a window with no content, its codes drifting with the image) is decided by the test but
    has a separation of about 0.01; a wall entering the window moves them by about their spread."""
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.maximum(delta**2 - factor * sigma**2, 0.0) / np.where(spread > 0, spread, np.inf) ** 2
    return np.sqrt(np.where(np.isfinite(excess), excess, 0.0).sum(axis=1))


def latent_state(
    x: np.ndarray, values: np.ndarray, margin: float = 0.05, alpha: float = 0.05, min_separation: float = 0.0
) -> State:
    """The state of each pixel between its two saturated levels (see the module doc).

    x : (F, P, D) features per frame and pixel (NaN: missing). values : (F,) stimulus.
    margin : frames within ``margin`` × range of the stimulus's maximum (minimum) hold the top
        (bottom) level. alpha : level of the test of no switching (two equal levels): the statistic
        Σ_d Δ_d² / var(Δ_d) over the D features, against D × F(D, ν), ν = 0.37 (F − 2) (the degrees
        of freedom of a median-absolute-deviation variance from F − 2 differences).
    min_separation : a pixel is two-level (``bistable``) only where its :func:`separation` also
        reaches this (units of each feature's sd over every frame and pixel of ``x``); 0: the test alone.
    """
    x = np.asarray(x, dtype=np.float64)
    n_frames, _, n_feat = x.shape
    top, bottom = level_frames(values, margin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels with no data (NaN: window off the frame)
        a = np.nanmean(x[top], axis=0)
        b = np.nanmean(x[bottom], axis=0)
        sigma, rho = noise_model(x)
    scale = np.nanmedian(sigma, axis=0)
    # a feature that does not vary (dx, dy of a model without translation) holds no information
    sigma = np.maximum(sigma, 1e-6 * np.where(np.isfinite(scale) & (scale > 0), scale, 1.0))
    delta = a - b
    factor = _mean_variance_factor(top, bottom, rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        z2 = delta**2 / sigma**2  # (P, D): squared level difference per feature in units of frame noise
        usable = np.isfinite(z2)
        stat = np.where(usable, z2 / factor, 0.0).sum(axis=1)
        n_used = usable.sum(axis=1)
        nu = 0.37 * max(n_frames - 2, 1)
        p = np.where(n_used > 0, stats.f.sf(stat / np.maximum(n_used, 1), np.maximum(n_used, 1), nu), np.nan)
        w = np.where(usable, delta / sigma**2, 0.0)  # noise-weighted projection onto the switch
        norm = np.where(usable, delta * w, 0.0).sum(axis=1)
        s = (np.nan_to_num(x - b[None]) * w[None]).sum(axis=2) / norm[None]
        s[np.isnan(x).any(axis=2) | ~(norm > 0)[None]] = np.nan
        sig_s = 1.0 / np.sqrt(norm)  # sd of s in one frame: 1 / |Δ|_noise
    sep = separation(delta, sigma, factor, np.nanstd(x.reshape(-1, n_feat), axis=0))
    return State(s, sig_s, p, (p < alpha) & (sep >= min_separation), rho, sep)


@dataclass(frozen=True)
class BranchResult:
    """Switching on one direction of the sweep, per pixel (P,): bias, its interval, status code."""

    bias: np.ndarray
    low: np.ndarray
    high: np.ndarray
    status: np.ndarray


def segment_switching(u: np.ndarray, v: np.ndarray, sigma: np.ndarray, alpha: float = 0.05) -> BranchResult:
    """Switching of P pixels over one monotone segment: a step from level 0 to level 1 fitted by
    least squares (the levels are known, only the step's place is free).

    u : (m, P) the state in the segment's time order, oriented so that a switch goes 0 → 1.
    v : (m,) the stimulus at those frames. sigma : (P,) the state's noise sd per frame (0: exact).

    With the last old frame at k (−1: already new at the start, m − 1: no switch), the sum of
    squares is a constant plus Σ_{i>k} (1 − 2 u_i). Its scale is the pixel's own: the residual
    variance of the best step in this segment (at least ``sigma²``), so that outliers and a state
    that wanders widen the interval instead of deciding. The best k̂ inside the segment is a
    *switch* when both ends are worse by more than the F(1, m − 2) quantile at ``1 − alpha``; the
    interval of the switching bias spans every k not worse than that (stimulus of its last old and
    first new frames). *No switch*: an end fits best. *Unsettled*: an end fits about as well (the
    data do not decide), or a side's mean is not beyond 1/2 (one-sided t at ``alpha``: the state
    wanders between the levels), or a straight line in the stimulus fits the segment better than
    the best step with free levels (a drift, e.g. the image moving under the window, not a switch).
    The switching bias is where ``u`` crosses 1/2 between frames k̂ and k̂ + 1 (linear).
    """
    m, n = u.shape
    g = np.nan_to_num(1.0 - 2.0 * u)  # a missing frame favours neither side
    # cost[k + 1] = Σ_{i>k} g_i for k = −1 … m − 1 (the sum of squares less a constant)
    cost = np.concatenate([np.cumsum(g[::-1], axis=0)[::-1], np.zeros((1, n))])
    best = np.argmin(cost, axis=0)  # index k + 1
    idx = np.arange(m)[:, None]
    finite = np.isfinite(u)
    resid = np.where(idx < best, u, u - 1.0)
    dof = np.maximum(finite.sum(axis=0) - 2, 1)
    sig2 = np.maximum(
        np.where(finite, resid, 0.0).__pow__(2).sum(axis=0) / dof, np.maximum(np.asarray(sigma, float), 1e-9) ** 2
    )
    excess = (cost - cost[best, np.arange(n)]) / sig2
    crit = stats.f.isf(alpha, 1, dof)
    inside = (best > 0) & (best < m)
    decided = (excess[0] > crit) & (excess[m] > crit)
    ok = excess <= crit
    k_lo = np.argmax(ok, axis=0) - 1  # the smallest k in the set
    k_hi = m - np.argmax(ok[::-1], axis=0) - 1  # the largest
    cols = np.arange(n)
    k = np.clip(best - 1, 0, max(m - 2, 0))
    k1 = np.minimum(k + 1, m - 1)
    du = u[k1, cols] - u[k, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(du > 0, np.clip((0.5 - u[k, cols]) / du, 0.0, 1.0), 0.5)
    point = v[k] + np.nan_to_num(frac, nan=0.5) * (v[k1] - v[k])
    ends = np.stack([v[np.clip(k_lo, 0, m - 1)], v[np.clip(k_hi + 1, 0, m - 1)]])
    # settled: each side's mean lies beyond 1/2 on its own side (one-sided t at alpha): a state that
    # wanders about 1/2 makes some step fit best, but sits on neither level
    scale = np.sqrt(sig2)
    settled = np.ones(n, bool)
    t_crit = stats.t.isf(alpha, dof)
    for side, sign in ((finite & (idx < best), -1.0), (finite & (idx >= best), 1.0)):
        count = side.sum(axis=0)
        mean = np.where(side, u, 0.0).sum(axis=0) / np.maximum(count, 1)
        settled &= (count > 0) & (sign * (mean - 0.5) * np.sqrt(np.maximum(count, 1)) / scale > t_crit)
    # a step, not a drift: the best step with free levels (its two sides about their own means) fits
    # better than a straight line in the stimulus (a slow drift of the latents with time — the image
    # drifting under the window — is a line along a branch; free levels, as the line's are free)
    sse_step = np.zeros(n)
    for side in (finite & (idx < best), finite & (idx >= best)):
        cnt = np.maximum(side.sum(axis=0), 1)
        sse_step += np.where(side, u - np.where(side, u, 0.0).sum(axis=0) / cnt, 0.0).__pow__(2).sum(axis=0)
    cnt = np.maximum(finite.sum(axis=0), 1)
    dv = np.where(finite, v[:, None] - np.where(finite, v[:, None], 0.0).sum(axis=0) / cnt, 0.0)
    du_ = np.where(finite, u - np.where(finite, u, 0.0).sum(axis=0) / cnt, 0.0)
    sxx = (dv**2).sum(axis=0)
    sse_line = (du_**2).sum(axis=0) - np.where(sxx > 0, (dv * du_).sum(axis=0) ** 2 / np.where(sxx > 0, sxx, 1), 0.0)
    stepwise = sse_step < sse_line
    switched = inside & decided & settled & stepwise
    status = np.full(n, UNSETTLED, np.int8)
    status[switched] = SWITCHED
    status[~inside] = NO_SWITCH
    status[np.isnan(u).all(axis=0)] = NO_DATA
    nan = np.full(n, np.nan)
    return BranchResult(
        np.where(switched, point, nan),
        np.where(switched, ends.min(axis=0), nan),
        np.where(switched, ends.max(axis=0), nan),
        status,
    )


def _combine(results: list[BranchResult], n: int) -> BranchResult:
    """One direction from its segments: the median switching bias over the segments where the pixel
    switched, the hull of their intervals; unsettled where any segment is, switched where any is."""
    if not results:
        nan = np.full(n, np.nan)
        return BranchResult(nan, nan, nan, np.full(n, NO_DATA, np.int8))
    st = np.stack([r.status for r in results])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: pixels that never switched
        bias = np.nanmedian(np.stack([r.bias for r in results]), axis=0)
        low = np.nanmin(np.stack([r.low for r in results]), axis=0)
        high = np.nanmax(np.stack([r.high for r in results]), axis=0)
    status = np.full(n, NO_SWITCH, np.int8)
    status[(st == SWITCHED).any(axis=0)] = SWITCHED
    status[(st == UNSETTLED).any(axis=0)] = UNSETTLED
    status[(st == NO_DATA).all(axis=0)] = NO_DATA
    keep = status == SWITCHED
    return BranchResult(np.where(keep, bias, np.nan), np.where(keep, low, np.nan), np.where(keep, high, np.nan), status)


def switching_segments(sweep: Sweep, virgin: bool) -> dict[str, list[Segment]]:
    """The segments of each direction whose crossings count: the closed loop's, and the virgin
    curve's when ``virgin`` (a first switch from the initial state)."""
    segs = list(sweep.closed) + ([sweep.virgin] if virgin and sweep.virgin is not None else [])
    return {name: [s for s in segs if s.direction == d] for name, d in DIRECTIONS.items()}


def branch_switching(
    state: np.ndarray, sigma: np.ndarray, sweep: Sweep, alpha: float = 0.05, virgin: bool = True
) -> dict[str, BranchResult]:
    """Switching bias, interval and status per direction (``rising``, ``falling``) of P pixels.

    state : (F, P), 0 bottom level, 1 top level. sigma : (P,) the state's noise sd per frame (0: exact).
    Each segment of a direction is fitted by :func:`segment_switching` (level ``alpha``).
    """
    state = np.asarray(state, float)
    n = state.shape[1]
    out = {}
    for name, segs in switching_segments(sweep, virgin).items():
        results = []
        for seg in segs:
            f = seg.frames
            u = state[f] if seg.direction == RISING else 1.0 - state[f]
            results.append(segment_switching(u, sweep.values[f], sigma, alpha))
        out[name] = _combine(results, n)
    return out


def loop_area(
    state: np.ndarray, sigma: np.ndarray, op: LoopOperator, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed loop area ∫(falling − rising) d(stimulus) of each pixel's state (P,), in stimulus units,
    with its interval from the state's frame noise (white: ± z σ |area weights|). NaN where the
    sweep has no closed loop (``op.note``)."""
    n = state.shape[1]
    if op.note or op.area.size == 0:
        nan = np.full(n, np.nan)
        return nan, nan, nan
    area = op.area @ state
    half = stats.norm.isf(alpha / 2) * np.asarray(sigma, float) * np.sqrt((op.area**2).sum())
    return area, area - half, area + half


def imprint(rising: BranchResult, falling: BranchResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Imprint (V_rising + V_falling) / 2 of pixels switched on both branches, with the interval from
    the two switching intervals (half the sums of their ends)."""
    return (0.5 * (rising.bias + falling.bias), 0.5 * (rising.low + falling.low), 0.5 * (rising.high + falling.high))
