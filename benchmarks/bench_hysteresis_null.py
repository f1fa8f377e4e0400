"""Level and power of the test against no loop (issue 24), measured over many seeded curves.

Weight curves ``0.5 + 0.5 tanh((V − s·d) / w)`` (d = ±1 the sweep direction; s = 0: no loop) over
four designs of a triangular sweep between ±1 V:

* ``peak 1``: one cycle from saturation, +1 → −1 → +1 V (40 frames; a complete loop);
* ``0 V 1``: one cycle from 0 V (40 frames): the virgin curve, then only half a loop (open at 0 V);
* ``0 V 1¼``: 0 → +1 → −1 → +1 V (50 frames): the virgin curve and one complete cycle;
* ``0 V 2``: two cycles from 0 V (80 frames): the virgin curve, one complete cycle and a partial one.

Null table (s = 0, w = 0.2 V, noise sd 0.05): stationary AR(1) noise of lag-1 correlation 0, 0.5,
0.8; a linear (+0.1 over the movie) and a quadratic drift with ρ = 0.5; and a shuffled stimulus (a
real loop, s = 0.3 V, whose bias column is permuted). Columns: the fraction with p ≤ 0.05, with
p ≤ 0.05/8 (Holm's first step over 8 loops) and whose area interval excludes 0.

Power table (AR(1) ρ = 0.5): square loops (w = 0.03 V, s = 0.4 V: switching within a frame) and
slanted loops (w = 0.3 V, s = 0.3 V) at noise sd 0.02 and 0.05. Columns: power at 0.05 and
0.05/8, the interval's coverage of the true area, the median detectable area (80 % power at
0.05/8) and the true area.

    python benchmarks/bench_hysteresis_null.py --seeds 200
    python benchmarks/bench_hysteresis_null.py --seeds 200 --designs "peak 1,0 V 2"   # some designs only
    python benchmarks/bench_hysteresis_null.py --demo   # the demo's design on its ground truth
    python benchmarks/bench_hysteresis_null.py --cube   # a synthetic switching-spectroscopy cube
    python benchmarks/bench_hysteresis_null.py --write-cube cube.h5   # such a cube for the workflow (HDF5 + truth)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ferrolens.bias import triangular_waveform
from ferrolens.dynamics.hysteresis import LoopOperator, analyse_sweep, drift_robust_test, loop_metrics, null_reference
from ferrolens.synthetic import ar1_noise

DESIGNS = {"peak 1": (40, 1.0, 0.25), "0 V 1": (40, 1.0, 0.0), "0 V 1¼": (50, 1.25, 0.0), "0 V 2": (80, 2.0, 0.0)}


def operator(bias: np.ndarray) -> LoopOperator:
    sw = analyse_sweep(bias)
    return LoopOperator.build(sw, 101, 1, cycles=sw.complete_cycles() or None)


def measure(
    design: str,
    seeds: int,
    rho: float,
    sd: float,
    shift: float,
    width: float,
    drift: str = "",
    shuffle: bool = False,
    n_random: int = 499,
    seed: int = 0,
) -> dict:
    frames, cycles, phase = DESIGNS[design]
    bias = triangular_waveform(frames, 1.0, cycles=cycles, phase=phase)
    direction = analyse_sweep(bias).branches.direction
    truth = 0.5 + 0.5 * np.tanh((bias - shift * direction) / width)
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, frames)
    trend = {"": 0 * t, "linear": 0.05 * t, "quadratic": 0.1 * (t**2 - 1 / 3)}[drift]
    curves = truth[None] + trend[None] + ar1_noise(rng, seeds, frames, rho, sd)
    if shuffle:
        bias = rng.permutation(bias)
    op = operator(bias)
    null = null_reference(op, 2, n_random, rng)  # drift degrees 2 and 1, as the workflow tests
    if not null:
        return {"p05": np.nan, "p05_8": np.nan, "excl0": np.nan, "cover": np.nan, "detect": np.nan, "area": np.nan}
    mt = drift_robust_test(curves, null, 0.95, 0.05 / 8)
    area = loop_metrics(truth, op)["loop_area"][0] if not shuffle else 0.0
    return {
        "p05": np.mean(mt.p <= 0.05),
        "p05_8": np.mean(mt.p <= 0.05 / 8),
        "excl0": np.mean((mt.ci_low > 0) | (mt.ci_high < 0)),
        "cover": np.mean((mt.ci_low <= area) & (area <= mt.ci_high)),
        "detect": float(np.median(mt.detectable)),
        "area": area,
    }


def demo_truth() -> None:
    """The demo's movie (config/config.yaml: 40 frames from +10 V) through the dynamics stage, with the
    generator's per-pixel variant code (0 matrix, 1 family a, 2 family b) + noise as the latent z1
    (4000 pixels per frame, no rVAE); then the same with the bias shuffled."""
    import pandas as pd

    from ferrolens.dynamics import dynamics_core
    from ferrolens.synthetic import make_demo

    pd.set_option("display.width", 250)
    ds = make_demo(40, 256, 0, phase=0.25)
    bias = ds.bias.values
    rng = np.random.default_rng(0)
    v = ds.variant_map.values.reshape(40, -1).astype(float)
    pick = rng.choice(v.shape[1], 4000, replace=False)
    frames = {"z1": [row[pick] + rng.normal(0, 0.3, pick.size) for row in v]}
    frac_a = ds.fraction.sel(variant="a").values
    print(f"truth: loop area of the family-a fraction {loop_metrics(frac_a, operator(bias))['loop_area'][0]:.3f}")
    cfg = {"variables": ["z1"], "grid_points": 64, "bootstrap": 20, "n_components": 2}
    for name, b in (("bias", bias), ("shuffled bias", rng.permutation(bias))):
        d, tab = dynamics_core(frames, b, cfg, seed=0)
        w = d["weights"].sel(variable_nmf="z1").values
        corr = [np.corrcoef(w[c], frac_a)[0, 1] for c in range(w.shape[0])]
        t = tab[tab.cycle == "all"]
        print(f"--- {name}: correlation of each component's weight with the family-a fraction {np.round(corr, 2)}")
        columns = [
            "variable",
            "component",
            "loop_area",
            "loop_area_ci_low",
            "loop_area_ci_high",
            "p_value",
            "p_adjusted",
            "significant",
            "detectable_area",
            "noise_rho",
            "reference_rho",
            "time_block",
        ]
        print(t[columns].to_string())


def cube() -> None:
    """A switching-spectroscopy cube: 96 bias steps +16 → −16 → +16 V, 900 pixels, each a square loop
    (remanence ±1, switching at −7.4 V falling and +13.6 V rising, ±1 V spread) + pixel noise sd 0.5 + a
    frame-common AR(1) noise (ρ 0.5, sd 0.05): the frames' mean, 40 single pixels, and the bias shuffled."""
    rng = np.random.default_rng(0)
    frames = 96
    bias = triangular_waveform(frames, 16.0, cycles=1.0, phase=0.25)
    n = 900
    ef, er = -7.4 + rng.normal(0, 1, n), 13.6 + rng.normal(0, 1, n)
    state, s = np.empty((frames, n)), np.ones(n)
    for t in range(frames):
        s = np.where(bias[t] <= ef, -1.0, np.where(bias[t] >= er, 1.0, s))
        state[t] = s
    data = state + rng.normal(0, 0.5, (frames, n)) + ar1_noise(rng, 1, frames, 0.5, 0.05)[0][:, None]
    for name, b in (("bias", bias), ("shuffled bias", rng.permutation(bias))):
        op = operator(b)
        null = null_reference(op, 2, 499, rng)
        mean = drift_robust_test(data.mean(axis=1)[None], null, 0.95, 0.05)
        pix = drift_robust_test(data[:, :40].T, null, 0.95, 0.05)
        truth = loop_metrics(state.mean(axis=1), op)["loop_area"][0] if name == "bias" else 0.0
        print(
            f"{name}: frames' mean area {mean.area[0]:.2f} [{mean.ci_low[0]:.2f}, {mean.ci_high[0]:.2f}] (truth "
            f"{truth:.2f}), p {mean.p[0]:.3g}, noise rho {mean.rho[0]:.2f}, "
            f"reference rho {mean.rho_reference[0]:.2f}; "
            f"40 single pixels: p ≤ 0.05 in {np.mean(pix.p <= 0.05):.2f}, intervals excluding 0 "
            f"{np.mean((pix.ci_low > 0) | (pix.ci_high < 0)):.2f}, "
            f"median detectable area {np.median(pix.detectable):.1f}"
        )


