"""Demo movie: BF-STEM-like frames of ferroelastic needle domains switching
under a triangular bias, with ground truth.

The sample is a matrix (c-domain) holding two perpendicular families of
needle-shaped 90° domains (family ``a`` along +45°, family ``b`` along -45°).
Each needle has a fixed root and grows or shrinks along its axis. Its length
follows a *play* (backlash) hysteron of the bias: positive bias favours family
``a``, negative bias family ``b``, and each needle has its own coercive offset
and play width, so the state at 0 V differs between the rising and falling
branches (a Preisach-like ensemble, hence a hysteretic movie).

Walls between regions show as dark lines, contaminants as dark round spots;
the image is blurred, noisy, and drifts slowly. The ground truth of every
frame is kept: class map (0 background/domain, 1 wall, 2 contaminant), wall
orientation (radians, π-periodic, NaN off walls), variant fractions and bias.

Rendering is vectorised per needle over its bounding box; 40 frames of 256²
take about a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy import ndimage

from . import store
from .bias import triangular_waveform

CLASS_NAMES = ("background", "wall", "contaminant")
VARIANTS = ("matrix", "a", "b")
_FAMILY_ANGLE = {1: np.pi / 4, 2: -np.pi / 4}  # needle axis per variant code


@dataclass(frozen=True)
class DemoSpec:
    """Parameters of the demo movie (all lengths in pixels, bias in V)."""

    n_frames: int = 40
    size: int = 256
    seed: int = 0
    amplitude: float = 10.0  # bias amplitude (V)
    cycles: float = 1.0  # triangular cycles over the movie
    phase: float = 0.0  # starting phase in cycles (0: start at 0 V rising)
    needles_per_family: int = 14
    needle_width: tuple[float, float] = (7.0, 14.0)
    needle_length: tuple[float, float] = (60.0, 150.0)
    coercive_spread: float = 0.35  # spread of needle offsets, in units of amplitude
    play: float = 0.35  # half-width of each needle's hysteron, units of amplitude
    n_contaminants: int = 6
    contaminant_radius: tuple[float, float] = (3.0, 6.0)
    wall_width: float = 1.5  # half-thickness of the wall ground-truth band
    blur_sigma: float = 1.0
    dose: float = 200.0  # electrons per pixel at intensity 1 (Poisson noise)
    read_noise: float = 0.01
    drift: tuple[float, float] = (3.0, -2.0)  # total (dy, dx) drift over the movie
    frame_time: float = 1.0  # seconds per frame


def _needles(spec: DemoSpec, rng: np.random.Generator) -> list[dict]:
    out = []
    margin = 0.1 * spec.size
    for variant in (1, 2):
        for _ in range(spec.needles_per_family):
            theta = _FAMILY_ANGLE[variant]
            # the needle may grow in either direction along its axis
            direction = rng.choice([-1.0, 1.0])
            out.append(
                dict(
                    variant=variant,
                    root=rng.uniform(margin, spec.size - margin, size=2),  # (y, x) in sample coords
                    axis=direction * np.array([np.sin(theta), np.cos(theta)]),
                    width=rng.uniform(*spec.needle_width),
                    length=rng.uniform(*spec.needle_length),
                    offset=rng.normal(0.0, spec.coercive_spread),
                    play=spec.play * rng.uniform(0.6, 1.4),
                )
            )
    return out


def play_hysteron(x: np.ndarray, play: float, start: float = 0.0) -> np.ndarray:
    """Play (backlash) hysteron of the drive ``x`` (F,):
    ``y_t = clip(y_(t-1), x_t - play, x_t + play)``, ``y_(-1) = start``."""
    y, out = float(start), np.empty(len(x))
    for t, v in enumerate(x):
        y = min(max(y, v - play), v + play)
        out[t] = y
    return out


def needle_fractions(bias: np.ndarray, needles: list[dict], amplitude: float) -> np.ndarray:
    """Length fraction (frames, needles) in [0, 1] from a play hysteron per needle.

    Family ``a`` is driven by +bias, family ``b`` by -bias; the hysteron output
    starts at 0.5 and follows ``y = clip(y_prev, x - h, x + h)``.
    """
    x_all = np.asarray(bias, dtype=float) / amplitude
    out = np.empty((len(x_all), len(needles)))
    for j, nd in enumerate(needles):
        sign = 1.0 if nd["variant"] == 1 else -1.0
        out[:, j] = play_hysteron(0.5 + sign * x_all - nd["offset"], nd["play"], start=0.5)
    return np.clip(out, 0.0, 1.0)


def _render_variants(spec: DemoSpec, needles, fractions_t, shift) -> np.ndarray:
    """Variant map (y, x) int8: 0 matrix, 1 family a, 2 family b; later needles on top."""
    n = spec.size
    vmap = np.zeros((n, n), dtype=np.int8)
    for nd, frac in zip(needles, fractions_t, strict=True):
        length = frac * nd["length"]
        if length < 1.0:
            continue
        root = nd["root"] + shift
        tip = root + nd["axis"] * length
        half = nd["width"] / 2
        lo = np.floor(np.minimum(root, tip) - half).astype(int).clip(0, n)
        hi = np.ceil(np.maximum(root, tip) + half + 1).astype(int).clip(0, n)
        if np.any(hi <= lo):
            continue
        yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]].astype(float)
        dy, dx = yy - root[0], xx - root[1]
        along = dy * nd["axis"][0] + dx * nd["axis"][1]
        across = -dy * nd["axis"][1] + dx * nd["axis"][0]
        # needle = rectangle tapering to a point over its last width: a lens-like tip
        taper = np.clip((length - along) / nd["width"], 0.0, 1.0)
        inside = (along >= 0) & (along <= length) & (np.abs(across) <= half * taper)
        vmap[lo[0] : hi[0], lo[1] : hi[1]][inside] = nd["variant"]
    return vmap


def make_demo(n_frames: int = 40, size: int = 256, seed: int = 0, **kwargs) -> xr.Dataset:
    """Generate the demo movie and its ground truth.

    Parameters
    ----------
    n_frames, size, seed : frames, frame edge (pixels), random seed.
    **kwargs : any other field of :class:`DemoSpec`.

    Returns
    -------
    xr.Dataset (kind ``"synthetic"``) with
        image(frame, y, x) float32 — intensities, about 0…1.2 (arb. units);
        class_map(frame, y, x) uint8 — 0 background/domain, 1 wall, 2 contaminant;
        variant(frame, y, x) uint8 — 0 matrix, 1 needle family a, 2 family b;
        orientation(frame, y, x) float32 — wall direction in radians (π-periodic), NaN off walls;
        fraction(frame, variant) float64 — area fraction of each variant;
        coordinates bias (V) and time (s) along frame.
    Deterministic for a given seed.
    """
    spec = DemoSpec(n_frames=n_frames, size=size, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    bias = triangular_waveform(n_frames, spec.amplitude, spec.cycles, spec.phase)
    needles = _needles(spec, rng)
    fracs = needle_fractions(bias, needles, spec.amplitude)

    n = size
    cont_pos = rng.uniform(0.05 * n, 0.95 * n, size=(spec.n_contaminants, 2))
    cont_r = rng.uniform(*spec.contaminant_radius, size=spec.n_contaminants)
    base = {0: 0.62, 1: 0.70, 2: 0.56}  # diffraction contrast differs slightly per variant
    t = np.linspace(0.0, 1.0, n_frames)
    drift = np.outer(t, spec.drift)
    yy, xx = np.mgrid[0:n, 0:n].astype(float)

    image = np.empty((n_frames, n, n), np.float32)
    class_map = np.empty((n_frames, n, n), np.uint8)
    variant = np.empty((n_frames, n, n), np.uint8)
    orientation = np.full((n_frames, n, n), np.nan, np.float32)
    fraction = np.empty((n_frames, len(VARIANTS)))
    wall_iters = max(1, round(spec.wall_width) - 1)
    for f in range(n_frames):
        shift = drift[f]
        vmap = _render_variants(spec, needles, fracs[f], shift)
        # a wall pixel has a 4-neighbour of another variant; widen to the wall band
        edge = np.zeros_like(vmap, dtype=bool)
        edge[1:] |= vmap[1:] != vmap[:-1]
        edge[:-1] |= vmap[1:] != vmap[:-1]
        edge[:, 1:] |= vmap[:, 1:] != vmap[:, :-1]
        edge[:, :-1] |= vmap[:, 1:] != vmap[:, :-1]
        wall = ndimage.binary_dilation(edge, iterations=wall_iters) if wall_iters > 1 else edge
        # orientation: the axis of the needle family whose region the wall borders
        fam = ndimage.maximum_filter(vmap, size=3)
        orient = np.where(fam == 1, _FAMILY_ANGLE[1], _FAMILY_ANGLE[2]) % np.pi
        cont = np.zeros((n, n), bool)
        soft_cont = np.zeros((n, n))
        for (cy, cx), r in zip(cont_pos + shift, cont_r, strict=True):
            d = np.hypot(yy - cy, xx - cx)
            cont |= d <= r
            soft_cont = np.maximum(soft_cont, np.clip(r + 1.0 - d, 0.0, 1.0))

        cls = np.where(wall, 1, 0).astype(np.uint8)
        cls[cont] = 2
        class_map[f] = cls
        variant[f] = vmap
        orientation[f][wall & ~cont] = orient[wall & ~cont]
        fraction[f] = [(vmap == v).mean() for v in range(len(VARIANTS))]

        clean = np.vectorize(base.get)(vmap).astype(float)
        wall_profile = ndimage.gaussian_filter(edge.astype(float), 1.0)
        clean *= 1.0 - 0.75 * np.clip(wall_profile / max(wall_profile.max(), 1e-9), 0.0, 1.0)
        clean = clean * (1.0 - 0.8 * soft_cont)
        clean = ndimage.gaussian_filter(clean, spec.blur_sigma)
        counts = rng.poisson(np.clip(clean, 0, None) * spec.dose) / spec.dose
        image[f] = counts + rng.normal(0.0, spec.read_noise, size=clean.shape)

    coords = store.frame_coords(n_frames, bias=bias, time=np.arange(n_frames) * spec.frame_time)
    coords[store.VARIANT] = list(VARIANTS)
    ds = xr.Dataset(
        {
            "image": ((store.FRAME, store.Y, store.X), image, {"units": "arb. units"}),
            "class_map": (
                (store.FRAME, store.Y, store.X),
                class_map,
                {"flag_values": [0, 1, 2], "flag_meanings": " ".join(CLASS_NAMES)},
            ),
            "variant_map": (
                (store.FRAME, store.Y, store.X),
                variant,
                {"flag_values": [0, 1, 2], "flag_meanings": " ".join(VARIANTS)},
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
        ),
    )
    return ds


def ar1_noise(rng: np.random.Generator, n: int, frames: int, rho: float, sd: float) -> np.ndarray:
    """``(n, frames)`` stationary AR(1) noise of marginal sd ``sd`` and lag-1 correlation ``rho``:
    temporally correlated noise for the hysteresis null tests and benchmark."""
    out = np.empty((n, frames))
    out[:, 0] = rng.normal(0, sd, n)
    innov = rng.normal(0, sd * np.sqrt(1 - rho**2), (n, frames))
    for t in range(1, frames):
        out[:, t] = rho * out[:, t - 1] + innov[:, t]
    return out
