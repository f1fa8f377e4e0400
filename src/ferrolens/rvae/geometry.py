"""Pure geometry of the spatial decoder: the window's coordinate grid, its
rotation and shift, and a circular correlation to compare angles.

Conventions (used everywhere in :mod:`ferrolens.rvae`)
-------------------------------------------------------
* A window of ``n × n`` pixels is the square ``[-1, 1]²``: pixel centres sit at
  ``linspace(-1, 1, n)`` along each axis, so one grid unit is ``(n - 1) / 2``
  pixels.
* ``x`` runs along columns (to the right), ``y`` along rows (downwards, row 0
  at the top, as an image is displayed). Coordinates are stored as ``(x, y)``
  pairs, row-major (all ``x`` of row 0 first).
* The decoder evaluates its template at ``R(angle) · p + shift`` for every
  pixel position ``p``, with ``R(a) = [[cos a, -sin a], [sin a, cos a]]``
  (Bepler et al. 2019). The decoded content therefore appears rotated
  **counter-clockwise by ``angle`` as displayed** and moved by ``-shift``;
  ``angle = π/2`` decodes exactly ``np.rot90`` of the ``angle = 0`` image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def coordinate_grid(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Pixel-centre coordinates of an ``n × n`` window in ``[-1, 1]²``.

    Returns a ``(n * n, 2)`` tensor of ``(x, y)`` pairs in row-major order
    (x along columns, y along rows, downwards).
    """
    if n < 2:
        raise ValueError(f"a coordinate grid needs n >= 2 pixels per side, got {n}")
    t = torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def rotation_matrix(angle: Tensor) -> Tensor:
    """``(..., 2, 2)`` matrices ``[[cos a, -sin a], [sin a, cos a]]`` for angles (radians)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rotate_translate(
    coords: Tensor, angle: Tensor | float, shift: Tensor | tuple[float, float] | None = None
) -> Tensor:
    """Rotate coordinates by ``angle`` and then add ``shift``: ``R(angle) · p + shift``.

    Parameters
    ----------
    coords : ``(P, 2)`` (one grid for all) or ``(N, P, 2)`` ``(x, y)`` coordinates.
    angle : scalar or ``(N,)`` angles in radians (counter-clockwise as displayed).
    shift : ``None`` (no shift), ``(2,)`` or ``(N, 2)`` ``(dx, dy)`` in grid units.

    Returns
    -------
    ``(N, P, 2)`` transformed coordinates (``N = 1`` for a scalar angle and a
    single grid).
    """
    coords = torch.as_tensor(coords)
    angle = torch.as_tensor(angle, dtype=coords.dtype, device=coords.device).reshape(-1)
    if coords.dim() == 2:
        coords = coords.unsqueeze(0)
    rot = rotation_matrix(angle)  # (N, 2, 2)
    out = coords @ rot.transpose(-1, -2)  # row vectors: p' = p Rᵀ = (R p)ᵀ
    if shift is not None:
        shift = torch.as_tensor(shift, dtype=coords.dtype, device=coords.device).reshape(-1, 2)
        out = out + shift.unsqueeze(1)
    return out


def circular_correlation(a: np.ndarray, b: np.ndarray, period: float = 2 * math.pi) -> float:
    """Circular-circular correlation coefficient of Fisher & Lee (1983).

    ``a`` and ``b`` are angles with the given ``period`` (``2π`` for angles,
    ``π`` for the orientation of lines, which look the same after a half
    turn). ``ρ = E[sin(a₁-a₂) sin(b₁-b₂)] / √(E[sin²(a₁-a₂)] E[sin²(b₁-b₂)])``
    over pairs of samples, computed in closed form. It is ``+1`` for
    ``a = b + c`` and ``-1`` for ``a = -b + c`` (any offset ``c``), so take its
    absolute value to compare "up to a sign and an offset". Unlike the
    Jammalamadaka–SenGupta coefficient it needs no circular means, which are
    ill-defined when angles cover the whole circle (as wall orientations do).
    """
    a = np.asarray(a, dtype=np.float64).ravel() * (2 * math.pi / period)
    b = np.asarray(b, dtype=np.float64).ravel() * (2 * math.pi / period)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two equally long sets of >= 2 angles, got {a.shape} and {b.shape}")
    n = a.size
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    num = 4 * (np.sum(ca * cb) * np.sum(sa * sb) - np.sum(ca * sb) * np.sum(sa * cb))
    den = (n**2 - np.sum(np.cos(2 * a)) ** 2 - np.sum(np.sin(2 * a)) ** 2) * (
        n**2 - np.sum(np.cos(2 * b)) ** 2 - np.sum(np.sin(2 * b)) ** 2
    )
    return float(num / math.sqrt(den)) if den > 0 else 0.0


def circular_agreement(a: np.ndarray, b: np.ndarray, period: float = 2 * math.pi) -> float:
    """How well ``a = ±b + c`` (mod ``period``) for some constant ``c``, in ``[0, 1]``.

    The mean resultant length of the differences ``a - b`` and ``a + b``
    (angles scaled to ``2π``), whichever is larger: 1 when ``a`` equals ``b``
    up to a sign and an offset, about 0 when ``a`` does not follow ``b`` (for
    ``b`` spread over the circle). Unlike :func:`circular_correlation` it is
    not fooled by an ``a`` that barely varies.
    """
    a = np.asarray(a, dtype=np.float64).ravel() * (2 * math.pi / period)
    b = np.asarray(b, dtype=np.float64).ravel() * (2 * math.pi / period)
    if a.shape != b.shape or a.size < 1:
        raise ValueError(f"need two equally long sets of angles, got {a.shape} and {b.shape}")
    return float(max(abs(np.mean(np.exp(1j * (a - b)))), abs(np.mean(np.exp(1j * (a + b))))))
