"""Figures of the movie and its segmentation (paper Figs. 1 and 2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .. import store
from ..config import Partial, section
from ..errors import InputError
from ..sections import FiguresConfig
from ..stimulus import stimulus
from .common import default_frame, frame_title, grid, robust_limits, save, style


def pick_frames(ds, biases: list[float] | None, n: int = 6) -> list[int]:
    """Frames nearest the requested biases (when the movie has a bias), or ``n`` frames spread over the movie."""
    frames = ds.frame.values
    stim = stimulus(ds)
    if biases and stim.name == "bias":
        return [int(frames[int(np.argmin(np.abs(stim.values - v)))]) for v in biases]
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    return [int(frames[i]) for i in idx]


def frames_at_bias(movie: str, out: str, cfg: Partial[FiguresConfig]) -> Path:
    """Fig. 1: raw frames across the stimulus (bias, temperature, time or frame order), its value
    in each title, and the stimulus against frame when it is an applied one (bias, temperature)."""
    cfg = section("figures", cfg)
    ds = store.open_store(movie, "movie")
    frames = pick_frames(ds, cfg["biases"])
    stim = stimulus(ds)
    panel = stim.applied
    with style():
        fig, axes = grid(len(frames) + panel, ncols=min(4, len(frames) + panel))
        lo, hi = robust_limits(ds.image.sel(frame=frames).values)
        for ax, f in zip(axes, frames, strict=False):  # the stimulus panel, when there is one, comes last
            ax.imshow(ds.image.sel(frame=f).values, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(frame_title(ds, f))
            ax.set_axis_off()
        if panel:
            ax = axes[-1]
            pos = [int(np.flatnonzero(ds.frame.values == f)[0]) for f in frames]
            ax.plot(ds.frame.values, stim.values, "-", color="0.3", lw=1)
            ax.plot(frames, stim.values[pos], "o", color="C3", ms=4, label="shown")
            ax.set_xlabel("frame")
            ax.set_ylabel(stim.label)
            ax.set_title(f"applied {stim.name}")
            ax.legend(loc="best", frameon=False)
            ax.set_box_aspect(1)
        what = {
            "bias": "across the bias sweep",
            "temperature": "across the temperature sweep",
            "time": "over time",
            "frame": "in frame order (the movie has no bias, temperature or time)",
        }
        fig.suptitle(f"{ds.attrs.get('dataset', '')}: frames {what[stim.name]}".strip(": "))
        fig.tight_layout()
    return save(fig, out, cfg)


def segmentation_overview(movie: str, segmentations: list[str], out: str, cfg: Partial[FiguresConfig]) -> Path:
    """Fig. 2: raw frame, each model's class map, and its wall-probability channel."""
    ds = store.open_store(movie, "movie")
    segs = [store.open_store(s, "segmentation") for s in segmentations]
    f = default_frame(ds, cfg)
    with style():
        n = 1 + 2 * len(segs)
        fig, axes = plt.subplots(1, n, figsize=(3.1 * n, 2.9), squeeze=False, layout="constrained")
        axes = axes[0]
        img = ds.image.sel(frame=f).values
        lo, hi = robust_limits(img)
        im = axes[0].imshow(img, cmap="gray", vmin=lo, vmax=hi)
        axes[0].set_title(f"raw, {frame_title(ds, f)}")
        # every panel has its colourbar, so all images come out the same size
        fig.colorbar(
            im, ax=axes[0], shrink=0.8, pad=0.02, label=f"intensity ({ds.image.attrs.get('units', 'arb. units')})"
        )
        k = 1
        for seg in segs:
            names = [str(c) for c in seg["class"].values]
            lab = seg.label.sel(frame=f).values
            cmap = plt.get_cmap("viridis", len(names))
            im = axes[k].imshow(lab, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5)
            axes[k].set_title(f"{len(names)}-class segmentation")
            cb = fig.colorbar(im, ax=axes[k], shrink=0.8, pad=0.02, ticks=range(len(names)))
            cb.ax.set_yticklabels(names)
            wall = names.index("wall") if "wall" in names else 1
            im = axes[k + 1].imshow(
                seg.probability.sel(frame=f).isel({store.CLASS: wall}).values, cmap="magma", vmin=0, vmax=1
            )
            axes[k + 1].set_title(f"wall probability ({len(names)}-class)")
            fig.colorbar(im, ax=axes[k + 1], shrink=0.8, pad=0.02, label="p(wall)")
            k += 2
        for ax in axes:
            ax.set_axis_off()
    return save(fig, out, cfg)


