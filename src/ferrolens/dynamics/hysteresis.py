"""Hysteresis of a per-frame quantity against a bias sweep.

1. :func:`split_branches` cuts the bias sequence into monotone segments at its
   turning points (any number of cycles, any starting phase); a reversal only
   counts once the bias has moved back by more than a tolerance, so noise on a
   measured bias does not create spurious branches.
2. :class:`BranchOperator` interpolates every rising segment and every falling
   segment onto common bias values and averages segments of the same
   direction (bridging gaps between them). Being linear in the per-frame
   values, it is a pair of matrices, so thousands of bootstrap curves are
   mapped at once.
3. :func:`loop_metrics` gives, per curve: the signed loop area
   ``∫ (falling − rising) dV`` (units: quantity·V; positive when the falling
   branch lies above the rising one, i.e. the response lags the bias), the
   largest branch difference ``falling − rising`` (signed, at the bias where
   ``|falling − rising|`` is largest), and the bias at which each branch first
   crosses the midpoint level ``(min + max) / 2`` of the two branches, scanning
   in the sweep's direction (coercive-like).
4. :func:`hysteresis_summary` adds percentile bootstrap confidence intervals
   from replicate curves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError

RISING, FALLING = 1, -1
METRICS = ("loop_area", "max_difference", "max_difference_bias", "midpoint_level",
           "rising_midpoint_bias", "falling_midpoint_bias")


@dataclass(frozen=True)
class Segment:
    """Frames ``start … stop`` (inclusive) over which the bias moves in ``direction`` (+1/-1)."""

    start: int
    stop: int
    direction: int


@dataclass(frozen=True)
class Branches:
    """Monotone segments of a bias sweep.

    ``direction`` (F,) int8 labels each frame +1 (rising), -1 (falling) or 0
    (the bias never moved); a turning frame belongs to the segment that ends
    there, frame 0 to the first segment.
    """

    segments: tuple[Segment, ...]
    direction: np.ndarray

    @property
    def n_reversals(self) -> int:
        return max(len(self.segments) - 1, 0)

    @property
    def segment_index(self) -> np.ndarray:
        """(F,) int: index of each frame's segment (same convention as ``direction``)."""
        out = np.zeros(self.direction.size, dtype=np.int64)
        for i, s in enumerate(self.segments):
            out[s.start + (1 if i else 0): s.stop + 1] = i
        return out


def split_branches(bias: np.ndarray, tolerance: float = 0.02) -> Branches:
    """Split a bias sweep into rising and falling segments.

    Parameters
    ----------
    bias : (F,) finite bias per frame (V).
    tolerance : a reversal counts only when the bias has come back from its last
        extreme by more than ``tolerance × (max − min)``. 0 counts every reversal.
        A plateau at an extreme belongs to the segment that reaches it.

    Returns :class:`Branches`; segments share their turning frames.
    """
    b = np.asarray(bias, dtype=float).ravel()
    if b.size == 0 or not np.isfinite(b).all():
        raise InputError("bias", "is empty or has non-finite values", "one finite bias per frame")
    if not 0 <= tolerance < 1:
        raise InputError("config dynamics.reversal_tolerance", f"value {tolerance!r}", "0 ≤ tolerance < 1")
    n = b.size
    tol = tolerance * (b.max() - b.min())
    turns = [0]
    dirs: list[int] = []
    direction = 0
    lo = hi = cand = 0
    for i in range(1, n):
        if direction == 0:
            if b[i] < b[lo]:
                lo = i
            if b[i] > b[hi]:
                hi = i
            if b[i] - b[lo] > tol:
                direction, cand = RISING, i
            elif b[hi] - b[i] > tol:
                direction, cand = FALLING, i
        elif direction == RISING:
            if b[i] >= b[cand]:
                cand = i
            elif b[cand] - b[i] > tol:
                turns.append(cand)
                dirs.append(RISING)
                direction, cand = FALLING, i
        else:
            if b[i] <= b[cand]:
                cand = i
            elif b[i] - b[cand] > tol:
                turns.append(cand)
                dirs.append(FALLING)
                direction, cand = RISING, i
    if direction != 0:
        if turns[-1] != n - 1:
            turns.append(n - 1)
            dirs.append(direction)
    segments = tuple(Segment(turns[i], turns[i + 1], dirs[i]) for i in range(len(dirs)))
    labels = np.zeros(n, dtype=np.int8)
    for i, s in enumerate(segments):
        labels[s.start + (1 if i else 0): s.stop + 1] = s.direction
    return Branches(segments, labels)


