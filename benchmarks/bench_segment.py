"""Benchmark of the segmentation stage (a script, not a test).

On the demo movie (``make_demo``: 40 frames of 256², seed 0), with labels
from the ground truth of 4 frames (0, 13, 26, 39):

* trains the 3-class reference-size U-Net (16-32-64 / 128) with
  :func:`ferrolens.segment.train` under a wall-clock cap (default 5 min);
* reports per-class IoU on the 36 frames that were never labelled
  (targets: mean IoU ≥ 0.90, wall IoU ≥ 0.80), the time per training step;
* predicts with :func:`ferrolens.segment.predict` at the default precision (``auto``:
  bfloat16 autocast on CPUs with AVX512-BF16/AMX; end-to-end frames/s, the IoU above) and
  times the fast inference path (``inference_mode``, batch-norm folded, channels-last,
  tiled when larger than a tile) in float32 and at the default precision against a plain
  reference (the model as trained, one frame at a time, ``no_grad``, whole frames) at 256²
  and 1024² (4×4 mosaics of demo frames, tiled 512/128), checks that float32 agrees with
  it, that the default labels the same pixels (≥ 99 %) and scores the IoU of float32, and
  prints the ratios (target ≥ 50 frames/s at 256², default precision).

Usage::

    python benchmarks/bench_segment.py --threads 2 --minutes 5 [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ferrolens.segment import fuse_for_inference, load, normalize_frames, predict, predict_frames, resolve_config, train
from ferrolens.segment.infer import resolve_precision
from ferrolens.store import FRAME, X, Y, frame_coords, provenance, write_store
from ferrolens.synthetic import make_demo

LABELLED = [0, 13, 26, 39]


def iou(truth: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    conf = np.bincount(truth.ravel().astype(np.int64) * k + pred.ravel(), minlength=k * k).reshape(k, k)
    tp = np.diag(conf)
    return tp / (conf.sum(0) + conf.sum(1) - tp)


UTIL: dict[str, float] = {}  # CPU time / wall of every timed block, by name


def best_time(fn, repeats: int = 2, name: str = "") -> float:
    """Least wall time of ``repeats`` calls (the machine is shared: the minimum is the least disturbed);
    that call's own CPU time / wall goes to ``UTIL[name]``."""
    best = None
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall = time.perf_counter() - t
        if best is None or wall < best[0]:
            best = (wall, (time.process_time() - c) / wall)
    UTIL[name] = best[1]
    return best[0]


