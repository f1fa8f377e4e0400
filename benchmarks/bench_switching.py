"""Switching maps (issue 26): time of the stage, its error against the demo generator's truth, and on
the BEPS cube its agreement with a classical per-pixel loop fit of the raw piezoresponse.

    python benchmarks/bench_switching.py --demo RESULTS/demo --window 8
    python benchmarks/bench_switching.py --beps RESULTS/beps --window 8

--demo: a finished run's dataset folder with synthetic.zarr, movie.zarr and rvae/n{window}/latents.zarr.
The stage (vectorised over pixels) runs beside a plain reference (the same step fit one pixel at a
time); they must agree exactly; the ratio and cpu/wall of each block are printed, then the errors
against the truth. --beps: a run on the BEPS cube (rvae.input raw; config/config.yaml's beps example)
with its movie.zarr and switching.zarr; the
latent map is compared with the tanh loop fit of each pixel's raw signal (ferrolens.switching.loopfit)
and with the same step fit run on the raw signal itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import xarray as xr

from ferrolens.dynamics.hysteresis import analyse_sweep
from ferrolens.switching import switching
from ferrolens.switching.core import SWITCHED, BranchResult, branch_switching, latent_state, segment_switching

DYN = {
    "stimulus": "auto",
    "reversal_tolerance": 0.02,
    "virgin_branch": "auto",
    "bias_points": 101,
    "time_block": 6,
    "angle_period": None,
}


def timed(fn, *a, **k):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(*a, **k)
    c, w = time.process_time() - c0, time.perf_counter() - w0
    return out, w, c / w


def reference(state: np.ndarray, sigma: np.ndarray, sweep, virgin=True) -> dict:
    """The plain loop: every pixel alone through segment_switching, segments combined as the stage does."""
    out = {}
    for name, d in (("rising", 1), ("falling", -1)):
        segs = [s for s in list(sweep.closed) + ([sweep.virgin] if virgin and sweep.virgin else []) if s.direction == d]
        res = []
        for p in range(state.shape[1]):
            per = []
            for s in segs:
                u = state[s.frames, p : p + 1] if d == 1 else 1 - state[s.frames, p : p + 1]
                per.append(segment_switching(u, sweep.values[s.frames], sigma[p : p + 1]))
            res.append(per)
        out[name] = res
    return out


def demo(folder: Path, window: int, cfg: dict) -> None:
    lat = folder / f"rvae/n{window}/latents.zarr"
    out = Path("/tmp") / f"bench_switching_n{window}.zarr"
    errors, wall, ratio = timed(switching, str(lat), str(out), cfg, DYN, truth=str(folder / "synthetic.zarr"))
    ds = xr.open_zarr(out)
    print(
        f"stage (read, compute, write) {ds.sizes['y']}×{ds.sizes['x']} px, {ds.sizes['frame']} frames: "
        f"wall {wall:.2f} s (cpu/wall {ratio:.2f}); compute alone {ds.attrs['seconds']} s"
    )
    for d, e in errors.items():
        print(f"  {d}: " + ", ".join(f"{k} {v:.3g}" for k, v in e.items()))
    from scipy.ndimage import maximum_filter

    from ferrolens.switching.core import NEVER
    from ferrolens.switching.truth import confusion, confusion_text, switching_errors, true_switching

    # the calls against each pixel's own truth: counts and row fractions (false calls: row never_switches,
    # column switched); the never-switching pixels split by whether their n × n window holds a switching pixel
    print(f"confusion against each pixel's truth (min_separation {ds['separation'].attrs.get('min_separation')}):")
    for d in ("rising", "falling"):
        t, c = (ds[k].sel(direction=d).values for k in ("true_status", "status"))
        called, actual = BranchResult(None, None, None, c.ravel()), BranchResult(None, None, None, t.ravel())
        print(confusion_text(confusion(called, actual), f"  {d}"))
        near = maximum_filter((ds["true_status"].values == SWITCHED).any(axis=0), size=window) & (t == NEVER)
        far = (t == NEVER) & ~near
        print(
            f"    never-switching pixels with a switching pixel in their {window}-px window: {near.sum()} "
            f"({near.sum() / max((t == NEVER).sum(), 1):.0%}), called switched {np.mean(c[near] == SWITCHED):.1%}; "
            f"the others {far.sum()}, called switched {np.mean(c[far] == SWITCHED):.1%}"
        )

    # what a window descriptor can see: half of the switching pixels of the n × n window switched
    syn = xr.open_zarr(folder / "synthetic.zarr")
    sweep = analyse_sweep(ds["bias"].values)
    est = {
        d: BranchResult(
            *[
                ds[k].sel(direction=d).values.ravel()
                for k in ("switching_bias", "switching_bias_low", "switching_bias_high", "status")
            ]
        )
        for d in ("rising", "falling")
    }
    for d, r in true_switching(syn["variant_map"].values, sweep, 0.05, True, window=window).items():
        e = switching_errors(est[d], r, sweep.step)
        print(
            f"  {d} against the window truth (n = {window}; {np.mean(r.status != NEVER):.0%} of windows switch): "
            + ", ".join(f"{k} {v:.3g}" for k, v in e.items())
        )
        print(confusion_text(confusion(est[d], r), f"  {d}, window truth"))
    # fast path against the plain loop on a 1000-pixel subset
    state = ds["state"].values.reshape(ds.sizes["frame"], -1)
    sigma = ds["noise"].values.ravel()
    sweep = analyse_sweep(ds["bias"].values)
    rng = np.random.default_rng(0)
    pick = rng.choice(state.shape[1], 1000, replace=False)
    _fast, wf, rf = timed(branch_switching, state[:, pick], sigma[pick], sweep)
    ref, wr, rr = timed(reference, state[:, pick], sigma[pick], sweep)
    # agreement per segment: the stage's per-segment results against the reference's
    agree = []
    for d in ref:
        segments = list(sweep.closed) + ([sweep.virgin] if sweep.virgin else [])
        segs = [s for s in segments if s.direction == (1 if d == "rising" else -1)]
        for j, s in enumerate(segs):
            u = state[s.frames][:, pick] if d == "rising" else 1 - state[s.frames][:, pick]
            vec = segment_switching(u, sweep.values[s.frames], sigma[pick])
            one = BranchResult(
                *[np.array([getattr(per[j], k)[0] for per in ref[d]]) for k in ("bias", "low", "high", "status")]
            )
            agree.append(np.array_equal(vec.status, one.status) and np.allclose(vec.bias, one.bias, equal_nan=True))
    print(
        f"fast path {wf * 1e3:.1f} ms (cpu/wall {rf:.2f}) vs plain loop {wr * 1e3:.1f} ms (cpu/wall {rr:.2f}) "
        f"for 1000 pixels: {wr / wf:.0f}× faster; statuses and biases agree in every segment: {all(agree)}"
    )


def window_median(values: np.ndarray, ok: np.ndarray, movie: xr.Dataset, window: int) -> np.ndarray:
    """A per-pixel map's median over the n × n window around each pixel (what a window descriptor sees)."""
    from scipy.ndimage import generic_filter

    m = np.where(ok, values, np.nan).reshape(movie.sizes["y"], movie.sizes["x"])
    with np.errstate(all="ignore"):
        return generic_filter(m, np.nanmedian, size=window, mode="nearest").ravel()


