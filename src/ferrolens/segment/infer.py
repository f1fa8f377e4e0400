"""Inference helpers: per-frame robust normalisation, batched and tiled prediction.

Tiling is exact, not approximate: tiles start on multiples of ``2**depth``
(so max-pooling sees the same grid as on the whole frame) and each tile is
only trusted from :func:`~ferrolens.segment.unet.context_margin` pixels inside
its cut edges; in the overlap the two trusted parts are blended with
complementary linear ramps. Where the overlap exceeds twice the margin the
blended result equals the whole-frame prediction (to float rounding).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ..errors import InputError


def normalize_frames(frames: np.ndarray, low: float = 1.0, high: float = 99.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame robust normalisation ``(x − p_low) / (p_high − p_low)``.

    Parameters
    ----------
    frames : ``(n, H, W)`` (or ``(H, W)``) raw intensities.
    low, high : percentiles (0–100), default 1 and 99.

    Returns
    -------
    normalised ``float32`` array of the input shape (no clipping: about 0…1),
    and the per-frame ``p_low``, ``p_high`` (``(n,)`` float64, raw units). A
    flat frame (``p_high == p_low``) is only shifted.
    """
    a = np.asarray(frames)
    single = a.ndim == 2
    if single:
        a = a[None]
    flat = a.reshape(a.shape[0], -1)
    lo, hi = np.percentile(flat, [low, high], axis=1).astype(np.float64)
    scale = np.where(hi > lo, hi - lo, 1.0)
    out = ((a - lo[:, None, None]) / scale[:, None, None]).astype(np.float32)
    return (out[0] if single else out), lo, hi


def device_for(accelerator: str, where: str = "config segment.predict.accelerator") -> torch.device:
    """The torch device for an accelerator name (``auto`` picks a GPU when present)."""
    if accelerator == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise InputError(where, f"{accelerator!r} asked for but no CUDA device is available", "auto or cpu")
        return torch.device("cuda")
    return torch.device(accelerator)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels with ``overlap`` covering ``n``.

    Starts are multiples of ``tile − overlap``; the last tile is cut at ``n``.
    """
    if n <= tile:
        return [0]
    stride = tile - overlap
    starts = [0]
    while starts[-1] + tile < n:
        starts.append(starts[-1] + stride)
    return starts


def blend_weights(start: int, length: int, n: int, overlap: int, margin: int) -> np.ndarray:
    """Weights ``(length,)`` of one tile along one axis.

    Zero within ``margin`` of a cut edge (edges on the frame border are not
    cuts), then a linear ramp over ``overlap − 2·margin`` pixels: the ramps of
    two neighbours sum to 1 in their overlap.
    """
    w = np.ones(length, dtype=np.float32)
    ramp = overlap - 2 * margin
    if ramp <= 0:
        return w
    edge = np.clip((np.arange(length) - margin + 0.5) / ramp, 0.0, 1.0).astype(np.float32)
    if start > 0:
        w = np.minimum(w, edge)
    if start + length < n:
        w = np.minimum(w, edge[::-1])
    return w


@torch.inference_mode()
def forward_probabilities(model: nn.Module, images: np.ndarray, batch_size: int,
                          device: torch.device, bf16: bool = False) -> np.ndarray:
    """Softmax probabilities ``(n, K, H, W)`` float32 of normalised images
    ``(n, H, W)``, in mini-batches of ``batch_size`` (model must be in eval
    mode; see :func:`~ferrolens.segment.unet.fuse_for_inference`). ``bf16``:
    bfloat16 autocast (faster on CPUs with AMX and on GPUs; probabilities
    change by about 1e-2)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
        x = x[:, None].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def predict_frames(model: nn.Module, images: np.ndarray, tile: int, overlap: int, batch_size: int,
                   device: torch.device, margin: int | None = None, bf16: bool = False) -> np.ndarray:
    """Probabilities ``(n, K, H, W)`` float32 for normalised frames ``(n, H, W)``.

    Frames no larger than ``tile`` on both axes go through whole, ``batch_size``
    at a time; larger frames are cut into ``tile``² tiles overlapping by
    ``overlap`` (both multiples of the model's ``2**depth``) and blended.
    ``margin`` defaults to the model's context margin, capped so that a ramp
    of at least one pixel remains.
    """
    n, h, w = images.shape
    if h <= tile and w <= tile:
        return forward_probabilities(model, images, batch_size, device, bf16)
    if margin is None:
        margin = model.context_margin()
    if overlap > 0 and 2 * margin >= overlap:
        warnings.warn(f"tile overlap {overlap} < 2 × context margin {margin}: tiles are blended "
                      "smoothly but no longer equal the whole-frame prediction exactly", stacklevel=2)
        margin = (overlap - 1) // 2
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    boxes = [(y0, min(y0 + tile, h), x0, min(x0 + tile, w)) for y0 in ys for x0 in xs]
    weights = {b: np.outer(blend_weights(b[0], b[1] - b[0], h, overlap, margin),
                           blend_weights(b[2], b[3] - b[2], w, overlap, margin)) for b in boxes}
    acc = None
    # group tiles of equal shape so they batch together across frames
    shapes: dict[tuple[int, int], list] = {}
    for b in boxes:
        shapes.setdefault((b[1] - b[0], b[3] - b[2]), []).append(b)
    for group in shapes.values():
        crops = np.stack([images[f, y0:y1, x0:x1] for f in range(n) for (y0, y1, x0, x1) in group])
        probs = forward_probabilities(model, crops, batch_size, device, bf16)
        if acc is None:
            acc = np.zeros((n, probs.shape[1], h, w), np.float32)
        k = 0
        for f in range(n):
            for b in group:
                y0, y1, x0, x1 = b
                acc[f, :, y0:y1, x0:x1] += weights[b] * probs[k]
                k += 1
    total = np.zeros((h, w), np.float32)
    for b, wt in weights.items():
        total[b[0]:b[1], b[2]:b[3]] += wt
    return acc / total