def plain_probabilities(model, frames: np.ndarray) -> np.ndarray:
    """Reference: the trained module as is, one whole frame at a time, no_grad, NCHW."""
    out = []
    with torch.no_grad():
        for f in frames:
            out.append(torch.softmax(model(torch.from_numpy(f)[None, None]), 1)[0].numpy())
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock cap on training")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--steps", type=int, default=50, help="optimiser steps per epoch")
    ap.add_argument("--out", type=Path, default=None, help="keep outputs here (default: a temporary folder)")
    ap.add_argument("--mosaics", type=int, default=4, help="1024² frames to time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_segment_"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"threads: torch {torch.get_num_threads()} (intra-op) of {os.cpu_count()} CPUs; load average "
        f"{os.getloadavg()[0]:.1f} at start (others' processes share the cores); outputs in {out}"
    )

    demo = make_demo(n_frames=40, size=256, seed=0)
    n = demo.sizes[FRAME]
    movie = out / "movie.zarr"
    write_store(
        xr.Dataset(
            {"image": ((FRAME, Y, X), demo.image.values.astype(np.float32))},
            coords=frame_coords(n, demo.bias.values, demo.time.values),
            attrs=provenance("movie", {"demo": "make_demo(40, 256, 0)"}),
        ),
        movie,
    )
    labels = out / "labels.zarr"
    write_store(
        xr.Dataset(
            {"label": ((FRAME, Y, X), demo.class_map.values[LABELLED].astype(np.int16))},
            coords={FRAME: np.array(LABELLED)},
            attrs=provenance("labels", {"frames": LABELLED}, class_names=list(demo.attrs["class_names"])),
        ),
        labels,
    )

    # --- training ---------------------------------------------------------------------------
    cfg = resolve_config(
        {"train": {"max_epochs": args.epochs, "steps_per_epoch": args.steps, "max_minutes": args.minutes}}
    )
    t_train = best_time(
        lambda: train(str(movie), str(labels), str(out / "c3"), 3, cfg, seed=0, threads=args.threads), 1, "train"
    )
    rows = (out / "c3" / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(","), strict=True))
    steps = int(last["step"])
    print(
        f"\ntraining: {t_train:.0f} s wall (incl. setup, validation, checkpoints), {len(rows) - 1} epochs, "
        f"{steps} steps of {cfg['train']['batch_size']}×{cfg['train']['patch_size']}² patches "
        f"→ {t_train / max(steps, 1):.3f} s/step; held-out frame {LABELLED[2]} mIoU at the end "
        f"{float(last['val_miou']):.3f}"
    )

    # --- predict (end to end) and held-out IoU ----------------------------------------------------
    t_pred = best_time(
        lambda: predict(str(movie), str(out / "c3" / "model.ckpt"), str(out / "segmentation.zarr"), cfg, args.threads),
        1,
        "predict() end to end",
    )
    s = xr.open_zarr(out / "segmentation.zarr", consolidated=False)
    held = [f for f in range(n) if f not in LABELLED]
    ious = iou(demo.class_map.values[held], s.label.values[held], 3)
    names = list(s["class"].values)
    print(f"predict() end to end (read, normalise, infer, write zarr): {n / t_pred:.1f} frames/s at 256²")
    print(
        "held-out IoU on the 36 never-labelled frames: "
        + ", ".join(f"{c} {v:.3f}" for c, v in zip(names, ious, strict=True))
        + f"; mean {ious.mean():.3f}"
    )

    # --- fast path vs plain reference, 256² ------------------------------------------------------
    model = load(out / "c3" / "model.ckpt")
    fast = fuse_for_inference(model.net)
    cpu = torch.device("cpu")
    p = cfg["predict"]
    frames, _, _ = normalize_frames(demo.image.values)
    ref = plain_probabilities(model, frames)
    fp = predict_frames(fast, frames, p["tile"], p["overlap"], p["batch_size"], cpu)
    t_plain = best_time(lambda: plain_probabilities(model, frames), name="plain 256²")
    t_fast = best_time(
        lambda: predict_frames(fast, frames, p["tile"], p["overlap"], p["batch_size"], cpu), name="fast 256²"
    )
    bf16 = resolve_precision(p["precision"], cpu)
    df = predict_frames(fast, frames, p["tile"], p["overlap"], p["batch_size"], cpu, bf16=bf16)
    t_df = best_time(
        lambda: predict_frames(fast, frames, p["tile"], p["overlap"], p["batch_size"], cpu, bf16=bf16),
        name="default 256²",
    )
    d = float(np.abs(fp - ref).max())
    iou32, iou_df = (iou(demo.class_map.values[held], q.argmax(1)[held], 3) for q in (fp, df))
    same = float((df.argmax(1) == fp.argmax(1)).mean())
    print(
        f"\n256² float32: fast {n / t_fast:.1f} frames/s, plain {n / t_plain:.1f} frames/s, ratio "
        f"{t_plain / t_fast:.2f}×; max |Δp| {d:.1e} ({'agree' if d < 1e-4 else 'DISAGREE'}), labels equal "
        f"{(fp.argmax(1) == ref.argmax(1)).mean():.5f}"
    )
    print(
        f"256² default (precision {p['precision']} → {'bfloat16 autocast' if bf16 else 'float32'}): "
        f"{n / t_df:.1f} frames/s, {t_plain / t_df:.2f}× plain; max |Δp| vs float32 {np.abs(df - fp).max():.1e}, "
        f"labels equal {same:.5f}; held-out IoU wall {iou_df[1]:.4f} mean {iou_df.mean():.4f} "
        f"(float32 {iou32[1]:.4f} / {iou32.mean():.4f})"
    )

    # --- 1024²: tiled fast path vs plain whole frames ------------------------------------------------
    m = args.mosaics
    big = np.stack(
        [np.block([[frames[(16 * i + 4 * r + c) % n] for c in range(4)] for r in range(4)]) for i in range(m)]
    ).astype(np.float32)
    ref_big = plain_probabilities(model, big)
    fp_big = predict_frames(fast, big, p["tile"], p["overlap"], p["batch_size"], cpu)
    t_plain_big = best_time(lambda: plain_probabilities(model, big), 1, "plain 1024²")
    t_fast_big = best_time(
        lambda: predict_frames(fast, big, p["tile"], p["overlap"], p["batch_size"], cpu), 1, "fast 1024²"
    )
    d_big = float(np.abs(fp_big - ref_big).max())
    print(
        f"1024² (tiled {p['tile']}/{p['overlap']}): fast {m / t_fast_big:.2f} frames/s, plain whole-frame "
        f"{m / t_plain_big:.2f} frames/s, ratio {t_plain_big / t_fast_big:.2f}×; max |Δp| {d_big:.1e} "
        f"({'agree' if d_big < 1e-4 else 'DISAGREE'})"
    )

    result = {
        "threads": args.threads,
        "load_average_end": os.getloadavg()[0],
        "train_seconds": t_train,
        "train_steps": steps,
        "seconds_per_step": t_train / max(steps, 1),
        "epochs": len(rows) - 1,
        "iou_heldout": dict(zip(names, map(float, ious), strict=True)),
        "miou_heldout": float(ious.mean()),
        "predict_end_to_end_fps_256": n / t_pred,
        "fast_fps_256": n / t_fast,
        "plain_fps_256": n / t_plain,
        "default_fps_256": n / t_df,
        "default_precision": "bf16" if bf16 else "float32",
        "default_labels_equal_float32": same,
        "iou_heldout_float32": iou32.tolist(),
        "fast_fps_1024": m / t_fast_big,
        "plain_fps_1024": m / t_plain_big,
        "max_abs_diff_256": d,
        "max_abs_diff_1024": d_big,
        "cpu_per_wall": UTIL,
    }
    (out / "bench_segment.json").write_text(json.dumps(result, indent=2))
    ok = {
        "mean IoU ≥ 0.90": ious.mean() >= 0.90,
        "wall IoU ≥ 0.80": ious[names.index("wall")] >= 0.80,
        "≥ 50 frames/s at 256² (default precision)": n / t_df >= 50,
        "float32 fast == plain": max(d, d_big) < 1e-4,
        "default ≈ float32 (labels ≥ 99 %, IoU within 0.005)": same >= 0.99 and float(np.min(iou_df - iou32)) > -0.005,
    }
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("\ntargets: " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in ok.items()))
    print("CPU time / wall per timed block: " + ", ".join(f"{k} {v:.2f}" for k, v in UTIL.items()))
    # predict() end to end reads and writes zarr stores (I/O and single-threaded compression): its
    # CPU/wall stays under the bar on quiet cores too (1.44 measured), so it cannot tell contention
    low = [k for k, v in UTIL.items() if v < 0.9 * args.threads and k != "predict() end to end"]
    if low:  # another process shared the cores: these times are not the code's
        print(f"contended, rerun: {', '.join(low)} under {0.9 * args.threads:.1f} CPU/wall")
        raise SystemExit(3)


if __name__ == "__main__":
    main()
