"""Per-pixel latent maps, computed fully convolutionally.

The map at pixel ``(y, x)`` is the encoding of the ``n × n`` window *centred*
on that pixel: rows ``y - n//2 … y - n//2 + n - 1`` and the same for columns
(for even ``n`` the centre is the lower of the two middle pixels). Near the
border the frame is extended by **reflect padding** (mirror without repeating
the edge pixel, ``numpy.pad(mode="reflect")``): ``n//2`` pixels before and
``n - 1 - n//2`` after, on each axis.

Because the encoder's convolutions use valid padding, the conv features of
every window are a crop of the conv features of the whole padded frame, and
the head applied to a window's ``(channels, n-4, n-4)`` features is one
convolution with an ``(n-4) × (n-4)`` kernel (``encoder.dense_fn``); what
follows the head is per-pixel arithmetic (``encoder.finish``: for the
paper's encoder a split into mean and log-sd, for the equivariant encoder the
softmax over its rotated copies and the circular mean of their angles). So
the features of a frame are computed once: the result equals encoding each
window on its own (to float rounding) at a fraction of the cost. Frames are
streamed in batches, and a frame too large for the memory budget is cut into
strips of rows (each strip with the ``n - 1`` extra rows it needs), so
memory stays bounded by ``chunk_mb`` (per torch thread: on a CPU the batches
are mapped side by side, one thread each).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..parallel import one_thread
from .registry import WindowEncoder


def padding(n: int) -> tuple[int, int]:
    """Reflect padding ``(before, after)`` on each axis for windows of size ``n``."""
    return n // 2, n - 1 - n // 2


def centred_windows(frame: np.ndarray, n: int) -> np.ndarray:
    """All ``n × n`` windows centred on the pixels of one ``(H, W)`` frame.

    Returns a read-only ``(H, W, n, n)`` view into the reflect-padded frame
    (no copy): ``[y, x]`` is the window the maps assign to pixel ``(y, x)``.
    This is the plain reference the fully convolutional path must equal.
    """
    before, after = padding(n)
    padded = np.pad(np.asarray(frame, dtype=np.float32), ((before, after), (before, after)), mode="reflect")
    return np.lib.stride_tricks.sliding_window_view(padded, (n, n))


def plan(height: int, width: int, n: int, filters: int, chunk_mb: float) -> tuple[int, int]:
    """Frames per batch and output rows per strip that keep the features under ``chunk_mb``.

    The conv activations of ``filters`` float32 channels (all rotated copies
    for the equivariant encoder: ``encoder.feature_channels``) dominate
    memory: at most three such maps are alive at once (the first layer's
    output, the second conv's output and its activation), ``3 · filters · 4``
    bytes per padded pixel.
    """
    budget = chunk_mb * 2**20
    row_bytes = 3 * filters * 4 * (width + n - 1)
    frame_bytes = row_bytes * (height + n - 1)
    if frame_bytes <= budget:
        return max(1, int(budget // frame_bytes)), height
    return 1, max(1, int(budget // row_bytes) - (n - 1))


@contextlib.contextmanager
def _exact_fp32(device: torch.device):
    """Turn TF32 off on CUDA while inside (maps must equal per-window encoding to 1e-4)."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@torch.no_grad()
def iter_latent_maps(
    encoder: WindowEncoder,
    frames: Any,
    *,
    logsd: bool = False,
    chunk_mb: float = 256.0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """Stream per-pixel encodings of ``frames`` batch by batch.

    Parameters
    ----------
    encoder : a (trained or random) encoder of window size ``n``: any
        :class:`~ferrolens.rvae.registry.WindowEncoder` (``window``, ``n_latent``, ``feature_channels``,
        ``dense_fn``, ``finish``, and the ``nn.Module``'s ``parameters``, ``training``, ``eval``, ``train``).
    frames : ``(F, H, W)`` array-like (numpy, torch, or a lazily loaded
        xarray DataArray): only ``frames[a:b]`` is read at a time.
    logsd : also yield the log-sd maps.
    chunk_mb : memory budget of the conv activations per step (MiB); on a CPU with ``T`` torch threads,
        up to ``T`` frame batches are mapped side by side (one thread each), each within ``chunk_mb``.
    device : where to compute (default: the encoder's device).
    progress : show a tqdm progress bar over frames.

    Yields
    ------
    ``(start, stop, mean, logsd)`` with ``mean`` ``(stop - start, H, W, 3 + L)``
    float32 and ``logsd`` the same or ``None``. Raw encoder outputs (no
    masking of unused latents; see :meth:`RVAENet.latent_maps`).
    """
    n = encoder.window
    n_frames, height, width = (int(s) for s in frames.shape)
    if n > min(height, width):
        raise ValueError(f"window {n} is larger than the {height}×{width} frame")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    c = encoder.n_latent
    batch, rows = plan(height, width, n, encoder.feature_channels, chunk_mb)
    (top, bottom), (left, right) = padding(n), padding(n)
    starts = list(range(0, n_frames, batch))
    # on a CPU, frame batches are mapped side by side, one torch thread each: within a frame, torch's
    # threads scale poorly on these small convolutions and FFTs (on 2 cores a 256² frame at n = 24 took
    # 0.65 s on 2 threads, 0.5-0.6 s on 1); every batch is computed as on one thread, so the maps stay
    # the same on any thread count
    workers = min(torch.get_num_threads(), len(starts)) if device.type == "cpu" else 1
    bar = tqdm(total=n_frames, unit="frame", desc=f"latent maps n={n}", disable=not progress)
    was_training = encoder.training
    encoder.eval()

    @torch.no_grad()  # grad mode is per thread: the pool's threads do not inherit the caller's
    def one_batch(start: int, frames_np: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray | None]:
        stop = start + len(frames_np)
        x = F.pad(torch.as_tensor(frames_np).unsqueeze(1), (left, right, top, bottom), mode="reflect")
        mean = torch.empty(stop - start, height, width, c)
        sd = torch.empty(stop - start, height, width, c) if logsd else None
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            raw = dense(x[:, :, r0 : r1 + n - 1].to(device))
            with one_thread():  # reductions split across threads round differently (1 ulp)
                m, s = encoder.finish(raw.permute(0, 2, 3, 1), logsd)
            mean[:, r0:r1] = m.cpu()
            if sd is not None and s is not None:
                sd[:, r0:r1] = s.cpu()
            del raw
        return start, stop, mean.numpy(), (sd.numpy() if sd is not None else None)

    def read(start: int) -> np.ndarray:
        stop = min(n_frames, start + batch)
        return np.ascontiguousarray(np.asarray(frames[start:stop]), dtype=np.float32)

    try:
        with _exact_fp32(device), contextlib.ExitStack() as stack:
            dense = encoder.dense_fn(logsd)  # the heads' kernels transformed once for every strip
            if workers == 1:
                results: Iterator[tuple[int, int, np.ndarray, np.ndarray | None]] = (
                    one_batch(a, read(a)) for a in starts
                )
            else:
                stack.enter_context(one_thread())
                pool = stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="latent-maps"))
                results = _in_order(pool, one_batch, ((a, read(a)) for a in starts), workers)
            for out in results:
                yield out
                bar.update(out[1] - out[0])
    finally:
        bar.close()
        encoder.train(was_training)


def _in_order(pool: ThreadPoolExecutor, fn: Any, args: Iterator[tuple], ahead: int) -> Iterator[Any]:
    """``fn(*a)`` for each ``a`` of ``args`` on ``pool``, results in order, at most ``ahead`` in flight
    (each holds a frame batch's features: memory stays ``ahead`` times one batch's)."""
    pending: deque = deque()
    for a in args:
        if len(pending) == ahead:
            yield pending.popleft().result()
        pending.append(pool.submit(fn, *a))
    while pending:
        yield pending.popleft().result()


def latent_maps(
    encoder: WindowEncoder, frames: Any, *, logsd: bool = False, **kwargs: Any
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """All per-pixel maps in memory: ``(F, H, W, 3 + L)`` mean (and log-sd if asked).

    See :func:`iter_latent_maps` for the arguments; use that generator to
    stream long movies to disk instead.
    """
    means: list[np.ndarray] = []
    logsds: list[np.ndarray] = []
    for _, _, m, s in iter_latent_maps(encoder, frames, logsd=logsd, **kwargs):
        means.append(m)
        if s is not None:
            logsds.append(s)
    mean = np.concatenate(means, 0)
    return (mean, np.concatenate(logsds, 0)) if logsd else mean
