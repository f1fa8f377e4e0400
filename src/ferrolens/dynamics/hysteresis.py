"""Hysteresis of a per-frame quantity against a cycling stimulus, with statistics that hold under a null.

The stimulus is usually the bias (V); a temperature or any other coordinate
that turns back uses the same machinery (time and the frame index never do).

1. :func:`split_branches` cuts the stimulus into monotone segments at its
   turning points (a reversal counts once the stimulus has come back by more
   than a tolerance).
2. :func:`analyse_sweep` sets the first segment apart as the *virgin curve*
   when it starts inside the range (the first quarter-cycle from the initial
   state, e.g. 0 → +10 V), and groups the remaining segments into cycles
   (one falling and one rising segment each). The virgin curve is its own
   branch: it enters neither the loop area nor the coercive values.
3. :class:`LoopOperator` maps per-frame curves (…, F) linearly onto the
   rising and falling branches of the closed loop on common stimulus values
   (mean over cycles where several reach a value), and onto each branch's
   own full range (for coercive values).
4. :func:`loop_metrics`: signed loop area ∫(falling − rising) ds, the largest
   branch difference, and each branch's *coercive* value: where it crosses the
   level midway between its own saturated values (its values at the two ends
   of the sweep), scanning in its direction. A branch that does not span the
   sweep has no saturated values at both ends, so no coercive value.

Uncertainty and the test against no loop (:func:`loop_statistics`): a model of the whole curve
(one smooth function of the stimulus for both branches, a smooth drift in time, a loop term,
AR(1) noise), its GLS area with the drift removed, a p-value from simulated no-loop curves, the
bootstrap-t interval of the area and the smallest detectable area: :mod:`.looptest`. Intervals of
coercive values and the largest difference: the full model's residuals resampled in time blocks
(``time_block``, Politis–White when ``auto``) within each branch, whole cycles resampled where
there are several (:meth:`LoopOperator.resampled`), on the spatial resamples of the curve.
Matched units (``units``: a time block of the rising and of the falling branch at the same stimulus
values) remain as a description of the loop's pieces.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from . import looptest as lt

RISING, FALLING = 1, -1
METRICS = ("loop_area", "max_difference", "max_difference_at", "rising_coercive", "falling_coercive")


@dataclass(frozen=True)
class Segment:
    """Frames ``start … stop`` (inclusive) over which the stimulus moves in ``direction`` (+1/-1)."""

    start: int
    stop: int
    direction: int

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.start, self.stop + 1)


@dataclass(frozen=True)
class Branches:
    """Monotone segments of a sweep.

    ``direction`` (F,) int8 labels each frame +1 (rising), -1 (falling) or 0
    (the stimulus never moved); a turning frame belongs to the segment that ends
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
            out[s.start + (1 if i else 0) : s.stop + 1] = i
        return out


def split_branches(bias: np.ndarray, tolerance: float = 0.02) -> Branches:
    """Split a sweep into rising and falling segments.

    Parameters
    ----------
    bias : (F,) finite stimulus per frame (bias in V, or any cycling stimulus).
    tolerance : a reversal counts only when the stimulus has come back from its last
        extreme by more than ``tolerance × (max − min)``. 0 counts every reversal.
        A plateau at an extreme belongs to the segment that reaches it.

    Returns :class:`Branches`; segments share their turning frames.
    """
    b = np.asarray(bias, dtype=float).ravel()
    if b.size == 0 or not np.isfinite(b).all():
        raise InputError("stimulus", "is empty or has non-finite values", "one finite value per frame")
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
    if direction != 0 and turns[-1] != n - 1:
        turns.append(n - 1)
        dirs.append(direction)
    segments = tuple(Segment(turns[i], turns[i + 1], dirs[i]) for i in range(len(dirs)))
    labels = np.zeros(n, dtype=np.int8)
    for i, s in enumerate(segments):
        labels[s.start + (1 if i else 0) : s.stop + 1] = s.direction
    return Branches(segments, labels)


