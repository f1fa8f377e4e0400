"""A second synthetic movie with ground truth, unlike the demo's: a/c stripe domains with curved walls.

The demo (:mod:`ferrolens.synthetic`) has straight needles along two fixed axes,
thin dark walls and Poisson noise. Here the sample is two grains of a/c stripe
domains, separated by a wavy grain boundary; within each grain the walls are
the level lines of a phase field

    φ(u, v) = (u + A sin(2π v / L)) / P + β (u / S)²,

with ``u`` across and ``v`` along the grain's stripe axis (the stripe axis of the
second grain is turned by ``grain_turn``): walls bend by up to
``atan(2π A / L)`` and their spacing shrinks across the frame (the chirp β), so
windows see walls at many angles and spacings. A pixel is an ``a`` domain where
``frac(φ) < d(t)``; the duty ``d`` follows the bias through a play hysteron, so
the ``a`` fraction switches hysteretically. Walls are *bright* bands
``wall_width`` pixels wide (the demo's are dark, ~1.5 px), the domain contrast
is larger, the blur wider and the noise Gaussian.

Ground truth per frame: ``class_map`` (0 domain, 1 wall), ``variant_map``
(0 c, 1 a), ``orientation`` — the local direction of the wall, exact from the
gradient of φ (radians, y down, π-periodic, the demo's convention: direction
``(dx, dy) = (cos θ, sin θ)``), NaN off walls and on the grain boundary, whose
walls have no stripe direction — and ``fraction`` of each variant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy import ndimage

from . import store
from .bias import triangular_waveform
from .synthetic import play_hysteron

CLASS_NAMES = ("domain", "wall")
VARIANTS = ("c", "a")


@dataclass(frozen=True)
class StripeSpec:
    """Parameters of the stripe movie (lengths in pixels, bias in V)."""

    n_frames: int = 12
    size: int = 128
    seed: int = 0
    amplitude: float = 10.0  # bias amplitude (V)
    cycles: float = 1.0
    period: float = 24.0  # stripe period P where the grain's u is smallest
    chirp: float = 0.25  # β: the period shrinks to about P / (1 + 2√2 β) across the frame
    bend: float = 5.0  # A: wall bending amplitude
    bend_length: float = 60.0  # L: wavelength of the bending along the walls
    grain_turn: float = 70.0  # degrees between the two grains' stripe axes
    duty: tuple[float, float] = (0.3, 0.7)  # a-fraction of a period at -/+ amplitude
    play: float = 0.3  # half-width of the duty's hysteron, in units of amplitude
    wall_width: float = 3.0  # full width of the wall band (the demo's walls: about 2 px)
    contrast: tuple[float, float, float] = (0.3, 0.6, 0.8)  # intensity of c, a, wall
    blur_sigma: float = 1.2
    noise: float = 0.06  # Gaussian noise sd (intensity units)
    frame_time: float = 1.0


def _phase(spec: StripeSpec, theta: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """φ of a grain whose stripe normal points along ``theta`` (radians, y down)."""
    s = float(spec.size)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    u0 = u - u.min()
    return (u0 + spec.bend * np.sin(2 * np.pi * v / spec.bend_length)) / spec.period + spec.chirp * (
        u0 / s
    ) ** 2 * s / spec.period


def _wall_direction(phi: np.ndarray) -> np.ndarray:
    """Direction of φ's level lines (radians mod π, y down): perpendicular to its gradient."""
    gy, gx = np.gradient(phi)
    return np.arctan2(gx, -gy) % np.pi


