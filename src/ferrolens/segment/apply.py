"""Applying a trained U-Net: :func:`load`, :func:`predict` (movie store → segmentation store) and
:func:`probabilities` (arrays, for notebooks)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..config import Partial, section
from ..errors import InputError
from ..parallel import device_for, set_threads
from ..sections import SegmentConfig, SegmentPredictConfig
from ..store import (
    BIAS,
    CLASS,
    FRAME,
    TIME,
    X,
    Y,
    check_checkpoint,
    open_store,
    provenance,
    sha256_file,
    write_store_streamed,
)
from .images import NORMALISATION, _movie_image
from .infer import normalize_frames, predict_frames, resolve_precision
from .model import MODEL_KIND, SegmentationModel, metrics_table
from .unet import UNet, fuse_for_inference
from .verdict import measure

log = logging.getLogger(__name__)


# --- shared checks ---------------------------------------------------------------------
def _frame_coords(ds: xr.Dataset, sl: slice) -> dict[str, Any]:
    coords: dict[str, Any] = {FRAME: ds[FRAME].values[sl]}
    for name in (BIAS, TIME):
        if name in ds.coords and ds[name].dims == (FRAME,):
            coords[name] = (FRAME, ds[name].values[sl], dict(ds[name].attrs))
    return coords


# --- load -------------------------------------------------------------------------------
def load(checkpoint: str | Path) -> SegmentationModel:
    """The :class:`SegmentationModel` of a checkpoint written by :func:`train`, in eval mode on CPU.

    Loaded with ``weights_only=True`` (no arbitrary unpickling). A file that is
    not a checkpoint, or a checkpoint of another model kind (e.g. an rVAE),
    raises :class:`InputError` naming the file.
    """
    path = check_checkpoint(
        checkpoint, MODEL_KIND, "a segmentation checkpoint (model.ckpt) written by ferrolens.segment.train"
    )
    model = SegmentationModel.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return model.eval()


# --- predict ---------------------------------------------------------------------------------
def _inference_net(model: SegmentationModel, p: SegmentPredictConfig) -> tuple[UNet, torch.device, bool]:
    """The fused eval copy of ``model.net`` on the ``predict:`` section's device, and whether
    to autocast to bfloat16 there (``predict.precision``); tiles checked.

    The copy is kept on ``model`` and made again only when a weight or buffer has changed
    (torch's in-place version counter, or a new tensor) or the device differs: repeated
    calls on short movies would otherwise spend ~10 ms each on copying and fusing.
    """
    mult = model.net.multiple
    for k in ("tile", "overlap"):
        if p[k] % mult:
            raise InputError(
                f"config segment.predict.{k}",
                f"value {p[k]}",
                f"a multiple of {mult} (2**depth of the model), so tiles align with its pooling",
            )
    device = device_for(p["accelerator"], "config segment.predict.accelerator")
    bf16 = resolve_precision(p["precision"], device)
    key = (str(device), tuple((t.data_ptr(), t._version) for t in [*model.net.state_dict().values(), model.logit_bias]))
    cached = getattr(model, "_ferrolens_inference", None)
    if cached is None or cached[0] != key:
        cached = (key, fuse_for_inference(model.net, model.logit_bias).to(device))
        object.__setattr__(model, "_ferrolens_inference", cached)  # a plain attribute, as nn.Module would set it
    return cached[1], device, bf16


def probabilities(
    model: SegmentationModel, frames: np.ndarray, cfg: Partial[SegmentConfig] = None, threads: int | None = None
) -> np.ndarray:
    """Class probabilities of raw frames given as an array: :func:`predict` without the stores.

    Parameters
    ----------
    model : a trained model (:func:`load` or :func:`fit`).
    frames : ``(n, H, W)`` or ``(H, W)`` raw intensities; each frame is normalised with the
        model's percentiles, as :func:`predict` does.
    cfg : the ``segment:`` config section; its ``predict:`` keys apply (batch size, tiling,
        ``precision``: default ``auto`` = bfloat16 autocast on CPUs with AVX512-BF16/AMX and on
        GPUs, ~2× faster, probabilities within ~1e-2; ``float32`` for exact float32), missing
        keys take the defaults.
    threads : torch CPU threads (default: torch's current setting).

    Returns ``(n, K, H, W)`` float32 softmax probabilities of the logits plus the model's
    ``logit_bias`` (``(K, H, W)`` for one frame); ``argmax(1)`` is the label image.
    """
    p = section("segment", cfg)["predict"]
    if threads is not None:
        set_threads(threads)
    a = np.asarray(frames)
    single = a.ndim == 2
    a = a[None] if single else a
    if a.ndim != 3 or 0 in a.shape:
        raise InputError("frames", f"shape {np.shape(frames)}", "(n, H, W) or (H, W) with every size ≥ 1")
    net, device, bf16 = _inference_net(model, p)
    hp: Any = model.hparams  # Lightning's AttributeDict: read by attribute
    bs = int(p["batch_size"])
    out: np.ndarray | None = None
    for i in range(0, len(a), bs):  # normalised a batch at a time: a long movie is not copied whole
        normed, _, _ = normalize_frames(a[i : i + bs], hp.norm_low, hp.norm_high)
        probs = predict_frames(net, normed, int(p["tile"]), int(p["overlap"]), bs, device, bf16=bf16)
        if out is None:
            out = np.empty((len(a), *probs.shape[1:]), np.float32)
        out[i : i + len(probs)] = probs
    assert out is not None  # a has ≥ 1 frame (checked above)
    return out[0] if single else out


def predict(movie: str, checkpoint: str, out: str, cfg: Partial[SegmentConfig], threads: int) -> None:
    """Segment every frame of ``movie`` into the store ``out`` (kind ``segmentation``).

    Frames are read, normalised (per frame, the model's robust percentiles) and
    predicted ``predict.batch_size`` at a time, so the movie never has to fit in
    memory; frames larger than ``predict.tile`` are tiled with
    ``predict.overlap`` and blended seamlessly (exactly, see
    :mod:`ferrolens.segment.infer`). The store is renamed into place when complete.

    Store: ``probability(frame, class, y, x)`` float32 (softmax of the logits plus the
    model's ``logit_bias``, sums to 1 over class), ``label(frame, y, x)`` uint8 (argmax of it),
    ``norm_low/norm_high(frame)``
    (the percentiles, raw units); coords ``frame``, ``class`` (names), and
    ``bias`` (V) / ``time`` (s) copied from the movie; attrs record the
    normalisation, the checkpoint (path, sha256, hyper-parameters), tiling, and the decision
    rule (``decision``, ``logit_bias``: see ``segment.train.decision``).
    """
    from tqdm.auto import tqdm

    cfg = section("segment", cfg)
    p = cfg["predict"]
    set_threads(threads)
    mov = open_store(movie, "movie")
    image = _movie_image(mov, movie)
    model = load(checkpoint)
    net, device, bf16 = _inference_net(model, p)
    hp: Any = model.hparams  # Lightning's AttributeDict: read by attribute
    names = list(hp.class_names)
    n, h, w = image.shape
    bs = int(p["batch_size"])
    attrs = provenance(
        "segmentation",
        cfg,
        movie=str(movie),
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_file(checkpoint),
        model_kind=MODEL_KIND,
        model_hparams=json.dumps(dict(hp), sort_keys=True, default=str),
        n_classes=int(hp.n_classes),
        class_names=names,
        normalisation=NORMALISATION,
        norm_percentiles=[float(hp.norm_low), float(hp.norm_high)],
        tile=int(p["tile"]),
        overlap=int(p["overlap"]),
        context_margin=int(model.context_margin()),
        precision="bfloat16 autocast" if bf16 else "float32",
        # the decision rule (segment.train.decision): label = argmax(logits + logit_bias), probability
        # = softmax(logits + logit_bias); the bias was chosen on the model's held-out pixels
        decision=str(model.decision.get("rule", "argmax")),
        logit_bias=[float(b) for b in model.logit_bias],
        # the model's held-out IoU, where a notebook user reads the results (judged against train.min_iou
        # where it is reported: segment.quality(), the training figure)
        **measure(metrics_table(model.history, names)),
    )
    encoding = {"probability": {"chunks": (1, len(names), h, w)}, "label": {"chunks": (1, h, w)}}

    def parts():
        with tqdm(total=n, unit="frame", desc="segment") as bar:
            for i in range(0, n, bs):
                sl = slice(i, min(i + bs, n))
                normed, lo, hi = normalize_frames(image[sl].values, hp.norm_low, hp.norm_high)
                probs = predict_frames(net, normed, int(p["tile"]), int(p["overlap"]), bs, device, bf16=bf16)
                # argmax in torch: threaded, where numpy's is not
                label = torch.from_numpy(probs).argmax(1).to(torch.uint8).numpy()
                ds = xr.Dataset(
                    {
                        "probability": (
                            (FRAME, CLASS, Y, X),
                            probs,
                            {"long_name": "class probability (softmax)", "units": "1"},
                        ),
                        "label": (
                            (FRAME, Y, X),
                            label,
                            {
                                "long_name": "most probable class",
                                "flag_values": list(range(len(names))),
                                "flag_meanings": " ".join(names),
                            },
                        ),
                        "norm_low": (
                            (FRAME,),
                            lo,
                            {"long_name": f"per-frame {hp.norm_low} percentile", "units": "raw intensity"},
                        ),
                        "norm_high": (
                            (FRAME,),
                            hi,
                            {"long_name": f"per-frame {hp.norm_high} percentile", "units": "raw intensity"},
                        ),
                    },
                    coords=_frame_coords(mov, sl),
                    attrs=attrs,
                )
                if i == 0:
                    ds = ds.assign_coords({CLASS: names})
                    for c in (Y, X):
                        if c in mov.coords and mov[c].dims == (c,):
                            ds = ds.assign_coords({c: mov[c]})
                yield ds
                bar.update(sl.stop - sl.start)

    write_store_streamed(parts(), out, encoding=encoding)
