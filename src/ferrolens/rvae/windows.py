"""Cutting ``n × n`` windows out of a movie for training and for codes.

Positions are the windows' **centre pixels** ``(y, x)`` in the convention of
the per-pixel maps (:mod:`ferrolens.rvae.maps`): the window covers rows
``y - n//2 … y - n//2 + n - 1`` (same for columns). Sampled windows lie fully
inside the frame (no padding), so the map at ``(frame, y, x)`` is exactly the
code of the sampled window there.

Two modes:

* ``random`` — ``count`` positions drawn uniformly without replacement over
  all frames and positions (seeded);
* ``dense`` — every position on a grid of step ``stride`` in every frame.

In both, ``min_std > 0`` keeps only windows "with structure": those whose
pixel standard deviation is at least ``min_std`` (flat background windows of a
wall-probability map have ``std ≈ 0``).

``weighting = "content"`` (random mode) draws each qualifying position with
probability proportional to its window's mean value (for a wall-probability
input: its wall content), without replacement (Efraimidis–Spirakis keys): a
sparse wall map's windows that hold one wall corner at their edge are drawn
less often than those a wall crosses, so training sees more of what the maps
are read on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError


@dataclass
class WindowSample:
    """Windows and where they came from.

    windows : ``(S, n, n)`` float32.
    frame, y, x : ``(S,)`` int64 frame index (position along the frame axis) and centre pixel.
    """

    windows: np.ndarray
    frame: np.ndarray
    y: np.ndarray
    x: np.ndarray


WEIGHTINGS = ("uniform", "content")


def window_std(frame: np.ndarray, n: int) -> np.ndarray:
    """Pixel standard deviation of every ``n × n`` window fully inside ``frame``.

    Returns ``(H - n + 1, W - n + 1)`` indexed by the window's top-left
    corner; box sums from integral images in float64 (O(HW), exact enough).
    """
    return window_moments(frame, n)[1]


def window_moments(frame: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel mean and standard deviation of every ``n × n`` window fully inside ``frame``,
    each ``(H - n + 1, W - n + 1)`` indexed by the window's top-left corner."""
    f = np.asarray(frame, dtype=np.float64)

    def box(a: np.ndarray) -> np.ndarray:
        s = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
        s[1:, 1:] = a.cumsum(0).cumsum(1)
        return s[n:, n:] - s[:-n, n:] - s[n:, :-n] + s[:-n, :-n]

    m = box(f) / n**2
    var = box(f * f) / n**2 - m * m
    return m, np.sqrt(np.clip(var, 0.0, None))


def sample_windows(
    frames: Any,
    n: int,
    *,
    mode: str = "random",
    count: int = 5000,
    stride: int = 8,
    min_std: float = 0.0,
    seed: int = 0,
    weighting: str = "uniform",
) -> WindowSample:
    """Cut windows from ``frames`` ``(F, H, W)`` (array-like; read frame by frame).

    Parameters
    ----------
    n : window size (pixels), at most the frame's height and width.
    mode : ``"random"`` or ``"dense"``.
    count : number of random windows (fewer if fewer positions qualify).
    stride : step (pixels) of the dense grid of top-left corners.
    min_std : keep only windows whose pixel standard deviation is >= this
        (0 keeps every window).
    seed : seed of the random positions.
    weighting : ``"uniform"`` or ``"content"`` (random mode: positions drawn with probability
        proportional to the window's mean value; see the module doc).

    Raises :class:`InputError` when no window qualifies.
    """
    n_frames, height, width = (int(s) for s in frames.shape)
    if n > min(height, width):
        raise InputError(
            "window", f"{n} pixels is larger than the {height}×{width} frames", "a window no larger than the frame"
        )
    ny, nx = height - n + 1, width - n + 1
    if mode == "dense":
        ys, xs = np.arange(0, ny, stride), np.arange(0, nx, stride)
        grid = np.zeros((ny, nx), dtype=bool)
        grid[np.ix_(ys, xs)] = True
    elif mode != "random":
        raise InputError("rvae.sampling", f"value {mode!r}", "'random' or 'dense'")
    if weighting not in WEIGHTINGS:
        raise InputError("rvae.weighting", f"value {weighting!r}", f"one of {WEIGHTINGS}")
    weighted = mode == "random" and weighting == "content"

    # which top-left corners qualify, frame by frame (only if a filter or dense grid applies)
    masks: list[np.ndarray] | None = None
    weights: list[np.ndarray] = []  # window means of the qualifying corners (content weighting)
    if min_std > 0 or mode == "dense" or weighted:
        masks = []
        for f in range(n_frames):
            ok = grid.copy() if mode == "dense" else np.ones((ny, nx), dtype=bool)
            mean, std = window_moments(np.asarray(frames[f]), n)
            if min_std > 0:
                ok &= std >= min_std
            masks.append(ok)
            if weighted:
                weights.append(np.clip(mean[ok], 0.0, None))
        per_frame = np.array([m.sum() for m in masks], dtype=np.int64)
        total = int(per_frame.sum())
    else:
        total = n_frames * ny * nx
    if total == 0:
        raise InputError(
            "rvae.min_std",
            f"no {n}×{n} window has a pixel standard deviation >= {min_std}",
            "a lower rvae.min_std (0 keeps every window) or input with structure",
        )

    if mode == "dense":
        chosen = np.arange(total)
    elif weighted:
        # weighted sampling without replacement: the `count` smallest of E_i / w_i, E_i ~ Exp(1)
        w = np.concatenate(weights)
        keys = np.random.default_rng(seed).exponential(size=total) / np.where(w > 0, w, 1e-12)
        k = min(count, total)
        chosen = np.sort(np.argpartition(keys, k - 1)[:k]) if k < total else np.arange(total)
    else:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(total, size=min(count, total), replace=False))

    # index among qualifying corners -> (frame, top-left y0, x0)
    if masks is None:
        f_idx, y0, x0 = np.unravel_index(chosen, (n_frames, ny, nx))
    else:
        starts = np.concatenate([[0], np.cumsum(per_frame)])
        f_idx = np.searchsorted(starts, chosen, side="right") - 1
        y0 = np.empty_like(chosen)
        x0 = np.empty_like(chosen)
        for f in np.unique(f_idx):
            sel = f_idx == f
            flat = np.flatnonzero(masks[f])[chosen[sel] - starts[f]]
            y0[sel], x0[sel] = np.unravel_index(flat, (ny, nx))

    out = np.empty((len(chosen), n, n), dtype=np.float32)
    for f in np.unique(f_idx):
        sel = np.flatnonzero(f_idx == f)
        img = np.asarray(frames[int(f)], dtype=np.float32)
        view = np.lib.stride_tricks.sliding_window_view(img, (n, n))
        out[sel] = view[y0[sel], x0[sel]]
    return WindowSample(
        windows=out,
        frame=np.asarray(f_idx, dtype=np.int64),
        y=np.asarray(y0, dtype=np.int64) + n // 2,
        x=np.asarray(x0, dtype=np.int64) + n // 2,
    )
