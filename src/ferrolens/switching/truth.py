"""The demo generator's truth of switching, and the error of a switching map against it.

The generator (:func:`ferrolens.synthetic.make_demo`) records each pixel's variant in every frame
(``variant_map``). A pixel's true state is 1 where it holds the variant it has at the top level of
the stimulus, 0 where it holds the bottom level's, 1/2 for a third variant; its true switching
bias on a branch is then found as for a measured state with no noise (the midpoint between the
last frame in the old variant and the first in the new one, within half a stimulus step).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..dynamics.hysteresis import Sweep
from .core import NEVER, NO_SWITCH, STATUS_MEANINGS, SWITCHED, BranchResult, branch_switching, level_frames


def true_state(variant: np.ndarray, values: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(F, P) true state and (P,) whether the pixel switches at all, from the variant (F, P) per frame:
    the levels are each pixel's most frequent variant over the top and bottom level frames."""
    top, bottom = level_frames(values, margin)
    v = np.asarray(variant)
    top_variant = stats.mode(v[top], axis=0, keepdims=False).mode
    bottom_variant = stats.mode(v[bottom], axis=0, keepdims=False).mode
    s = np.where(v == top_variant[None], 1.0, np.where(v == bottom_variant[None], 0.0, 0.5))
    return s, top_variant != bottom_variant


def window_state(variant: np.ndarray, values: np.ndarray, margin: float, window: int) -> tuple[np.ndarray, np.ndarray]:
    """What a descriptor of the n × n window around each pixel can see: (F, Y·X) the fraction of
    switching pixels in the window that hold their top level (1/2 for a third variant), and (Y·X,)
    whether the window holds any switching pixel. ``variant`` (F, Y, X)."""
    from scipy.ndimage import uniform_filter

    f, h, w = variant.shape
    s, switches = true_state(variant.reshape(f, -1), values, margin)
    mask = switches.reshape(h, w).astype(float)
    num = uniform_filter(np.where(switches, s, 0.0).reshape(f, h, w), size=(1, window, window), mode="constant")
    den = uniform_filter(mask, size=window, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(den > 1e-9, num / den, np.nan)
    return frac.reshape(f, -1), (den > 1e-9).ravel()


def true_switching(
    variant: np.ndarray, sweep: Sweep, margin: float, virgin: bool, window: int | None = None
) -> dict[str, BranchResult]:
    """True switching per direction of P pixels from their variant (F, P) (see the module doc);
    with ``window`` (variant (F, Y, X)): that of the window around each pixel (:func:`window_state`)."""
    if window is None:
        s, switches = true_state(variant, sweep.values, margin)
    else:
        s, switches = window_state(variant, sweep.values, margin, window)
    out = branch_switching(s, np.zeros(s.shape[1]), sweep, alpha=0.05, virgin=virgin)
    for r in out.values():
        r.status[~switches] = NEVER
        for a in (r.bias, r.low, r.high):
            a[~switches] = np.nan
    return out


def switching_errors(est: BranchResult, true: BranchResult, step: float) -> dict[str, float]:
    """Error of one direction's map against the truth.

    ``n_true``: pixels that truly switch on it; ``recall``: the fraction of those the map calls
    switched; ``false_calls``: the fraction of truly never-switching pixels it calls switched;
    ``median_abs_error`` (stimulus units) and ``within_one_step`` (fraction with |error| ≤ ``step``)
    over pixels switched in both; ``coverage``: fraction of those whose interval (widened by half
    a step, the truth's own resolution) holds the true bias.
    """
    t_sw, e_sw = true.status == SWITCHED, est.status == SWITCHED
    never = true.status == NEVER
    both = t_sw & e_sw
    err = np.abs(est.bias[both] - true.bias[both])
    held = (est.low[both] - step / 2 <= true.bias[both]) & (true.bias[both] <= est.high[both] + step / 2)
    return {
        "n_true": int(t_sw.sum()),
        "n_both": int(both.sum()),
        "recall": float(e_sw[t_sw].mean()) if t_sw.any() else np.nan,
        "false_calls": float(e_sw[never].mean()) if never.any() else np.nan,
        "median_abs_error": float(np.median(err)) if err.size else np.nan,
        "within_one_step": float((err <= step * (1 + 1e-9)).mean()) if err.size else np.nan,
        "coverage": float(held.mean()) if err.size else np.nan,
    }


def confusion(est: BranchResult, true: BranchResult) -> dict[str, dict[str, int]]:
    """Counts of pixels by true status (rows: ``switched``, ``never_switches``; the truth's
    ``no_switch_in_branch`` too where it has any) and called status (columns: every status of
    :data:`~ferrolens.switching.core.STATUS_MEANINGS`) of one direction."""
    rows = [c for c in (SWITCHED, NEVER, NO_SWITCH) if c != NO_SWITCH or (true.status == NO_SWITCH).any()]
    return {
        STATUS_MEANINGS[r]: {
            STATUS_MEANINGS[c]: int(((true.status == r) & (est.status == c)).sum()) for c in range(len(STATUS_MEANINGS))
        }
        for r in rows
    }


def confusion_text(table: dict[str, dict[str, int]], title: str = "") -> str:
    """A confusion table (:func:`confusion`) as text: counts and each row's fractions."""
    cols = [c for c in STATUS_MEANINGS if any(r[c] for r in table.values())] or list(STATUS_MEANINGS[:1])
    lines = [f"{title:<24}" + "".join(f"{c[:12]:>16}" for c in cols)]
    for name, row in table.items():
        total = max(sum(row.values()), 1)
        lines.append(f"  true {name[:18]:<18}" + "".join(f"{row[c]:>8d} {row[c] / total:6.1%}" for c in cols))
    return "\n".join(lines)
