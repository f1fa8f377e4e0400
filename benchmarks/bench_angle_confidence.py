"""Calibration of the per-pixel angle confidence (``ferrolens.rvae.confidence``) on the demo's truth.

The rule: the latent angle of a pixel is *determined* where its n×n window of
the rVAE input holds one dominant orientation — structure-tensor coherence ≥
``min_coherence`` and a mean squared gradient at least that of one straight
step of contrast ``min_contrast`` across the window (config
``rvae.angle_confidence``). This script scores it against the generator's
truth (``ferrolens.synthetic.make_demo``: class map and wall orientation):

* **flat** pixels: no wall or contaminant pixel of the truth inside the pixel's
  window or within 2 px of it (the reach of the 1-px derivative Gaussian) —
  nothing there to orient; the fraction kept should be small
  (≤ 5 %, the level of the rule);
* **wall** pixels (``class_map == 1`` with an orientation), and among them
  **side walls**: where the truth's label is the local wall direction (the
  structure tensor of the *true* wall mask agrees with it within 15°; the
  generator labels needle tips and junctions with the needle's axis, which the
  local direction there is not: ``bench_rvae_fidelity.side_wall_mask``);
* the rVAE's angle error against the truth (modulo 180°, after the best
  constant offset fitted on all wall pixels), for the wall pixels the rule
  keeps and those it drops: median error and the fraction within 15°.

rVAE inputs: ``walls`` — a stand-in for the U-Net's wall probability (the
truth wall mask blurred by 0.7 px: no U-Net training here), ``raw`` — the
image scaled by its 0.5/99.5 % percentiles into [0, 1] (as ``rvae.input: raw``
without a segmentation, the input of the PZT scans). Models: the workflow's
own ``make_windows`` + ``train`` with ``config/config.yaml``'s rVAE section,
5000 windows, ``--epochs`` per window size, 1 thread; ``--work DIR`` keeps
them (a rerun with the same DIR scores the kept models without training).

Also printed: the flat and wall keep fractions over a sweep of contrasts (no
model needed, every window size in ``--sweep-windows``), the probability that
the angle is within 15° on side walls per coherence bin (where the angle
stops being more likely right than wrong), and the vectorised confidence beside
a plain per-window reference on one frame (agreement, ratio).

Usage::

    python benchmarks/bench_angle_confidence.py [--work DIR] [--windows 8 12] [--epochs 6 4]
                                                [--inputs walls raw] [--frames 12]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_rvae_fidelity import side_wall_mask  # noqa: E402


def demo_inputs(frames: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The rVAE inputs ``{walls, raw}`` (F, H, W) in [0, 1], the class map, orientation and bias of the demo."""
    from ferrolens.synthetic import make_demo

    syn = make_demo(n_frames=frames, size=256, seed=0)
    cls, ori = syn["class_map"].values, syn["orientation"].values
    walls = ndimage.gaussian_filter((cls == 1).astype(np.float32), (0, 0.7, 0.7))
    im = syn["image"].values
    lo, hi = np.percentile(im, [0.5, 99.5])
    inputs = {
        "walls": np.clip(walls / walls.max(), 0, 1).astype(np.float32),
        "raw": np.clip((im - lo) / (hi - lo), 0, 1).astype(np.float32),
    }
    return inputs, cls, ori, syn["bias"].values


def angle_map(img: np.ndarray, bias: np.ndarray, n: int, epochs: int, out: Path, raw: bool) -> tuple[np.ndarray, dict]:
    """The per-pixel latent angle (F, H, W) of an rVAE trained on ``img`` (kept in ``out``)."""
    import torch

    from ferrolens.rvae import load, make_windows, train

    torch.set_num_threads(1)
    if not (out / "model.ckpt").exists():
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["rvae"]
        # raw frames: every window (their noise alone passes min_std), as the PZT run would see them
        cfg = {**cfg, "epochs": epochs, "count": 5000, "input": "walls", **({"min_std": 0.0} if raw else {})}
        images = xr.DataArray(
            img, dims=("frame", "y", "x"), coords={"frame": np.arange(len(img)), "bias": ("frame", bias)}
        )
        make_windows(images, str(out / "windows.zarr"), n, cfg, 1)
        train(str(out / "windows.zarr"), str(out), n, cfg, 2, 1)
    model = load(out / "model.ckpt")
    return model.latent_maps(img)[..., 0], dict(model.quality or {})


