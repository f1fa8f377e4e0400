"""Switching maps figure: where, and at what stimulus, each pixel switches (switching stage)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .. import store
from ..config import Partial
from ..sections import FiguresConfig
from .common import bias_label, save, style

# status codes of ferrolens.switching.core, drawn under the maps (switched pixels are coloured by bias)
_STATUS_COLOURS = {
    1: ("#d9d9d9", "no switch in branch"),
    2: ("#ffffff", "never switches"),
    3: ("#000000", "unsettled"),
    4: ("#ff00ff", "no data"),
}


def nucleation_order(bias: np.ndarray, direction: str) -> np.ndarray:
    """Rank of each switched pixel's switching bias in its branch's direction, 0 (first) … 1 (last);
    NaN where it did not switch."""
    b = np.asarray(bias, float)
    ok = np.isfinite(b)
    order = np.full(b.shape, np.nan)
    if ok.sum() > 1:
        v = b[ok] if direction == "rising" else -b[ok]
        ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable")
        order[ok] = ranks / (ok.sum() - 1)
    return order


def _status_layer(ax, status: np.ndarray, extent) -> None:
    codes = sorted(_STATUS_COLOURS)
    rgba = np.zeros((*status.shape, 4))
    for c in codes:
        colour = plt.matplotlib.colors.to_rgba(_STATUS_COLOURS[c][0])
        rgba[status == c] = colour
    ax.imshow(rgba, extent=extent, origin="upper")


def switching_maps(movie: str, switching: str, out: str, cfg: Partial[FiguresConfig]) -> Path:
    """Switching-bias maps of the rising and falling branches beside a frame, the histogram of
    switching biases (the local switching-field distribution), the nucleation order of the branch
    with more switched pixels, and the state of three pixels against the stimulus."""
    mov = store.open_store(movie, "movie")
    sw = store.open_store(switching, "switching")
    stim, units = str(sw.attrs["stimulus"]), str(sw.attrs["stimulus_units"])
    values = np.asarray(sw[stim].values if stim in sw.coords else sw[store.FRAME].values, float)
    ys, xs = sw[store.Y].values, sw[store.X].values
    half = (float(ys[1] - ys[0]) / 2) if ys.size > 1 else 0.5
    extent = (xs[0] - half, xs[-1] + half, ys[-1] + half, ys[0] - half)
    lo, hi = float(values.min()), float(values.max())
    dirs = [str(d) for d in sw[store.DIRECTION].values]
    status = {d: sw["status"].sel({store.DIRECTION: d}).values for d in dirs}
    bias = {d: sw["switching_bias"].sel({store.DIRECTION: d}).values for d in dirs}
    frame_i = int(np.argmax(values)) if stim != "frame" else len(values) // 2
    frame = np.asarray(mov["image"].isel({store.FRAME: frame_i}).values, float)

    with style():
        fig, axes = plt.subplots(2, 3, figsize=(12, 8))
        ax = axes[0, 0]
        ax.imshow(frame, cmap="gray", vmin=np.nanpercentile(frame, 1), vmax=np.nanpercentile(frame, 99))
        ax.set_title(f"frame {frame_i}, {bias_label(values[frame_i]) if stim == 'bias' else values[frame_i]}")
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
        for ax, d in zip(axes[0, 1:], dirs, strict=False):
            _status_layer(ax, status[d], extent)
            im = ax.imshow(
                np.ma.masked_invalid(bias[d]), cmap="coolwarm", vmin=lo, vmax=hi, extent=extent, origin="upper"
            )
            n_sw = int((status[d] == 0).sum())
            ax.set_title(f"{d} branch: switching {stim} ({n_sw / status[d].size:.0%} switched)")
            ax.set_xlabel("x (px)")
            fig.colorbar(im, ax=ax, shrink=0.8, label=f"switching {stim} ({units})")
        handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="0.5") for c, _ in _STATUS_COLOURS.values()]
        axes[0, 2].legend(
            handles,
            [t for _, t in _STATUS_COLOURS.values()],
            loc="upper left",
            bbox_to_anchor=(0.0, -0.2),
            ncol=2,
            fontsize=7,
            frameon=False,
        )

        ax = axes[1, 0]
        edges = np.linspace(lo, hi, 41)
        for d, colour in zip(dirs, ("tab:red", "tab:blue"), strict=False):
            b = bias[d][np.isfinite(bias[d])]
            ax.hist(b, bins=edges, color=colour, alpha=0.5, label=f"{d} (n = {b.size})")
            if "true_switching_bias" in sw:
                t = sw["true_switching_bias"].sel({store.DIRECTION: d}).values
                ax.hist(t[np.isfinite(t)], bins=edges, histtype="step", color=colour, lw=1.2, label=f"{d}, truth")
        ax.set_xlabel(f"switching {stim} ({units})")
        ax.set_ylabel("pixels")
        ax.set_title("switching-field distribution")
        ax.legend(fontsize=7)

        ax = axes[1, 1]
        main = max(dirs, key=lambda d: int(np.isfinite(bias[d]).sum()))
        order = nucleation_order(bias[main], main)
        _status_layer(ax, status[main], extent)
        im = ax.imshow(np.ma.masked_invalid(order), cmap="viridis", vmin=0, vmax=1, extent=extent, origin="upper")
        first = np.where(np.isfinite(order), order <= 0.1, False)
        if first.any():
            ax.contour(xs, ys, first.astype(float), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(f"nucleation order, {main} branch (red: first 10 %)")
        ax.set_xlabel("x (px)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="order of switching (0 first, 1 last)")

        ax = axes[1, 2]
        state = sw["state"].values
        flat = {c: np.flatnonzero(status[main].ravel() == c) for c in (0, 3)}
        picks = []
        if flat[0].size:
            b = bias[main].ravel()[flat[0]]
            picks += [(flat[0][np.argmin(b)], "switches early"), (flat[0][np.argmax(b)], "switches late")]
        if flat[3].size:
            picks.append((flat[3][flat[3].size // 2], "unsettled"))
        for p, text in picks:
            yy, xx = np.unravel_index(p, status[main].shape)
            ax.plot(values, state[:, yy, xx], marker=".", lw=0.8, label=f"({ys[yy]:.0f}, {xs[xx]:.0f}) px: {text}")
        ax.axhline(0.5, color="0.5", lw=0.5, ls="--")
        ax.set_xlabel(f"{stim} ({units})")
        ax.set_ylabel("state (0 bottom level, 1 top)")
        ax.set_ylim(-0.6, 1.6)  # a state far outside its levels is noise (or a pixel that never switches)
        ax.set_title("state of three pixels")
        ax.legend(fontsize=7)
        truth = [
            f"{d}: median |error| {sw.attrs[f'truth_{d}_median_abs_error']:.2g} {units}, "
            f"{sw.attrs[f'truth_{d}_within_one_step']:.0%} within one step, recall "
            f"{sw.attrs[f'truth_{d}_recall']:.0%}"
            for d in dirs
            if f"truth_{d}_median_abs_error" in sw.attrs
        ]
        window = sw.attrs.get("window")
        # nothing switched (a time series, a stimulus that never turns back): say why in one sentence
        why = (
            ""
            if any((status[d] == 0).any() for d in dirs) or not sw.attrs.get("loop_note")
            else f"\nno pixel switched: {sw.attrs['loop_note']}"
        )
        fig.suptitle(
            f"Switching maps{f' (window n = {window})' if window else ''}"
            + ("\nagainst the generator's truth: " + "; ".join(truth) if truth else "")
            + why
        )
        fig.tight_layout()
        return save(fig, out, cfg)
