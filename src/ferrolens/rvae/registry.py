"""What an rVAE encoder and decoder must provide, and the registry that builds them from the config.

The ``rvae:`` section's enums pick the parts: ``architecture`` the encoder (:data:`ENCODERS`),
``decoder`` the decoder (:data:`DECODERS`). A part is a plain ``nn.Module`` that implements
:class:`WindowEncoder` or :class:`CoordinateDecoder`; :class:`~ferrolens.rvae.net.RVAENet` (the
training system) holds one of each, and :mod:`ferrolens.rvae.maps` computes per-pixel maps of any
:class:`WindowEncoder`.

Adding an encoder is one module (a class implementing :class:`WindowEncoder`), one line in
:data:`ENCODERS` and one value in the ``architecture`` enum of
``src/ferrolens/schemas/fragments/rvae.yaml`` (then ``python -m ferrolens.config >
src/ferrolens/sections.py``); ``tests/test_rvae_registry.py`` shows it with a test encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..sections import RvaeConfig
from .modules import Encoder, ImageDecoder, RotationEncoder, SpatialDecoder


@runtime_checkable
class WindowEncoder(Protocol):
    """An ``n × n`` window → the posterior of its code ``(angle, dx, dy, z1 … zL)``, and the same for
    every window of a whole frame at once (what :mod:`ferrolens.rvae.maps` relies on).

    The maps need the encoder of a window to be the restriction of one computation over the frame:
    only valid convolutions, then a head that is one ``(n - k) × (n - k)`` convolution, then
    per-pixel arithmetic (:meth:`finish`). The test of a new encoder is
    ``maps.latent_maps(encoder, frames)`` against ``encoder(maps.centred_windows(...))``.
    """

    #: window size ``n`` in pixels
    window: int
    #: code length ``3 + L``: the last axis of :meth:`forward`'s and :meth:`finish`'s outputs
    n_latent: int
    training: bool

    @property
    def feature_channels(self) -> int:
        """Channels of the widest float32 activation over a frame (sizes the maps' memory plan,
        :func:`ferrolens.rvae.maps.plan`)."""
        ...

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, n, n)`` or ``(N, 1, n, n)`` windows → mean, log-sd, each ``(N, 3 + L)`` (training, encoding)."""
        ...

    def dense_fn(self, logsd: bool = True) -> Callable[[Tensor], Tensor]:
        """A function ``(N, 1, H, W)`` images → raw outputs ``(N, C, H - n + 1, W - n + 1)``, one per window
        (the value at ``(i, j)`` belongs to the window whose top-left corner is ``(i, j)``); prepared once,
        applied to many strips of rows."""
        ...

    def finish(self, raw: Tensor, logsd: bool = True) -> tuple[Tensor, Tensor | None]:
        """Raw outputs ``(..., C)`` (channels last) → mean and log-sd ``(..., 3 + L)`` (``None`` without
        ``logsd``): equal to :meth:`__call__` of the window."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


@runtime_checkable
class CoordinateDecoder(Protocol):
    """Pixel coordinates (already turned and shifted by the code's pose) and the free latents → one value
    (or logit) per coordinate: what :meth:`ferrolens.rvae.net.RVAENet.generate` calls."""

    def __call__(self, coords: Tensor, z: Tensor) -> Tensor:
        """``coords (N or 1, P, 2)`` in grid units (the window spans ``[-1, 1]²``) and ``z (N, L)`` → ``(N, P)``."""
        ...


#: Builds an encoder from window size ``n``, code length ``3 + L`` and the checked ``rvae:`` section.
EncoderBuilder = Callable[[int, int, RvaeConfig], WindowEncoder]
#: Builds a decoder from window size ``n`` and the checked ``rvae:`` section (``latent_dim`` free latents).
DecoderBuilder = Callable[[int, RvaeConfig], CoordinateDecoder]

#: ``rvae.architecture`` → its encoder (the schema's enum; a test checks the two agree).
ENCODERS: dict[str, EncoderBuilder] = {
    "paper": lambda n, c, hp: Encoder(n, c, hp["filters"]),
    "equivariant": lambda n, c, hp: RotationEncoder(
        n, c, hp["filters"], hp["rotations"], hp["angle_symmetry"], hp["rotation_filters"]
    ),
}

#: ``rvae.decoder`` → its decoder (the schema's enum; a test checks the two agree).
DECODERS: dict[str, DecoderBuilder] = {
    "spatial": lambda n, hp: SpatialDecoder(
        hp["latent_dim"], hp["decoder_units"], hp["fourier_features"], hp["fourier_scale"]
    ),
    "image": lambda n, hp: ImageDecoder(hp["latent_dim"], n, hp["decoder_units"]),
}

#: Hyper-parameters an architecture fixes whatever the config says: ``paper`` is the paper's model exactly
#: (128-filter encoder, Bepler's decoder of 128 units on plain coordinates). The one home of these values.
FIXED: dict[str, dict[str, Any]] = {
    "paper": {"filters": 128, "decoder": "spatial", "decoder_units": 128, "fourier_features": 0},
}


def with_fixed(hp: Mapping[str, Any]) -> dict[str, Any]:
    """``hp`` with what its architecture fixes (:data:`FIXED`) put in."""
    return {**hp, **FIXED.get(str(hp["architecture"]), {})}


def build_encoder(window: int, n_latent: int, hp: RvaeConfig) -> WindowEncoder:
    """The encoder ``hp["architecture"]`` names, of ``window``-pixel windows and ``n_latent`` outputs."""
    encoder = ENCODERS[hp["architecture"]](window, n_latent, hp)
    if not isinstance(encoder, WindowEncoder):  # a new encoder is told what it lacks at once
        raise TypeError(f"the {hp['architecture']!r} encoder {type(encoder).__name__} does not implement WindowEncoder")
    return encoder


def build_decoder(window: int, hp: RvaeConfig) -> CoordinateDecoder:
    """The decoder ``hp["decoder"]`` names."""
    return DECODERS[hp["decoder"]](window, hp)
