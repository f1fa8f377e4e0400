"""The image the rVAE takes from a movie and its segmentation (:func:`input_image`), computed
lazily per frame. Imports no Lightning: the rVAE's window cutting does not need it."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from ..errors import InputError
from ..io import CUBE_BIAS_AXIS
from ..store import (
    CLASS,
    FRAME,
    X,
    Y,
)
from .config import DEFAULTS
from .infer import normalize_frames

log = logging.getLogger(__name__)

INPUT_KINDS = ("walls", "classes", "raw")
RAW_SCALES = ("auto", "frame", "movie")  # rvae.raw_normalize


NORMALISATION = "per-frame robust percentiles: (x - p_low) / (p_high - p_low), no clipping"


# --- the raw frame's normalisation: per frame, or one over the whole movie ------------------------
def raw_scale(movie: xr.Dataset, choice: str) -> tuple[str, str]:
    """``(scale, why)``: ``frame`` or ``movie``, the normalisation ``rvae.raw_normalize`` (``choice``)
    gives the raw input of ``movie``, and why in words. ``auto`` is ``movie`` where the movie store
    records that its frames are a spectroscopy cube's bias steps (``frames_from``, written by the
    HDF5 reader): there each frame's level and sign are the signal, and a per-frame range erases them."""
    if choice not in RAW_SCALES:
        raise InputError("rvae.raw_normalize", f"value {choice!r}", f"one of {', '.join(RAW_SCALES)}")
    if choice != "auto":
        return choice, f"rvae.raw_normalize: {choice}"
    if movie.attrs.get("frames_from") == CUBE_BIAS_AXIS:
        return "movie", (
            f"rvae.raw_normalize: auto, and the frames are the {CUBE_BIAS_AXIS}: one scale for the "
            "whole movie keeps each frame's level and sign"
        )
    return "frame", (
        "rvae.raw_normalize: auto, and the frames are not recorded as a spectroscopy cube's bias "
        "steps (set movie for a cube laid out by hand)"
    )


