"""Hysteresis statistics under a null and on a known loop (issue 15), measured over many seeds.

Weight curves over a triangular sweep from 0 V (virgin curve, then complete cycles and a partial
one): ``0.5 + 0.5 tanh((V − s·d) / 0.2)`` with d = ±1 the sweep direction and s = 0 (no
hysteresis) or the loop's half-width, plus stationary AR(1) noise (lag-1 correlation rho, sd 0.05).
For each setting it prints, over ``--seeds`` curves:

* null (s = 0): the fraction with p ≤ 0.05, with p ≤ 0.05/8 (Holm's first step over 8 loops), and
  the fraction whose loop-area interval holds 0;
* loop (s = 0.3 V): coverage of the true area by the interval, the median relative error of the
  area, and the power (p ≤ 0.05 and ≤ 0.05/8);
* the same null with time blocks of one frame (labels exchanged frame by frame): what ignoring the
  noise's correlation does.

    python benchmarks/bench_hysteresis_null.py --seeds 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ferrolens.bias import triangular_waveform
from ferrolens.synthetic import ar1_noise
from ferrolens.dynamics.hysteresis import LoopOperator, analyse_sweep, loop_metrics, loop_statistics




def measure(cycles: float, rho: float, block: int, shift: float, seeds: int, seed: int = 0) -> dict:
    frames = int(40 * cycles)
    bias = triangular_waveform(frames, 1.0, cycles=cycles, phase=0.0)
    sweep = analyse_sweep(bias)
    op = LoopOperator.build(sweep, 101, block, cycles=sweep.complete_cycles() or None)
    truth = 0.5 + 0.5 * np.tanh((bias - shift * sweep.branches.direction) / 0.2)
    area = loop_metrics(truth, op)["loop_area"][0]
    rng = np.random.default_rng(seed)
    curves = truth[None] + ar1_noise(rng, seeds, frames, rho, 0.05)
    st = loop_statistics(curves, op, None, 0.95, n_resample=0, n_random=1999, rng=rng)
    p = st["p_value"]
    inside = (st["loop_area_ci_low"] <= area) & (area <= st["loop_area_ci_high"])
    return {"units": op.n_units, "area": area, "p05": np.mean(p <= 0.05), "p05_8": np.mean(p <= 0.05 / 8),
            "cover": inside.mean(), "rel_err": np.median(np.abs(st["loop_area"] - area)) / max(abs(area), 1e-12)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--block", type=int, default=6, help="time_block (frames)")
    args = ap.parse_args()
    print(f"{args.seeds} seeds, time_block {args.block}; AR(1) noise sd 0.05 on a 0…1 weight\n")
    print(f"{'cycles':>6} {'rho':>4} | {'units':>5} | null: p≤.05  p≤.05/8  CI∋0 | loop 0.3 V: cover  "
          f"|err|  p≤.05  p≤.05/8 | 1-frame blocks, null p≤.05")
    for cycles in (2.0, 4.0, 6.0):
        for rho in (0.0, 0.5, 0.7):
            t = time.perf_counter()
            null = measure(cycles, rho, args.block, 0.0, args.seeds)
            loop = measure(cycles, rho, args.block, 0.3, args.seeds, seed=1)
            naive = measure(cycles, rho, 1, 0.0, args.seeds, seed=2)
            print(f"{cycles:6.0f} {rho:4.1f} | {null['units']:5d} | {null['p05']:10.3f} {null['p05_8']:8.3f} "
                  f"{null['cover']:5.3f} | {loop['cover']:16.3f} {loop['rel_err']:6.3f} {loop['p05']:6.3f} "
                  f"{loop['p05_8']:8.3f} | {naive['p05']:.3f}   ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
