"""Entry function of the switching stage: the latents store (and, for the demo, the generator's
truth) in, the declared switching store (:data:`ferrolens.store.STORE_KINDS`) out."""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import numpy as np
import xarray as xr

from .. import store
from ..config import Partial, section
from ..dynamics.api import _angle_period, _chosen_stimulus
from ..dynamics.hysteresis import LoopOperator, analyse_sweep
from ..errors import InputError
from ..sections import DynamicsConfig, SwitchingConfig
from .core import NEVER, STATUS_MEANINGS, SWITCHED, State, branch_switching, imprint, latent_state, loop_area
from .truth import switching_errors, true_switching

log = logging.getLogger(__name__)
ANGLE = "angle"


def features(mean: np.ndarray, labels: list[str], chosen: list[str], period: float) -> np.ndarray:
    """(F, Y, X, D) features of the latent maps ``mean`` (F, Y, X, L): the ``chosen`` latents (all when
    empty), the angle as the point (cos, sin) of 2π·angle/period on the circle (it wraps).

    Every angle counts, also where the latents store's ``angle_confidence`` calls it undetermined: on the
    demo, masking it there lowered the balance of recall and false calls (calibration movie, n = 12: J 0.29
    → 0.27), and on the BEPS cube the angle of windows with no oriented content is what follows the loop.
    """
    names = list(chosen) or labels
    cols = []
    for name in names:
        a = mean[..., labels.index(name)].astype(np.float64)
        if name == ANGLE:
            cols += [np.cos(2 * math.pi * a / period), np.sin(2 * math.pi * a / period)]
        else:
            cols.append(a)
    return np.stack(cols, axis=-1)


def blocks(x: np.ndarray, size: int) -> np.ndarray:
    """(F, Y // size, X // size, D) means over square blocks of ``size`` pixels (ragged edges left out)."""
    if size == 1:
        return x
    f, h, w, d = x.shape
    h2, w2 = h // size, w // size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks with no finite pixel stay NaN
        return np.nanmean(x[:, : h2 * size, : w2 * size].reshape(f, h2, size, w2, size, d), axis=(2, 4))


def _truth(path: str, lat: xr.Dataset, shape: tuple[int, int]) -> np.ndarray:
    """(F, Y, X) variant of every pixel from the demo generator's store, on the latents' frames and pixels."""
    syn = store.open_store(path, "synthetic")
    var = syn["variant_map"]
    if store.FRAME in lat.coords:
        var = var.sel({store.FRAME: lat[store.FRAME].values})
    for dim in (store.Y, store.X):
        if dim in lat.coords and dim in var.coords:
            var = var.sel({dim: lat[dim].values})
    values = np.asarray(var.values)
    if values.shape[1:] != shape:
        raise InputError(path, f"variant maps of {values.shape[1:]} pixels", f"the latent maps' {shape} pixels")
    return values


