"""The U-Net's held-out quality: :func:`measure` (what training records) and :func:`judge` (the floor
``segment.train.min_iou``, applied where the quality is reported). numpy and pandas only, so the figure
that reports it does not import Lightning (~5 s of CPU a job)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def measure(metrics: pd.DataFrame) -> dict[str, float]:
    """The held-out IoU of the model kept (best mean IoU): ``{"heldout_miou", "heldout_iou_wall"}``
    (NaN when no epoch was validated). Training records it; :func:`judge` applies the floor where it is
    reported, so a changed ``train.min_iou`` retrains nothing."""
    if metrics.empty:
        return {"heldout_miou": float("nan"), "heldout_iou_wall": float("nan")}
    best = metrics.loc[metrics["val_miou"].fillna(-1).idxmax()]
    return {
        "heldout_miou": float(best["val_miou"]),
        "heldout_iou_wall": float(best["iou_wall"]) if "iou_wall" in best else float("nan"),
    }


def judge(measured: dict[str, Any], min_iou: float) -> dict[str, Any]:
    """Whether the held-out IoU (:func:`measure`) reaches ``min_iou``: ``{"quality_ok", "quality_warning"}``,
    the warning a plain sentence (empty when the model is good enough)."""
    miou, wall, floor = float(measured["heldout_miou"]), float(measured["heldout_iou_wall"]), float(min_iou)
    if not np.isfinite(miou):
        return {"quality_ok": False, "quality_warning": "the U-Net was never validated (no epoch finished)"}
    ok = bool(np.isfinite(wall) and wall >= floor and miou >= floor)
    warning = (
        ""
        if ok
        else (
            f"POOR SEGMENTATION: held-out IoU wall {wall:.2f}, mean {miou:.2f} is below segment.train.min_iou = "
            f"{floor:.2f}; walls and everything downstream (rVAE input, dynamics) may follow the model's errors "
            "rather than the sample: label more frames, train longer, or check the labels"
        )
    )
    return {"quality_ok": ok, "quality_warning": warning}


def quality(metrics: pd.DataFrame, cfg: dict) -> dict[str, Any]:
    """:func:`measure` and :func:`judge` against ``train.min_iou`` of a ``segment`` section:
    ``{"heldout_miou", "heldout_iou_wall", "quality_ok", "quality_warning"}``."""
    measured = measure(metrics)
    return {**measured, **judge(measured, cfg["train"]["min_iou"])}
