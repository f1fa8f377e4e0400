"""Valid convolutions with large kernels by FFT (overlap-save tiles), for the per-pixel maps' heads.

The heads of the encoders are ``(n - 4) × (n - 4)`` kernels over the conv
features of a whole frame (:mod:`ferrolens.rvae.maps`): at ``n = 24`` a
direct convolution costs ``O · C · 400`` multiply-adds per pixel (30 GFLOP for
a 256² frame of the equivariant encoder), far more than the features
themselves. Cross-correlation is a product in Fourier space, so

* the features are cut into ``p × p`` tiles overlapping by ``k - 1`` pixels
  (each tile gives ``t = p - k + 1`` valid outputs per side; overlap-save),
* each tile's channels are transformed (``rfft2``, ``p`` the power of two
  ``>= 3k``: 64 for ``k = 20``),
* at every frequency the outputs are one real matrix product
  ``[Re X | Im X] · M`` with ``M`` built once from ``conj(FFT(kernel))``
  (:class:`ValidConv` keeps it), and
* the inverse transform gives the tile's ``t × t`` outputs.

This is a different order of float32 rounding than ``F.conv2d``, not an
approximation: on features of order 1 and outputs of order 60 both differ
from a float64 convolution by ~1e-5 (FFT) and ~4e-4 (direct), measured in
``tests/test_rvae_fftconv.py``. Kernels smaller than ``fft_from`` go through
``F.conv2d`` (there the direct convolution is cheaper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..parallel import one_thread

FFT_FROM = 8  # kernel side from which the FFT path is used (n >= 12)
BLOCK_MB = 32.0  # tile spectra transformed and multiplied at a time (bounds the extra memory)


def tile_size(k: int) -> int:
    """FFT tile side for a ``k × k`` kernel: the power of two ``>= 3k`` (at least 16)."""
    return max(16, 1 << math.ceil(math.log2(3 * k)))


class ValidConv:
    """``F.conv2d(x, weight, bias, groups=groups)`` (valid padding, stride 1), built once, applied often.

    Parameters
    ----------
    weight : ``(O, C / groups, k, k)`` float32 kernel.
    bias : ``(O,)`` or ``None``.
    groups : as in ``F.conv2d``.
    fft_from : kernels of side ``>= fft_from`` use overlap-save FFT tiles, smaller ones ``F.conv2d``.
    block_mb : memory of the tile spectra handled at a time (MiB).

    Calling it on ``(N, C, H, W)`` gives ``(N, O, H - k + 1, W - k + 1)``.
    """

    def __init__(
        self, weight: Tensor, bias: Tensor | None, groups: int = 1, fft_from: int = FFT_FROM, block_mb: float = BLOCK_MB
    ):
        self.weight, self.bias, self.groups = weight.detach(), None if bias is None else bias.detach(), groups
        _, _, k, k2 = weight.shape
        if k != k2:
            raise ValueError(f"square kernels only, got {k}×{k2}")
        self.k, self.fft = k, k >= fft_from
        self.block_mb = block_mb
        if self.fft:
            self.p = tile_size(k)
            self.spectra = self._spectra()

    def _spectra(self) -> Tensor:
        """``(groups, f, 2 cg, 2 og)`` float32, ``f = p (p // 2 + 1)`` frequencies: per frequency the real
        matrix taking the interleaved ``(re, im)`` of a group's input channels to those of its outputs,
        ``out_o = Σ_c X_c · conj(W_oc)`` (``W`` the kernels' transform on the tile grid)."""
        o, cg, _, _ = self.weight.shape
        g, p = self.groups, self.p
        w = torch.view_as_real(torch.fft.rfft2(self.weight.float(), s=(p, p)))  # (o, cg, p, q, 2)
        w = w.reshape(g, o // g, cg, -1, 2).permute(0, 3, 2, 1, 4)  # (g, f, cg, og, 2)
        wr, wi = w[..., 0], -w[..., 1]  # the conjugate
        # rows (c, re | im), columns (o, re | im): re = xr wr - xi wi, im = xr wi + xi wr
        m = wr.new_empty(*wr.shape[:3], 2, wr.shape[3], 2)  # (g, f, cg, 2, og, 2)
        m[:, :, :, 0, :, 0], m[:, :, :, 0, :, 1], m[:, :, :, 1, :, 0], m[:, :, :, 1, :, 1] = wr, wi, -wi, wr
        return m.reshape(g, w.shape[1], 2 * cg, 2 * (o // g))

    def __call__(self, x: Tensor) -> Tensor:
        if not self.fft:
            return F.conv2d(x, self.weight, self.bias, groups=self.groups)
        n, c, h, w = x.shape
        k, p, g = self.k, self.p, self.groups
        t, q = p - k + 1, p // 2 + 1
        ho, wo = h - k + 1, w - k + 1
        ty, tx = -(-ho // t), -(-wo // t)
        spectra = self.spectra.to(x.device)
        f, og = spectra.shape[1], spectra.shape[3] // 2
        o, cg = og * g, c // g
        xp = F.pad(x, (0, tx * t + k - 1 - w, 0, ty * t + k - 1 - h))
        tiles = xp.unfold(2, p, t).unfold(3, p, t)  # (n, c, ty, tx, p, p), a view
        out = x.new_empty(n, o, ty, t, tx, t)
        # tile rows per block: the spectra of (n · rows · tx) tiles × c channels within block_mb
        rows = max(1, min(ty, int(self.block_mb * 2**20 // (n * tx * c * f * 8))))
        for r0 in range(0, ty, rows):
            r1 = min(ty, r0 + rows)
            b = n * (r1 - r0) * tx
            block = tiles[:, :, r0:r1].permute(0, 2, 3, 1, 4, 5).reshape(b, c, p, p)  # a copy: contiguous tiles
            spec = torch.view_as_real(torch.fft.rfft2(block))  # (b, c, p, q, 2)
            # frequencies as the batch of one matrix product per group: (g, f, b, 2 cg) @ (g, f, 2 cg, 2 og)
            spec = spec.reshape(b, g, cg, f, 2).permute(1, 3, 0, 2, 4).reshape(g, f, b, 2 * cg)
            y = torch.view_as_complex(torch.matmul(spec, spectra).reshape(g, f, b, og, 2))
            y = y.permute(2, 0, 3, 1).reshape(b, o, p, q)
            # inverse: along columns first, then only the t valid rows along the (real) rows; the real
            # inverse on one thread, since torch's CPU c2r rounds differently with more (the maps would
            # depend on the thread count by ~1e-4); it is the smallest of the transforms (outputs, not inputs)
            y = torch.fft.ifft(y, dim=-2)[..., :t, :]
            with one_thread():
                y = torch.fft.irfft(y, n=p, dim=-1)[..., :t]
            out[:, :, r0:r1] = y.reshape(n, r1 - r0, tx, o, t, t).permute(0, 3, 1, 4, 2, 5)
        out = out.reshape(n, o, ty * t, tx * t)[..., :ho, :wo]
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out.contiguous()
