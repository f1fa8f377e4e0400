"""The image the rVAE takes from a movie and its segmentation (:func:`input_image`), computed
lazily per frame. Imports no Lightning: the rVAE's window cutting does not need it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from ..errors import InputError
from ..store import (
    CLASS,
    FRAME,
    X,
    Y,
)
from .config import DEFAULTS
from .infer import normalize_frames

INPUT_KINDS = ("walls", "classes", "raw")


NORMALISATION = "per-frame robust percentiles: (x - p_low) / (p_high - p_low), no clipping"


# --- the rVAE's input image --------------------------------------------------------------------
def _movie_image(ds: xr.Dataset, where: str | Path) -> xr.DataArray:
    image = ds["image"]  # dims checked by open_store against the movie's declaration
    if 0 in image.shape:
        raise InputError(where, f"the movie is empty: image shape {dict(zip(image.dims, image.shape))}",
                         "at least one frame of at least 1×1 pixels")
    return image


class _PerFrame(BackendArray):
    """Lazy ``(frame, y, x)`` array: ``fn`` applied to whole source frames on access."""

    def __init__(self, source: xr.DataArray, fn) -> None:
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


def _lazy(source: xr.DataArray, fn, name: str, attrs: dict) -> xr.DataArray:
    data = indexing.LazilyIndexedArray(_PerFrame(source.variable, fn))
    coords = {k: v for k, v in source.coords.items() if set(v.dims) <= {FRAME, Y, X}}
    return xr.DataArray(xr.Variable((FRAME, Y, X), data), coords=coords, name=name, attrs=attrs)


def input_image(movie: xr.Dataset, segmentation: xr.Dataset | None, kind: str) -> xr.DataArray:
    """The image the rVAE takes, ``(frame, y, x)`` float32, computed lazily per frame.

    kind : ``walls`` — wall-class probability (0…1);
        ``classes`` — decoded class image ``label / (K − 1)`` (0…1);
        ``raw`` — the normalised frame, with the percentiles recorded in the
        segmentation store's attrs (default 1 and 99 when ``segmentation`` is None),
        exactly as :func:`predict` normalises, then clipped to 0…1 (the 1 % of
        pixels beyond each percentile saturate, as on a display).
    """
    if kind not in INPUT_KINDS:
        raise InputError("rVAE input kind", f"value {kind!r}", f"one of {', '.join(INPUT_KINDS)}")
    image = _movie_image(movie, "movie dataset")
    if segmentation is None:
        if kind != "raw":
            raise InputError("segmentation", f"kind {kind!r} needs a segmentation store, got None",
                             "the dataset written by ferrolens.segment.predict")
        lo, hi = DEFAULTS["normalize"]["low_percentile"], DEFAULTS["normalize"]["high_percentile"]
    else:
        if segmentation.attrs.get("ferrolens_kind") != "segmentation":
            raise InputError("segmentation", f"dataset kind {segmentation.attrs.get('ferrolens_kind')!r}",
                             "kind 'segmentation'")
        if segmentation.sizes.get(FRAME) != image.sizes[FRAME] or (
                segmentation.sizes.get(Y), segmentation.sizes.get(X)) != (image.sizes[Y], image.sizes[X]):
            raise InputError("segmentation", f"shape {dict(segmentation.sizes)}",
                             f"the movie's {dict(image.sizes)}")
        lo, hi = segmentation.attrs.get("norm_percentiles", [1.0, 99.0])
    if kind == "raw":
        return _lazy(image, lambda a: np.clip(normalize_frames(a, lo, hi)[0], 0.0, 1.0), "raw",
                     {"long_name": "normalised frame, clipped to 0…1", "normalisation": NORMALISATION,
                      "norm_percentiles": [float(lo), float(hi)], "units": "1"})
    names = [str(c) for c in segmentation[CLASS].values]
    if kind == "walls":
        if "wall" not in names:
            raise InputError("segmentation", f"classes {names} lack 'wall'", "a class named 'wall'")
        walls = segmentation["probability"].isel({CLASS: names.index("wall")}, drop=True)
        return walls.rename("walls").assign_attrs(long_name="wall-class probability", units="1")
    k = len(names)
    return _lazy(segmentation["label"], lambda a: a.astype(np.float32) / (k - 1), "classes",
                 {"long_name": f"class / {k - 1} ({', '.join(names)})", "units": "1"})
