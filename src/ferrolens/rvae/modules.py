"""Plain ``nn.Module``s of the rotationally invariant VAE (no Lightning, no I/O).

* :class:`Encoder` — two valid-padding 3×3 convolutions (128 filters,
  leaky-ReLU 0.1), then two linear heads giving the mean and the log standard
  deviation of ``(angle, dx, dy, z1 … zL)`` (the paper; Bepler et al. 2019 use
  an MLP, the paper a small CNN). Valid padding makes the encoder of an
  ``n × n`` window the restriction of one convolution over a whole frame,
  which is what lets :mod:`ferrolens.rvae.maps` compute per-pixel maps fully
  convolutionally.
* :class:`SpatialDecoder` — Bepler's spatial generator: every pixel's
  (rotated, shifted) coordinate goes with ``z`` through an MLP of two dense
  layers of 128 units with tanh, one value per pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_POSE = 3  # angle, dx, dy come before the free latents z1 … zL


class Encoder(nn.Module):
    """Window → mean and log-sd of ``(angle, dx, dy, z1 … zL)``.

    Parameters
    ----------
    window : window size ``n`` (pixels, >= 5: two valid 3×3 convolutions eat 4).
    n_latent : number of outputs ``3 + L``.
    filters : channels of both convolutions (paper: 128).
    slope : negative slope of the leaky ReLU (paper: 0.1).
    """

    def __init__(self, window: int, n_latent: int, filters: int = 128, slope: float = 0.1):
        super().__init__()
        if window < 5:
            raise ValueError(f"the encoder needs windows of at least 5 pixels, got {window}")
        self.window, self.n_latent, self.filters, self.slope = window, n_latent, filters, slope
        self.conv1 = nn.Conv2d(1, filters, 3)
        self.conv2 = nn.Conv2d(filters, filters, 3)
        k = window - 4
        self.mean = nn.Linear(filters * k * k, n_latent)
        self.logsd = nn.Linear(filters * k * k, n_latent)

    @property
    def head_kernel(self) -> int:
        """Side of the conv feature map of one window (``n - 4``)."""
        return self.window - 4

    def features(self, x: Tensor) -> Tensor:
        """``(N, 1, H, W)`` images → ``(N, filters, H - 4, W - 4)`` conv features (valid padding)."""
        x = F.leaky_relu(self.conv1(x), self.slope)
        return F.leaky_relu(self.conv2(x), self.slope)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, n, n)`` or ``(N, 1, n, n)`` windows → mean, log-sd, each ``(N, 3 + L)``."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = self.features(x).flatten(1)
        return self.mean(h), self.logsd(h)

    def head_as_conv(self, logsd: bool = True) -> tuple[Tensor, Tensor]:
        """The linear heads as one convolution over the feature map.

        Returns ``(weight, bias)`` with weight ``(C, filters, n - 4, n - 4)``;
        ``C = 3 + L`` (mean only) or ``2 (3 + L)`` (mean then log-sd). The
        reshape matches ``flatten`` of ``(filters, n - 4, n - 4)`` features,
        so the convolution at each position equals the heads of that window.
        """
        k = self.head_kernel
        heads = [self.mean, self.logsd] if logsd else [self.mean]
        w = torch.cat([h.weight for h in heads], 0).reshape(-1, self.filters, k, k)
        b = torch.cat([h.bias for h in heads], 0)
        return w, b


class SpatialDecoder(nn.Module):
    """Coordinates and ``z`` → one value per pixel (Bepler's spatial generator).

    ``h1 = tanh(A · p + B · z + c)``, ``h2 = tanh(W h1 + d)``, ``out = v · h2 + e``
    for every (transformed) pixel coordinate ``p``.

    Parameters
    ----------
    latent_dim : number of free latents ``L``.
    units : width of both dense layers (paper: 128).
    """

    def __init__(self, latent_dim: int, units: int = 128):
        super().__init__()
        self.latent_dim, self.units = latent_dim, units
        self.coord = nn.Linear(2, units)
        self.latent = nn.Linear(latent_dim, units, bias=False) if latent_dim > 0 else None
        self.hidden = nn.Linear(units, units)
        self.out = nn.Linear(units, 1)

    def forward(self, coords: Tensor, z: Tensor) -> Tensor:
        """``coords (N, P, 2)`` and ``z (N, L)`` → ``(N, P)`` (values or logits)."""
        h = self.coord(coords)
        if self.latent is not None:
            h = h + self.latent(z).unsqueeze(1)
        h = torch.tanh(h)
        h = torch.tanh(self.hidden(h))
        return self.out(h).squeeze(-1)
