"""The U-Net's decision rule: today's plain argmax beside the calibrated logit bias, side by side
(a script, not a test).

Both decisions are read from the same trained models (same data, seeds, loss), so the comparison
isolates the decision; ``--losses`` adds trainings with another class weighting (``none``: uniform
cross-entropy + Dice) to set the calibration beside a change of the loss itself.

Data (truth known):

* demo: ``make_demo(40, 256, seed 0)``, labels from the generator's ``class_map`` on frames
  0, 13, 26, 39 (the demo's own); scored on the 36 frames never labelled;
* peer: ``../shared/peers/make_data.py`` (20 frames of 256², 3 classes; made into ``--peer``
  when absent), labels of frames 0, 6, 13, 19 (``bench_segment_vs_atomai.py``'s protocol);
  scored on the 16 others.

Training: :func:`ferrolens.segment.fit`, 3-class model (``--classes``), 200 steps (5 epochs of
40) of 8 patches of 128², the demo's budget, ``train.holdout: regions`` (a strip of each labelled
frame held out: the strips pick the best epoch and calibrate the bias). Per model and decision:
wall fraction predicted and true, wall IoU and mean IoU on the held-out strips (where the bias
was chosen: optimistic for it) and on the never-labelled frames (independent of both).

Checks: prediction through :func:`ferrolens.segment.probabilities` (fused net, bias in the head)
labels as the plain model does (``argmax(model(x) + logit_bias)``, one frame at a time, float32)
on ≥ 99.9 % of pixels (else exit 4); targets: calibrated wall fraction within ±1 point of the
truth and wall IoU above argmax's, on both data sets (printed PASS/FAIL, mean over seeds).
Each training's CPU time / wall is printed (under 0.9 × threads: other processes shared the cores;
the accuracy figures do not depend on it).

Usage::

    python benchmarks/bench_segment_calibration.py [--seeds 0 1] [--losses auto none] [--classes 3]
        [--peer /tmp/h5/peer] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ferrolens.segment as seg
from ferrolens.segment.calibrate import confusion, iou_from_confusion
from ferrolens.synthetic import make_demo

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
DATASETS = {"demo": [0, 13, 26, 39], "peer": [0, 6, 13, 19]}
WALL = 1


def load_data(name: str, peer: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw frames ``(n, H, W)`` and true labels ``(n, H, W)`` int64 (0 background, 1 wall, 2 contaminant)."""
    if name == "demo":
        demo = make_demo(n_frames=40, size=256, seed=0)
        return demo.image.values.astype(np.float32), demo.class_map.values.astype(np.int64)
    if not (peer / "frames.npy").exists():
        subprocess.run([sys.executable, str(PEERS / "make_data.py"), str(peer), "--N", "100"], check=True,
                       stdout=subprocess.DEVNULL)
    return np.load(peer / "frames.npy"), np.load(peer / "labels.npy").astype(np.int64)