def training_curves(metrics: list[str], labels: list[str], out: str, cfg: Partial[FiguresConfig], title: str) -> Path:
    """Loss curves (and any IoU columns) of one or more trainings from Lightning's metrics CSVs.

    ``metrics`` are CSV files with an ``epoch`` column; every column whose name
    holds ``loss``, ``reconstruction``, ``kl`` or ``iou`` is drawn per epoch,
    one panel per quantity in one row (total loss first, then reconstruction,
    then the KL terms), train solid and held-out dashed, one colour per
    training (``labels``), and one legend for the whole figure. Values are
    nats per window (the rVAE's negative-ELBO parts); the total and the
    reconstruction, which span decades across window sizes, on a log axis.
    """
    frames = []
    for path, label in zip(metrics, labels, strict=False):
        df = pd.read_csv(path)
        if "epoch" not in df:
            raise InputError(path, f"columns {list(df.columns)}", "a metrics CSV with an epoch column")
        frames.append((label, df.groupby("epoch").mean(numeric_only=True)))
    keys = ("loss", "reconstruction", "kl", "iou")
    cols = sorted({c for _, df in frames for c in df.columns if any(k in c for k in keys)})
    loss_cols = [c for c in cols if "iou" not in c]
    iou_cols = [c for c in cols if "iou" in c]
    order = {"loss": 0, "reconstruction": 1}
    groups = sorted({c.split("/")[-1] for c in loss_cols}, key=lambda g: (order.get(g, 2), g))
    with style():
        n = max(len(groups) + bool(iou_cols), 1)
        fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False, layout="constrained")
        axes = axes[0]
        for ax, g in zip(axes, groups, strict=False):  # a last panel for the IoU when there is one
            for i, (_label, df) in enumerate(frames):
                for c in [c for c in loss_cols if c.split("/")[-1] == g and c in df]:
                    s = df[c].dropna()
                    ax.plot(s.index, s.values, "--" if c.startswith("val") else "-", color=f"C{i}")
            ax.set_title({"loss": "total (negative ELBO)"}.get(g, g.replace("_", " ")))
            ax.set_xlabel("epoch")
            if g in order and all(
                df[c].dropna().gt(0).all() for _, df in frames for c in loss_cols if c.split("/")[-1] == g and c in df
            ):
                ax.set_yscale("log")
        if groups:
            axes[0].set_ylabel("nats per window")
        if iou_cols:
            ax = axes[len(groups)]
            for i, (label, df) in enumerate(frames):
                for j, c in enumerate(c for c in iou_cols if c in df):
                    s = df[c].dropna()
                    ax.plot(
                        s.index, s.values, "-", color=f"C{j}", alpha=1.0 - 0.35 * i, label=f"{label} {c.split('/')[-1]}"
                    )
            ax.set_ylim(0, 1)
            ax.set_xlabel("epoch")
            ax.set_ylabel("IoU (held-out frames)")
            ax.set_title("held-out IoU")
            ax.legend(frameon=False, fontsize=7)
        for ax in axes:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if groups:  # colour = training, line style = split: one legend for every panel
            handles = [Line2D([], [], color=f"C{i}", label=label) for i, (label, _) in enumerate(frames)]
            handles += [
                Line2D([], [], color="0.3", ls="-", label="train"),
                Line2D([], [], color="0.3", ls="--", label="held-out"),
            ]
            fig.legend(handles=handles, loc="outside right center", frameon=False)
        fig.suptitle(title)
    return save(fig, out, cfg)
