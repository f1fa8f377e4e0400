"""The U-Net's training curves, from what ``segment.train`` writes (``metrics.csv``, ``quality.json``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

from ..errors import InputError
from .common import quality_warning, save, style


def _read(metrics: str, quality: str) -> tuple[pd.DataFrame, dict, list[str]]:
    df = pd.read_csv(metrics)
    need = ["epoch", "train_loss", "val_loss", "val_miou"]
    names = [c.removeprefix("iou_") for c in df.columns if c.startswith("iou_")]
    if not set(need) <= set(df.columns) or not names:
        raise InputError(
            metrics, f"columns {list(df.columns)}", f"a U-Net metrics CSV with columns {need} and iou_<class>"
        )
    return df, json.loads(Path(quality).read_text()), names


def segment_training_figure(metrics: list[str], quality: list[str], min_iou: float = 0.6):
    """The figure of :func:`segment_training`, not saved (one row per model)."""
    from ..segment.verdict import judge

    # the floor is applied here, where the quality is reported: training records the measurement only
    runs = [
        (df, {**q, **judge(q, min_iou)}, names)
        for df, q, names in (_read(m, q) for m, q in zip(metrics, quality, strict=True))
    ]
    with style():
        fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.6 * len(runs)), squeeze=False)
        for (df, q, names), (a, b) in zip(runs, axes, strict=True):
            k, ep = len(names), df["epoch"] + 1
            a.plot(ep, df["train_loss"], "o-", label="train (augmented patches)")
            a.plot(ep, df["val_loss"], "s-", label="held-out")
            a.set(xlabel="epoch", ylabel="weighted cross-entropy + Dice", yscale="log", title=f"{k}-class U-Net: loss")
            a.legend()
            for n in names:
                b.plot(ep, df[f"iou_{n}"], "o-", label=n)
            b.plot(ep, df["val_miou"], "k--", label="mean")
            b.axhline(min_iou, color="C3", ls=":", lw=1, label="train.min_iou")
            split = q["split"]
            held = (
                "a strip of each labelled frame" if split["holdout"] == "regions" else f"frames {split['val_frames']}"
            )
            b.set(xlabel="epoch", ylabel="IoU", ylim=(0, 1.02), title=f"{k}-class U-Net: held-out IoU ({held})")
            b.legend(loc="lower right")
            # a log axis over less than a decade labels its minor ticks as 1.2×10⁰: plain numbers instead
            for fmt in (a.yaxis.set_major_formatter, a.yaxis.set_minor_formatter):
                fmt(matplotlib.ticker.FormatStrFormatter("%.4g"))
            for ax in (a, b):
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
                ax.set_xlim(0.5, float(ep.max()) + 0.5)  # whole epochs, also for a single one
        held_out = dict.fromkeys(q["held_out"] for _, q, _ in runs)  # once when every model holds out the same
        fig.suptitle("\n".join(textwrap.fill(h, 130) for h in held_out), fontsize="small")
        fig.tight_layout()
        warnings = [f"{len(names)}-class U-Net: {q['quality_warning']}" for _, q, names in runs if q["quality_warning"]]
        quality_warning(fig, {"quality_warning": " | ".join(warnings)})
    return fig


def segment_training(metrics: list[str], quality: list[str], out: str, cfg: dict, min_iou: float = 0.6) -> Path:
    """U-Net training curves, one row per model (class count): train and held-out loss per epoch,
    and the held-out IoU of each class and their mean against ``train.min_iou``.

    ``metrics`` are the models' ``metrics.csv`` (epoch, step, train_loss, val_loss, val_miou,
    iou_<class>) and ``quality`` their ``quality.json`` (heldout_miou, heldout_iou_wall, split,
    held_out, ...), in the same order. What was held out is the title; a model whose held-out
    IoU is below ``min_iou`` (``segment.train.min_iou``, default 0.6) gets its warning in red under the panels.
    """
    return save(segment_training_figure(metrics, quality, min_iou), out, cfg)