# --- the loop structure of a sweep -------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """A stimulus sequence cut into a virgin curve and the cycles of the closed loop.

    ``cycles``: tuples of closed-loop segments (at most one per direction), in
    time order. ``note``: why there is no loop ("" when there is one).
    """

    values: np.ndarray
    name: str
    units: str
    branches: Branches
    virgin: Segment | None
    cycles: tuple[tuple[Segment, ...], ...]
    tolerance: float
    note: str = ""

    @property
    def closed(self) -> tuple[Segment, ...]:
        return tuple(s for c in self.cycles for s in c)

    @property
    def n_cycles(self) -> int:
        """Cycles holding both a rising and a falling segment."""
        return sum(len({s.direction for s in c}) == 2 for c in self.cycles)

    @property
    def frame_cycle(self) -> np.ndarray:
        """(F,) int: the cycle of each closed-loop frame (from 1), 0 for the virgin curve, -1 for none."""
        out = np.full(self.values.size, -1, dtype=np.int64)
        index = self.branches.segment_index
        cycle_of = {s: k + 1 for k, c in enumerate(self.cycles) for s in c}
        if self.virgin is not None:
            cycle_of[self.virgin] = 0
        for i, s in enumerate(self.branches.segments):
            if s in cycle_of:
                out[index == i] = cycle_of[s]
        return out

    @property
    def step(self) -> float:
        """Median stimulus step between frames of the closed loop (0 if it never moves)."""
        f = np.unique(np.concatenate([s.frames for s in self.closed])) if self.closed else np.zeros(0, int)
        steps = np.abs(np.diff(self.values[f])) if f.size > 1 else np.zeros(0)
        return float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0

    def complete_cycles(self) -> tuple[int, ...]:
        """Cycles whose rising and falling segments both span the closed loop's range (within the
        reversal tolerance or one step): a movie that stops mid-branch leaves its last cycle out."""
        if not self.closed:
            return ()
        f = np.unique(np.concatenate([s.frames for s in self.closed]))
        lo, hi = self.values[f].min(), self.values[f].max()
        tol = max(self.tolerance * (self.values.max() - self.values.min()), self.step)

        def spans(seg: Segment) -> bool:
            v = self.values[seg.frames]
            return v.min() <= lo + tol and v.max() >= hi - tol

        return tuple(
            k for k, c in enumerate(self.cycles) if len({s.direction for s in c}) == 2 and all(spans(s) for s in c)
        )

    def text(self, v: float) -> str:
        return f"{v:+.3g} {self.units}".strip() if self.name == "bias" else f"{v:.4g} {self.units}".strip()


def analyse_sweep(
    values: np.ndarray, tolerance: float = 0.02, virgin: str = "auto", name: str = "bias", units: str = "V"
) -> Sweep:
    """Branches, virgin curve and cycles of a stimulus sequence (see :class:`Sweep`).

    ``virgin``: ``auto`` sets the first segment apart when it starts more than
    ``tolerance × range`` inside the range of the stimulus (the sample starts from
    its initial state, not from a turning point), or, for a bias, when it starts at
    0 V (within that tolerance) and the sweep turns back: a unipolar sweep 0 → +V → 0 …
    starts at an end of its range but from the unbiased initial state; ``none`` keeps
    it in the loop.
    """
    v = np.asarray(values, dtype=float)
    br = split_branches(v, tolerance)
    segs = list(br.segments)
    what = f"the {name}"
    if not segs:
        return Sweep(v, name, units, br, None, (), tolerance, f"{what} never moves: no branches, so no loop")
    virgin_seg = None
    if virgin == "auto" and len(segs) > 0:
        tol = tolerance * (v.max() - v.min())
        s0 = v[segs[0].start]
        # inside the range: the first quarter-cycle from the initial state; a bias sweep that starts at
        # 0 V (a unipolar one starts at an end of its range there) also starts from the unbiased state
        if v.min() + tol < s0 < v.max() - tol or (name == "bias" and abs(s0) <= tol and len(segs) > 1):
            virgin_seg = segs.pop(0)
    cycles = tuple(tuple(segs[i : i + 2]) for i in range(0, len(segs), 2))
    note = ""
    if len(br.segments) == 1:
        note = f"{what} does not turn back within the movie (one monotone sweep): no loop"
    elif not any(len({s.direction for s in c}) == 2 for c in cycles):
        note = (
            (
                f"after the virgin curve (frames {virgin_seg.start}–{virgin_seg.stop}) {what} sweeps only one way: "
                "no closed loop"
            )
            if virgin_seg is not None
            else f"{what} sweeps only one way: no loop"
        )
    return Sweep(v, name, units, br, virgin_seg, cycles, tolerance, note)


# --- linear maps from per-frame curves to branches -----------------------------------
def _interp_matrix(
    x: np.ndarray, frames: np.ndarray, grid: np.ndarray, weight: np.ndarray | None = None, clamp: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(P, F) matrix interpolating the values of ``frames`` linearly in ``x`` onto ``grid`` and its
    coverage mask (P,). Frames at equal ``x`` are averaged into one node (weighted by ``weight``;
    frames of weight 0 are left out). ``clamp``: hold the end nodes' values beyond them."""
    n = x.size
    w = np.ones(frames.size) if weight is None else np.asarray(weight, float)[frames]
    keep = w > 0
    frames, w = frames[keep], w[keep]
    mat = np.zeros((grid.size, n))
    if frames.size == 0:
        return mat, np.zeros(grid.size, bool)
    nodes, inverse = np.unique(x[frames], return_inverse=True)
    avg = np.zeros((nodes.size, n))
    np.add.at(avg, (inverse, frames), w)
    avg /= avg.sum(axis=1, keepdims=True)
    if nodes.size < 2:
        if clamp:
            return np.repeat(avg, grid.size, axis=0), np.ones(grid.size, bool)
        return mat, np.zeros(grid.size, bool)
    span = 1e-9 * max(1.0, float(np.abs(nodes).max()))
    covered = (grid >= nodes[0] - span) & (grid <= nodes[-1] + span)
    g = np.clip(grid, nodes[0], nodes[-1])
    j = np.clip(np.searchsorted(nodes, g, side="right") - 1, 0, nodes.size - 2)
    t = ((g - nodes[j]) / (nodes[j + 1] - nodes[j]))[:, None]
    full = (1 - t) * avg[j] + t * avg[j + 1]
    if clamp:
        return full, np.ones(grid.size, bool)
    mat[covered] = full[covered]
    return mat, covered


