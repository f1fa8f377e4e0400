"""Rotationally invariant VAE (rVAE) of n×n windows and exact, fast per-pixel latent maps.

After Bepler et al. (NeurIPS 2019, spatial-VAE) and Ignatans et al. (the
paper): each window is encoded into an angle, a shift (dx, dy) and L free
latents; a spatial decoder regenerates the window from its rotated, shifted
pixel-coordinate grid and z.

Entry functions (one per Snakemake rule): :func:`make_windows` (:mod:`.inputs`), :func:`train`
(:mod:`.learn`), :func:`encode` (:mod:`.apply`); the config section in :mod:`.config`; :func:`load` returns a trained :class:`RVAE` whose
``encode``/``decode``/``latent_maps`` methods are the notebook API.
"""

from .apply import encode
from .config import DEFAULTS
from .geometry import (
    circular_agreement,
    circular_correlation,
    coordinate_grid,
    rotate_translate,
)
from .inputs import make_windows
from .learn import fit, load, train
from .maps import centred_windows, iter_latent_maps, latent_maps
from .model import RVAE, LossParts, kl_normal
from .modules import Encoder, SpatialDecoder
from .windows import sample_windows

__all__ = [
    "DEFAULTS",
    "RVAE",
    "Encoder",
    "LossParts",
    "SpatialDecoder",
    "centred_windows",
    "circular_agreement",
    "circular_correlation",
    "coordinate_grid",
    "encode",
    "fit",
    "iter_latent_maps",
    "kl_normal",
    "latent_maps",
    "load",
    "make_windows",
    "rotate_translate",
    "sample_windows",
    "train",
]
