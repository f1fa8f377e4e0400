"""Where the per-pixel latent angle is determined: the structure tensor of the rVAE's input at the window scale.

The rVAE's angle at pixel ``(y, x)`` is read from the ``n × n`` window
centred there (:mod:`ferrolens.rvae.maps`). Where that window holds no
oriented structure (flat background, isotropic noise) any angle explains it
equally well and the map shows noise. This module measures, from the same
input frames and over the same windows, how strongly one orientation
dominates:

* gradients ``g = (∂I/∂y, ∂I/∂x)``: derivatives of a Gaussian of ``sigma``
  pixels (input units per pixel);
* the structure tensor ``J = mean over the window of g gᵀ``: a box average
  over exactly the window the maps use (centred as in :func:`ferrolens.rvae.maps.padding`,
  mirror padding at the borders), entries ``Jyy, Jxx, Jyx``;
* ``energy = Jyy + Jxx``: the mean squared gradient in the window, (input units / px)²;
* ``coherence = (λ₁ - λ₂) / (λ₁ + λ₂) = √((Jxx - Jyy)² + 4 Jyx²) / (Jxx + Jyy)``
  in [0, 1]: 1 for straight parallel lines or one edge, about 0 for isotropic
  noise, crossings of perpendicular walls and corners (0 for a constant window).

The **angle confidence** of a pixel is its window's coherence where the
window's energy reaches that of one straight step of contrast ``min_contrast``
(input units) across the window, and 0 elsewhere: such a step, blurred by the
derivative Gaussian, has ``∫ g² = min_contrast² / (2 √π sigma)`` per pixel of
its length, ``n`` pixels long in a window of ``n²``, so the energy floor is
``min_contrast² / (2 √π sigma n)`` (:func:`energy_floor`). Isotropic noise of
standard deviation ``s`` has an energy of about ``s² / (4 π sigma⁴)`` whatever
the window, so the floor of a larger window lies closer to the noise (the raw
demo frames' noise passes contrast 0.25 at n = 24, not 0.3); averaged over more
pixels, the noise's coherence is lower there.
The angle is *determined* where the confidence is at least ``min_coherence``.
Both thresholds are the config's ``rvae.angle_confidence`` (calibrated on the
demo's truth: see its description and ``benchmarks/bench_angle_confidence.py``).

Pure numpy/scipy, vectorised over frames; no I/O.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIGMA = 1.0  # px: gradients at the pixel scale (the demo's walls are 1-3 px wide); the window sets the averaging scale

RULE = (
    "angle determined where the n×n window of the rVAE input (the window the angle is read from) holds one "
    "dominant orientation: structure-tensor coherence ≥ min_coherence, and a mean squared gradient at least "
    "that of one straight step of contrast min_contrast across the window (gradients of a Gaussian of sigma "
    "px, tensor averaged over the window); elsewhere the angle is noise and is left out of the angle maps "
    "and the angle KDE"
)


def structure_tensor(
    frames: np.ndarray, window: int, sigma: float = SIGMA
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Structure tensor of every pixel's centred ``window × window`` window.

    Parameters
    ----------
    frames : ``(F, H, W)`` (or ``(H, W)``) rVAE input, values in [0, 1].
    window : window size ``n`` in pixels (the rVAE's).
    sigma : Gaussian derivative scale in pixels.

    Returns
    -------
    ``(jyy, jxx, jyx)``, each float32 of the shape of ``frames``, in (input units / px)².
    """
    x = np.asarray(frames, dtype=np.float32)
    lead = (0,) * (x.ndim - 2)
    gy = ndimage.gaussian_filter(x, (*lead, sigma, sigma), order=(*lead, 1, 0), mode="mirror")
    gx = ndimage.gaussian_filter(x, (*lead, sigma, sigma), order=(*lead, 0, 1), mode="mirror")
    # ndimage centres a size-n box on index n//2 of the kernel: rows y - n//2 … y - n//2 + n - 1,
    # the maps' window (padding(n)); mode "mirror" is numpy's "reflect", the maps' padding
    size = (*(1,) * len(lead), window, window)
    return tuple(ndimage.uniform_filter(a, size, mode="mirror") for a in (gy * gy, gx * gx, gy * gx))


def coherence_energy(frames: np.ndarray, window: int, sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Coherence in [0, 1] and energy (mean squared gradient, (input units / px)²) of every pixel's window,
    float32 of the shape of ``frames`` (see the module docstring)."""
    jyy, jxx, jyx = structure_tensor(frames, window, sigma)
    energy = jyy + jxx
    aniso = np.sqrt((jxx - jyy) ** 2 + 4.0 * jyx**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        coh = np.where(energy > 0, aniso / energy, 0.0).astype(np.float32)
    return np.clip(coh, 0.0, 1.0), energy.astype(np.float32)


def energy_floor(window: int, min_contrast: float, sigma: float = SIGMA) -> float:
    """Energy ((input units / px)²) of one straight step of contrast ``min_contrast`` across an
    ``window × window`` window: ``min_contrast² / (2 √π sigma window)``."""
    return float(min_contrast) ** 2 / (2.0 * np.sqrt(np.pi) * sigma * int(window))


def angle_confidence(frames: np.ndarray, window: int, min_contrast: float, sigma: float = SIGMA) -> np.ndarray:
    """Per-pixel confidence of the latent angle, float32 in [0, 1] of the shape of ``frames``
    (``(F, H, W)``, values in [0, 1]): the window's coherence where its energy reaches
    :func:`energy_floor` of ``min_contrast`` (input units), else 0."""
    coh, energy = coherence_energy(frames, window, sigma)
    return np.where(energy >= energy_floor(window, min_contrast, sigma), coh, np.float32(0.0))


def determined(confidence: np.ndarray, min_coherence: float) -> np.ndarray:
    """bool mask: the angle is determined (confidence > 0 and ≥ ``min_coherence``)."""
    return (confidence >= min_coherence) & (confidence > 0)


def store_attrs(window: int, min_contrast: float, min_coherence: float, sigma: float = SIGMA) -> dict:
    """Attributes of ``angle_confidence(frame, y, x)`` in the latents store: the rule and its thresholds."""
    return {
        "long_name": "confidence of the latent angle: structure-tensor coherence of the window, 0 below the "
        "energy floor",
        "units": "1",
        "rule": RULE,
        "min_contrast": float(min_contrast),
        "min_coherence": float(min_coherence),
        "sigma_px": float(sigma),
        "energy_floor": energy_floor(window, min_contrast, sigma),
    }


def determined_in(confidence) -> np.ndarray:
    """bool mask of a latents store's ``angle_confidence`` DataArray (any shape), by the threshold it records."""
    return determined(np.asarray(confidence.values), float(confidence.attrs["min_coherence"]))


def rule_text(confidence) -> str:
    """One line for captions: the rule with the thresholds a latents store's ``angle_confidence`` records."""
    a = confidence.attrs
    return (
        f"angle shown and counted only where determined: window coherence ≥ {float(a['min_coherence']):g} "
        f"and gradient energy ≥ a step of contrast {float(a['min_contrast']):g} across the window"
    )