def _interp_matrix(bias: np.ndarray, frames: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, F) matrix interpolating the values of ``frames`` linearly in bias onto ``grid``,
    and its coverage mask (P,). Frames at equal bias (plateaus, repeated cycles) are
    averaged into one node."""
    x = bias[frames]
    nodes, inverse = np.unique(x, return_inverse=True)
    mat = np.zeros((grid.size, bias.size))
    if nodes.size < 2:
        return mat, np.zeros(grid.size, bool)
    avg = np.zeros((nodes.size, bias.size))
    np.add.at(avg, (inverse, frames), 1.0)
    avg /= avg.sum(axis=1, keepdims=True)
    covered = (grid >= nodes[0]) & (grid <= nodes[-1])
    j = np.clip(np.searchsorted(nodes, grid, side="right") - 1, 0, nodes.size - 2)
    w = ((grid - nodes[j]) / (nodes[j + 1] - nodes[j]))[:, None]
    mat[covered] = ((1 - w) * avg[j] + w * avg[j + 1])[covered]
    return mat, covered


@dataclass(frozen=True)
class BranchOperator:
    """Maps per-frame curves (…, F) to rising/falling branch curves (…, P) on common bias values.

    ``bias_values`` (P,) span the bias range covered by both directions. At
    each bias value a branch is the mean of its segments that reach it;
    where none does (a gap between segments of one direction, e.g. between
    the end of a sweep and its start, which are one bias step apart in the
    cycle) it is interpolated between the nearest frames of that direction.
    ``note`` says why there is nothing to compare (empty when all is well;
    then the matrices are zero and ``bias_values`` NaN).
    """

    bias_values: np.ndarray
    rising: np.ndarray
    falling: np.ndarray
    n_reversals: int
    note: str = ""

    @classmethod
    def build(cls, bias: np.ndarray, branches: Branches, n_points: int = 101) -> BranchOperator:
        b = np.asarray(bias, dtype=float)
        n = b.size
        empty = cls(np.full(n_points, np.nan), np.zeros((n_points, n)), np.zeros((n_points, n)),
                    branches.n_reversals)
        segs = {d: [s for s in branches.segments if s.direction == d] for d in (RISING, FALLING)}
        if not segs[RISING] or not segs[FALLING]:
            which = "the bias never moves" if not branches.segments else "the bias never reverses"
            return replace(empty, note=f"{which}: only one branch")
        frames = {d: np.unique(np.concatenate([np.arange(s.start, s.stop + 1) for s in segs[d]]))
                  for d in segs}
        lo = max(b[frames[d]].min() for d in segs)
        hi = min(b[frames[d]].max() for d in segs)
        if not hi > lo:
            return replace(empty, note="rising and falling branches share no bias range")
        grid = np.linspace(lo, hi, n_points)
        mats = {}
        for d in segs:
            total = np.zeros((n_points, n))
            count = np.zeros(n_points)
            for s in segs[d]:
                m, c = _interp_matrix(b, np.arange(s.start, s.stop + 1), grid)
                total += m
                count += c
            bridge, _ = _interp_matrix(b, frames[d], grid)  # covers [lo, hi] by construction
            mats[d] = np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], bridge)
        return cls(grid, mats[RISING], mats[FALLING], branches.n_reversals)

    def branches_of(self, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rising and falling branch curves (…, P)."""
        c = np.asarray(curves, dtype=float)
        return c @ self.rising.T, c @ self.falling.T


def _first_crossing(values: np.ndarray, level: np.ndarray, x: np.ndarray, reverse: bool) -> np.ndarray:
    """Bias of the first sign change of ``values - level`` (K, P) along ``x``, scanning
    backwards when ``reverse``; NaN where there is none."""
    s = values - level[:, None]
    if reverse:
        s, x = s[:, ::-1], x[::-1]
    a, b = s[:, :-1], s[:, 1:]
    cross = ((a < 0) & (b >= 0)) | ((a > 0) & (b <= 0))
    has = cross.any(axis=1)
    i = np.argmax(cross, axis=1)
    rows = np.arange(s.shape[0])
    sa, sb = a[rows, i], b[rows, i]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = sa / (sa - sb)
    out = x[i] + frac * (x[i + 1] - x[i])
    return np.where(has, out, np.nan)


def loop_metrics(curves: np.ndarray, op: BranchOperator) -> dict[str, np.ndarray]:
    """Hysteresis metrics of curves (K, F) (or one curve (F,)): a dict of (K,) arrays
    keyed by :data:`METRICS` (NaN when undefined)."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    k = c.shape[0]
    if op.note:
        return {m: np.full(k, np.nan) for m in METRICS}
    r, f = op.branches_of(c)
    d = f - r
    x = op.bias_values
    area = (0.5 * (d[:, :-1] + d[:, 1:]) * np.diff(x)).sum(axis=1)
    imax = np.argmax(np.abs(d), axis=1)
    rows = np.arange(k)
    both = np.concatenate([r, f], axis=1)
    level = 0.5 * (both.min(axis=1) + both.max(axis=1))
    return {
        "loop_area": area,
        "max_difference": d[rows, imax],
        "max_difference_bias": x[imax],
        "midpoint_level": level,
        "rising_midpoint_bias": _first_crossing(r, level, x, reverse=False),
        "falling_midpoint_bias": _first_crossing(f, level, x, reverse=True),
    }


def percentile_ci(samples: np.ndarray, level: float = 0.95, min_valid: float = 0.5) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (NaNs ignored); NaN when fewer than
    ``min_valid`` of them are finite."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0 or s.size < min_valid * np.asarray(samples).size:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(lo), float(hi)


def hysteresis_summary(curve: np.ndarray, replicates: np.ndarray | None, op: BranchOperator,
                       level: float = 0.95) -> dict[str, float]:
    """Metrics of one per-frame ``curve`` (F,) with bootstrap CIs from ``replicates`` (B, F).

    Returns ``{metric: value, metric_ci_low: …, metric_ci_high: …}`` for every
    metric in :data:`METRICS`; CIs are NaN without replicates.
    """
    point = loop_metrics(curve, op)
    reps = loop_metrics(replicates, op) if replicates is not None and len(replicates) else None
    out: dict[str, float] = {}
    for m in METRICS:
        out[m] = float(point[m][0])
        lo, hi = percentile_ci(reps[m], level) if reps is not None else (float("nan"), float("nan"))
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = lo, hi
    return out
