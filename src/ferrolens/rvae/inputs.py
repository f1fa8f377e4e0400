"""The rVAE's inputs: checks of the images and window sizes, and :func:`make_windows`
(``rvae_windows``: images → ``windows.zarr``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from ..config import Partial
from ..errors import InputError
from ..sections import RvaeConfig
from ..store import (
    BIAS,
    FRAME,
    SAMPLE,
    UNITS,
    WX,
    WY,
    X,
    Y,
    provenance,
    write_store,
)
from .config import resolve_config
from .windows import sample_windows

log = logging.getLogger(__name__)


CENTRE = (
    "centre pixel: a window at (y, x) covers rows y - n//2 ... y - n//2 + n - 1 "
    "and columns x - n//2 ... x - n//2 + n - 1 (0-based, row 0 at the top)"
)


# --- checks -------------------------------------------------------------------------
def _where(images: xr.DataArray) -> str:
    src = images.attrs.get("source") or images.encoding.get("source")
    return str(src) if src else f"images ({images.name or 'unnamed'})"


def check_window(window: Any, height: int | None = None, width: int | None = None, where: str = "window") -> int:
    """A valid window size ``n`` (>= 5, no larger than the frame) or :class:`InputError`."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise InputError(where, f"window size {window!r}", "an integer number of pixels")
    n = int(window)
    if n < 5:
        raise InputError(
            where, f"window size {n}", "at least 5 pixels (the encoder's two valid 3×3 convolutions take 4 away)"
        )
    if height is not None and width is not None and n > min(height, width):
        raise InputError(
            where, f"window size {n} is larger than the {height}×{width} frames", "a window no larger than the frame"
        )
    return n


def check_images(images: Any, window: int | None = None, batch: int = 16) -> None:
    """Check the rVAE input: DataArray ``(frame, y, x)``, finite values in ``[0, 1]``.

    Streams the frames in batches (bounded memory) so a bad movie is reported
    before any training or encoding starts.
    """
    if not isinstance(images, xr.DataArray):
        raise InputError("images", f"a {type(images).__name__}", "an xarray.DataArray images(frame, y, x)")
    where = _where(images)
    if images.dims != (FRAME, Y, X):
        raise InputError(where, f"images have dims {images.dims}", f"dims ({FRAME}, {Y}, {X})")
    n_frames, height, width = (int(s) for s in images.shape)
    if n_frames == 0 or height == 0 or width == 0:
        raise InputError(where, f"images have shape {images.shape}", "at least one non-empty frame")
    if window is not None:
        check_window(window, height, width)
    tol = 1e-3
    for a in range(0, n_frames, batch):
        block = np.asarray(images[a : a + batch].values, dtype=np.float32)
        if not np.isfinite(block).all():
            raise InputError(
                where, f"frames {a}..{a + len(block) - 1} contain NaN or infinite values", "finite values in [0, 1]"
            )
        lo, hi = float(block.min()), float(block.max())
        if lo < -tol or hi > 1 + tol:
            raise InputError(
                where,
                f"values span [{lo:.4g}, {hi:.4g}] in frames {a}..{a + len(block) - 1}",
                "values in [0, 1] (wall probability, class fraction or a normalised frame)",
            )


def _frame_values(images: xr.DataArray) -> np.ndarray:
    return np.asarray(images[FRAME].values) if FRAME in images.coords else np.arange(images.sizes[FRAME])


def _bias(images: xr.DataArray) -> np.ndarray:
    if BIAS in images.coords and images[BIAS].dims == (FRAME,):
        return np.asarray(images[BIAS].values, dtype=np.float64)
    return np.full(images.sizes[FRAME], np.nan)


def _source_attrs(images: xr.DataArray) -> dict[str, Any]:
    """What the stores record of their input image: its source, and for the raw frame its normalisation."""
    keep = {
        k: v
        for k, v in images.attrs.items()
        if (k.startswith("source") or k.startswith("raw_normalize") or k == "normalisation")
        and isinstance(v, (str, int, float))
    }
    return {"input": str(images.name or "images"), **keep}


# --- rvae_windows ----------------------------------------------------------------------
def make_windows(images: xr.DataArray, out: str, window: int, cfg: Partial[RvaeConfig], seed: int) -> None:
    """Cut training windows out of ``images`` → ``out`` (a ``windows`` store).

    Parameters
    ----------
    images : ``images(frame, y, x)`` float32 in ``[0, 1]`` with a ``bias`` (V)
        coordinate along ``frame``.
    out : path of ``windows.zarr``.
    window : window size ``n`` (pixels).
    cfg : the ``rvae`` config section (``sampling``, ``count``, ``stride``, ``min_std``, ``weighting``).
    seed : seed of the random positions.

    The store holds ``windows(sample, wy, wx)`` float32 and, along ``sample``,
    ``sample_frame`` (the frame coordinate), ``sample_y``, ``sample_x`` (the
    window's **centre** pixel, see attrs ``origin``) and ``sample_bias`` (V).
    """
    c = resolve_config(cfg)
    check_images(images, window)
    n = int(window)
    s = sample_windows(
        images,
        n,
        mode=c["sampling"],
        count=int(c["count"]),
        stride=int(c["stride"]),
        min_std=float(c["min_std"]),
        seed=int(seed),
        weighting=str(c["weighting"]),
    )
    frames = _frame_values(images)
    ds = xr.Dataset(
        {
            "windows": (
                (SAMPLE, WY, WX),
                s.windows,
                {"long_name": f"{n}×{n} rVAE input windows", "units": str(images.attrs.get("units", "1"))},
            )
        },
        coords={
            SAMPLE: np.arange(len(s.frame)),
            "sample_frame": (SAMPLE, frames[s.frame], {"long_name": "frame of the window"}),
            "sample_y": (SAMPLE, s.y, {"long_name": "window centre row", "units": "px"}),
            "sample_x": (SAMPLE, s.x, {"long_name": "window centre column", "units": "px"}),
            "sample_bias": (SAMPLE, _bias(images)[s.frame], {"long_name": "applied bias", "units": UNITS[BIAS]}),
        },
        attrs=provenance(
            "windows",
            c,
            window=n,
            seed=int(seed),
            sampling=c["sampling"],
            count_requested=int(c["count"]) if c["sampling"] == "random" else None,
            stride=int(c["stride"]) if c["sampling"] == "dense" else None,
            min_std=float(c["min_std"]),
            weighting=str(c["weighting"]),
            origin=CENTRE,
            **_source_attrs(images),
        ),
    )
    chunk = max(1, min(len(s.frame), 4096))
    write_store(ds, out, encoding={"windows": {"chunks": (chunk, n, n)}})
    log.info("wrote %d windows of %d×%d to %s", len(s.frame), n, n, out)
