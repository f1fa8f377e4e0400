"""The U-Net's decision rule: today's plain argmax beside the calibrated logit biases
(``segment.train.decision``: ``fractions``, the default, and ``iou``), side by side (a script, not
a test).

Every rule is read off the same trained models (same data, seeds, loss: today's), so the comparison
isolates the decision; ``--losses none`` adds trainings with uniform class weights (cross-entropy +
Dice) to set the calibration beside a change of the loss itself.

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

Checks: the model :func:`ferrolens.segment.fit` returns carries the default rule's bias, and
prediction through :func:`ferrolens.segment.probabilities` (fused net, bias in the head) labels as
the plain model does (``argmax(model(x) + logit_bias)``, one frame at a time, float32) on ≥ 99.9 %
of pixels (else exit 4); targets: calibrated wall fraction within ±1 point of the truth and wall
IoU above argmax's, on both data sets (printed PASS/FAIL per rule, mean over seeds).
Each training's CPU time / wall is printed (under 0.9 × threads: other processes shared the cores;
the accuracy figures do not depend on it).

Usage::

    python benchmarks/bench_segment_calibration.py [--seeds 0 1] [--losses auto none] [--classes 3]
        [--data demo peer] [--peer /tmp/h5/peer] [--threads 2] [--json OUT.json]

On a crowded machine the trainings can run as separate processes (one data set or seed each, e.g.
``--data demo --seeds 1 --threads 1 --json d1.json``; one thread wastes less CPU when the cores are
oversubscribed) and be tabled together: ``--table d0.json d1.json p.json``. ``--json`` is rewritten
after every training.
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
from ferrolens.segment.calibrate import confusion, iou_from_confusion, tune_logit_bias
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
        subprocess.run(
            [sys.executable, str(PEERS / "make_data.py"), str(peer), "--N", "100"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return np.load(peer / "frames.npy"), np.load(peer / "labels.npy").astype(np.int64)


def scores(truth: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    """Wall fraction predicted / true, wall IoU, mean IoU over the labelled pixels."""
    keep = truth >= 0
    iou = iou_from_confusion(confusion(truth, pred, k))
    return {
        "wall_pred": float((pred[keep] == WALL).mean()),
        "wall_true": float((truth[keep] == WALL).mean()),
        "iou_wall": float(iou[WALL]),
        "miou": float(np.nanmean(iou)),
    }


def plain_labels(model, normed: np.ndarray) -> np.ndarray:
    """Reference: the model as trained, one whole frame at a time, float32, plus its logit bias."""
    with torch.no_grad():
        return np.stack(
            [
                (model(torch.from_numpy(f)[None, None])[0] + model.logit_bias[:, None, None]).argmax(0).numpy()
                for f in normed
            ]
        )


RULES = ("argmax", "iou", "fractions")  # segment.train.decision


def run_one(frames, truth, train_frames, k, loss, seed, threads, steps=200) -> dict:
    """One training (today's loss: ``class_weights`` ``loss``), every decision rule read off it."""
    from ferrolens.segment.learn import heldout_logits

    per = min(40, steps)  # validation (and the best model's choice) every 40 steps, as the demo's 5 × 40
    cfg = {
        "train": {
            "patch_size": 128,
            "batch_size": 8,
            "steps_per_epoch": per,
            "max_epochs": max(1, steps // per),
            "class_weights": loss,
        },
        "predict": {"precision": "float32"},
    }
    labels = truth[train_frames] if k == 3 else np.where(truth[train_frames] == 2, 0, truth[train_frames])
    c0, t0 = time.process_time(), time.perf_counter()
    model, _ = seg.fit(
        frames[train_frames],
        labels,
        frames=train_frames,
        n_classes=k,
        cfg=cfg,
        seed=seed,
        threads=threads,
        progress=False,
    )
    wall_s = time.perf_counter() - t0
    util = (time.process_time() - c0) / wall_s
    full = seg.resolve_config(cfg)
    # the held-out strips fit() calibrated on (the same deterministic split), without any bias
    normed, _, _ = seg.normalize_frames(frames[train_frames])
    dm = seg.SegmentationData(normed, labels, train_frames, k, full["train"], full["augment"], seed=seed)
    own = model.logit_bias.clone()
    with torch.no_grad():
        model.logit_bias.zero_()
    strip_logits, strip_truth = heldout_logits(model, dm.val_sources, full)
    biases = {"argmax": np.zeros(k), **{r: tune_logit_bias(strip_logits, strip_truth, r) for r in RULES[1:]}}
    out = {
        "fit_s": wall_s,
        "cpu_per_wall": util,
        "bias": {r: b.tolist() for r, b in biases.items()},
        "default_rule": full["train"]["decision"],
    }
    # never-labelled frames, through the public prediction path (no bias), each rule's bias added after
    test = [i for i in range(len(frames)) if i not in train_frames]
    t = truth[test] if k == 3 else np.where(truth[test] == 2, 0, truth[test])
    logp = np.log(np.maximum(seg.probabilities(model, frames[test], cfg, threads), 1e-30))
    for r, b in biases.items():
        out[f"strip_{r}"] = scores(strip_truth, (strip_logits + b).argmax(1), k)
        out[f"test_{r}"] = scores(t, (logp + b[None, :, None, None]).argmax(1), k)
    # the model as fit() returns it carries the default rule's bias; prediction applies it as the plain model does
    with torch.no_grad():
        model.logit_bias.copy_(own)
    assert np.allclose(own.numpy(), biases[full["train"]["decision"]]), (own, biases)
    normed_t, _, _ = seg.normalize_frames(frames[test[:4]], model.hparams.norm_low, model.hparams.norm_high)
    fused = seg.probabilities(model, frames[test[:4]], cfg, threads).argmax(1)
    out["labels_equal_plain"] = float((plain_labels(model, normed_t) == fused).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(
        "--losses",
        nargs="+",
        default=["auto", "none"],
        choices=["auto", "none"],
        help="train.class_weights of the trainings (auto = today's loss)",
    )
    ap.add_argument("--classes", type=int, nargs="+", default=[3], choices=[2, 3])
    ap.add_argument("--data", nargs="+", default=["demo", "peer"], choices=list(DATASETS))
    ap.add_argument("--peer", type=Path, default=Path("/tmp/h5/peer"), help="peer data folder (made when absent)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200, help="training steps per model (the demo's 200)")
    ap.add_argument("--json", type=Path, default=None, help="the results, rewritten after every training")
    ap.add_argument(
        "--table",
        type=Path,
        nargs="+",
        default=None,
        help="train nothing: table the results of these --json files together",
    )
    args = ap.parse_args()
    if args.table:
        report([r for f in args.table for r in json.loads(f.read_text())])
        return
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs, {args.threads} torch threads, load average {os.getloadavg()[0]:.1f}", flush=True)

    results = []
    for name in args.data:
        frames, truth = load_data(name, args.peer)
        for k in args.classes:
            for loss in args.losses:
                for seed in args.seeds:
                    r = run_one(frames, truth, DATASETS[name], k, loss, seed, args.threads, args.steps)
                    r.update(data=name, classes=k, loss=loss, seed=seed)
                    results.append(r)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=1))
                    print(
                        f"{name} c{k} class_weights {loss} seed {seed}: fit {r['fit_s']:.0f} s (cpu/wall "
                        f"{r['cpu_per_wall']:.2f}), labels = plain {r['labels_equal_plain']:.5f}",
                        flush=True,
                    )
                    for part in ("strip", "test"):
                        for rule in RULES:
                            sc = r[f"{part}_{rule}"]
                            print(
                                f"   {part:5s} {rule:9s} bias {np.round(r['bias'][rule], 2).tolist()} wall "
                                f"{100 * sc['wall_pred']:.2f} % (true {100 * sc['wall_true']:.2f} %), IoU wall "
                                f"{sc['iou_wall']:.4f}, mean {sc['miou']:.4f}",
                                flush=True,
                            )

    report(results)


def report(results: list[dict]) -> None:
    """The side-by-side table (mean over seeds), the targets and the agreement check; exit 4 on disagreement."""
    data = list(dict.fromkeys(r["data"] for r in results))
    classes = list(dict.fromkeys(r["classes"] for r in results))
    losses = list(dict.fromkeys(r["loss"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    print(
        "\nmean over seeds " + ", ".join(map(str, seeds)) + " (held-out strips: of the 4 labelled frames, "
        "where the bias is chosen; never-labelled frames: independent of training and calibration)\n"
    )
    print(
        "| data | classes | class weights | decision | part | wall % predicted | wall % true | wall IoU | "
        "mean IoU |\n|---|---|---|---|---|---|---|---|---|"
    )
    ok = {}
    for name in data:
        for k in classes:
            for loss in losses:
                rs = [r for r in results if (r["data"], r["classes"], r["loss"]) == (name, k, loss)]
                if not rs:
                    continue
                for part, label in (("strip", "held-out strips"), ("test", "never-labelled frames")):
                    m = {
                        rule: {
                            key: float(np.mean([r[f"{part}_{rule}"][key] for r in rs]))
                            for key in ("wall_pred", "wall_true", "iou_wall", "miou")
                        }
                        for rule in RULES
                    }
                    for rule in RULES:
                        sc = m[rule]
                        print(
                            f"| {name} | {k} | {loss} | {rule} | {label} | {100 * sc['wall_pred']:.2f} | "
                            f"{100 * sc['wall_true']:.2f} | {sc['iou_wall']:.4f} | {sc['miou']:.4f} |"
                        )
                    if loss == "auto":
                        for rule in RULES[1:]:
                            c, a = m[rule], m["argmax"]
                            ok[f"{name} c{k} {label} {rule}: wall fraction within ±1 point"] = (
                                abs(c["wall_pred"] - c["wall_true"]) <= 0.01
                            )
                            ok[f"{name} c{k} {label} {rule}: wall IoU up"] = c["iou_wall"] > a["iou_wall"]
    print("\nper training: wall % predicted (true), wall IoU, for argmax / iou / fractions; the logit biases")
    for r in results:
        print(
            f"  {r['data']} c{r['classes']} {r['loss']} seed {r['seed']}: "
            + "; ".join(
                f"{part} "
                + " / ".join(f"{100 * r[f'{part}_{rule}']['wall_pred']:.2f}" for rule in RULES)
                + f" ({100 * r[part + '_argmax']['wall_true']:.2f}), IoU "
                + " / ".join(f"{r[f'{part}_{rule}']['iou_wall']:.4f}" for rule in RULES)
                for part in ("strip", "test")
            )
            + "; bias "
            + ", ".join(f"{rule} {np.round(r['bias'][rule], 2).tolist()}" for rule in RULES[1:])
        )
    agree = min(r["labels_equal_plain"] for r in results)
    print(
        f"\nprobabilities() vs plain argmax(model(x) + logit_bias): labels equal ≥ {agree:.5f} "
        f"({'agree' if agree >= 0.999 else 'DISAGREE'})"
    )
    print(
        "targets (today's loss, calibrated vs argmax):\n  "
        + "\n  ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in ok.items())
    )
    print(
        "CPU time / wall per training: "
        + ", ".join(f"{r['data']} c{r['classes']} {r['loss']} s{r['seed']} {r['cpu_per_wall']:.2f}" for r in results)
    )
    if agree < 0.999:
        raise SystemExit(4)


if __name__ == "__main__":
    main()
