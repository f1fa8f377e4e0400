"""Steps that join two stages, each one call for a workflow script.

The rVAE sees an image chosen from the segmentation (wall probability,
decoded classes or the normalised raw frame); the latent-space maps decode
with a trained rVAE. These functions open the inputs and hand them on.
"""

from __future__ import annotations

from . import store
from .config import Partial, section
from .sections import LatentSpaceConfig, RvaeConfig


def rvae_images(movie: str, segmentation: str | None, cfg: Partial[RvaeConfig]):
    """The rVAE input images(frame, y, x) in [0, 1], lazily, as ``rvae.input`` (and ``raw_normalize``) choose."""
    from .segment.images import input_image

    mv = store.open_store(movie, "movie")  # variables and dims: the declarations'
    seg = store.open_store(segmentation, "segmentation") if segmentation else None
    c = section("rvae", cfg)
    return input_image(mv, seg, c["input"], c["raw_normalize"])


def rvae_windows(
    movie: str, segmentation: str | None, out: str, window: int, cfg: Partial[RvaeConfig], seed: int
) -> None:
    """Windows of one size from the chosen rVAE input → ``windows.zarr``."""
    from .rvae.inputs import make_windows

    c = section("rvae", cfg)
    make_windows(rvae_images(movie, segmentation, c), out, window, c, seed)


def rvae_encode(
    movie: str,
    segmentation: str | None,
    windows: str,
    checkpoint: str,
    out: str,
    cfg: Partial[RvaeConfig],
    threads: int,
) -> None:
    """Window codes and per-pixel latent maps → ``latents.zarr``."""
    from .rvae import encode

    c = section("rvae", cfg)
    encode(rvae_images(movie, segmentation, c), windows, checkpoint, out, c, threads)


def latent_space_map(latents: str, checkpoint: str, out: str, cfg: Partial[LatentSpaceConfig], seed: int) -> None:
    """Decode the latent plane with the trained rVAE → ``latent_space.zarr`` (window size: the model's)."""
    import numpy as np

    from . import latent_space
    from .rvae import load

    model = load(checkpoint)

    def decode(z: np.ndarray) -> np.ndarray:
        return np.asarray(model.decode(z, angle=0.0, shift=(0.0, 0.0), grid=model.window))

    latent_space.latent_space_map(latents, decode, out, cfg, seed, model.window)