def switching(
    latents: str, out: str, cfg: Partial[SwitchingConfig], dynamics: Partial[DynamicsConfig], truth: str | None = None
) -> dict:
    """Switching maps of one window size → ``out`` (switching.zarr); returns the errors against the
    truth (empty without it).

    Parameters
    ----------
    latents : latents.zarr with mean(frame, y, x, latent) and the stimulus along frame.
    cfg : the ``switching:`` section. dynamics : the ``dynamics:`` section (the stimulus, its
        reversal tolerance and virgin branch, the loop's stimulus points: one owner of the sweep).
    truth : the demo generator's store (synthetic.zarr), or None. With it the store also holds the
        true switching biases and records the map's errors (attrs ``truth_*``).

    The store (kind ``switching``; dims ``frame, y, x, direction``; y/x the pixel, or block centre):
    state(frame, y, x) between the bottom (0) and top (1) level; noise(y, x) its sd per frame;
    p_no_switch(y, x); separation(y, x) (:func:`.core.separation`); per direction (rising, falling)
    switching_bias with switching_bias_low/high
    and status (codes: attr ``status_meanings``); loop_area, imprint with their _low/_high.
    Stimulus-valued variables carry the stimulus's units.
    """
    started = time.perf_counter()
    cfg, dyn = section("switching", cfg), section("dynamics", dynamics)
    lat = store.open_store(latents, "latents")
    labels = [str(v) for v in lat[store.LATENT].values]
    unknown = [v for v in cfg["variables"] if v not in labels]
    if unknown:
        raise InputError(
            "config switching.variables",
            f"{unknown} not among the latents' labels {labels}",
            "latent labels of the rVAE (or [] for all)",
        )
    stim = _chosen_stimulus(lat, dyn["stimulus"], latents)
    sweep = analyse_sweep(stim.values, dyn["reversal_tolerance"], dyn["virgin_branch"], stim.name, stim.units)
    period = _angle_period(lat, dyn, latents) if ANGLE in (cfg["variables"] or labels) else math.pi
    x = blocks(features(np.asarray(lat["mean"].values), labels, list(cfg["variables"]), period), cfg["block"])
    n_frames, h, w, d = x.shape
    if sweep.branches.segments:
        st = latent_state(
            x.reshape(n_frames, h * w, d), sweep.values, cfg["level_margin"], cfg["alpha"], cfg["min_separation"]
        )
    else:  # the stimulus never moves (e.g. one frame): nothing to read, every pixel marked "no data"
        log.info("%s: every pixel marked no data", sweep.note)
        nan = np.full(h * w, np.nan)
        st = State(np.full((n_frames, h * w), np.nan), nan, nan, np.zeros(h * w, bool), np.zeros(d), nan)
    virgin = cfg["virgin"] == "include"
    branches = branch_switching(st.s, st.sigma, sweep, cfg["alpha"], virgin)
    # a pixel with data whose levels do not differ never switches (also where its features are exactly
    # constant, so that its state, 0/0, is undefined: not "no data")
    has_data = np.isfinite(x.reshape(n_frames, h * w, d)).all(axis=2).any(axis=0)
    for r in branches.values():
        r.status[~st.bistable & has_data] = NEVER
        for a in (r.bias, r.low, r.high):
            a[r.status != SWITCHED] = np.nan
    op = LoopOperator.build(sweep, dyn["bias_points"])  # the area's weights do not depend on time blocks
    # a frame missing in a pixel counts as midway (it adds no area); a pixel with no data has none
    area = loop_area(np.nan_to_num(st.s, nan=0.5), st.sigma, op, cfg["alpha"])
    for a in area:
        a[np.isnan(st.s).all(axis=0)] = np.nan
    imp = imprint(branches["rising"], branches["falling"])
    seconds = time.perf_counter() - started

    size = cfg["block"]
    ys = (
        (np.arange(h) * size + (size - 1) / 2)
        if size > 1
        else (lat[store.Y].values if store.Y in lat.coords else np.arange(h))
    )
    xs = (
        (np.arange(w) * size + (size - 1) / 2)
        if size > 1
        else (lat[store.X].values if store.X in lat.coords else np.arange(w))
    )
    units = stim.units
    yx, dyx = (store.Y, store.X), (store.DIRECTION, store.Y, store.X)
    names = list(branches)

    def per_dir(attr):
        return np.stack([getattr(branches[k], attr).reshape(h, w) for k in names])

    data = {
        "state": (
            (store.FRAME, *yx),
            st.s.reshape(n_frames, h, w).astype(np.float32),
            {"units": "1", "long_name": "position between the bottom (0) and top (1) level"},
        ),
        "noise": (yx, st.sigma.reshape(h, w), {"units": "1", "long_name": "sd of the state in one frame"}),
        "p_no_switch": (yx, st.p_value.reshape(h, w), {"units": "1", "long_name": "p of equal levels"}),
        "separation": (
            yx,
            st.separation.reshape(h, w),
            {
                "units": "1",
                "long_name": "level separation in units of the latents' spread over the movie",
                "min_separation": float(cfg["min_separation"]),
            },
        ),
        "status": (
            dyx,
            per_dir("status"),
            {"flag_values": list(range(len(STATUS_MEANINGS))), "flag_meanings": " ".join(STATUS_MEANINGS)},
        ),
    }
    for name, arr, what in (
        ("switching_bias", per_dir("bias"), f"{stim.name} where the state crosses 1/2"),
        ("switching_bias_low", per_dir("low"), "lower end of its interval"),
        ("switching_bias_high", per_dir("high"), "upper end of its interval"),
    ):
        data[name] = (dyx, arr, {"units": units, "long_name": what})
    for name, (v, lo, hi) in (("loop_area", area), ("imprint", imp)):
        data[name] = (yx, v.reshape(h, w), {"units": units})
        data[f"{name}_low"] = (yx, lo.reshape(h, w), {"units": units})
        data[f"{name}_high"] = (yx, hi.reshape(h, w), {"units": units})
    errors: dict = {}
    if truth is not None:
        if size != 1:
            log.info("truth compared per pixel only (switching.block is %d): not compared", size)
        else:
            var = _truth(truth, lat, (h, w)).reshape(n_frames, h * w)
            true = true_switching(var, sweep, cfg["level_margin"], virgin)
            errors = {k: switching_errors(branches[k], true[k], sweep.step) for k in names}
            data["true_switching_bias"] = (
                dyx,
                np.stack([true[k].bias.reshape(h, w) for k in names]),
                {"units": units, "long_name": "the generator's switching bias"},
            )
            data["true_status"] = (
                dyx,
                np.stack([true[k].status.reshape(h, w) for k in names]),
                {"flag_meanings": " ".join(STATUS_MEANINGS)},
            )
    coords: dict[str, Any] = {
        store.FRAME: lat[store.FRAME].values if store.FRAME in lat.coords else np.arange(n_frames),
        store.DIRECTION: names,
        store.Y: ys,
        store.X: xs,
    }
    for c in ("bias", "time"):
        if c in lat.coords:
            coords[c] = (store.FRAME, lat[c].values, dict(lat[c].attrs))
    attrs = store.provenance(
        "switching",
        {
            "switching": dict(cfg),
            "dynamics": {k: dyn[k] for k in ("stimulus", "reversal_tolerance", "virgin_branch", "bias_points")},
        },
        window=lat.attrs.get("window"),
        stimulus=stim.name,
        stimulus_units=units,
        block=size,
        status_meanings=list(STATUS_MEANINGS),
        stimulus_step=sweep.step,
        seconds=round(seconds, 3),
        loop_note=op.note or sweep.note,
        noise_rho=[float(r) for r in st.rho],
        **{f"truth_{k}_{m}": v for k, e in errors.items() for m, v in e.items()},
        **store.inherited_quality(lat.attrs),
    )
    store.write_store(xr.Dataset(data, coords=coords, attrs=attrs), out)
    log.info(
        "switching of %d×%d %s in %.2f s (without reading and writing); errors against truth: %s",
        h,
        w,
        "pixels" if size == 1 else f"blocks of {size} px",
        seconds,
        errors or "no truth",
    )
    return errors