def write_cube(path: str) -> None:
    """A switching-spectroscopy cube for the workflow, written as a pyNSID-style HDF5 (x, y, Voltage with
    dimension scales, as the BEPS file: the reader makes the bias axis the frames), its truth beside it
    (``<stem>_truth.npz``: state, bias, per-pixel falling/rising coercive biases ef, er).

    96 bias steps +16 → −16 → +16 V, 64 × 64 pixels, each a square loop: remanent state +1 until the bias
    falls below ``ef`` (−7.4 V + a smooth field of sd 1.2 V, clipped ±2.2 V), −1 until it rises above
    ``er`` (+13.6 V + another); piezoresponse 1e-4 × (state + white noise sd 0.5 + a fixed texture sd 0.2
    + a frame-common AR(1) offset, ρ 0.5, sd 0.05). Dataset ``Channel_000/generic/generic``."""
    import h5py
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    frames, n = 96, 64
    bias = triangular_waveform(frames, 16.0, cycles=1.0, phase=0.25)

    def field(sd: float) -> np.ndarray:
        g = gaussian_filter(rng.normal(size=(n, n)), 4, mode="wrap")
        return np.clip(g / g.std() * sd, -2.2, 2.2)

    ef, er = -7.4 + field(1.2), 13.6 + field(1.2)
    state, s = np.empty((frames, n, n)), np.ones((n, n))
    for t in range(frames):
        s = np.where(bias[t] <= ef, -1.0, np.where(bias[t] >= er, 1.0, s))
        state[t] = s
    texture = gaussian_filter(rng.normal(size=(n, n)), 1.5)
    texture *= 0.2 / texture.std()
    data = (
        state + rng.normal(0, 0.5, state.shape) + texture[None] + ar1_noise(rng, 1, frames, 0.5, 0.05)[0][:, None, None]
    ) * 1e-4
    with h5py.File(path, "w") as f:
        g = f.create_group("Channel_000/generic")
        scales = []
        for name, values, units, quantity in (
            ("X", np.arange(n) * 40e-9, "m", "Position"),
            ("Y", np.arange(n) * 40e-9, "m", "Position"),
            ("Voltage", bias, "V", "Bias"),
        ):
            d = g.create_dataset(name, data=values)
            d.attrs["units"], d.attrs["quantity"] = units, quantity
            d.make_scale(name)
            scales.append(d)
        cube_ds = g.create_dataset("generic", data=np.transpose(data, (2, 1, 0)))  # (x, y, Voltage) as BEPS
        cube_ds.attrs["DIMENSION_LABELS"] = np.array(["X", "Y", "Voltage"], dtype=object)
        cube_ds.attrs["quantity"], cube_ds.attrs["units"] = "Piezoresponse", "a.u."
        for i, sc in enumerate(scales):
            cube_ds.dims[i].attach_scale(sc)
    np.savez(str(path).rsplit(".", 1)[0] + "_truth.npz", state=state, bias=bias, ef=ef, er=er)
    print(f"wrote {path}: {frames} bias steps, {n}×{n} pixels; truth beside it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--demo", action="store_true", help="the demo's design on its ground truth, then stop")
    ap.add_argument("--cube", action="store_true", help="a synthetic spectroscopy cube, then stop")
    ap.add_argument(
        "--designs",
        default=",".join(DESIGNS),
        help=f"comma-separated designs of the tables (default all: {', '.join(DESIGNS)})",
    )
    ap.add_argument("--write-cube", metavar="PATH", help="write the workflow's spectroscopy cube (HDF5), then stop")
    args = ap.parse_args()
    if args.write_cube:
        return write_cube(args.write_cube)
    designs = [d.strip() for d in args.designs.split(",")]
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        ap.error(f"unknown designs {unknown}; choose from {list(DESIGNS)}")
    if args.demo or args.cube:
        return demo_truth() if args.demo else cube()
    s = args.seeds
    print(
        f"{s} seeds per cell; drift_degree 2 (p: the larger of degrees 2 and 1); "
        "reference of 499 simulated curves per correlation\n"
    )
    print("NULL (no loop): fraction p≤.05 / p≤.05/8 / area interval excludes 0")
    nulls = [
        ("AR ρ=0", dict(rho=0.0)),
        ("AR ρ=0.5", dict(rho=0.5)),
        ("AR ρ=0.8", dict(rho=0.8)),
        ("linear drift", dict(rho=0.5, drift="linear")),
        ("quadratic drift", dict(rho=0.5, drift="quadratic")),
        ("shuffled bias", dict(rho=0.5, shift=0.3, shuffle=True)),
    ]
    print(f"{'design':>8} | " + " | ".join(f"{n:>17}" for n, _ in nulls))
    for d in designs:
        t0 = time.perf_counter()
        cells = []
        for i, (_, kw) in enumerate(nulls):
            kw = {"shift": 0.0, **kw}
            r = measure(d, s, sd=0.05, width=0.2, seed=i, **kw)
            cells.append(f"{r['p05']:5.3f} {r['p05_8']:5.3f} {r['excl0']:5.3f}")
        print(f"{d:>8} | " + " | ".join(cells) + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nPOWER (AR ρ = 0.5): p≤.05 / p≤.05/8 / coverage of the true area / median detectable area (true area)")
    loops = [("square", 0.4, 0.03), ("slanted", 0.3, 0.3)]
    heads = [f"{n} sd {sd}" for n, _, _ in loops for sd in (0.02, 0.05)]
    print(f"{'design':>8} | " + " | ".join(f"{h:>27}" for h in heads))
    for d in designs:
        t0 = time.perf_counter()
        cells = []
        for i, (_, shift, width) in enumerate(loops):
            for sd in (0.02, 0.05):
                r = measure(d, s, 0.5, sd, shift, width, seed=100 + i)
                cells.append(
                    f"{r['p05']:4.2f} {r['p05_8']:4.2f} {r['cover']:4.2f} {r['detect']:5.2f} ({r['area']:.2f})"
                )
        print(f"{d:>8} | " + " | ".join(cells) + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