def make_stripes(n_frames: int = 12, size: int = 128, seed: int = 0, **kwargs) -> xr.Dataset:
    """Generate the stripe movie and its ground truth.

    Parameters
    ----------
    n_frames, size, seed : frames, frame edge (pixels), random seed (stripe axes, boundary, phases, noise).
    **kwargs : any other field of :class:`StripeSpec`.

    Returns
    -------
    xr.Dataset (kind ``"synthetic"``), the demo's layout:
        image(frame, y, x) float32 — intensities, about 0…1;
        class_map(frame, y, x) uint8 — 0 domain, 1 wall;
        variant_map(frame, y, x) uint8 — 0 c, 1 a;
        orientation(frame, y, x) float32 — wall direction (rad, π-periodic), NaN off walls and on the grain boundary;
        fraction(frame, variant) float64;
        coordinates bias (V) and time (s) along frame.
    Deterministic for a given seed.
    """
    spec = StripeSpec(n_frames=n_frames, size=size, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    n = size
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    theta1 = rng.uniform(0, np.pi)
    theta2 = theta1 + np.radians(spec.grain_turn)
    # the grain boundary: a wavy line across the frame at a random angle
    gb_angle, gb_phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    across = (xx - n / 2) * np.cos(gb_angle) + (yy - n / 2) * np.sin(gb_angle)
    along = -(xx - n / 2) * np.sin(gb_angle) + (yy - n / 2) * np.cos(gb_angle)
    grain2 = across > 0.12 * n * np.sin(2 * np.pi * along / n + gb_phase)
    phi = np.where(grain2, _phase(spec, theta2, yy, xx) + rng.uniform(), _phase(spec, theta1, yy, xx) + rng.uniform())
    direction = np.where(
        grain2, _wall_direction(_phase(spec, theta2, yy, xx)), _wall_direction(_phase(spec, theta1, yy, xx))
    )
    # walls along the grain boundary have no stripe direction: their truth is left undefined
    boundary = ndimage.binary_dilation(
        ndimage.binary_dilation(grain2) ^ ndimage.binary_erosion(grain2), iterations=int(np.ceil(spec.wall_width))
    )

    bias = triangular_waveform(n_frames, spec.amplitude, spec.cycles)
    lo, hi = spec.duty
    duty = 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.clip(
        play_hysteron(bias / spec.amplitude, spec.play) / (1 - spec.play), -1, 1
    )
    image = np.empty((n_frames, n, n), np.float32)
    class_map = np.empty((n_frames, n, n), np.uint8)
    variant = np.empty((n_frames, n, n), np.uint8)
    orientation = np.full((n_frames, n, n), np.nan, np.float32)
    fraction = np.empty((n_frames, len(VARIANTS)))
    c_lvl, a_lvl, w_lvl = spec.contrast
    for f in range(n_frames):
        vmap = (np.mod(phi, 1.0) < duty[f]).astype(np.uint8)
        edge = np.zeros((n, n), bool)
        edge[1:] |= vmap[1:] != vmap[:-1]
        edge[:, 1:] |= vmap[:, 1:] != vmap[:, :-1]
        # the band: the edge pixels and those within (wall_width - 1) / 2 of them
        wall = ndimage.distance_transform_edt(~edge) <= (spec.wall_width - 1) / 2
        variant[f], class_map[f] = vmap, wall.astype(np.uint8)
        orientation[f][wall & ~boundary] = direction[wall & ~boundary]
        fraction[f] = [(vmap == v).mean() for v in range(len(VARIANTS))]
        clean = np.where(vmap == 1, a_lvl, c_lvl)
        clean = np.where(wall, w_lvl, clean)
        image[f] = ndimage.gaussian_filter(clean, spec.blur_sigma) + rng.normal(0.0, spec.noise, (n, n))

    coords = store.frame_coords(n_frames, bias=bias, time=np.arange(n_frames) * spec.frame_time)
    coords[store.VARIANT] = list(VARIANTS)
    return xr.Dataset(
        {
            "image": ((store.FRAME, store.Y, store.X), image, {"units": "arb. units"}),
            "class_map": (
                (store.FRAME, store.Y, store.X),
                class_map,
                {"flag_values": [0, 1], "flag_meanings": " ".join(CLASS_NAMES)},
            ),
            "variant_map": (
                (store.FRAME, store.Y, store.X),
                variant,
                {"flag_values": [0, 1], "flag_meanings": " ".join(VARIANTS)},
            ),
            "orientation": (
                (store.FRAME, store.Y, store.X),
                orientation,
                {"units": "rad", "long_name": "wall direction (mod pi)"},
            ),
            "fraction": ((store.FRAME, store.VARIANT), fraction, {"units": "1"}),
        },
        coords=coords,
        attrs=store.provenance(
            "synthetic",
            {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()},
            class_names=list(CLASS_NAMES),
            pixel_size=1.0,
            pixel_units="px",
            generator="stripes",
        ),
    )