def _pooled(
    x: np.ndarray,
    segs: list[Segment],
    cycle_of: list[int],
    grid: np.ndarray,
    frame_weight: np.ndarray | None,
    cycle_weight: np.ndarray | None,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Pooled branch matrix (P, F) of one direction: the weighted mean over its segments that
    reach each grid value, bridged by interpolation over all its frames where none does.
    Also each segment's own matrix and coverage."""
    mats, covs = [], []
    total = np.zeros((grid.size, x.size))
    count = np.zeros(grid.size)
    for s, k in zip(segs, cycle_of, strict=False):
        m, c = _interp_matrix(x, s.frames, grid, frame_weight)
        mats.append(m)
        covs.append(c)
        cw = 1.0 if cycle_weight is None else float(cycle_weight[k])
        total += cw * m
        count += cw * c
    frames = np.unique(np.concatenate([s.frames for s in segs]))
    cw_frames = None
    if cycle_weight is not None or frame_weight is not None:
        cw_frames = np.ones(x.size) if frame_weight is None else np.asarray(frame_weight, float).copy()
        if cycle_weight is not None:
            for s, k in zip(segs, cycle_of, strict=False):
                cw_frames[s.frames] *= cycle_weight[k]
    bridge, _ = _interp_matrix(x, frames, grid, cw_frames, clamp=True)
    out = np.where(count[:, None] > 0, total / np.maximum(count, 1e-300)[:, None], bridge)
    return out, mats, covs


def _trapezoid(x: np.ndarray) -> np.ndarray:
    """Trapezoid-rule weights of grid ``x`` (sum = x[-1] − x[0])."""
    w = np.zeros(x.size)
    d = np.diff(x)
    w[:-1] += d / 2
    w[1:] += d / 2
    return w


@dataclass(frozen=True)
class LoopOperator:
    """Linear maps from per-frame curves (…, F) to the branches of a closed loop.

    ``grid`` (P,): common stimulus values of both branches; ``rising``/``falling``
    (P, F): pooled branches there. ``own_grid[d]``/``own[d]``: each direction's
    branch over its own range, and ``spans[d]``: whether that range covers the
    sweep (then it has saturated values at both ends and a coercive value).
    ``area`` (F,): the loop area ``curve @ area``: at each common value the mean over
    the cycles having both branches there of falling − rising (the pooled branches'
    difference where none has both). ``units`` (U, F): unit contributions D_u (the
    matched part of the area is Σ D_u / 2); ``unit_cycle``, ``unit_block`` (U,). ``note``: why there is
    no loop ("" when there is one; then everything else is empty).
    """

    sweep: Sweep
    grid: np.ndarray
    rising: np.ndarray
    falling: np.ndarray
    own_grid: dict = field(default_factory=dict)
    own: dict = field(default_factory=dict)
    spans: dict = field(default_factory=dict)
    units: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    unit_cycle: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    unit_block: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    cycles: tuple[int, ...] = ()
    note: str = ""
    area: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_units(self) -> int:
        return int(self.units.shape[0])

    @classmethod
    def build(
        cls,
        sweep: Sweep,
        n_points: int = 101,
        time_block: int | str = 6,
        cycles: tuple[int, ...] | None = None,
        frame_weight: np.ndarray | None = None,
        cycle_weight: np.ndarray | None = None,
        grid: np.ndarray | None = None,
        own_grid: dict | None = None,
    ) -> LoopOperator:
        """Operator of the cycles ``cycles`` (indices into ``sweep.cycles``; default all: the pooled loop).

        ``frame_weight`` (F,) / ``cycle_weight`` (K,): resampling multiplicities
        (see :meth:`resampled`); ``grid``/``own_grid``: reuse the point estimate's
        stimulus values (then branches are held constant beyond their frames).
        """
        x = sweep.values
        n = x.size
        time_block = time_block if isinstance(time_block, (int, np.integer)) else 1  # "auto": per frame
        ks = tuple(range(len(sweep.cycles))) if cycles is None else tuple(cycles)
        empty = cls(sweep, np.full(n_points, np.nan), np.zeros((n_points, n)), np.zeros((n_points, n)), cycles=ks)
        if sweep.note:
            return cls(**{**empty.__dict__, "note": sweep.note})
        segs = {d: [(s, k) for k in ks for s in sweep.cycles[k] if s.direction == d] for d in (RISING, FALLING)}
        if not segs[RISING] or not segs[FALLING]:
            which = "rising" if not segs[RISING] else "falling"
            return cls(**{**empty.__dict__, "note": f"no {which} branch in this cycle: no loop"})
        frames = {d: np.unique(np.concatenate([s.frames for s, _ in segs[d]])) for d in segs}
        if grid is None:
            lo = max(x[frames[d]].min() for d in segs)
            hi = min(x[frames[d]].max() for d in segs)
            if not hi > lo:
                return cls(**{**empty.__dict__, "note": "rising and falling branches share no stimulus range"})
            grid = np.linspace(lo, hi, n_points)
        pooled, seg_mats, seg_covs = {}, {}, {}
        for d in segs:
            pooled[d], seg_mats[d], seg_covs[d] = _pooled(
                x, [s for s, _ in segs[d]], [k for _, k in segs[d]], grid, frame_weight, cycle_weight
            )
        # each branch over its own range, for saturated and coercive values
        closed = np.unique(np.concatenate([frames[RISING], frames[FALLING]]))
        og, own, spans = _own_branches(sweep, segs, frames, closed, n_points, own_grid, frame_weight, cycle_weight)
        # loop area: at each stimulus value, the mean over the cycles that have both branches there of
        # falling − rising (the pooled branches' difference where no cycle has both); matched units are
        # (cycle, stimulus block) pieces of it
        trap = _trapezoid(grid)
        pairs = _matched_pairs(ks, segs, seg_covs)
        matched = sum((p[3].astype(float) for p in pairs), np.zeros(grid.size))
        area = trap[matched == 0] @ (pooled[FALLING] - pooled[RISING])[matched == 0]
        n_blocks, edges = _time_blocks(x, ks, segs, closed, grid, time_block)
        rows, ucyc, ublk = [], [], []
        for k, ri, fi, both in pairs:
            scale = np.where(both, trap * 2 / np.maximum(matched, 1), 0.0)
            # each frame's share of this cycle's part of the area; frames (not grid values) are cut into
            # blocks, so no frame is shared by two units (interpolation would otherwise couple neighbours)
            share = scale @ (seg_mats[FALLING][fi] - seg_mats[RISING][ri])
            area = area + share / 2
            frames_k = np.unique(np.r_[segs[RISING][ri][0].frames, segs[FALLING][fi][0].frames])
            frames_k = frames_k[share[frames_k] != 0]
            block = np.clip(np.searchsorted(edges, x[frames_k], side="right") - 1, 0, n_blocks - 1)
            for j in range(n_blocks):
                sel = frames_k[block == j]
                if sel.size:
                    row = np.zeros(n)
                    row[sel] = share[sel]
                    rows.append(row)
                    ucyc.append(k)
                    ublk.append(j)
        units = np.array(rows) if rows else np.zeros((0, n))
        return cls(
            sweep,
            grid,
            pooled[RISING],
            pooled[FALLING],
            og,
            own,
            spans,
            units,
            np.array(ucyc, int),
            np.array(ublk, int),
            ks,
            area=area,
        )

    def resampled(self, rng: np.random.Generator) -> LoopOperator:
        """The same loop from its complete cycles resampled with replacement (itself when it has fewer
        than two). Resampling frames within one branch would only move the interpolation nodes of a
        curve through its frames (a dropped frame is bridged by its neighbours), not show its noise:
        within a cycle, the noise of the area comes from the matched time blocks of the null, that of
        a crossing from the spatial resamples."""
        full = [k for k in self.sweep.complete_cycles() if k in self.cycles]
        if len(full) < 2:
            return self
        cw = np.ones(len(self.sweep.cycles))
        cw[full] = np.bincount(rng.integers(0, len(full), len(full)), minlength=len(full))
        return LoopOperator.build(
            self.sweep, self.grid.size, 1, self.cycles, cycle_weight=cw, grid=self.grid, own_grid=self.own_grid
        )

    def branches_of(self, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rising and falling branch curves (…, P) on :attr:`grid`."""
        c = np.asarray(curves, dtype=float)
        return c @ self.rising.T, c @ self.falling.T


# --- metrics -----------------------------------------------------------------------------
def _first_crossing(values: np.ndarray, level: np.ndarray, x: np.ndarray, reverse: bool) -> np.ndarray:
    """Stimulus of the first sign change of ``values - level`` (K, P) along ``x``, scanning
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


def _own_branches(
    sweep: Sweep,
    segs: dict,
    frames: dict,
    closed: np.ndarray,
    n_points: int,
    own_grid: dict | None,
    frame_weight: np.ndarray | None,
    cycle_weight: np.ndarray | None,
) -> tuple[dict, dict, dict]:
    """Per direction: the branch's own stimulus grid (``own_grid[d]`` when given), the pooled branch
    (P, F) there, and whether it spans the sweep: it comes within the reversal tolerance, or one
    stimulus step (a recorded sweep stops one step short of its start), of both ends of ``closed``."""
    x = sweep.values
    steps = np.abs(np.diff(x[closed]))
    tol = max(sweep.tolerance * (x.max() - x.min()), float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0)
    smin, smax = x[closed].min(), x[closed].max()
    og, own, spans = {}, {}, {}
    for d in segs:
        g = own_grid[d] if own_grid is not None else np.linspace(x[frames[d]].min(), x[frames[d]].max(), n_points)
        og[d] = g
        own[d], _, _ = _pooled(x, [s for s, _ in segs[d]], [k for _, k in segs[d]], g, frame_weight, cycle_weight)
        spans[d] = bool(g[0] <= smin + tol and g[-1] >= smax - tol)
    return og, own, spans


def _matched_pairs(ks: tuple[int, ...], segs: dict, seg_covs: dict) -> list[tuple[int, int, int, np.ndarray]]:
    """``(cycle, rising index, falling index, grid points both cover)`` of each cycle of ``ks`` with both
    branches (indices into ``segs[RISING]``/``segs[FALLING]``)."""
    pairs = []
    for k in ks:
        r = [i for i, (_, kk) in enumerate(segs[RISING]) if kk == k]
        f = [i for i, (_, kk) in enumerate(segs[FALLING]) if kk == k]
        if r and f:
            pairs.append((k, r[0], f[0], seg_covs[RISING][r[0]] & seg_covs[FALLING][f[0]]))
    return pairs


def _time_blocks(
    x: np.ndarray, ks: tuple[int, ...], segs: dict, closed: np.ndarray, grid: np.ndarray, time_block: int
) -> tuple[int, np.ndarray]:
    """Number of stimulus blocks (about ``time_block`` frames of a branch each) and their edges over
    ``grid``: edges half a stimulus step off the frames' values, so that frames of the two branches
    at the same stimulus value (up to round-off) always fall in the same block."""
    per_branch = []
    for k in ks:
        counts = []
        for d in segs:
            fr = [s.frames for s, kk in segs[d] if kk == k]
            if fr:
                f = fr[0]
                counts.append(int(((x[f] >= grid[0]) & (x[f] <= grid[-1])).sum()))
        if len(counts) == 2:
            per_branch.append(min(counts))
    n_blocks = max(1, max(per_branch, default=0) // max(1, time_block))
    inside = np.unique(x[closed][(x[closed] >= grid[0]) & (x[closed] <= grid[-1])])
    half = 0.5 * float(np.median(np.diff(inside))) if inside.size > 1 else 0.0
    edges = np.linspace(grid[0], grid[-1], n_blocks + 1)
    edges[1:-1] += half
    return n_blocks, edges


def loop_metrics(curves: np.ndarray, op: LoopOperator) -> dict[str, np.ndarray]:
    """Hysteresis metrics of curves (K, F) (or one curve (F,)): a dict of (K,) arrays
    keyed by :data:`METRICS` (NaN when undefined)."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    k = c.shape[0]
    out = {m: np.full(k, np.nan) for m in METRICS}
    if op.note:
        return out
    r, f = op.branches_of(c)
    d = f - r
    x = op.grid
    out["loop_area"] = c @ op.area if op.area.size else d @ _trapezoid(x)
    imax = np.argmax(np.abs(d), axis=1)
    out["max_difference"] = d[np.arange(k), imax]
    out["max_difference_at"] = x[imax]
    for direction, name in ((RISING, "rising_coercive"), (FALLING, "falling_coercive")):
        if op.spans[direction]:
            g = op.own_grid[direction]
            b = c @ op.own[direction].T
            level = 0.5 * (b[:, 0] + b[:, -1])  # midway between its saturated values (both ends of the sweep)
            out[name] = _first_crossing(b, level, g, reverse=direction == FALLING)
    return out


# --- the test and the intervals -----------------------------------------------------------
def percentile_ci(samples: np.ndarray, level: float = 0.95, min_valid: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis of ``samples`` (N, K) (NaNs ignored); NaN where
    fewer than ``min_valid`` of the N are finite."""
    s = np.asarray(samples, dtype=float)
    a = (1 - level) / 2
    if s.shape[0] == 0:
        nan = np.full(s.shape[1:], np.nan)
        return nan, nan.copy()
    finite = np.isfinite(s).mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
        lo, hi = np.nanquantile(s, [a, 1 - a], axis=0)
    bad = finite < min_valid
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _branch_groups(op: LoopOperator, frames: np.ndarray) -> list[np.ndarray]:
    """Positions in ``frames`` of each monotone segment (a branch of a cycle): the time blocks of the
    resampled intervals stay within one."""
    seg = op.sweep.branches.segment_index[frames]
    return [np.flatnonzero(seg == s) for s in np.unique(seg)]


def drift_degrees(drift_degree: int) -> list[int]:
    """The drift degrees under which a loop must stand to be called: the configured one first, then every
    lower one down to a linear drift (:func:`loop_statistics`)."""
    return [drift_degree, *range(drift_degree - 1, 0, -1)]


def null_reference(
    op: LoopOperator, drift_degree: int, n_random: int, rng: np.random.Generator
) -> list[tuple[list[lt.LoopDesign], lt.Reference]]:
    """The candidate models of the loop of ``op`` and the simulated reference of its test, one pair per
    drift degree of :func:`drift_degrees` (the configured degree first), computed once per loop and
    shared by every curve looped against it; ``[]`` when there is no loop or no test."""
    out = []
    for deg in drift_degrees(drift_degree) if not op.note else []:
        designs = lt.loop_designs(op, deg)
        if not designs:
            break  # a lower degree has no test where a higher one has none (an open end)
        out.append((designs, lt.reference(designs, n_random, rng)))
    return out


def drift_robust_test(
    curves: np.ndarray, null: list[tuple[list[lt.LoopDesign], lt.Reference]], level: float = 0.95, alpha: float = 0.05
) -> lt.ModelTest:
    """:func:`~.looptest.model_test` of curves (K, F) under the configured drift degree (``null[0]``,
    :func:`null_reference`), with the p-value and the detectable area the largest over every drift
    degree of ``null``: a loop is called only where it stands under a linear drift as well as under the
    configured one. Valid (the configured degree's test is, and the largest p is no smaller); it guards
    against a smooth course in time that one polynomial misfits and whose remainder a loop term picks up
    (the demo with its bias shuffled: p 0.002 at degree 2, 0.6 at degree 1)."""
    tests = [lt.model_test(curves, d, r, level, alpha) for d, r in null]
    return replace(
        tests[0], p=np.max([t.p for t in tests], axis=0), detectable=np.max([t.detectable for t in tests], axis=0)
    )


def loop_statistics(
    curves: np.ndarray,
    op: LoopOperator,
    replicates: np.ndarray | None = None,
    level: float = 0.95,
    n_resample: int = 200,
    n_random: int = 499,
    rng: np.random.Generator | None = None,
    drift_degree: int = 2,
    time_block: int | str = "auto",
    alpha: float = 0.05,
    null: list[tuple[list[lt.LoopDesign], lt.Reference]] | None = None,
) -> dict[str, np.ndarray]:
    """Metrics of curves (K, F) with intervals and the p-value against no hysteresis (:mod:`.looptest`).

    ``replicates`` (B, K, F): the same curves from spatial resamples of the pixels (NMF
    refitted), or None. ``n_random``: simulated no-loop curves per correlation of the
    reference. ``alpha``: the level at which the detectable area is quoted (α over the loops
    tested). ``null``: :func:`null_reference` of ``op`` when already made. Returns (K,) arrays: every metric
    of :data:`METRICS` with ``_ci_low``/``_ci_high``
    (``loop_area``: with the fitted drift removed), ``loop_area_raw``, ``p_value``, ``p_floor``,
    ``noise_rho`` (REML AR(1) correlation of the noise model, :func:`~.looptest.noise_rho`), ``reference_rho``,
    ``detectable_area``, ``time_block`` (frames, Politis–White when ``auto``).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    k = c.shape[0]
    point = loop_metrics(c, op)
    out: dict[str, np.ndarray] = dict(point)
    nan = np.full(k, np.nan)
    out.update(
        loop_area_raw=point["loop_area"].copy(),
        p_value=nan.copy(),
        p_floor=nan.copy(),
        noise_rho=nan.copy(),
        reference_rho=nan.copy(),
        detectable_area=nan.copy(),
        time_block=nan.copy(),
    )
    for m in METRICS:
        out[f"{m}_ci_low"] = np.full(k, np.nan)
        out[f"{m}_ci_high"] = np.full(k, np.nan)
    null = null if null is not None else null_reference(op, drift_degree, n_random, rng)
    if not null:
        return out
    designs, ref = null[0]
    mt = drift_robust_test(c, null, level, alpha)
    out.update(
        loop_area=mt.area,
        p_value=mt.p,
        p_floor=np.full(k, 1.0 / (1 + ref.t.shape[1])),
        noise_rho=mt.rho,
        reference_rho=mt.rho_reference,
        detectable_area=mt.detectable,
    )
    frames = designs[0].frames
    groups = _branch_groups(op, frames)
    if time_block == "auto":
        blocks = np.array(
            [
                max(lt.optimal_block_length(r[g]) for g in groups if g.size >= 4)
                if any(g.size >= 4 for g in groups)
                else 1.0
                for r in mt.residuals
            ]
        )
    else:
        blocks = np.full(k, float(time_block))
    out["time_block"] = np.ceil(blocks)
    # loop area: the bootstrap-t of the test (the truth lies at A − se·T*), plus the spread of the area
    # over spatial resamples of the pixels (NMF refitted)
    dev = -mt.reference * mt.se[None, :]
    if replicates is not None and len(replicates):
        reps = np.asarray(replicates).reshape(-1, c.shape[1])
        # at the same ρ as the curve's own area (the noise model's), so that the spread is centred on it
        sp = lt.model_area(reps, designs, np.tile(mt.rho, len(replicates))).reshape(-1, k) - mt.area[None, :]
        m = max(dev.shape[0], 4 * sp.shape[0], 2000)
        dev = dev[rng.integers(0, dev.shape[0], m)] + sp[rng.integers(0, sp.shape[0], m)]
    out["loop_area_ci_low"], out["loop_area_ci_high"] = percentile_ci(mt.area[None, :] + dev, level)
    # the other metrics: the full model's residuals resampled in time blocks within each branch (whole
    # cycles too where several), on the spatial resamples of the curve
    if n_resample > 0:
        names = [m for m in METRICS if m != "loop_area"]
        reps_m = np.zeros((n_resample, k, len(names)))
        for b in range(n_resample):
            opb = op.resampled(rng)
            cb = c.copy() if replicates is None or not len(replicates) else np.array(replicates[b % len(replicates)])
            for i in range(k):
                star = lt.block_resample(mt.residuals[i][None, :], groups, int(out["time_block"][i]), rng)[0]
                cb[i, frames] += star - mt.residuals[i]
            mb = loop_metrics(cb, opb)
            reps_m[b] = np.stack([mb[m] for m in names], axis=1)
        for i, m in enumerate(names):
            out[f"{m}_ci_low"], out[f"{m}_ci_high"] = percentile_ci(reps_m[:, :, i], level)
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (valid under any dependence between the tests); NaNs stay NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    out[order] = adj
    return out