def movie_percentiles(
    image: xr.DataArray, low: float, high: float, max_values: int = 1 << 24, batch: int = 16
) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles (0–100, ``np.percentile``'s linear rule) of every pixel of
    ``image`` ``(frame, y, x)``, read a batch of frames at a time; over a regular subsample of at most
    ``max_values`` of them (every k-th value of the flattened movie) when the movie holds more."""
    step = max(1, math.ceil(image.size / max_values))
    parts, seen = [], 0
    for a in range(0, image.sizes[FRAME], batch):
        block = np.asarray(image[a : a + batch].values, dtype=np.float64).ravel()
        parts.append(block[(-seen) % step :: step])  # the same positions whatever the batch
        seen += block.size
    lo, hi = np.percentile(np.concatenate(parts), [low, high])
    return float(lo), float(hi)


def _scaled(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """``a → clip((a − lo) / (hi − lo), 0, 1)`` float32 (a flat range only shifts, as :func:`normalize_frames`)."""
    lo32, scale = np.float32(lo), np.float32(hi - lo if hi > lo else 1.0)
    return lambda a: np.clip((np.asarray(a, np.float32) - lo32) / scale, 0.0, 1.0)


def _per_frame(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """``a → clip(normalize_frames(a, lo, hi), 0, 1)``: each frame scaled by its own percentiles ``lo``, ``hi``."""
    return lambda a: np.clip(normalize_frames(a, lo, hi)[0], 0.0, 1.0)


# --- the rVAE's input image --------------------------------------------------------------------
def _movie_image(ds: xr.Dataset, where: str | Path) -> xr.DataArray:
    image = ds["image"]  # dims checked by open_store against the movie's declaration
    if 0 in image.shape:
        raise InputError(
            where,
            f"the movie is empty: image shape {dict(zip(image.dims, image.shape, strict=True))}",
            "at least one frame of at least 1×1 pixels",
        )
    return image


class _PerFrame(BackendArray):
    """Lazy ``(frame, y, x)`` array: ``fn`` applied to whole source frames on access."""

    def __init__(self, source: xr.Variable, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.source, self.fn = source, fn
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._get)

    def _get(self, key):
        fk, yk, xk = key
        scalar = isinstance(fk, (int, np.integer))
        frames = np.asarray(self.source[[fk] if scalar else fk].values)
        out = self.fn(frames)
        out = out[:, yk][:, :, xk] if not isinstance(yk, (int, np.integer)) else out[:, yk][:, xk]
        return out[0] if scalar else out


def _lazy(source: xr.DataArray, fn: Callable[[np.ndarray], np.ndarray], name: str, attrs: dict) -> xr.DataArray:
    data = indexing.LazilyIndexedArray(_PerFrame(source.variable, fn))
    coords = {k: v for k, v in source.coords.items() if set(v.dims) <= {FRAME, Y, X}}
    return xr.DataArray(xr.Variable((FRAME, Y, X), data), coords=coords, name=name, attrs=attrs)


def input_image(
    movie: xr.Dataset, segmentation: xr.Dataset | None, kind: str, raw_normalize: str = "auto"
) -> xr.DataArray:
    """The image the rVAE takes, ``(frame, y, x)`` float32, computed lazily per frame.

    kind : ``walls`` — wall-class probability (0…1);
        ``classes`` — decoded class image ``label / (K − 1)`` (0…1);
        ``raw`` — the normalised frame, with the percentiles recorded in the
        segmentation store's attrs (default 1 and 99 when ``segmentation`` is None),
        then clipped to 0…1 (the 1 % of pixels beyond each percentile saturate, as on a display).
    raw_normalize : ``rvae.raw_normalize`` (``raw`` only, :func:`raw_scale`): ``frame`` — each frame
        to its own percentiles, exactly as :func:`predict` normalises; ``movie`` — one pair over
        the whole movie (:func:`movie_percentiles`); ``auto`` — ``movie`` for a spectroscopy cube.
        The choice and why are the array's attrs ``raw_normalize``, ``raw_normalize_why`` (the
        windows and latents stores keep them) and a log line.
    """
    if kind not in INPUT_KINDS:
        raise InputError("rVAE input kind", f"value {kind!r}", f"one of {', '.join(INPUT_KINDS)}")
    image = _movie_image(movie, "movie dataset")
    if segmentation is None:
        if kind != "raw":
            raise InputError(
                "segmentation",
                f"kind {kind!r} needs a segmentation store, got None",
                "the dataset written by ferrolens.segment.predict",
            )
        lo, hi = DEFAULTS["normalize"]["low_percentile"], DEFAULTS["normalize"]["high_percentile"]
    else:
        if segmentation.attrs.get("ferrolens_kind") != "segmentation":
            raise InputError(
                "segmentation", f"dataset kind {segmentation.attrs.get('ferrolens_kind')!r}", "kind 'segmentation'"
            )
        if segmentation.sizes.get(FRAME) != image.sizes[FRAME] or (
            segmentation.sizes.get(Y),
            segmentation.sizes.get(X),
        ) != (image.sizes[Y], image.sizes[X]):
            raise InputError("segmentation", f"shape {dict(segmentation.sizes)}", f"the movie's {dict(image.sizes)}")
        lo, hi = segmentation.attrs.get("norm_percentiles", [1.0, 99.0])
    if kind == "raw":
        scale, why = raw_scale(movie, raw_normalize)
        attrs = {
            "long_name": "normalised frame, clipped to 0…1",
            "normalisation": NORMALISATION,
            "norm_percentiles": [float(lo), float(hi)],
            "units": "1",
            "raw_normalize": scale,
            "raw_normalize_why": why,
        }
        if scale == "frame":
            fn = _per_frame(lo, hi)
        else:
            p_lo, p_hi = movie_percentiles(image, lo, hi)
            fn = _scaled(p_lo, p_hi)
            attrs["normalisation"] = (
                f"one scale for the whole movie: (x - p_low) / (p_high - p_low), p_low = "
                f"{p_lo:.6g}, p_high = {p_hi:.6g} ({image.attrs.get('units', 'raw units')}), "
                f"the {lo:g} and {hi:g} % percentiles of all frames' pixels"
            )
        log.info("raw rVAE input, %s normalisation (%s): %s", scale, why, attrs["normalisation"])
        return _lazy(image, fn, "raw", attrs)
    assert segmentation is not None  # only kind "raw" runs without one (refused above otherwise)
    names = [str(c) for c in segmentation[CLASS].values]
    if kind == "walls":
        if "wall" not in names:
            raise InputError("segmentation", f"classes {names} lack 'wall'", "a class named 'wall'")
        walls = segmentation["probability"].isel({CLASS: names.index("wall")}, drop=True)
        return walls.rename("walls").assign_attrs(long_name="wall-class probability", units="1")
    k = len(names)
    return _lazy(
        segmentation["label"],
        lambda a: a.astype(np.float32) / (k - 1),
        "classes",
        {"long_name": f"class / {k - 1} ({', '.join(names)})", "units": "1"},
    )
