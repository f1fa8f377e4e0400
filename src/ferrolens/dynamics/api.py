"""Entry functions of the dynamics stage (paper Fig. 5), one per rule: each reads its inputs by
path, calls the array core and writes the declared store (:data:`ferrolens.store.STORE_KINDS`).

``kde_nmf``: per-pixel latent maps → per-frame KDE of each variable on one
fixed grid (:mod:`.densities`) → NMF of every KDE(L, t) and of all of them
stacked → weights against the stimulus (bias, else temperature, time or frame
index) → hysteresis with intervals from what varies and a p-value against no
loop (:mod:`.core`, :mod:`.table`, :mod:`.hysteresis`). ``sweep_merge``: every
window size's per-frame outputs in one store (:mod:`.layout`).

Uncertainty: each resample draws square pixel blocks (``spatial_block``, at
least the rVAE window: overlapping windows are not independent) with
replacement, the same blocks in every frame (a block is a piece of the sample
followed through the movie), recomputes every KDE and refits the NMF from the
point estimate (components matched to it) (:mod:`.bootstrap`); the hysteresis
statistics then resample frames in time blocks within branches (whole cycles
where there are several) and test against exchanged branch labels.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import store
from ..config import Partial, section
from ..errors import InputError
from ..rvae.confidence import determined_in, rule_text
from ..sections import DynamicsConfig
from ..stimulus import CANDIDATES, Stimulus
from ..stimulus import stimulus as pick_stimulus
from .bootstrap import BOOT_CHUNK  # noqa: F401 (re-exported)
from .core import check_n_components, dynamics_core
from .densities import ANGLE
from .layout import (  # noqa: F401 (DIRECTION, STIM_POINT, VARIABLE_NMF re-exported)
    DIRECTION,
    STACKED,
    STIM_POINT,
    VARIABLE_NMF,
    frame_stats,
    latent_stats,
    merge_windows,
    sweep_part,
)
from .pixels import pixel_blocks, select_pixels, select_values, structure_mask
from .table import TABLE_COLUMNS, describe

log = logging.getLogger(__name__)

__all__ = [
    "ANGLE",
    "DEFAULT_BLOCK",
    "STACKED",
    "TABLE_COLUMNS",
    "dynamics_core",
    "kde_nmf",
    "pixel_blocks",
    "select_pixels",
    "select_values",
    "sweep_merge",
]

DEFAULT_BLOCK = 16  # spatial block (px) when the latents store does not record its window


# --- reading the inputs -----------------------------------------------------------
def _structure_mask(seg_path: str, lat: xr.Dataset, structure_class: int) -> np.ndarray:
    """(frame, y, x) bool: pixels the segmentation labels ``structure_class``, aligned to the latents."""
    seg = store.open_store(seg_path, "segmentation")
    return structure_mask(seg["label"], lat["mean"], structure_class, seg_path)


def _chosen_stimulus(lat: xr.Dataset, choice: str, path: Any) -> Stimulus:
    """The stimulus named by ``dynamics.stimulus`` (``auto``: :func:`ferrolens.stimulus.stimulus`)."""
    if choice == "auto":
        return pick_stimulus(lat)
    if choice == "frame":
        return Stimulus("frame", np.arange(lat.sizes[store.FRAME], dtype=float), "")
    if choice not in lat.coords or not np.isfinite(np.asarray(lat[choice].values, float)).all():
        raise InputError(
            path,
            f"has no finite {choice!r} coordinate along frame",
            "config dynamics.stimulus: auto, or a coordinate the latents store has",
        )
    units = str(lat[choice].attrs.get("units", dict(CANDIDATES).get(choice, "")))
    return Stimulus(choice, np.asarray(lat[choice].values, float), units)


def _check_request(lat: xr.Dataset, segmentation: str | None, cfg: DynamicsConfig) -> list[str]:
    """The latents' labels, after checking that they hold the configured variables (and that a
    segmentation comes with ``pixels: structure``)."""
    labels = [str(v) for v in lat[store.LATENT].values]
    unknown = [v for v in cfg["variables"] if v not in labels]
    if unknown:
        raise InputError(
            "config dynamics.variables",
            f"{unknown} not among the latents' labels {labels}",
            "latent labels of the rVAE",
        )
    if cfg["pixels"] == "structure" and not segmentation:
        raise InputError(
            "config dynamics.pixels",
            "is 'structure' but no segmentation store was given",
            "a segmentation store, or pixels: all / subsample",
        )
    check_n_components(cfg, lat.sizes[store.FRAME])
    return labels


def _block_size(cfg: DynamicsConfig, window: Any) -> int:
    """Spatial block (px) of the resamples: ``spatial_block``, else the rVAE window, at least the window."""
    size = cfg["spatial_block"] or (int(window) if window is not None else DEFAULT_BLOCK)
    if window is not None and size < int(window):
        raise InputError(
            "config dynamics.spatial_block",
            f"value {size} px is smaller than the rVAE window n = {window}",
            "0 (the window) or at least the window: overlapping windows are not independent",
        )
    return size


def _angle_determined(lat: xr.Dataset) -> np.ndarray | None:
    """(frame, y, x) bool: where the latents store's ``angle_confidence`` says the angle is determined
    (by the rule and threshold it records); None for latents written before it existed: every angle counts."""
    if "angle_confidence" not in lat:
        return None
    return determined_in(lat["angle_confidence"].transpose(store.FRAME, store.Y, store.X))


def _frame_coord(lat: xr.Dataset, name: str) -> np.ndarray | None:
    return lat[name].values if name in lat.coords else None


# --- writing ----------------------------------------------------------------------
def _write_table(table: pd.DataFrame, path: str | Path) -> None:
    """The hysteresis table as CSV at ``path`` and, beside it (``.json``), its columns described and its rows."""
    path = Path(path)
    store.write_file_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    rows = json.loads(table.to_json(orient="records"))  # NaN → null
    doc = {"columns": {c: describe(c) for c in table.columns}, "rows": rows}
    store.write_file_atomic(
        path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    )


# --- entry functions ----------------------------------------------------------------
def _angle_period(lat: xr.Dataset, cfg: DynamicsConfig, where: str) -> float:
    """The angle's period (rad): the one the rVAE recorded with its latents (``angle_period``, made from
    ``rvae.angle_symmetry``); ``dynamics.angle_period`` must agree with it, and applies alone only to
    latents that record none (π when it is null too)."""
    recorded, given = lat.attrs.get("angle_period"), cfg["angle_period"]
    if recorded is None:
        return float(given) if given is not None else math.pi
    if given is not None and not math.isclose(float(given), float(recorded), rel_tol=1e-9):
        raise InputError(
            "config dynamics.angle_period",
            f"value {given} but the rVAE of {where} recorded an angle "
            f"period of {float(recorded):.6g} rad (2π / rvae.angle_symmetry)",
            "null (the rVAE's period), or the same value",
        )
    return float(recorded)


def kde_nmf(
    latents: str, segmentation: str | None, out: str, table: str, cfg: Partial[DynamicsConfig], seed: int
) -> None:
    """Dynamics of one window size: KDE(L, t), NMF and hysteresis → ``out`` (dynamics.zarr) and ``table``.

    Parameters
    ----------
    latents : latents.zarr (kind "latents") with mean(frame, y, x, latent); bias(frame) [V]
        and time(frame) [s] coordinates when known.
    segmentation : segmentation store (kind "segmentation", label(frame, y, x)); needed
        only for ``pixels: structure`` (pixels labelled ``structure_class``, default 1 = wall).
    out : dynamics.zarr, kind "dynamics". Dims ``variable, frame, grid, component,
        variable_nmf, direction, stimulus_point``:

        * kde(variable, frame, grid) [1/unit] at grid_value(variable, grid) (units in
          variable_units(variable)); bandwidth(variable, frame); kde_mass; n_values(frame);
        * components(component, variable, grid): each variable's own NMF;
          stacked_components(component, variable, grid): NMF of the stacked KDEs;
        * weights(variable_nmf, component, frame) with bootstrap weights_ci_low/high,
          reconstruction_error(variable_nmf), nmf_n_iter, nmf_converged;
        * branch_weight(variable_nmf, component, direction, stimulus_point) at branch_stimulus
          (the closed loop's branches); branch(frame), segment(frame), cycle(frame: 0 virgin
          curve, -1 none) coordinates; bias/time (and temperature) on frame; attrs stimulus,
          stimulus_units, spatial_block, resampling, and angle_counted when the latents record
          ``angle_confidence``: the angle's KDE counts only the pixels where it is determined
          (the rule and the share of the selected pixels, in words); the other latents count every pixel.
    table : CSV of the hysteresis per (variable, component, cycle) (columns in
        :data:`TABLE_COLUMNS`, metrics with ``_ci_low``/``_ci_high``, p-values, a verdict in
        words), and a JSON beside it (same stem, ``.json``) ``{"columns": {name: description}, "rows": [...]}``.
    cfg : the ``dynamics:`` config section. seed : NMF initialisation, resampling and subsample seed.
    """
    cfg = section("dynamics", cfg)
    lat = store.open_store(latents, "latents")  # mean(frame, y, x, latent) and latent labels: declared
    cfg = section("dynamics", {**cfg, "angle_period": _angle_period(lat, cfg, latents)})
    labels = _check_request(lat, segmentation, cfg)
    structure = (
        _structure_mask(segmentation, lat, cfg["structure_class"])
        if cfg["pixels"] == "structure" and segmentation
        else None
    )  # _check_request: one is given
    pixel_seed, _ = np.random.SeedSequence(seed).spawn(2)
    determined = _angle_determined(lat) if ANGLE in cfg["variables"] else None
    frames, where = select_pixels(lat, cfg["variables"], cfg, np.random.default_rng(pixel_seed), structure, determined)
    angle_note = None
    if determined is not None and not all(np.isfinite(a).any() for a in frames[ANGLE]):
        # a frame without oriented structure (a flat input, a single domain) has no angle density: rather than
        # stopping the run, every pixel's angle is counted, as before the rule, and the store and log say so
        empty = sum(not np.isfinite(a).any() for a in frames[ANGLE])
        angle_note = (
            f"{rule_text(lat['angle_confidence'])}: no determined angle in {empty} of "
            f"{len(frames[ANGLE])} frames, so every selected pixel's angle is counted (noise where the "
            "input holds no oriented structure)"
        )
        log.warning("%s: %s", latents, angle_note)
        frames, where = select_pixels(lat, cfg["variables"], cfg, np.random.default_rng(pixel_seed), structure, None)
    window = lat.attrs.get("window")
    size = _block_size(cfg, window)
    blocks = pixel_blocks(where, (lat.sizes[store.Y], lat.sizes[store.X]), size)
    bias = _frame_coord(lat, store.BIAS)
    if bias is not None and not np.isfinite(bias).any():
        bias = None  # the rVAE writes NaN when the movie had no bias: no hysteresis, said in the table
    time = _frame_coord(lat, store.TIME)
    stim = _chosen_stimulus(lat, cfg["stimulus"], latents)
    ds, tab = dynamics_core(frames, bias, cfg, seed, time=time, window=window, blocks=blocks, stimulus=stim)
    ds.attrs["spatial_block"] = int(size)
    if angle_note is not None:
        ds.attrs["angle_counted"] = angle_note
    elif determined is not None:
        counted = np.concatenate(frames[ANGLE])
        ds.attrs["angle_counted"] = (
            f"{rule_text(lat['angle_confidence'])}: {np.isfinite(counted).mean():.1%} of the selected pixels"
        )
    if "latent_units" in lat.coords:  # the rVAE records units per latent (rad, grid, 1 …)
        units = dict(zip(labels, (str(u) for u in lat["latent_units"].values), strict=True))
        ds = ds.assign_coords(variable_units=(store.VARIABLE, [units[v] for v in cfg["variables"]]))
    extra = {"source_latents": str(latents), "source_latents_sha256": store.sha256_file(latents), "seed": seed}
    if segmentation:
        extra["source_segmentation"] = str(segmentation)
    ds.attrs = {**store.provenance("dynamics", cfg, **extra), **store.inherited_quality(lat.attrs), **ds.attrs}
    store.write_store(ds, out)
    _write_table(tab, table)


# --- sweep ----------------------------------------------------------------------------
def _frame_stats(lat: xr.Dataset, angle_period: float) -> xr.Dataset:
    """Per-frame mean and standard deviation of every latent over the pixels (circular for the angle, over
    the pixels where it is determined): one latent map read at a time."""
    mean = lat["mean"]
    labels = [str(v) for v in mean[store.LATENT].values]
    stats = []
    for name in labels:
        arr = mean.sel({store.LATENT: name}).transpose(store.FRAME, store.Y, store.X).values
        if name == ANGLE and (determined := _angle_determined(lat)) is not None:
            arr = np.where(determined, arr, np.nan)
        arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
        stats.append(latent_stats(arr, angle_period if name == ANGLE else None))
    return frame_stats(labels, stats)


def _check_windows(dynamics: list[str], latents: list[str], windows: list[int]) -> None:
    if not (len(dynamics) == len(latents) == len(windows)) or not windows:
        raise InputError(
            "sweep_merge",
            f"{len(dynamics)} dynamics, {len(latents)} latents, {len(windows)} windows",
            "one dynamics and one latents store per window size",
        )
    if len(set(windows)) != len(windows):
        raise InputError("sweep_merge", f"windows {windows} repeat", "distinct window sizes")


def _read_window(dyn_path: str, lat_path: str, ref: dict) -> tuple[xr.Dataset, xr.Dataset]:
    """One window size's dynamics and latents stores, checked against each other and against ``ref``:
    the frames and bias of the first window with a bias (filled here), which every later one must share."""
    dyn = store.open_store(dyn_path, "dynamics")
    lat = store.open_store(lat_path, "latents")
    if lat.sizes[store.FRAME] != dyn.sizes[store.FRAME]:
        raise InputError(
            lat_path,
            f"has {lat.sizes[store.FRAME]} frames, {dyn_path} {dyn.sizes[store.FRAME]}",
            "the latents the dynamics store was made from",
        )
    bias = _frame_coord(dyn, store.BIAS)
    if ref.get("bias") is None:  # as before the split: windows without a bias are not compared
        ref.update(bias=bias, path=dyn_path, n_frames=dyn.sizes[store.FRAME])
    elif (
        dyn.sizes[store.FRAME] != ref["n_frames"]
        or (bias is None) != (ref["bias"] is None)
        or (bias is not None and not np.allclose(bias, ref["bias"], equal_nan=True))
    ):
        raise InputError(
            dyn_path,
            f"frames or bias differ from those of {ref['path']}",
            "every window size computed from the same movie",
        )
    return dyn, lat


def sweep_merge(dynamics: list[str], latents: list[str], windows: list[int], out: str) -> None:
    """Every window size's per-frame outputs in one store ``out`` (kind "sweep").

    Parameters
    ----------
    dynamics, latents : dynamics.zarr and latents.zarr per window size, in the order of ``windows``.
    windows : window sizes n (pixels).

    The result is indexed by ``window``, ``frame`` (with bias/time coordinates)
    and holds, per window: kde(window, variable, frame, grid) with
    grid_value(window, variable, grid), bandwidth, n_values, components,
    stacked_components, weights(window, variable_nmf, component, frame) with
    CIs, reconstruction_error, branch_weight, and latent_mean/latent_sd(window,
    frame, latent) (circular mean/sd for the angle, period from the dynamics
    store, over the pixels where the angle is determined when the latents
    record ``angle_confidence``). All windows must describe the same frames and bias.
    """
    _check_windows(dynamics, latents, windows)
    parts = []
    ref: dict[str, Any] = {}  # the first window's frames and bias (_read_window)
    for dyn_path, lat_path, w in zip(dynamics, latents, windows, strict=True):  # lengths checked
        dyn, lat = _read_window(dyn_path, lat_path, ref)
        parts.append(sweep_part(dyn, _frame_stats(lat, float(dyn.attrs.get("angle_period", math.pi))), w))
    merged = merge_windows(parts)
    merged.attrs = store.provenance(
        "sweep",
        {"windows": [int(w) for w in windows]},
        sources=json.dumps([str(p) for p in dynamics]),
        latents=json.dumps([str(p) for p in latents]),
    )
    store.write_store(merged, out)