def flat_mask(cls: np.ndarray, n: int) -> np.ndarray:
    """Pixels whose n×n window (centred as the maps'), grown by 2 px (the gradients' reach), holds no wall or
    contaminant pixel of the truth."""
    return ndimage.maximum_filter((cls > 0).astype(np.uint8), size=(1, n + 4, n + 4), mode="mirror") == 0


def angle_errors(theta: np.ndarray, ori: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """|angle − truth| in degrees modulo 180 at ``wall`` pixels (NaN elsewhere), after the best constant offset."""
    d = 2 * (theta[wall].astype(np.float64) - ori[wall])
    offset = np.angle(np.mean(np.exp(1j * d)))
    err = np.full(theta.shape, np.nan)
    err[wall] = np.degrees(np.abs(np.angle(np.exp(1j * (d - offset))) / 2))
    return err


def _stats(err: np.ndarray) -> str:
    if err.size == 0:
        return "— | —"
    return f"{np.median(err):.1f}° | {np.mean(err < 15):.3f}"


def plain_reference(frame: np.ndarray, n: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Coherence and energy of one frame window by window (the maps' centred windows of the gradients)."""
    from ferrolens.rvae.maps import centred_windows

    gy = ndimage.gaussian_filter(frame, sigma, order=(1, 0), mode="mirror")
    gx = ndimage.gaussian_filter(frame, sigma, order=(0, 1), mode="mirror")
    wy, wx = centred_windows(gy, n), centred_windows(gx, n)
    coh, en = np.zeros(frame.shape), np.zeros(frame.shape)
    for y in range(frame.shape[0]):
        for x in range(frame.shape[1]):
            a, b = wy[y, x].astype(np.float64), wx[y, x].astype(np.float64)
            j = np.array([[np.mean(a * a), np.mean(a * b)], [np.mean(a * b), np.mean(b * b)]])
            lam = np.linalg.eigvalsh(j)
            en[y, x] = lam.sum()
            coh[y, x] = (lam[1] - lam[0]) / lam.sum() if lam.sum() > 0 else 0.0
    return coh, en


def timed(fn, *args):
    ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn(*args)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return out, wall, (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/bench_angle_confidence")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--windows", type=int, nargs="+", default=[8, 12])
    ap.add_argument("--epochs", type=int, nargs="+", default=[6, 4])
    ap.add_argument("--inputs", nargs="+", default=["walls", "raw"])
    ap.add_argument("--sweep-windows", type=int, nargs="+", default=[8, 12, 24])
    args = ap.parse_args()

    from ferrolens.rvae.confidence import SIGMA, coherence_energy, determined, energy_floor
    from ferrolens.rvae.config import DEFAULTS

    rule = DEFAULTS["angle_confidence"]
    c_min, k_min = float(rule["min_contrast"]), float(rule["min_coherence"])
    inputs, cls, ori, bias = demo_inputs(args.frames)
    wall = (cls == 1) & np.isfinite(ori)
    side, _ceiling = side_wall_mask(cls, ori)
    print(
        f"demo: {args.frames} frames of 256², {int(wall.sum())} wall pixels, {int(side.sum())} on side walls; "
        f"rule: min_contrast {c_min}, min_coherence {k_min}, sigma {SIGMA} px"
    )

    # 1. keep fractions over a sweep of contrasts (no model): the level on flat windows
    print("\n## flat / wall pixels kept against min_contrast (coherence ≥ min_coherence, and at 0)\n")
    contrasts = [0.1, 0.2, 0.25, 0.3, 0.4, 0.5]
    print("| input | n | coherence ≥ | " + " | ".join(f"c = {c}: flat / wall" for c in contrasts) + " |")
    print("|---|---|---|" + "---|" * len(contrasts))
    for name, img in inputs.items():
        for n in args.sweep_windows:
            coh, en = coherence_energy(img, n)
            flat = flat_mask(cls, n)
            for k in (0.0, k_min):
                cells = []
                for c in contrasts:
                    keep = (en >= energy_floor(n, c)) & (coh >= k) & (coh > 0)
                    cells.append(f"{keep[flat].mean():.3f} / {keep[wall].mean():.3f}")
                print(f"| {name} | {n} | {k} | " + " | ".join(cells) + " |")

    # 2. the rule against the rVAE's angle error
    work = Path(args.work)
    rows, curves = [], []
    for name in args.inputs:
        for n, epochs in zip(args.windows, args.epochs, strict=False):  # `--windows 8` takes the first epochs
            theta, quality = angle_map(inputs[name], bias, n, epochs, work / f"{name}_n{n}", name == "raw")
            coh, en = coherence_energy(inputs[name], n)
            conf = np.where(en >= energy_floor(n, c_min), coh, 0)
            keep = determined(conf, k_min)
            err = angle_errors(theta, ori, wall)
            flat = flat_mask(cls, n)
            rows.append(
                f"| {name} | {n} | {quality.get('r2', float('nan')):.2f} | {keep[flat].mean():.3f} | "
                f"{keep[wall].mean():.3f} | {keep[side].mean():.3f} | {_stats(err[wall & keep])} | "
                f"{_stats(err[wall & ~keep])} | {_stats(err[side & keep])} | {_stats(err[side & ~keep])} |"
            )
            bins = np.linspace(0, 1, 11)
            ok = en >= energy_floor(n, c_min)
            cells = []
            for a, b in itertools.pairwise(bins):
                s = side & ok & (coh >= a) & ((coh < b) | (b >= 1))
                cells.append(f"{np.mean(err[s] < 15):.2f} ({int(s.sum())})" if s.any() else "—")
            curves.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
            print(f"scored {name} n={n}", flush=True)
    print("\n## the rule against the truth: pixels kept and dropped (angle error: median | within 15°)\n")
    print(
        "| input | n | held-out R² | flat kept | wall kept | side-wall kept | walls kept: median err | within 15° "
        "| walls dropped: median err | within 15° | side kept: median err | within 15° | side dropped: median err "
        "| within 15° |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n## side walls passing the contrast floor: fraction within 15° (pixels) per coherence bin\n")
    print("| input | n | " + " | ".join(f"{a:.1f}–{a + 0.1:.1f}" for a in np.linspace(0, 0.9, 10)) + " |")
    print("|---|---|" + "---|" * 10)
    print("\n".join(curves))

    # 3. vectorised against the plain per-window reference, one 96² crop
    frame = inputs["raw"][0, :96, :96]
    (ref_c, ref_e), t_ref, u_ref = timed(plain_reference, frame, 12, SIGMA)
    (fast_c, fast_e), t_fast, u_fast = timed(coherence_energy, frame, 12)
    print(
        f"\nplain per-window reference {t_ref:.3f} s (cpu/wall {u_ref:.2f}), vectorised {t_fast:.4f} s "
        f"(cpu/wall {u_fast:.2f}): {t_ref / t_fast:.0f}×; max |diff| coherence "
        f"{np.abs(ref_c - fast_c).max():.2e}, energy {np.abs(ref_e - fast_e).max() / ref_e.max():.2e} of its max"
    )
    assert np.allclose(ref_c, fast_c, atol=1e-3) and np.allclose(ref_e, fast_e, rtol=1e-3, atol=1e-7)


if __name__ == "__main__":
    main()
