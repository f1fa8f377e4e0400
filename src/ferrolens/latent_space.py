"""Latent-space maps (paper Figs. 3a/d, 6, 7): what the rVAE decodes over the
plane of two free latents, and which parts of that plane are physical.

The rVAE sees segmented images, so a decoded image of a physically realisable
structure has contrast close to 0 or 1 and an unphysical overlap intermediate
contrast. Over a grid of (z1, z2) at angle 0 and zero shift this module gives

* decoded images on a coarse grid (the manifold figure) and a dense grid (maps);
* the density of the observed codes on the dense grid;
* the maximum reconstructed contrast per grid point and the *physical* mask
  where it lies strictly inside the configured bounds (default (0.95, 1.05));
* NMF of the decoded images (grid points × pixels) and of their intensity
  histograms (grid points × bins): components and loading maps over the
  plane, and an RGB composite of three loading maps.

Grid ranges default to the observed codes' quantiles (the paper's
``(L1min, L1max), (L2min, L2max)``). For models with more than two free
latents the mapped pair is configurable and the others are held at the
median of the codes.

Dims: the coarse grid uses the vocabulary's ``z1, z2``; the dense grid
``z1_dense, z2_dense``. They always mean "first / second latent of the mapped
pair" — ``attrs['mapped_latents']`` names which latents those are (e.g.
``["z2", "z3"]``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from . import store
from .config import Partial, section
from .dynamics.nmf import fit_nmf
from .errors import InputError
from .sections import LatentSpaceConfig
from .store import CHANNEL, HIST_BIN, HIST_COMPONENT, Z1D, Z2D

POSE_LATENTS = ("angle", "dx", "dy")


# --- pieces --------------------------------------------------------------------------
def grid_ranges(
    codes: np.ndarray, labels: list[str], pair: list[str], quantiles: list[float], ranges: dict[str, list[float]]
) -> tuple[list[tuple[float, float]], list[str]]:
    """Range of each latent of ``pair``: ``ranges[label]`` if given, else the codes' quantiles.

    ``codes`` (N, L) with column labels ``labels``. A degenerate range (all
    codes equal) is widened by ±0.5 so that a grid exists. Returns the ranges
    and where each came from ("config", "quantiles" or "quantiles, widened").
    """
    out, source = [], []
    for name in pair:
        if name in ranges:
            lo, hi = map(float, ranges[name])
            src = "config"
        else:
            col = codes[:, labels.index(name)]
            col = col[np.isfinite(col)]
            if col.size == 0:
                raise InputError(f"latents code_mean[{name}]", "has no finite codes", "encoded sample windows")
            lo, hi = (float(v) for v in np.quantile(col, quantiles))
            src = "quantiles"
            if not hi > lo:
                lo, hi, src = lo - 0.5, hi + 0.5, "quantiles, widened"
        out.append((lo, hi))
        source.append(src)
    return out, source


def decode_grid(
    decode: Callable[[np.ndarray], np.ndarray],
    axis1: np.ndarray,
    axis2: np.ndarray,
    pair_index: tuple[int, int],
    held: np.ndarray,
    batch_size: int = 1024,
) -> np.ndarray:
    """Decoded images (len(axis1), len(axis2), wy, wx) of the grid ``axis1 × axis2``.

    ``held`` (L,) is the latent vector for the other free latents; its entries
    at ``pair_index`` are replaced by the grid values. ``decode`` gets float64
    (N, L) and must return (N, wy, wx) images at angle 0 and zero shift.
    """
    a1, a2 = np.meshgrid(axis1, axis2, indexing="ij")
    z = np.repeat(np.asarray(held, dtype=np.float64)[None, :], a1.size, axis=0)
    z[:, pair_index[0]] = a1.ravel()
    z[:, pair_index[1]] = a2.ravel()
    out = None
    for s in range(0, z.shape[0], batch_size):
        batch = z[s : s + batch_size]
        img = np.asarray(decode(batch))
        if img.ndim != 3 or img.shape[0] != batch.shape[0]:
            raise InputError(
                "decoder", f"returned shape {img.shape} for {batch.shape[0]} codes", "(N, wy, wx) images, one per code"
            )
        if not np.isfinite(img).all():
            raise InputError("decoder", "returned non-finite values", "finite images")
        if out is None:
            out = np.empty((z.shape[0], *img.shape[1:]), dtype=np.float64)
        elif img.shape[1:] != out.shape[1:]:
            raise InputError(
                "decoder",
                f"image shape changed from {out.shape[1:]} to {img.shape[1:]}",
                "the same image shape for every code",
            )
        out[s : s + batch.shape[0]] = img
    if out is None:
        raise ValueError("decode_grid: the grid has no points")
    return out.reshape(axis1.size, axis2.size, *out.shape[1:])


def code_density(codes2: np.ndarray, axis1: np.ndarray, axis2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts and density (per unit² of latent) of codes (N, 2) in the cells around each grid point.

    Cells are centred on the grid points (edges half-way between them, half
    a step beyond the ends); density = count / (N · cell area), N counting
    all finite codes, so it integrates to the fraction of codes in the grid.
    """

    def edges(a: np.ndarray) -> np.ndarray:
        step = a[1] - a[0]
        return np.concatenate([[a[0] - step / 2], (a[:-1] + a[1:]) / 2, [a[-1] + step / 2]])

    ok = np.isfinite(codes2).all(axis=1)
    e1, e2 = edges(axis1), edges(axis2)
    counts, _, _ = np.histogram2d(codes2[ok, 0], codes2[ok, 1], bins=[e1, e2])
    area = np.outer(np.diff(e1), np.diff(e2))
    n = max(int(ok.sum()), 1)
    return counts, counts / (n * area)


