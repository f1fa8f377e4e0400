"""Rotationally invariant VAE (rVAE) of n×n windows and exact, fast per-pixel latent maps.

After Bepler et al. (NeurIPS 2019, spatial-VAE) and Ignatans et al. (the
paper): each window is encoded into an angle, a shift (dx, dy) and L free
latents; a spatial decoder regenerates the window from its rotated, shifted
pixel-coordinate grid and z.

Entry functions (one per Snakemake rule): :func:`make_windows` (:mod:`.inputs`),
:func:`train` (:mod:`.learn`), :func:`encode` (:mod:`.apply`); the config section in
:mod:`.config`; :func:`load` returns a trained :class:`RVAENet` whose
``encode``/``decode``/``latent_maps`` methods are the notebook API (:class:`RVAE` is the same model as a
LightningModule, what training fits). Its encoder and decoder are
plain modules built by :mod:`.registry` (the :class:`WindowEncoder` and :class:`CoordinateDecoder`
protocols) from the config's ``architecture`` and ``decoder``.

Names are imported on first use (PEP 562): cutting windows, encoding and decoding do not import Lightning.
"""

from ..lazy import lazy_names

#: Where each public name lives.
_WHERE = {
    "encode": "apply",
    "DEFAULTS": "config",
    "make_windows": "inputs",
    "fit": "learn",
    "load": "net",
    "train": "learn",
    "circular_agreement": "geometry",
    "circular_correlation": "geometry",
    "coordinate_grid": "geometry",
    "rotate_translate": "geometry",
    "centred_windows": "maps",
    "iter_latent_maps": "maps",
    "latent_maps": "maps",
    "RVAE": "model",
    "LossParts": "net",
    "kl_normal": "net",
    "RVAENet": "net",
    "Encoder": "modules",
    "SpatialDecoder": "modules",
    "sample_windows": "windows",
    "WindowEncoder": "registry",
    "CoordinateDecoder": "registry",
}
__getattr__, __dir__, __all__ = lazy_names(__name__, _WHERE)
