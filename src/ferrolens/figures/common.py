"""Shared figure style and the one way figures are written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is needed or wanted
import matplotlib.pyplot as plt
import numpy as np

from ..config import Partial, section
from ..sections import FiguresConfig
from ..stimulus import stimulus
from ..store import write_file_atomic

RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "font.family": "DejaVu Sans",
    "image.interpolation": "nearest",
    "savefig.bbox": "tight",
}


def style():
    """Context manager applying the project's figure style."""
    return plt.rc_context(RC)


def save(fig, out: str | Path, cfg: Partial[FiguresConfig] = None) -> Path:
    """Write ``fig`` to ``out`` (PNG at ``figures.dpi``) and, per ``figures.vector``, an SVG/PDF beside
    it; close it. ``cfg``: the ``figures:`` section, partial or none: what it leaves out takes the
    schema's defaults (200 dpi, a PDF), so a notebook's call writes what the workflow writes."""
    cfg = section("figures", cfg)
    out = Path(out)
    write_file_atomic(out, lambda p: fig.savefig(p, dpi=cfg["dpi"], format="png"))
    vector = cfg["vector"]
    if vector != "none":
        write_file_atomic(out.with_suffix(f".{vector}"), lambda p: fig.savefig(p, format=vector))
    plt.close(fig)
    return out


def bias_label(bias: float | None) -> str:
    return "" if bias is None or not np.isfinite(bias) else f"{bias:+.2f} V"


def frame_title(ds, frame: int) -> str:
    """'frame 12, +4.00 V' (or 't = 3 s', …) with the movie's stimulus when it has one."""
    stim = stimulus(ds)
    value = stim.value_text(int(np.flatnonzero(ds.frame.values == frame)[0]))
    return f"frame {frame}, {value}" if value else f"frame {frame}"


def default_frame(ds, cfg: Partial[FiguresConfig]) -> int:
    """The configured frame (``figures.frame``), else the one at the largest positive bias (else the middle)."""
    cfg = section("figures", cfg)
    if cfg["frame"] is not None:
        return int(cfg["frame"])
    stim = stimulus(ds)
    if stim.applied:
        return int(ds.frame.values[int(np.argmax(stim.values))])
    return int(ds.frame.values[len(ds.frame) // 2])


def robust_limits(img: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    lo, hi = np.nanpercentile(img, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def grid(n: int, ncols: int, size: float = 2.4):
    """A figure of n panels in rows of ``ncols``; unused axes are hidden."""
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def quality_warning(fig, attrs: dict) -> None:
    """``attrs['quality_warning']`` (a model's failed checks, ``' | '``-separated), in red under the panels.

    Call after ``tight_layout``: the figure grows by the lines' height and every axes and text
    keeps its size and place above them (squeezing the panels instead made rows overlap).
    """
    text = str(attrs.get("quality_warning") or "")
    if not text:
        return
    per_line = max(40, int(fig.get_size_inches()[0] * 72 / (8 * 0.6)))  # 8-pt characters across the figure
    lines = [
        line
        for t in text.split(" | ")  # a long warning wraps instead of running off the right edge
        for line in textwrap.wrap("WARNING: " + t, per_line, subsequent_indent="    ")
    ]
    extra = 0.17 * len(lines) + 0.15  # inches: one 8-pt line each, and a margin
    w, h = fig.get_size_inches()
    fig.set_size_inches(w, h + extra)
    scale, lift = h / (h + extra), extra / (h + extra)
    for ax in fig.axes:
        x0, y0, aw, ah = ax.get_position().bounds
        ax.set_position([x0, y0 * scale + lift, aw, ah * scale])
    for t in fig.texts:  # the suptitle is one of them
        t.set_y(t.get_position()[1] * scale + lift)
    fig.text(0.01, 0.06 / (h + extra), "\n".join(lines), color="C3", fontsize=8, ha="left", va="bottom")
