"""The U-Net's decision rule, calibrated on held-out pixels: a per-class logit bias.

The training loss weighs classes (``train.class_weights``) and adds a soft Dice term, which
both push a rare class's probability up: the plain argmax of such a model over-marks walls
(on a held-out phase-field movie 21.5 % of pixels against 18.7 % true). Prediction therefore
labels ``argmax(logits + b)`` and reports ``softmax(logits + b)``: a shift of each class's
log prior, ``b`` chosen after training on the held-out pixels (the strips of
``train.holdout: regions``) so that each class's predicted fraction of them matches its labelled
fraction (``segment.train.decision: fractions``, the default) or so that their mean IoU is
largest (``iou``). ``b[0] = 0`` (only differences matter). Pure numpy, no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Candidate biases per class: −4 … 4 in steps of 0.02 (e^±4 ≈ 55× in odds, beyond what a
#: class weight of the ``auto`` rule does), searched coarse (0.1) then fine (0.02).
BIAS_RANGE = 4.0
BIAS_STEP = 0.02
#: A class with fewer held-out labelled pixels keeps bias 0: its IoU there says too little,
#: and a class absent from the held-out part would be pushed to the bottom of the range.
MIN_PIXELS = 100
#: At most this many held-out pixels enter the search (a seeded subsample beyond).
MAX_PIXELS = 300_000


def confusion(truth: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``(k, k)`` counts, rows = truth, columns = prediction; truth ``< 0`` (unlabelled) is skipped."""
    truth, pred = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    keep = truth >= 0
    return np.bincount(truth[keep].astype(np.int64) * k + pred[keep], minlength=k * k).reshape(k, k)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)`` of a confusion matrix; NaN where a class is neither true
    nor predicted (as ``torchmetrics``' ``zero_division=nan``)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def _labelled_pixels(logits: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, K)`` float32 and labels ``(N,)`` int64 of the labelled pixels of ``(N, K)`` / ``(N,)``
    or ``(B, K, H, W)`` / ``(B, H, W)`` input."""
    logits, truth = np.asarray(logits, np.float32), np.asarray(truth).astype(np.int64)
    if logits.ndim == 4:
        logits, truth = np.moveaxis(logits, 1, -1).reshape(-1, logits.shape[1]), truth.ravel()
    keep = truth >= 0
    return logits[keep], truth[keep]


#: What the bias is chosen for (``segment.train.decision``): the mean IoU of the held-out pixels, or
#: their class fractions (the sum over classes of |predicted − labelled fraction|, made least).
OBJECTIVES = ("iou", "fractions")


def _score(logits: np.ndarray, truth: np.ndarray, bias: np.ndarray, objective: str) -> float:
    k = logits.shape[1]
    pred = (logits + bias).argmax(1)
    if objective == "fractions":
        return -float(np.abs(np.bincount(pred, minlength=k) - np.bincount(truth, minlength=k)).sum()) / len(truth)
    iou = iou_from_confusion(confusion(truth, pred, k))
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def tune_logit_bias(
    logits: np.ndarray, truth: np.ndarray, objective: str = "iou", rounds: int = 3, seed: int = 0
) -> np.ndarray:
    """The per-class logit bias ``b`` ``(K,)`` for ``argmax(logits + b)``: the one maximising the mean IoU
    of the held-out pixels (``objective="iou"``), or matching their class fractions (``"fractions"``:
    least ``Σ_c |predicted − labelled fraction of class c|``).

    Parameters
    ----------
    logits : ``(N, K)`` (or ``(B, K, H, W)``) logits of held-out pixels.
    truth : ``(N,)`` (or ``(B, H, W)``) their class indices, ``−1`` = unlabelled (skipped).
    objective : one of :data:`OBJECTIVES`.
    rounds : passes of coordinate ascent over the classes ``1 … K−1`` (``b[0] = 0``).

    Each class's bias is searched over −:data:`BIAS_RANGE` … +:data:`BIAS_RANGE`, first in steps
    of 0.1, then in :data:`BIAS_STEP` around the best; among equal scores the bias nearest the
    current one wins, and a bias is only moved for a strictly better score, so that no
    evidence means ``b = 0``. Classes with under :data:`MIN_PIXELS` held-out pixels keep 0.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: one of {OBJECTIVES}")
    logits, truth = _labelled_pixels(logits, truth)
    k = logits.shape[1]
    if len(truth) > MAX_PIXELS:
        pick = np.random.default_rng(seed).choice(len(truth), MAX_PIXELS, replace=False)
        logits, truth = logits[pick], truth[pick]
    bias = np.zeros(k, np.float64)
    counts = np.bincount(truth, minlength=k)
    free = [c for c in range(1, k) if counts[c] >= MIN_PIXELS]
    if not free or counts[0] < MIN_PIXELS:
        return bias
    best = _score(logits, truth, bias, objective)
    coarse = np.round(np.arange(-BIAS_RANGE, BIAS_RANGE + 1e-9, 0.1), 6)
    for _ in range(rounds):
        moved = False
        for c in free:
            for grid in (coarse, None):
                if grid is None:  # fine steps around the coarse optimum
                    grid = np.round(bias[c] + np.arange(-0.1, 0.1 + 1e-9, BIAS_STEP), 6)
                    grid = grid[np.abs(grid) <= BIAS_RANGE + 1e-9]
                grid = grid[np.argsort(np.abs(grid - bias[c]), kind="stable")]  # nearest first: ties stay
                scores = [_score(logits, truth, np.where(np.arange(k) == c, v, bias), objective) for v in grid]
                j = int(np.argmax(scores))
                if scores[j] > best + 1e-12:
                    best, bias[c], moved = scores[j], float(grid[j]), True
        if not moved:
            break
    return bias


def decision_record(logits: np.ndarray, truth: np.ndarray, bias: np.ndarray, names: list[str]) -> dict[str, Any]:
    """What the bias does on the pixels it was chosen on: per class, the true and predicted fraction of
    the labelled pixels and the IoU, with and without the bias (plain lists, for ``quality.json``)."""
    logits, truth = _labelled_pixels(logits, truth)
    k = logits.shape[1]
    n = max(len(truth), 1)
    out: dict[str, Any] = {"pixels": len(truth), "fraction_true": (np.bincount(truth, minlength=k) / n).tolist()}
    for tag, b in (("argmax", np.zeros(k)), ("calibrated", np.asarray(bias, np.float64))):
        pred = (logits + b).argmax(1)
        out[f"fraction_{tag}"] = (np.bincount(pred, minlength=k) / n).tolist()
        iou = iou_from_confusion(confusion(truth, pred, k))
        out[f"iou_{tag}"] = [None if not np.isfinite(v) else float(v) for v in iou]
    out["class_names"] = list(names)
    return out
