"""rVAE training throughput beside the machine's fp32 matmul rate, in one run.

For each model (default: the config's default model, ``equivariant``, with the
config's hyper-parameters via ``model_hparams``, then the paper's) and window
size (default n = 12 and 24) a Lightning ``Trainer`` fits the model for a fixed
number of steps on in-memory windows, as ``ferrolens.rvae.train`` does (same
module, loss, Adam, the config's batch size).
Throughput = windows / s over the timed steps (after warm-up). The FLOPs of
one training step (forward + backward) are counted with
``torch.utils.flop_counter.FlopCounterMode``; the reference is the fp32 rate of
a large square ``torch.mm`` measured in the same process with the same
threads. Printed: windows/s, achieved GFLOP/s, matmul GFLOP/s and their
RATIO (the fraction of the matmul rate that training reaches), and the ratio to
AtomAI 0.8.1's rVAE training (batch 128, its 128-filter conv encoder) recorded
on this machine in ``../shared/peers/atomai_results_2026-12.jsonl``
(``rvae_n{12,24}_train_windows_per_s``; installing AtomAI here to rerun it
side by side: ``../shared/peers/README.md``).

Every timed block records its cpu/wall (``benchmarks/timing.py``); a block
below 1.8 on 2 threads is printed REFUSED and the exit status is 3.

Usage::

    python benchmarks/bench_rvae_train.py [--threads 2] [--windows 12 24] [--steps 30] [--batch 128]
                                          [--models default paper]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from timing import Block, Clock

# AtomAI 0.8.1 rVAE.fit windows/s on this machine (2 threads, batch 128, cpu/wall 1.98)
ATOMAI_TRAIN = {12: 1234.7, 24: 198.6}


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):  # best of three: the machine is shared
        t = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 * repeats / best / 1e9


class _Clock(pl.Callback):
    """Time (wall and process CPU) the training steps after ``warmup`` steps."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1, self.c0, self.c1, self.timed = warmup, None, None, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.t0, self.c0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.t0 is not None:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            self.timed += 1


def step_flops(model, x) -> float:
    with FlopCounterMode(display=False) as fc:
        model.loss(x).total.backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def make_model(name: str, n: int):
    """``default``: the config's default model and hyper-parameters; ``paper``: the paper's exactly."""
    from ferrolens.rvae import RVAE
    from ferrolens.rvae.config import DEFAULTS, model_hparams

    return RVAE(**model_hparams({**DEFAULTS, **({"architecture": "paper"} if name == "paper" else {})}, n))


def throughput(name: str, n: int, steps: int, batch: int, clock: Clock, warmup: int = 3) -> dict:
    from ferrolens.rvae.toy import oriented_bars

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(oriented_bars(n, rng.uniform(0, np.pi, batch * 4)))
    model = make_model(name, n)
    flops = step_flops(model, x[:batch]) / batch
    # the encoder's share: forward + backward of the encoder alone on one batch
    with FlopCounterMode(display=False) as fc:
        sum(t.sum() for t in model.encoder(x[:batch])).backward()
    model.zero_grad(set_to_none=True)
    enc_flops = float(fc.get_total_flops()) / batch
    timer = _Clock(warmup)
    trainer = pl.Trainer(
        max_steps=warmup + steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, DataLoader(TensorDataset(x), batch_size=batch, shuffle=True, drop_last=True))
    seconds = timer.t1 - timer.t0
    block = Block(f"{name} n={n} training", seconds, timer.c1 - timer.c0)
    clock.blocks.append(block)
    rate = timer.timed * batch / seconds
    return {
        "model": name,
        "architecture": model.hparams.architecture,
        "window": n,
        "batch": batch,
        "steps_timed": timer.timed,
        "seconds": seconds,
        "cpu_wall": block.util,
        "refused": not clock.ok(block),
        "windows_per_s": rate,
        "gflop_per_window": flops / 1e9,
        "encoder_gflop_per_window": enc_flops / 1e9,
        "achieved_gflops": rate * flops / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--windows", type=int, nargs="+", default=[12, 24])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--models", nargs="+", choices=["default", "paper"], default=["default", "paper"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clock = Clock(args.threads)

    with clock("matmul before"):
        peak_before = matmul_gflops()
    rows = [throughput(m, n, args.steps, args.batch, clock) for m in args.models for n in args.windows]
    with clock("matmul after"):
        peak_after = matmul_gflops()
    peak = max(peak_before, peak_after)  # the machine is shared: take the better measurement
    print(
        f"fp32 matmul (2048², {args.threads} threads): {peak_before:.0f} GFLOP/s before, "
        f"{peak_after:.0f} after; using {peak:.0f}"
    )
    for r, block in zip(rows, [b for b in clock.blocks if b.name.endswith("training")], strict=True):
        r["matmul_gflops"] = peak
        r["fraction_of_matmul"] = r["achieved_gflops"] / peak
        atomai = ATOMAI_TRAIN.get(r["window"])
        vs = f"; AtomAI's recorded rVAE {atomai:.0f} windows/s: {r['windows_per_s'] / atomai:.2f}×" if atomai else ""
        print(
            f"[train] {r['model']} ({r['architecture']}) n={r['window']:>2}: {r['windows_per_s']:.0f} windows/s "
            f"({clock.tag(block)}), {r['gflop_per_window']:.3f} GFLOP/window (fwd+bwd; encoder "
            f"{r['encoder_gflop_per_window']:.3f}) -> {r['achieved_gflops']:.0f} GFLOP/s; RATIO to matmul "
            f"{r['fraction_of_matmul']:.2f}{vs}"
        )
        print(json.dumps(r))
    print(clock.report())
    sys.exit(clock.exit_code())


if __name__ == "__main__":
    main()
