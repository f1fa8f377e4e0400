"""Seeded on-the-fly augmentation of (image, label) patches: pure functions.

Images are 2-D float arrays (a normalised patch, intensities ≈ 0…1), labels
2-D integer arrays of the same shape (class indices, −1 = unlabelled).
Geometric operations (90° rotation, flips, zoom) move image and label
together, pixel by pixel; intensity operations (contrast/gamma, blur, Poisson
and Gaussian noise) touch the image only. All randomness comes from the
``numpy.random.Generator`` passed in, so a patch is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..sections import SegmentAugmentConfig


def rotate90(image: np.ndarray, label: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate both by ``k`` quarter turns (counter-clockwise, ``np.rot90``)."""
    return np.rot90(image, k), np.rot90(label, k)


def flip(image: np.ndarray, label: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror both along ``axis`` (0 = vertical flip, 1 = horizontal flip)."""
    return np.flip(image, axis), np.flip(label, axis)


def zoom_coords(n: int, factor: float, position: float) -> np.ndarray:
    """Source coordinates (pixel centres, ``(n,)``) of an ``n``-pixel output axis
    that magnifies a window of ``n / factor`` pixels by ``factor``.

    ``position`` in [0, 1] places the window from the start (0) to the end (1)
    of the axis. Output pixel ``i`` samples ``start + (i + ½)·n/factor/n − ½``.
    """
    size = n / factor
    start = position * (n - size)
    return np.clip(start + (np.arange(n) + 0.5) * (size / n) - 0.5, 0.0, n - 1.0)


def _linear(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    i0 = np.floor(coords).astype(np.intp)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    t = (coords - i0).astype(a.dtype)
    shape = [1, 1]
    shape[axis] = -1
    t = t.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - t) + np.take(a, i1, axis=axis) * t


def _nearest(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    # the closer of the two taps _linear blends, so labels stay on the image
    return np.take(a, np.floor(coords + 0.5).astype(np.intp), axis=axis)


def zoom(
    image: np.ndarray, label: np.ndarray, factor: float, position_y: float = 0.5, position_x: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom in by ``factor`` ≥ 1: crop a ``1/factor`` window and resize it back to
    the input shape — image bilinear, label nearest, from the same coordinates."""
    cy = zoom_coords(image.shape[0], factor, position_y)
    cx = zoom_coords(image.shape[1], factor, position_x)
    img = _linear(_linear(np.asarray(image), cy, 0), cx, 1)
    lab = _nearest(_nearest(np.asarray(label), cy, 0), cx, 1)
    return img, lab


def contrast_gamma(image: np.ndarray, scale: float, shift: float, gamma: float) -> np.ndarray:
    """Gamma on the patch's own range (monotonic, no clipping), then
    ``(x − mean)·scale + mean + shift``."""
    lo, hi = float(image.min()), float(image.max())
    if hi > lo:
        image = lo + (hi - lo) * ((image - lo) / (hi - lo)) ** gamma
    mean = float(image.mean())
    return (image - mean) * scale + mean + shift


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``sigma`` (normalised units)."""
    return image + rng.normal(0.0, sigma, image.shape).astype(image.dtype)


def poisson_noise(image: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise as if intensity 1 collected ``peak`` counts (negative parts kept)."""
    pos = np.maximum(image, 0)
    return image - pos + rng.poisson(pos * peak).astype(image.dtype) / peak


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels."""
    return ndimage.gaussian_filter(image, sigma, mode="reflect")


def augment_pair(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, cfg: SegmentAugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the augmentations switched on in ``cfg`` (the ``segment.augment``
    section) with random parameters drawn from ``rng``.

    Returns contiguous ``float32`` image and ``int64`` label of the input shape.
    """
    image = np.asarray(image, dtype=np.float32)
    label = np.asarray(label)
    if cfg["rotate90"]:
        image, label = rotate90(image, label, int(rng.integers(4)))
    if cfg["flip"]:
        for axis in (0, 1):
            if rng.random() < 0.5:
                image, label = flip(image, label, axis)
    z = cfg["zoom"]
    if z["enabled"] and rng.random() < z["probability"]:
        f = rng.uniform(1.0, z["max_factor"])
        image, label = zoom(image, label, f, rng.random(), rng.random())
    c = cfg["contrast"]
    if c["enabled"] and rng.random() < c["probability"]:
        (s_lo, s_hi), (g_lo, g_hi) = c["scale_range"], c["gamma_range"]  # [low, high] each
        image = contrast_gamma(
            image, rng.uniform(s_lo, s_hi), rng.uniform(-c["shift"], c["shift"]), rng.uniform(g_lo, g_hi)
        )
    b = cfg["blur"]
    if b["enabled"] and rng.random() < b["probability"]:
        image = blur(image, rng.uniform(0.0, b["max_sigma"]))
    p = cfg["poisson_noise"]
    if p["enabled"] and rng.random() < p["probability"]:
        peak_lo, peak_hi = p["peak_range"]
        image = poisson_noise(image, rng.uniform(peak_lo, peak_hi), rng)
    g = cfg["gaussian_noise"]
    if g["enabled"] and rng.random() < g["probability"]:
        image = gaussian_noise(image, rng.uniform(0.0, g["max_sigma"]), rng)
    return (np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label, dtype=np.int64))