def beps(folder: Path, window: int) -> None:
    from ferrolens.switching.loopfit import fit_loops

    ds = xr.open_zarr(folder / f"rvae/n{window}/switching.zarr")
    # the run's movie store: the cube's bias steps as frames, on the same pixel grid as the latent maps
    # (ingest reads the file's X, Y axes as x, y)
    movie = xr.open_zarr(folder / "movie.zarr")
    volts = movie["bias"].values
    raw = movie["image"].values.reshape(movie.sizes["frame"], -1)  # (F, P)
    sweep = analyse_sweep(volts)
    fit, wall, ratio = timed(fit_loops, raw, sweep)
    print(
        f"tanh loop fit of {raw.shape[1]} pixels: {wall:.1f} s (cpu/wall {ratio:.2f}); "
        f"median R² {np.nanmedian(fit['r2']):.2f}"
    )
    # the same step fit on the raw signal (one feature), the classical reading by this stage's rule
    st = latent_state(raw[:, :, None], volts)
    rawmap = branch_switching(st.s, st.sigma, sweep)
    step = sweep.step
    for d, key in (("rising", "rising_coercive"), ("falling", "falling_coercive")):
        lat = ds["switching_bias"].sel(direction=d).values.ravel()
        ok_lat = ds["status"].sel(direction=d).values.ravel() == SWITCHED
        good_fit = (fit["r2"] > 0.5) & (np.abs(fit["amplitude"]) > 0) & np.isfinite(fit[key])
        print(
            f"  {d}: median switching bias: latent {np.nanmedian(lat[ok_lat]):+.2f} V, loop fit "
            f"{np.nanmedian(fit[key][good_fit]):+.2f} V"
        )
        # the ceiling of any n × n window descriptor: how far the per-pixel fit itself follows its own window
        # (a coercive map that changes from pixel to pixel is averaged away by the window)
        own = window_median(fit[key], good_fit, movie, window)
        both = good_fit & np.isfinite(own)
        print(
            f"  {d}: the loop fit against its own {window}-px window median: r = "
            f"{np.corrcoef(fit[key][both], own[both])[0, 1]:.2f} (what a window descriptor can reach at best)"
        )
        for name, ref, ok_ref in (
            ("loop fit", fit[key], good_fit),
            (f"loop fit, median over the {window}-px window", own, good_fit),
            ("step fit of the raw signal", rawmap[d].bias, rawmap[d].status == SWITCHED),
        ):
            both = ok_lat & ok_ref & np.isfinite(ref)
            diff = np.abs(lat[both] - ref[both])
            r = np.corrcoef(lat[both], ref[both])[0, 1] if both.sum() > 2 else np.nan
            print(
                f"  {d}: latent vs {name}: {both.sum()} pixels switched in both "
                f"(latent {ok_lat.sum()}, {name} {ok_ref.sum()}); median |diff| {np.median(diff):.2f} V, "
                f"within one step ({step:.2f} V) {np.mean(diff <= step * 1.000001):.0%}, r = {r:.2f}"
            )
    ok = (fit["r2"] > 0.5) & (rawmap["falling"].status == SWITCHED)
    d = np.abs(fit["falling_coercive"][ok] - rawmap["falling"].bias[ok])
    print(
        f"  falling: loop fit vs step fit, both on the raw signal: {ok.sum()} pixels, median |diff| "
        f"{np.median(d):.2f} V, within one step {np.mean(d <= step * 1.000001):.0%}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path)
    ap.add_argument("--beps", type=Path)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument(
        "--min-separation",
        type=float,
        default=None,
        help="switching.min_separation for --demo (default: the config's; 0: the level test alone)",
    )
    a = ap.parse_args()
    if a.demo:
        demo(a.demo, a.window, {} if a.min_separation is None else {"min_separation": a.min_separation})
    if a.beps:
        beps(a.beps, a.window)
