"""The dynamics bootstrap's NMF refits: ``dynamics.nmf.coordinate_descent`` against scikit-learn's estimator.

The dynamics stage refits the NMF of every bootstrap resample from the point fit's factors (warm start,
``init="custom"``, coordinate descent). ``coordinate_descent`` runs scikit-learn's own compiled update
without the estimator's per-iteration checks. Here both refit the same resamples of a KDE-like matrix
(``--frames`` frames × ``--bins`` grid bins, two hysteretic components, the dynamics stage's
``nmf_max_iter``/``nmf_tol`` defaults), one after the other in one process on one thread; the script
checks that every refit is identical to the bit and prints the time ratio. Each timed block records
its cpu/wall (``benchmarks/timing.py``; refused below 0.9 on one thread).

Usage::

    python benchmarks/bench_nmf_refit.py [--frames 40] [--bins 256] [--resamples 100]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread for BLAS, as the dynamics job has
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import warnings

import numpy as np
from sklearn.decomposition import NMF

from ferrolens.dynamics.nmf import coordinate_descent, fit_nmf

from timing import Clock


def kde_like(frames: int, bins: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, bins) densities: two bumps whose weights switch with a hysteretic bias cycle, plus noise."""
    grid = np.linspace(-3, 3, bins)
    a, b = np.exp(-0.5 * ((grid + 1) / 0.3) ** 2), np.exp(-0.5 * ((grid - 1) / 0.4) ** 2)
    t = np.linspace(0, 2 * np.pi, frames)
    w = 0.5 + 0.5 * np.tanh(3 * np.sin(t - 0.6))
    return np.outer(w, a) + np.outer(1 - w, b) + rng.gamma(2.0, 0.01, (frames, bins))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--bins", type=int, default=256)
    p.add_argument("--resamples", type=int, default=100)
    p.add_argument("--max-iter", type=int, default=2000)
    p.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    X = kde_like(args.frames, args.bins, rng)
    point = fit_nmf(X, 2, seed=0, max_iter=args.max_iter, tol=args.tol)
    W0 = np.ascontiguousarray(np.clip(point.weights, 1e-12, None))
    H0 = np.ascontiguousarray(np.clip(point.components, 1e-12, None))
    resamples = [np.clip(X * rng.gamma(50.0, 1 / 50.0, X.shape), 0, None) for _ in range(args.resamples)]
    clock = Clock(threads=1)
    ref = []
    with clock("scikit-learn NMF(init='custom', solver='cd')"):
        for x in resamples:
            model = NMF(2, init="custom", solver="cd", max_iter=args.max_iter, tol=args.tol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w = model.fit_transform(x, W=W0.copy(), H=H0.copy())
            ref.append((w, model.components_.copy(), model.n_iter_))
    with clock("coordinate_descent"):
        new = [coordinate_descent(x, W0.copy(), H0.copy(), args.max_iter, args.tol) for x in resamples]
    pairs = zip(ref, new, strict=True)
    same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] for a, b in pairs)
    iters = [r[2] for r in ref]
    print(f"{args.resamples} refits of a {args.frames} × {args.bins} matrix, iterations median {np.median(iters):.0f}")
    print(clock.report())
    sk, lean = clock.blocks
    print(f"identical to the bit: {same}; ratio (CPU) {sk.cpu / lean.cpu:.2f}×, (wall) {sk.wall / lean.wall:.2f}×")
    sys.exit(1 if not same else clock.exit_code())


if __name__ == "__main__":
    main()
