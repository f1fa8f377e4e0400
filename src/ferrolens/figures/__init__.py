"""The paper's figures, one function per figure kind.

Each function reads stores, draws one matplotlib figure and writes it with
:func:`save` (PNG at the configured dpi, plus an SVG/PDF copy when asked),
atomically. Units are on every axis: bias in V, angles in degrees (the
stores keep radians; figures convert), positions in pixels.
"""

from .common import save, style
from .latent import dynamics, latent_codes, latent_maps, latent_space_maps, nmf_maps
from .movie import frames_at_bias, segmentation_overview, training_curves
from .segment import segment_training
from .switching import switching_maps

__all__ = [
    "dynamics",
    "frames_at_bias",
    "latent_codes",
    "latent_maps",
    "latent_space_maps",
    "nmf_maps",
    "save",
    "segment_training",
    "segmentation_overview",
    "style",
    "switching_maps",
    "training_curves",
]