def scores(truth: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    """Wall fraction predicted / true, wall IoU, mean IoU over the labelled pixels."""
    keep = truth >= 0
    iou = iou_from_confusion(confusion(truth, pred, k))
    return {"wall_pred": float((pred[keep] == WALL).mean()), "wall_true": float((truth[keep] == WALL).mean()),
            "iou_wall": float(iou[WALL]), "miou": float(np.nanmean(iou))}


def plain_labels(model, normed: np.ndarray) -> np.ndarray:
    """Reference: the model as trained, one whole frame at a time, float32, plus its logit bias."""
    with torch.no_grad():
        return np.stack([(model(torch.from_numpy(f)[None, None])[0] + model.logit_bias[:, None, None]).argmax(0)
                         .numpy() for f in normed])


def run_one(frames, truth, train_frames, k, loss, seed, threads) -> dict:
    cfg = {"train": {"patch_size": 128, "batch_size": 8, "steps_per_epoch": 40, "max_epochs": 5,
                     "class_weights": loss, "decision": "calibrated"},
           "predict": {"precision": "float32"}}
    labels = truth[train_frames] if k == 3 else np.where(truth[train_frames] == 2, 0, truth[train_frames])
    c0, t0 = time.process_time(), time.perf_counter()
    model, _ = seg.fit(frames[train_frames], labels, frames=train_frames, n_classes=k, cfg=cfg, seed=seed,
                       threads=threads, progress=False)
    wall_s = time.perf_counter() - t0
    util = (time.process_time() - c0) / wall_s
    d = model.decision
    bias = np.asarray(d["logit_bias"])
    out = {"fit_s": wall_s, "cpu_per_wall": util, "logit_bias": d["logit_bias"]}
    # held-out strips: the record made where the bias was chosen
    for tag in ("argmax", "calibrated"):
        iou = np.array([np.nan if v is None else v for v in d[f"iou_{tag}"]])
        out[f"strip_{tag}"] = {"wall_pred": d[f"fraction_{tag}"][WALL], "wall_true": d["fraction_true"][WALL],
                               "iou_wall": float(iou[WALL]), "miou": float(np.nanmean(iou))}
    # never-labelled frames, through the public prediction path (bias folded into the head)
    test = [i for i in range(len(frames)) if i not in train_frames]
    t = truth[test] if k == 3 else np.where(truth[test] == 2, 0, truth[test])
    probs = seg.probabilities(model, frames[test], cfg, threads)
    logp = np.log(np.maximum(probs, 1e-30))
    calibrated = logp.argmax(1)
    argmax = (logp - bias[None, :, None, None]).argmax(1)  # softmax(z + b): log p − b = z − const
    out["test_argmax"], out["test_calibrated"] = scores(t, argmax, k), scores(t, calibrated, k)
    normed, _, _ = seg.normalize_frames(frames[test[:4]], model.hparams.norm_low, model.hparams.norm_high)
    out["labels_equal_plain"] = float((plain_labels(model, normed) == calibrated[:4]).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--losses", nargs="+", default=["auto", "none"], choices=["auto", "none"],
                    help="train.class_weights of the trainings (auto = today's loss)")
    ap.add_argument("--classes", type=int, nargs="+", default=[3], choices=[2, 3])
    ap.add_argument("--data", nargs="+", default=["demo", "peer"], choices=list(DATASETS))
    ap.add_argument("--peer", type=Path, default=Path("/tmp/h5/peer"), help="peer data folder (made when absent)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs, {args.threads} torch threads, load average {os.getloadavg()[0]:.1f}", flush=True)

    results = []
    for name in args.data:
        frames, truth = load_data(name, args.peer)
        for k in args.classes:
            for loss in args.losses:
                for seed in args.seeds:
                    r = run_one(frames, truth, DATASETS[name], k, loss, seed, args.threads)
                    r.update(data=name, classes=k, loss=loss, seed=seed)
                    results.append(r)
                    print(f"{name} c{k} class_weights {loss} seed {seed}: fit {r['fit_s']:.0f} s (cpu/wall "
                          f"{r['cpu_per_wall']:.2f}), logit bias {np.round(r['logit_bias'], 2).tolist()}, "
                          f"labels = plain {r['labels_equal_plain']:.5f}", flush=True)
                    for part in ("strip", "test"):
                        for tag in ("argmax", "calibrated"):
                            s = r[f"{part}_{tag}"]
                            print(f"   {part:5s} {tag:10s} wall {100 * s['wall_pred']:.2f} % (true "
                                  f"{100 * s['wall_true']:.2f} %), IoU wall {s['iou_wall']:.4f}, mean {s['miou']:.4f}",
                                  flush=True)

    print("\nmean over seeds " + ", ".join(map(str, args.seeds)) + " (strip: the held-out strips of the 4 "
          "labelled frames, where the bias is chosen; frames: the never-labelled frames)\n")
    print("| data | classes | class weights | decision | part | wall % predicted | wall % true | wall IoU | "
          "mean IoU |\n|---|---|---|---|---|---|---|---|---|")
    ok = {}
    for name in args.data:
        for k in args.classes:
            for loss in args.losses:
                rs = [r for r in results if (r["data"], r["classes"], r["loss"]) == (name, k, loss)]
                for part, label in (("strip", "held-out strips"), ("test", "never-labelled frames")):
                    m = {tag: {key: float(np.mean([r[f"{part}_{tag}"][key] for r in rs]))
                               for key in ("wall_pred", "wall_true", "iou_wall", "miou")}
                         for tag in ("argmax", "calibrated")}
                    for tag in ("argmax", "calibrated"):
                        s = m[tag]
                        print(f"| {name} | {k} | {loss} | {tag} | {label} | {100 * s['wall_pred']:.2f} | "
                              f"{100 * s['wall_true']:.2f} | {s['iou_wall']:.4f} | {s['miou']:.4f} |")
                    if loss == "auto":
                        c, a = m["calibrated"], m["argmax"]
                        ok[f"{name} c{k} {label}: wall fraction within ±1 point"] = \
                            abs(c["wall_pred"] - c["wall_true"]) <= 0.01
                        ok[f"{name} c{k} {label}: wall IoU up"] = c["iou_wall"] > a["iou_wall"]
    agree = min(r["labels_equal_plain"] for r in results)
    print(f"\nprobabilities() vs plain argmax(model(x) + logit_bias): labels equal ≥ {agree:.5f} "
          f"({'agree' if agree >= 0.999 else 'DISAGREE'})")
    print("targets (today's loss, calibrated vs argmax): " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}"
                                                                       for k, v in ok.items()))
    print("CPU time / wall per training: " + ", ".join(f"{r['data']} c{r['classes']} {r['loss']} s{r['seed']} "
                                                       f"{r['cpu_per_wall']:.2f}" for r in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if agree < 0.999:
        raise SystemExit(4)


if __name__ == "__main__":
    main()
