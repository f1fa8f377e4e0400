"""Plain ``nn.Module``s of the rotationally invariant VAE (no Lightning, no I/O).

The encoders implement :class:`ferrolens.rvae.registry.WindowEncoder`, the decoders
:class:`~ferrolens.rvae.registry.CoordinateDecoder`; the registry there builds them from the
``rvae:`` config section. They trust their arguments: the section's schema checks them
(window sizes by :func:`ferrolens.rvae.inputs.check_window`), once, for every way a model is built.

* :class:`Encoder` — the paper's: two valid-padding 3×3 convolutions (128
  filters, leaky-ReLU 0.1), then two linear heads giving the mean and the log
  standard deviation of ``(angle, dx, dy, z1 … zL)`` (Bepler et al. 2019 use
  an MLP, the paper a small CNN). Valid padding makes the encoder of an
  ``n × n`` window the restriction of one convolution over a whole frame,
  which is what lets :mod:`ferrolens.rvae.maps` compute per-pixel maps fully
  convolutionally.
* :class:`RotationEncoder` — the angle from a small network copied ``K``
  times with its kernels rotated by ``2πk/K`` (a lifting to the rotation
  group, as in TARGET-VAE, Nasiri & Bepler 2022): each copy scores how well
  the window matches the canonical orientation turned by ``2πk/K``; a softmax
  over the copies is a posterior over discrete rotations and the angle its
  circular mean (plus a learned sub-step offset per copy). Turning the input
  by a multiple of the step shifts the scores cyclically, so the angle follows
  by construction; in between it is learned. Shift, z and every log-sd come
  from a plain :class:`Encoder`. Still only valid convolutions and per-pixel
  arithmetic, so maps stay exact and fully convolutional.
* :class:`SpatialDecoder` — Bepler's spatial generator: every pixel's
  (rotated, shifted) coordinate goes with ``z`` through an MLP of two dense
  layers of 128 units with tanh, one value per pixel; optionally the
  coordinates first pass through fixed Fourier features
  ``[p, sin(2π B p), cos(2π B p)]`` (Tancik et al. 2020), which lets the MLP
  draw sharp walls that plain coordinates (a smooth, low-frequency input) blur.
* :class:`ImageDecoder` — ``z`` through an MLP to one canonical image of
  ``extent · n`` pixels per side covering ``[-extent, extent]²`` grid units,
  read at the (rotated, shifted) coordinates by bilinear interpolation (a
  spatial transformer, Jaderberg et al. 2015). The same interface as the
  spatial decoder (a value per transformed coordinate), but the image is
  drawn once per window rather than by an MLP at every pixel, and a pixel
  image holds a 1–2 px wall that a coordinate MLP learns only slowly.
  Measured on the demo's wall windows (benchmarks/bench_rvae_fidelity.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fftconv import ValidConv

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

    @property
    def feature_channels(self) -> int:
        """Channels of the widest activation over a frame (sizes the memory plan of the maps)."""
        return self.filters

    def dense(self, x: Tensor, logsd: bool = True) -> Tensor:
        """``(N, 1, H, W)`` images → raw head outputs ``(N, C, H - n + 1, W - n + 1)``, one per window
        (``C = 2 (3 + L)`` with ``logsd``, else ``3 + L``).

        The value at ``(i, j)`` belongs to the window whose top-left corner is
        ``(i, j)``; :meth:`finish` turns it into ``(mean, logsd)``.
        """
        return self.dense_fn(logsd)(x)

    def dense_fn(self, logsd: bool = True) -> Callable[[Tensor], Tensor]:
        """:meth:`dense` with the heads prepared once (their kernels' transforms), to apply to many strips."""
        head = ValidConv(*self.head_as_conv(logsd))
        return lambda x: head(self.features(x))

    def finish(self, raw: Tensor, logsd: bool = True) -> tuple[Tensor, Tensor | None]:
        """Raw outputs ``(..., C)`` (channels last) → mean and log-sd ``(..., 3 + L)``."""
        c = self.n_latent
        return raw[..., :c], (raw[..., c:] if logsd else None)

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


# --- rotation of kernels -------------------------------------------------------------
_RING = [(1, 2), (0, 2), (0, 1), (0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]  # 3×3 ring, counter-clockwise


def rotation_operator(size: int, angle: float) -> Tensor:
    """``(size², size²)`` matrix ``M`` with ``vec(rot(W)) = M @ vec(W)`` for ``size × size`` kernels.

    ``rot`` turns the kernel's content counter-clockwise as displayed by
    ``angle`` (the same sense as :mod:`ferrolens.rvae.geometry`): exact index
    permutations for multiples of 90°, the 3×3 ring shifted by one cell per 45°
    (the usual discrete 45° turn of a 3×3 kernel), bilinear resampling otherwise
    (weights of taps falling outside the kernel are dropped).
    """
    steps = angle / (math.pi / 4)
    m = torch.zeros(size * size, size * size, dtype=torch.float64)
    if abs(steps - round(steps)) < 1e-9 and (size == 3 or round(steps) % 2 == 0):
        k = round(steps) % 8
        idx = torch.arange(size * size).reshape(size, size)
        if size == 3:
            src = idx.clone()
            for i, (ri, ci) in enumerate(_RING):
                rr, cc = _RING[(i - k) % 8]
                src[ri, ci] = idx[rr, cc]
        else:
            src = torch.rot90(idx, k // 2, dims=(0, 1))  # content turned counter-clockwise as displayed
        m[torch.arange(size * size), src.reshape(-1)] = 1.0
        return m.float()
    h = (size - 1) / 2
    c, s = math.cos(angle), math.sin(angle)
    for r in range(size):
        for col in range(size):
            x, y = col - h, h - r  # y up
            xs, ys = c * x + s * y, -s * x + c * y  # R(-angle) p: where the content came from
            cs, rs = xs + h, h - ys
            c0, r0 = math.floor(cs), math.floor(rs)
            for rr, wr in ((r0, 1 - (rs - r0)), (r0 + 1, rs - r0)):
                for cc, wc in ((c0, 1 - (cs - c0)), (c0 + 1, cs - c0)):
                    if 0 <= rr < size and 0 <= cc < size and wr * wc > 1e-12:
                        m[r * size + col, rr * size + cc] += wr * wc
    return m.float()


class RotationEncoder(nn.Module):
    """Window → mean and log-sd of ``(angle, dx, dy, z1 … zL)``, with a built-in sense of rotation.

    The angle comes from ``K`` copies of one small network (3×3 conv →
    leaky-ReLU → 3×3 conv → leaky-ReLU → 1×1 conv → leaky-ReLU → an
    ``(n-4)²`` head of two outputs), copy ``k`` with every kernel turned by
    ``θ_k = 2πk/K`` (counter-clockwise as displayed). Copy ``k`` gives a score
    ``s_k`` and a sub-step offset ``δ_k``; with ``w = softmax(s)``::

        angle = arg(Σ_k w_k exp(i m (θ_k + δ_k))) / m,   δ_k = (π / K) tanh(·)

    where ``m`` is the symmetry order of the content (2 for lines: angles are
    read modulo ``2π / m``). Turning the input by ``2π/K`` shifts the scores
    by one copy, so the angle follows turns by construction (exactly for
    multiples of 90°, where the kernels turn exactly).

    Everything else (the angle's log-sd, mean and log-sd of ``dx, dy, z``)
    comes from a plain :class:`Encoder` (the paper's form, ``filters``
    channels), which learns to describe the window in the frame the angle
    sets. Measured on the demo (benchmarks/bench_rvae_fidelity.py), making
    those latents rotation-invariant by pooling the copies instead learned to
    reconstruct far more slowly (held-out R² 0.49 against 0.80 after 1,500
    steps at n = 8) for no better angle.

    Parameters
    ----------
    window : window size ``n`` (>= 5).
    n_latent : number of outputs ``3 + L``.
    filters : channels of the plain encoder's convolutions.
    rotations : ``K``, a multiple of 4 (the 90° turns are exact).
    symmetry : ``m``, angles are modulo ``2π / m``.
    rotation_filters : channels of the 3×3 convolutions of each rotated copy.
    reduce : channels of the copies' 1×1 convolution (keeps their large head kernel cheap).
    slope : negative slope of the leaky ReLUs.
    init_logsd : initial bias of the log-sd outputs: posteriors start narrow, so that the decoder
        sees informative codes from the first step rather than learning to ignore them.
    """

    angles: Tensor  # buffers: the copies' turns (radians) and the operators turning 3×3 and head kernels
    rot3: Tensor
    rotk: Tensor

    def __init__(
        self,
        window: int,
        n_latent: int,
        filters: int = 64,
        rotations: int = 8,
        symmetry: int = 2,
        rotation_filters: int = 16,
        reduce: int = 16,
        slope: float = 0.1,
        init_logsd: float = -3.0,
    ):
        super().__init__()
        self.window, self.n_latent, self.filters, self.rotations = window, n_latent, filters, rotations
        self.symmetry, self.rotation_filters, self.reduce, self.slope = symmetry, rotation_filters, reduce, slope
        k = window - 4
        self.conv1 = nn.Conv2d(1, rotation_filters, 3)
        self.conv2 = nn.Conv2d(rotation_filters, rotation_filters, 3)
        self.conv3 = nn.Conv2d(rotation_filters, reduce, 1)
        self.head = nn.Conv2d(reduce, 2, k)  # score, offset
        self.plain = Encoder(window, n_latent, filters, slope)
        with torch.no_grad():
            self.plain.logsd.bias.fill_(init_logsd)
        angles = [2 * math.pi * r / rotations for r in range(rotations)]
        self.register_buffer("angles", torch.tensor(angles), persistent=False)
        self.register_buffer("rot3", torch.stack([rotation_operator(3, a) for a in angles]), persistent=False)
        self.register_buffer("rotk", torch.stack([rotation_operator(k, a) for a in angles]), persistent=False)

    @property
    def head_kernel(self) -> int:
        return self.window - 4

    @property
    def feature_channels(self) -> int:
        return self.rotations * self.rotation_filters + self.filters

    def _turned(self, conv: nn.Conv2d, ops: Tensor | None) -> tuple[Tensor, Tensor]:
        """Weights of all ``K`` copies stacked along the output channels, and their biases."""
        w = conv.weight
        o, i, kh, kw = w.shape
        if ops is None:  # 1×1: nothing to turn
            wk = w.unsqueeze(0).expand(self.rotations, o, i, kh, kw)
        else:
            wk = torch.einsum("kpq,oiq->koip", ops, w.reshape(o, i, kh * kw)).reshape(self.rotations, o, i, kh, kw)
        bias = cast(Tensor, conv.bias)  # every convolution here has one
        return wk.reshape(self.rotations * o, i, kh, kw), bias.repeat(self.rotations)

    def features(self, x: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, K·reduce, H - 4, W - 4)``: the conv features of every rotated copy."""
        r, a = self.rotations, self.slope
        w1, b1 = self._turned(self.conv1, self.rot3)
        w2, b2 = self._turned(self.conv2, self.rot3)
        h = F.leaky_relu(F.conv2d(x, w1, b1), a)
        h = F.leaky_relu(F.conv2d(h, w2, b2, groups=r), a)
        # the copies' 1×1 convolution (the same kernel for every copy) as one batched matrix product:
        # 3× faster than a grouped convolution on a 2-core CPU, the same sums
        n, c, hh, ww = h.shape
        w3 = self.conv3.weight.reshape(1, 1, self.reduce, c // r)
        b3 = cast(Tensor, self.conv3.bias)
        h = torch.matmul(w3, h.reshape(n, r, c // r, hh * ww)) + b3.reshape(1, 1, -1, 1)
        return F.leaky_relu(h.reshape(n, r * self.reduce, hh, ww), a)

    def dense(self, x: Tensor, logsd: bool = True) -> Tensor:
        """``(N, 1, H, W)`` → raw outputs ``(N, 2K + C, H - n + 1, W - n + 1)`` at every window:
        the copies' scores and offsets, then the plain encoder's heads."""
        return self.dense_fn(logsd)(x)

    def dense_fn(self, logsd: bool = True) -> Callable[[Tensor], Tensor]:
        """:meth:`dense` with the heads prepared once (their kernels' transforms), to apply to many strips."""
        head = ValidConv(*self._turned(self.head, self.rotk), groups=self.rotations)
        plain = self.plain.dense_fn(logsd)
        return lambda x: torch.cat([head(self.features(x)), plain(x)], 1)

    def finish(self, raw: Tensor, logsd: bool = True) -> tuple[Tensor, Tensor | None]:
        """Raw outputs ``(..., 2K + C)`` (channels last) → mean and log-sd ``(..., 3 + L)``."""
        r = self.rotations
        copies = raw[..., : 2 * r].reshape(*raw.shape[:-1], r, 2)
        w = torch.softmax(copies[..., 0], dim=-1)
        m = self.symmetry
        turn = m * (self.angles + (math.pi / r) * torch.tanh(copies[..., 1]))
        angle = torch.atan2((w * torch.sin(turn)).sum(-1), (w * torch.cos(turn)).sum(-1)) / m
        mean, sd = self.plain.finish(raw[..., 2 * r :], logsd)
        return torch.cat([angle.unsqueeze(-1), mean[..., 1:]], -1), sd

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, n, n)`` or ``(N, 1, n, n)`` windows → mean, log-sd, each ``(N, 3 + L)``."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[-2:] != (self.window, self.window):
            raise ValueError(f"expected {self.window}×{self.window} windows, got {tuple(x.shape[-2:])}")
        h = self.features(x)  # (N, K·reduce, k, k); the head as a batched matmul (a window has one position)
        wh, bh = self._turned(self.head, self.rotk)
        r = self.rotations
        copies = torch.einsum("nkp,kcp->nkc", h.reshape(h.shape[0], r, -1), wh.reshape(r, 2, -1))
        copies = copies.reshape(h.shape[0], -1) + bh
        pm, ps = self.plain(x)
        mean, logsd = self.finish(torch.cat([copies, pm, ps], -1))
        return mean, cast(Tensor, logsd)


class SpatialDecoder(nn.Module):
    """Coordinates and ``z`` → one value per pixel (Bepler's spatial generator).

    ``h1 = tanh(A · p + B · z + c)``, ``h2 = tanh(W h1 + d)``, ``out = v · h2 + e``
    for every (transformed) pixel coordinate ``p``.

    Parameters
    ----------
    latent_dim : number of free latents ``L``.
    units : width of both dense layers (paper: 128).
    fourier : number ``F`` of Fourier frequencies (0: plain coordinates, the paper).
    fourier_scale : standard deviation of the frequencies (cycles per grid unit).
    seed : seed of the fixed random frequencies (kept as a buffer, saved with the weights).
    """

    freqs: Tensor  # buffer (with Fourier features): the fixed frequencies B, (2, F)

    def __init__(self, latent_dim: int, units: int = 128, fourier: int = 0, fourier_scale: float = 1.0, seed: int = 0):
        super().__init__()
        self.latent_dim, self.units, self.fourier = latent_dim, units, fourier
        if fourier > 0:
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("freqs", torch.randn(2, fourier, generator=g) * fourier_scale)
        self.coord = nn.Linear(2 + 2 * fourier, units)
        self.latent = nn.Linear(latent_dim, units, bias=False) if latent_dim > 0 else None
        self.hidden = nn.Linear(units, units)
        self.out = nn.Linear(units, 1)

    def forward(self, coords: Tensor, z: Tensor) -> Tensor:
        """``coords (N, P, 2)`` and ``z (N, L)`` → ``(N, P)`` (values or logits)."""
        if self.fourier > 0:
            t = 2 * math.pi * (coords @ self.freqs)
            coords = torch.cat([coords, torch.sin(t), torch.cos(t)], -1)
        h = self.coord(coords)
        if self.latent is not None:
            h = h + self.latent(z).unsqueeze(1)
        h = torch.tanh(h)
        h = torch.tanh(self.hidden(h))
        return self.out(h).squeeze(-1)


class ImageDecoder(nn.Module):
    """``z`` → a canonical image, read at transformed coordinates (a spatial transformer).

    ``img = MLP(z)`` is an ``m × m`` image (``m = n + 2 ⌈(extent - 1) n / 2⌉``, about ``extent · n``)
    that spans about ``[-extent, extent]²`` in the grid units of
    :func:`ferrolens.rvae.geometry.coordinate_grid` (the window's pixel
    centres span ``[-1, 1]²``) with the window's pixel pitch: one image pixel
    is one window pixel. The output at a
    coordinate ``p`` is ``img`` bilinearly interpolated at ``p``; beyond the
    image, its border value (``extent = 2`` leaves room for the corners of a
    turned window, ``√2``, plus a shift of 0.6 grid units).

    Parameters
    ----------
    latent_dim : number of free latents ``L`` (>= 1).
    window : window size ``n`` (pixels).
    units : width of the MLP's two hidden layers (tanh).
    extent : half-width of the canonical image in grid units.
    """

    def __init__(self, latent_dim: int, window: int, units: int = 256, extent: float = 2.0):
        super().__init__()
        self.latent_dim, self.window, self.units, self.extent = latent_dim, window, units, float(extent)
        # m - n even: at no turn and no shift the window's pixel centres fall on the image's (no blur)
        self.size = window + 2 * math.ceil((extent - 1) * window / 2)
        first, hidden, last = nn.Linear(latent_dim, units), nn.Linear(units, units), nn.Linear(units, self.size**2)
        self.net = nn.Sequential(first, nn.Tanh(), hidden, nn.Tanh(), last)
        # the image starts flat: a random output layer would draw pixel noise, which an undertrained model
        # keeps where no window constrains it, and noise of unit contrast passes for a "physical" decoding
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def image(self, z: Tensor) -> Tensor:
        """``(N, L)`` → the canonical images ``(N, 1, m, m)`` (row 0 at ``y = -extent``, top)."""
        return self.net(z).view(-1, 1, self.size, self.size)

    def forward(self, coords: Tensor, z: Tensor) -> Tensor:
        """``coords (N or 1, P, 2)`` and ``z (N, L)`` → ``(N, P)`` (values or logits)."""
        img = self.image(z)
        # window pixel centres are 2 / (n - 1) grid units apart, as the image's: its outer edges, ±1 for
        # grid_sample (align_corners=False), lie at ±m / (n - 1) ≈ ±extent grid units
        grid = (coords * ((self.window - 1) / self.size)).unsqueeze(1)
        if grid.shape[0] != img.shape[0]:
            grid = grid.expand(img.shape[0], -1, -1, -1)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False).flatten(1)
