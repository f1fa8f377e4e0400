"""Per-frame KDE: ferrolens' linear binning + FFT path against scipy.stats.gaussian_kde.

    python benchmarks/bench_kde.py [--frames 100] [--values 262144] [--grid 256] [--scipy-frames 4]

Both evaluate a Gaussian KDE of every frame's values on the same 256-point
grid with Scott's bandwidth per frame (scipy's default rule). The fast path
runs on all frames; scipy on a subset of frames, and its time is scaled to all
frames (it is linear in frames: every frame costs values × grid kernel
evaluations). Agreement is checked on the frames scipy evaluated, as the
largest absolute difference relative to that frame's peak density.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np
from scipy import stats

from ferrolens.dynamics.kde import kde_frames, linear_grid, rule_bandwidth

from timing import Clock


def make_frames(n_frames: int, n_values: int, seed: int = 0) -> np.ndarray:
    """(frames, values) float32: a two-state mixture whose balance drifts over the frames,
    like a latent variable of a switching movie."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_frames, n_values), np.float32)
    for f in range(n_frames):
        frac = 0.5 + 0.4 * np.sin(2 * np.pi * f / n_frames)
        na = int(frac * n_values)
        out[f, :na] = rng.normal(-1.0, 0.4, na)
        out[f, na:] = rng.normal(1.2, 0.6, n_values - na)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--values", type=int, default=262_144)
    ap.add_argument("--grid", type=int, default=256)
    ap.add_argument("--scipy-frames", type=int, default=4, help="frames scipy evaluates (time scaled to all)")
    ap.add_argument("--repeats", type=int, default=3, help="fast-path repeats (best time is reported)")
    args = ap.parse_args()

    data = make_frames(args.frames, args.values)
    lo, hi = np.quantile(data[:: max(1, args.frames // 10)], [0.001, 0.999])
    grid = linear_grid(lo - 0.5, hi + 0.5, args.grid)

    def fast() -> np.ndarray:
        h = np.array([rule_bandwidth(x, "scott") for x in data])  # scipy's default rule, per frame
        return kde_frames(data, grid, h)

    fast()  # warm-up (imports, FFT plans)
    clock = Clock(threads=1)  # numpy's and scipy's work here is single-threaded: judged against cpu/wall 0.9
    times = []
    for i in range(args.repeats):
        with clock(f"fast path, repeat {i + 1}") as block:
            dens = fast()
        times.append(block.wall)
    t_fast = min(times)

    subset = np.linspace(0, args.frames - 1, args.scipy_frames).round().astype(int)
    with clock("scipy.stats.gaussian_kde") as block:
        ref = np.stack([stats.gaussian_kde(data[f].astype(np.float64))(grid.values) for f in subset])
    t_scipy_subset = block.wall
    t_scipy = t_scipy_subset * args.frames / len(subset)

    rel_err = np.abs(dens[subset] - ref).max(axis=1) / ref.max(axis=1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared)")
    print(f"per-frame KDE: {args.frames} frames × {args.values:,} values → {args.grid}-point grid, Scott bandwidth")
    print(
        f"fast path (linear binning + FFT, all {args.frames} frames): {t_fast:.3f} s "
        f"(best of {args.repeats}: {', '.join(f'{t:.3f}' for t in times)})"
    )
    print(
        f"scipy.stats.gaussian_kde: {t_scipy_subset:.2f} s for {len(subset)} frames {subset.tolist()}, "
        f"scaled ×{args.frames / len(subset):.0f} → {t_scipy:.1f} s for {args.frames} frames"
    )
    print(f"speed-up: {t_scipy / t_fast:.0f}× (target ≥ 50×)")
    print(f"agreement: max |fast − scipy| / peak = {rel_err.max():.2e} over the compared frames (target ≤ 1e-3)")
    ok = rel_err.max() <= 1e-3 and t_scipy / t_fast >= 50
    print("PASS" if ok else "FAIL")
    print(clock.report())
    sys.exit(clock.exit_code())


if __name__ == "__main__":
    main()