def intensity_histograms(images: np.ndarray, bins: int, value_range: tuple[float, float]) -> np.ndarray:
    """Fraction of pixels per intensity bin (N, bins) of images (N, …); values outside
    ``value_range`` count in the end bins."""
    flat = images.reshape(images.shape[0], -1)
    lo, hi = value_range
    idx = np.clip(((flat - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    idx += np.arange(flat.shape[0])[:, None] * bins
    counts = np.bincount(idx.ravel(), minlength=flat.shape[0] * bins).reshape(flat.shape[0], bins)
    return counts / flat.shape[1]


# --- core ----------------------------------------------------------------------------
def _check_codes(codes: np.ndarray, labels: list[str], cfg: LatentSpaceConfig) -> None:
    """The codes fit the labels, the pair is among them, and the NMF sizes fit the grid."""
    if codes.ndim != 2 or codes.shape[1] != len(labels) or codes.shape[0] == 0:
        raise InputError(
            "latents code_mean",
            f"codes of shape {codes.shape} for labels {labels}",
            "(samples ≥ 1, one column per free latent)",
        )
    missing = [p for p in cfg["pair"] if p not in labels]
    if missing:
        raise InputError(
            "config latent_space.pair",
            f"{missing} not among the free latents {labels}",
            "two labels of the model's free latents",
        )
    G, n_bins = cfg["dense_grid"], cfg["histogram_bins"]
    for key, n in (
        ("image_components", cfg["image_components"]),
        ("histogram_components", cfg["histogram_components"]),
    ):
        if n > G * G:
            raise InputError(f"config latent_space.{key}", f"value {n}", f"at most dense_grid² = {G * G}")
    if cfg["histogram_components"] > n_bins:
        raise InputError(
            "config latent_space.histogram_components",
            f"value {cfg['histogram_components']}",
            f"at most histogram_bins = {n_bins}",
        )


def contrast_reference(
    codes: np.ndarray, held: np.ndarray, decode: Callable[[np.ndarray], np.ndarray], kind: str, seed: int
) -> float:
    """What the physical bounds are relative to: 1 (``absolute``), or with ``observed`` the median
    contrast of the decodings at (up to 2000 of) the observed codes ``(N, L)`` — how contrasted the
    model draws real windows; a missing latent takes its ``held`` value."""
    if kind != "observed":
        return 1.0
    pick = np.random.default_rng(seed).permutation(codes.shape[0])[:2000]
    z = np.where(np.isfinite(codes[pick]), codes[pick], held)
    reference = float(np.median(np.asarray(decode(z), dtype=float).max(axis=(1, 2))))
    if not reference > 0:
        raise InputError(
            "config latent_space.contrast_reference",
            f"'observed', but the decodings at the observed codes have median contrast {reference:.3g}",
            "a decoder that draws the observed windows with positive contrast, or 'absolute'",
        )
    return reference


def grid_nmfs(dense: np.ndarray, cfg: LatentSpaceConfig, seed: int):
    """Image NMF and intensity-histogram NMF of the decoded dense grid ``(G, G, wy, wx)``.

    Returns ``(image_nmf, histogram_nmf, rgb (G, G, 3) in [0, 1], negative_fraction)``: NMF needs
    non-negative data, and intensities below 0 carry no meaning for segmented images, so they are
    clipped (``negative_fraction`` of the pixels were).
    """
    G, _, wy, wx = dense.shape
    flat = dense.reshape(G * G, wy * wx)
    negative_fraction = float((flat < 0).mean())
    X_img = np.clip(flat, 0.0, None)
    if not (X_img > 0).any():
        raise InputError(
            "decoder", "decoded no positive intensity anywhere on the grid", "images with some positive intensity"
        )
    img = fit_nmf(
        X_img, cfg["image_components"], seed, 1.0 / (wy * wx), cfg["nmf_max_iter"], cfg["nmf_tol"], order="total_weight"
    )
    h_lo, h_hi = cfg["histogram_range"]
    X_hist = intensity_histograms(dense.reshape(G * G, wy, wx), cfg["histogram_bins"], (h_lo, h_hi))
    hist = fit_nmf(
        X_hist, cfg["histogram_components"], seed, 1.0, cfg["nmf_max_iter"], cfg["nmf_tol"], order="total_weight"
    )
    src = img if cfg["rgb_source"] == "image" else hist
    rgb = np.stack([src.weights[:, i] for i in cfg["rgb_components"]], axis=-1).reshape(G, G, 3)
    peak = rgb.max(axis=(0, 1))
    rgb = np.where(peak > 0, rgb / np.where(peak > 0, peak, 1.0), 0.0)
    return img, hist, rgb, negative_fraction


def _dataset(
    cfg: LatentSpaceConfig,
    coarse_axes: tuple,
    dense_axes: tuple,
    coarse: np.ndarray,
    dense: np.ndarray,
    contrast_c: np.ndarray,
    physical_c: np.ndarray,
    contrast: np.ndarray,
    physical: np.ndarray,
    reference: float,
    density: np.ndarray,
    counts: np.ndarray,
    img,
    hist,
    rgb: np.ndarray,
    found: dict,
) -> xr.Dataset:
    """The latent_space store's layout (see :func:`latent_space_core`) from its computed parts; ``found``:
    the attrs that record what the computation found (held latents, range sources, clipping, codes)."""
    coarse1, coarse2 = coarse_axes
    dense1, dense2 = dense_axes
    G, n_bins, (wy, wx) = len(dense1), cfg["histogram_bins"], dense.shape[2:]
    lo_b, hi_b = cfg["physical_bounds"]
    h_lo, h_hi = cfg["histogram_range"]
    edges = np.linspace(h_lo, h_hi, n_bins + 1)
    Z1, Z2, WY, WX, C = store.Z1, store.Z2, store.WY, store.WX, store.COMPONENT
    p1, p2 = cfg["pair"]
    coords = {
        Z1: (Z1, coarse1, {"long_name": f"latent {p1} (coarse grid)"}),
        Z2: (Z2, coarse2, {"long_name": f"latent {p2} (coarse grid)"}),
        Z1D: (Z1D, dense1, {"long_name": f"latent {p1} (dense grid)"}),
        Z2D: (Z2D, dense2, {"long_name": f"latent {p2} (dense grid)"}),
        WY: np.arange(wy),
        WX: np.arange(wx),
        C: np.arange(cfg["image_components"]),
        HIST_COMPONENT: np.arange(cfg["histogram_components"]),
        HIST_BIN: np.arange(n_bins),
        "hist_bin_low": (HIST_BIN, edges[:-1]),
        "hist_bin_high": (HIST_BIN, edges[1:]),
        CHANNEL: ["r", "g", "b"],
    }
    dd = (Z1D, Z2D)
    data = {
        "decoded": ((Z1, Z2, WY, WX), coarse.astype(np.float32), {"long_name": "decoded image at angle 0, zero shift"}),
        "contrast_coarse": ((Z1, Z2), contrast_c, {"long_name": "maximum reconstructed contrast"}),
        "physical_coarse": ((Z1, Z2), physical_c),
        "contrast": (dd, contrast, {"long_name": "maximum reconstructed contrast"}),
        "contrast_reference": (
            (),
            reference,
            {"long_name": "contrast the physical bounds are relative to (1: absolute; else median at observed codes)"},
        ),
        "physical": (
            dd,
            physical,
            {"long_name": f"{lo_b} < contrast / contrast_reference < {hi_b}: physically realisable"},
        ),
        "density": (dd, density, {"units": "1/latent unit²", "long_name": "density of the observed codes"}),
        "code_count": (dd, counts.astype(np.int64), {"long_name": "observed codes in the cell of each grid point"}),
        "image_components": (
            (C, WY, WX),
            img.components.reshape(-1, wy, wx),
            {"long_name": "NMF components of the decoded images (mean intensity 1)"},
        ),
        "image_loadings": (
            (C, *dd),
            img.weights.T.reshape(-1, G, G),
            {"long_name": "NMF loadings of the decoded images (mean intensity contributed)"},
        ),
        "image_nmf_error": ((), img.relative_error, {"long_name": "relative Frobenius error of the image NMF"}),
        "histogram_components": (
            (HIST_COMPONENT, HIST_BIN),
            hist.components,
            {"long_name": "NMF components of the intensity histograms (fractions, sum 1)"},
        ),
        "histogram_loadings": (
            (HIST_COMPONENT, *dd),
            hist.weights.T.reshape(-1, G, G),
            {"long_name": "NMF loadings of the intensity histograms (fraction of pixels)"},
        ),
        "histogram_nmf_error": (
            (),
            hist.relative_error,
            {"long_name": "relative Frobenius error of the histogram NMF"},
        ),
        "rgb": (
            (*dd, CHANNEL),
            rgb.astype(np.float32),
            {"long_name": f"{cfg['rgb_source']} loadings {cfg['rgb_components']} as RGB, each over its max"},
        ),
    }
    if cfg["store_dense_decoded"]:
        data["decoded_dense"] = (
            (*dd, WY, WX),
            dense.astype(np.float32),
            {"long_name": "decoded image at angle 0, zero shift"},
        )
    attrs = {
        "mapped_latents": store.json_attr(cfg["pair"]),
        "held_latents": found["held_latents"],
        "range_source": found["range_source"],
        "physical_bounds": store.json_attr(cfg["physical_bounds"]),
        "contrast_reference_kind": cfg["contrast_reference"],
        "negative_fraction_clipped": found["negative_fraction_clipped"],
        "n_codes": found["n_codes"],
        "dims": (
            "z1, z2: coarse grid (manifold figure); z1_dense, z2_dense: dense grid (maps). Both mean the "
            "first / second latent of mapped_latents. NMF components ordered by decreasing total loading."
        ),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def latent_space_core(
    codes: np.ndarray,
    labels: list[str],
    decode: Callable[[np.ndarray], np.ndarray],
    cfg: Partial[LatentSpaceConfig],
    seed: int,
) -> xr.Dataset:
    """Latent-space maps from observed codes and a decoder (no I/O).

    Parameters
    ----------
    codes : (N, L) observed codes of the free latents (no angle/shift), columns ``labels``.
    labels : free-latent labels, e.g. ``["z1", "z2"]``.
    decode : ``decode(z (N, L) float64) -> (N, wy, wx)`` images at angle 0 and zero shift.
    cfg : the ``latent_space:`` section (partial is fine). seed : seeds the NMFs.

    Returns
    -------
    xr.Dataset with dims z1, z2 (coarse), z1_dense, z2_dense, wy, wx, component,
    hist_component, hist_bin, channel:

    * decoded(z1, z2, wy, wx); contrast_coarse, physical_coarse(z1, z2);
    * contrast(z1_dense, z2_dense) = max pixel of the decoded image; contrast_reference
      (1, or with ``contrast_reference = observed`` the median contrast of the decodings at
      the observed codes); physical = ``low < contrast / contrast_reference < high``;
      density [1/latent unit²] and code_count;
    * image_components(component, wy, wx) (mean intensity 1) with
      image_loadings(component, z1_dense, z2_dense) [intensity];
    * histogram_components(hist_component, hist_bin) (fractions, sum 1) with
      histogram_loadings(hist_component, z1_dense, z2_dense) [fraction];
    * rgb(z1_dense, z2_dense, channel) in [0, 1]: three loading maps, each over its max;
    * decoded_dense(z1_dense, z2_dense, wy, wx) when ``store_dense_decoded``.

    NMF components are ordered by decreasing total loading (dominant first).
    """
    cfg = section("latent_space", cfg)
    codes = np.asarray(codes, dtype=float)
    labels = list(labels)
    _check_codes(codes, labels, cfg)
    G = cfg["dense_grid"]
    pair_index = (labels.index(cfg["pair"][0]), labels.index(cfg["pair"][1]))
    ranges, range_source = grid_ranges(codes, labels, cfg["pair"], cfg["range_quantiles"], cfg["ranges"])
    (lo1, hi1), (lo2, hi2) = ranges
    held = np.nanmedian(codes, axis=0)
    held = np.where(np.isfinite(held), held, 0.0)
    held_named = {name: float(held[i]) for i, name in enumerate(labels) if i not in pair_index}

    coarse1, coarse2 = np.linspace(lo1, hi1, cfg["coarse_grid"]), np.linspace(lo2, hi2, cfg["coarse_grid"])
    dense1, dense2 = np.linspace(lo1, hi1, G), np.linspace(lo2, hi2, G)
    bs = cfg["batch_size"]
    coarse = decode_grid(decode, coarse1, coarse2, pair_index, held, bs)
    dense = decode_grid(decode, dense1, dense2, pair_index, held, bs)
    wy, wx = dense.shape[2:]
    if coarse.shape[2:] != (wy, wx):
        raise InputError(
            "decoder", f"image shape {coarse.shape[2:]} on the coarse grid, {(wy, wx)} on the dense", "one image shape"
        )

    lo_b, hi_b = cfg["physical_bounds"]
    contrast = dense.max(axis=(2, 3))
    contrast_c = coarse.max(axis=(2, 3))
    reference = contrast_reference(codes, held, decode, cfg["contrast_reference"], seed)
    physical = (contrast > lo_b * reference) & (contrast < hi_b * reference)
    physical_c = (contrast_c > lo_b * reference) & (contrast_c < hi_b * reference)
    counts, density = code_density(codes[:, list(pair_index)], dense1, dense2)

    img, hist, rgb, negative_fraction = grid_nmfs(dense, cfg, seed)

    return _dataset(
        cfg,
        (coarse1, coarse2),
        (dense1, dense2),
        coarse,
        dense,
        contrast_c,
        physical_c,
        contrast,
        physical,
        reference,
        density,
        counts,
        img,
        hist,
        rgb,
        {
            "held_latents": store.json_attr(held_named),
            "range_source": store.json_attr(dict(zip(cfg["pair"], range_source, strict=True))),
            "negative_fraction_clipped": negative_fraction,
            "n_codes": int(codes.shape[0]),
        },
    )


def latent_space_map(
    latents: str,
    decode: Callable[[np.ndarray], np.ndarray],
    out: str,
    cfg: Partial[LatentSpaceConfig],
    seed: int,
    window: int | None = None,
) -> None:
    """Latent-space maps of one window size → ``out`` (latent_space.zarr, kind "latent_space").

    Parameters
    ----------
    latents : latents.zarr (kind "latents") with code_mean(sample, latent) of the sampled windows.
    decode : ``decode(z (N, L) float64) -> (N, n, n)`` images at angle 0 and zero shift, L the
        number of free latents (labels after angle, dx, dy) in the store's order.
    out : the store; layout in :func:`latent_space_core`.
    cfg : the ``latent_space:`` config section. seed : seeds the NMFs.
    window : n (pixels) expected; the latents store's ``window`` is recorded (it owns the fact), and
        a value given must equal it.
    """
    cfg = section("latent_space", cfg)
    lat = store.open_store(latents, "latents")  # code_mean(sample, latent) and latent labels: declared
    cm = lat["code_mean"]
    if window is not None and int(window) != int(lat.attrs["window"]):
        raise InputError(latents, f"latents of window size {lat.attrs['window']}", f"window size {window}")
    window = int(lat.attrs["window"])
    all_labels = [str(v) for v in lat[store.LATENT].values]
    free = [v for v in all_labels if v not in POSE_LATENTS]
    missing = [p for p in cfg["pair"] if p not in free]
    if missing:
        raise InputError(
            "config latent_space.pair",
            f"{missing} not among the free latents {free}",
            "two labels of the model's free latents",
        )
    codes = cm.sel({store.LATENT: free}).transpose(..., store.LATENT).values.reshape(-1, len(free))
    ds = latent_space_core(codes, free, decode, cfg, seed)
    ds.attrs = {
        **store.provenance(
            "latent_space",
            cfg,
            source_latents=str(latents),
            source_latents_sha256=store.sha256_file(latents),
            seed=seed,
            window=int(window),
        ),
        **store.inherited_quality(lat.attrs),
        **ds.attrs,
    }
    store.write_store(ds, out)
