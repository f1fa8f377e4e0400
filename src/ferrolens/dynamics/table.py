"""The hysteresis table of the dynamics stage (no file I/O): every NMF weight looped against the
stimulus, the pooled loop and each cycle when several, with intervals, p-values and a verdict in words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..sections import DynamicsConfig
from ..stimulus import Stimulus
from . import hysteresis as hy

TABLE_COLUMNS = {
    "window": "rVAE window size n (pixels), when the latents store records it",
    "variable": "the NMF: a latent variable's own KDE(L, t), or 'stacked' (all variables side by side)",
    "component": "NMF component index (ordered by the frame of peak weight)",
    "cycle": "'all': the closed loop pooled over its cycles; 1, 2 …: one cycle (rows only with several); "
    "'none': no loop",
    "stimulus": "what the weights are looped against: bias, temperature, time or frame",
    "stimulus_units": "units of the stimulus (V for bias)",
    "loop_area": "signed loop area ∫(falling − rising) d(stimulus) over the common range of the closed loop's "
    "branches (weight·stimulus units) of the curve less its fitted smooth drift in time (degree "
    "drift_degree); > 0 when the falling branch lies above the rising one. The virgin curve is left out",
    "loop_area_raw": "the same area without removing the drift",
    "p_value": "test against no hysteresis: the area over its standard error (AR(1) GLS of the whole curve: one "
    "function of the stimulus for both branches, drift, loop) against simulated no-loop curves with "
    "noise correlated as much as the data allow (upper 90 % REML bound of the lag-1 correlation); "
    "the largest over the drift degrees 1 … drift_degree (a loop must stand under each)",
    "p_adjusted": "p_value Holm-adjusted over the loops tested in this table (the pooled rows, cycle 'all', "
    "one per NMF and component); empty for per-cycle rows, which describe",
    "significant": "p_adjusted < alpha and the loop-area interval excludes 0 (it also carries the resampled "
    "pixel blocks and the refitted NMF)",
    "p_floor": "smallest p-value the simulated reference allows (1 / (1 + dynamics.permutations))",
    "detectable_area": "smallest |loop area| this design detects at alpha over the loops tested (Holm's first "
    "step): 80 % power if the loop left the standard error and noise bound as they are; measured "
    "≥ 50 % (benchmarks/bench_hysteresis_null.py): a 'no' means no loop larger than this",
    "max_difference": "falling − rising where |falling − rising| is largest (weight)",
    "max_difference_at": "stimulus value of the largest branch difference",
    "rising_coercive": "stimulus where the rising branch crosses the level midway between its saturated values "
    "(its values at the two ends of the sweep); empty when it does not span the sweep",
    "falling_coercive": "the same for the falling branch (scanning downwards)",
    "range_low": "low end of the common stimulus range of the branches",
    "range_high": "high end of the common stimulus range of the branches",
    "virgin_frames": "frames of the virgin curve (first quarter-cycle from the initial state), left out",
    "n_cycles": "cycles (both branches) in this row's loop: for the pooled row, those pooled",
    "drift_degree": "degree of the drift in time the test allows under no loop (dynamics.drift_degree; the p-value "
    "is the largest over degrees 1 … this one; 0: no drift)",
    "noise_rho": "lag-1 correlation of the curve's noise in time (REML, AR(1), no-loop model)",
    "reference_rho": "lag-1 correlation of the simulated no-loop curves the test compares with (≥ noise_rho)",
    "time_block": "frames per time block of the resampled intervals (Politis–White from the model's residuals when "
    "dynamics.time_block is auto)",
    "n_resamples": "resamples behind the intervals (spatial pixel blocks with NMF refit; time blocks)",
    "ci_level": "confidence level of the *_ci_low / *_ci_high intervals",
    "alpha": "significance level applied to p_adjusted",
    "verdict": "the result in words",
    "note": "what is left out and why",
}


def describe(column: str) -> str:
    """What a column of the table holds, in words (the JSON record's ``columns``)."""
    for end, what in (("_ci_low", "low"), ("_ci_high", "high")):
        if column.endswith(end):
            return f"{what} end of the interval of {column[: -len(end)]} (level ci_level)"
    return TABLE_COLUMNS.get(column, "")


def stimulus_sweep(stim: Stimulus, cfg: DynamicsConfig, has_bias: bool) -> hy.Sweep:
    """Branches, virgin curve and cycles of the stimulus; time and the frame index never turn back (no loop)."""
    if stim.name not in ("time", "frame"):
        return hy.analyse_sweep(stim.values, cfg["reversal_tolerance"], cfg["virgin_branch"], stim.name, stim.units)
    return hy.Sweep(
        stim.values,
        stim.name,
        stim.units,
        hy.split_branches(stim.values, 0.0),
        None,
        (),
        cfg["reversal_tolerance"],
        f"the stimulus is {'the frame index' if stim.name == 'frame' else 'time'}, which never "
        "turns back: no rising and falling branches, so no loop"
        + ("" if stim.name != "frame" or has_bias else " (the movie has no bias)"),
    )


def loop_specs(sweep: hy.Sweep, cfg: DynamicsConfig) -> list[tuple[str, hy.LoopOperator]]:
    """``[("all", the pooled loop), ("1", cycle 1), …]``: the pooled loop holds the complete cycles (both
    branches over the whole sweep) when there are any, so that every matched unit compares like with
    like, else whatever the movie has (one partial cycle); each cycle with both branches its own when
    there are several."""
    p, L = cfg["bias_points"], 1  # matched units only describe the loop now
    complete = sweep.complete_cycles()
    specs = [("all", hy.LoopOperator.build(sweep, p, L, cycles=complete or None))]
    if sweep.n_cycles >= 2:
        specs += [
            (str(k + 1), hy.LoopOperator.build(sweep, p, L, cycles=(k,)))
            for k in range(len(sweep.cycles))
            if len({s.direction for s in sweep.cycles[k]}) == 2
        ]
    return specs


def loop_rows(
    curves: dict[str, np.ndarray],
    replicates: dict[str, np.ndarray | None],
    sweep: hy.Sweep,
    specs: list[tuple[str, hy.LoopOperator]],
    cfg: DynamicsConfig,
    window: int | None,
    rng: np.random.Generator,
) -> list[dict]:
    """One row per (NMF, component, loop of ``specs``) (one per component and NMF when there is no loop).

    ``curves[v]``: weights (C, F) of NMF ``v``; ``replicates[v]``: (B, C, F) or None.
    """
    complete = sweep.complete_cycles()
    n_boot = cfg["bootstrap"]
    n_tests = sum(c_v.shape[0] for c_v in curves.values())  # pooled rows: one per NMF and component
    rows = []
    for cycle, op in specs:
        null = hy.null_reference(op, cfg["drift_degree"], cfg["permutations"], rng)  # one per loop
        for v, c_v in curves.items():
            st = hy.loop_statistics(
                c_v,
                op,
                replicates[v],
                cfg["ci_level"],
                n_boot,
                cfg["permutations"],
                rng,
                cfg["drift_degree"],
                cfg["time_block"],
                cfg["alpha"] / max(n_tests, 1),
                null,
            )
            for c in range(c_v.shape[0]):
                row: dict[str, Any] = {
                    "window": window,
                    "variable": v,
                    "component": c,
                    "cycle": cycle if not op.note else "none",
                    "stimulus": sweep.name,
                    "stimulus_units": sweep.units,
                }
                row.update({k: float(a[c]) for k, a in st.items()})
                row.update(
                    {
                        "range_low": float(op.grid[0]),
                        "range_high": float(op.grid[-1]),
                        "virgin_frames": (f"{sweep.virgin.start}–{sweep.virgin.stop}" if sweep.virgin else ""),
                        "n_cycles": sum(len({s.direction for s in sweep.cycles[k]}) == 2 for k in op.cycles),
                        "drift_degree": cfg["drift_degree"],
                        "n_resamples": n_boot,
                        "ci_level": cfg["ci_level"],
                        "alpha": cfg["alpha"],
                        "note": loop_note(sweep, op, complete if cycle == "all" else None),
                    }
                )
                rows.append(row)
        if op.note:
            break  # no loop: one row per component says why
    order = {v: i for i, v in enumerate(curves)}  # rows by NMF, then loop, as before
    return sorted(rows, key=lambda r: order[r["variable"]])


def column_order() -> list[str]:
    """The table's columns in order: every metric followed by its interval (the loop area also by its test)."""
    metric_cols = []
    for m in hy.METRICS:
        metric_cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
        if m == "loop_area":
            metric_cols += ["loop_area_raw", "p_value", "p_adjusted", "significant", "p_floor", "detectable_area"]
    return [
        "window",
        "variable",
        "component",
        "cycle",
        "stimulus",
        "stimulus_units",
        *metric_cols,
        "range_low",
        "range_high",
        "virgin_frames",
        "n_cycles",
        "drift_degree",
        "noise_rho",
        "reference_rho",
        "time_block",
        "n_resamples",
        "ci_level",
        "alpha",
        "verdict",
        "note",
    ]


def loop_table(rows: list[dict], alpha: float) -> pd.DataFrame:
    """The rows as the table: p-values Holm-adjusted over the pooled loops, significance, verdicts."""
    table = pd.DataFrame(rows)
    # the loops tested are the pooled ones (one per NMF and component); per-cycle rows describe
    pooled_rows = (table["cycle"] == "all").to_numpy()
    table["p_adjusted"] = hy.holm(np.where(pooled_rows, table["p_value"].to_numpy(), np.nan))
    # a loop is called when the test rejects and its interval (which also carries the pixel blocks and
    # the refitted NMF: an unstable factorisation can make a curve look looped) keeps clear of 0
    lo, hi = table["loop_area_ci_low"].to_numpy(), table["loop_area_ci_high"].to_numpy()
    clear = ~((lo <= 0) & (hi >= 0))  # NaN interval (nothing resampled): the test alone
    table["significant"] = (table["p_adjusted"] < alpha) & clear
    n_tests = int(np.isfinite(table["p_adjusted"]).sum())
    table["verdict"] = [verdict(r, n_tests) for r in table.itertuples()]
    return table[column_order()]


def loop_note(sweep: hy.Sweep, op: hy.LoopOperator, complete: tuple[int, ...] | None = None) -> str:
    """What is left out of a loop row, and why, in words."""
    if op.note:
        return op.note[0].upper() + op.note[1:] + "."
    parts = []
    if complete:
        left = [k + 1 for k in range(len(sweep.cycles)) if k not in complete]
        if left:
            parts.append(
                f"Cycle{'s' if len(left) > 1 else ''} {', '.join(map(str, left))} "
                f"{'do' if len(left) > 1 else 'does'} not cover the whole sweep in both directions "
                "(the movie stops mid-branch): left out of the pooled loop."
            )
    if sweep.virgin is not None:
        parts.append(
            f"The virgin curve (frames {sweep.virgin.start}–{sweep.virgin.stop}, "
            f"{sweep.text(sweep.values[sweep.virgin.start])} → {sweep.text(sweep.values[sweep.virgin.stop])}) "
            "is its own branch, left out."
        )
    for d, name in ((hy.RISING, "rising"), (hy.FALLING, "falling")):
        if not op.spans[d]:
            g = op.own_grid[d]
            parts.append(
                f"The {name} branch covers only {sweep.text(g[0])} … {sweep.text(g[-1])}, not the whole "
                "sweep: no saturated values at both ends, so no coercive value."
            )
    return " ".join(parts)


def verdict(r, n_tests: int) -> str:
    """The result of one table row (a namedtuple of its columns) in words; ``n_tests``: rows tested."""
    if r.cycle == "none" or not np.isfinite(r.loop_area):
        return "no loop: " + (r.note[0].lower() + r.note[1:] if r.note else "")
    if not np.isfinite(r.p_value):
        return (
            f"loop area {r.loop_area:.3g}, not testable: the loop is open at one end of its range (the movie "
            "stops mid-branch, e.g. one cycle from 0 V), where a drift in time cannot be told from a loop "
            "(dynamics.drift_degree: 0 assumes no drift; a start from saturation or a complete cycle allows "
            "a test)"
        )
    interval = f"[{r.loop_area_ci_low:.3g}, {r.loop_area_ci_high:.3g}]"
    if r.cycle != "all":
        return (
            f"cycle {r.cycle}: area {r.loop_area:.3g} {interval}, p = {r.p_value:.2g} (not corrected: the "
            "pooled row carries the test)"
        )
    if r.significant:
        side = "falling above rising" if r.loop_area > 0 else "rising above falling"
        return (
            f"significant loop ({side}): area {r.loop_area:.3g} {interval}, p = {r.p_value:.2g} "
            f"(Holm {r.p_adjusted:.2g} < {r.alpha:g})"
        )
    bound = (
        f"; no loop larger than {r.detectable_area:.3g} in |area| (found at least every other time at this design)"
        if np.isfinite(r.detectable_area)
        else ""
    )
    if r.p_adjusted < r.alpha:
        return (
            f"no significant loop: p = {r.p_value:.2g} (Holm {r.p_adjusted:.2g} < {r.alpha:g}), but the area's "
            f"interval {interval} from resampled pixel blocks (NMF refitted) holds 0: the curve itself is not "
            "stable enough to call it a loop" + bound
        )
    text = (
        f"no significant loop: area {r.loop_area:.3g} {interval}, p = {r.p_value:.2g} (Holm {r.p_adjusted:.2g} "
        f"≥ {r.alpha:g})" + bound
    )
    if r.p_floor >= r.alpha / max(n_tests, 1):
        text += f"; p cannot go below {r.p_floor:.2g} with this many simulated curves (dynamics.permutations)"
    return text
