"""Training the U-Net: :func:`train` (movie and labels stores → ``model.ckpt``, ``metrics.csv``,
``quality.json``) and :func:`fit` (arrays, for notebooks), both through the shared harness
(:mod:`ferrolens.training`); ``quality.json`` holds the held-out IoU
(:func:`~ferrolens.segment.verdict.measure`), which :func:`~ferrolens.segment.verdict.judge` compares with
``train.min_iou``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import training
from ..config import Partial
from ..errors import InputError
from ..parallel import plan, save_checkpoint_atomic
from ..sections import SegmentConfig, SegmentPredictConfig
from ..store import (
    FRAME,
    X,
    Y,
    config_digest,
    open_store,
    write_file_atomic,
)
from .calibrate import decision_record, tune_logit_bias
from .config import resolve_config
from .data import SegmentationData, describe_split
from .images import _movie_image
from .infer import normalize_frames, predict_frames
from .model import MODEL_KIND, SegmentationModel
from .verdict import measure

log = logging.getLogger(__name__)

#: The best held-out model's checkpoint in the output folder (``best.ckpt``), the source of ``model.ckpt``.
BEST = "best"


# --- train --------------------------------------------------------------------------------
def _training_inputs(movie: str, labels: str, n_classes: int, cfg: SegmentConfig):
    """Normalised labelled frames, labels in the model's classes and class names; checks first."""
    mov = open_store(movie, "movie")
    image = _movie_image(mov, movie)
    lab = open_store(labels, "labels")
    names = [str(n) for n in lab.attrs.get("class_names", [])]
    _model_labels(None, names, n_classes, labels)
    if lab.sizes[FRAME] == 0:
        raise InputError(labels, "no labelled frames (the label store has 0 frames)", "at least one labelled frame")
    if (lab.sizes[Y], lab.sizes[X]) != (image.sizes[Y], image.sizes[X]):
        raise InputError(
            labels,
            f"label frames are {lab.sizes[Y]}×{lab.sizes[X]}",
            f"the movie's frame size {image.sizes[Y]}×{image.sizes[X]}",
        )
    movie_frames = {int(f): i for i, f in enumerate(mov[FRAME].values)}
    frames = [int(f) for f in lab[FRAME].values]
    missing = [f for f in frames if f not in movie_frames]
    if missing:
        raise InputError(
            labels,
            f"label frames {missing} are not frames of the movie {movie}",
            f"frame indices among 0…{len(movie_frames) - 1}",
        )
    label, model_names = _model_labels(lab["label"].values, names, n_classes, labels)
    raw = image.isel({FRAME: [movie_frames[f] for f in frames]}).values
    return mov, label, raw, frames, model_names


def _model_labels(label: np.ndarray | None, names: list[str], n_classes: int, where: Any):
    """Labels (int64) in the model's classes and their names: 3-class labels serve a 2-class model
    with contaminant (2) merged into background (0), wall vs the rest."""
    if n_classes not in (2, 3):
        raise InputError(
            "n_classes", f"value {n_classes!r}", "2 (wall vs the rest) or 3 (background, wall, contaminant)"
        )
    if len(names) < 2:
        raise InputError(
            where,
            f"class_names {names} name {len(names)} class(es)",
            "at least 2 classes, e.g. ['background', 'wall', 'contaminant']",
        )
    if len(names) == n_classes:
        model_names, merge = names, False
    elif len(names) == 3 and n_classes == 2:
        model_names, merge = names[:2], True
    else:
        raise InputError(
            where,
            f"labels have {len(names)} classes {names}",
            f"{n_classes} classes for the {n_classes}-class model (3-class labels also "
            "serve the 2-class model, contaminant merged into background)",
        )
    if label is None:
        return None, model_names
    label = np.asarray(label).astype(np.int64)
    return (np.where(label == 2, 0, label) if merge else label), model_names


def fit(
    images: np.ndarray,
    labels: np.ndarray,
    frames: list[int] | None = None,
    n_classes: int = 3,
    cfg: Partial[SegmentConfig] = None,
    seed: int = 0,
    threads: int | None = None,
    out_dir: str | Path | None = None,
    class_names: list[str] | None = None,
    progress: bool = True,
) -> tuple[SegmentationModel, pd.DataFrame]:
    """Train the U-Net on labelled frames given as arrays: the notebook entry point.

    Parameters
    ----------
    images : ``(n, H, W)`` raw intensities of the labelled frames (normalised here per frame,
        with the config's percentiles, exactly as :func:`predict` normalises).
    labels : ``(n, H, W)`` int class indices into ``class_names``, −1 = unlabelled.
        3-class labels (background, wall, contaminant) also train a 2-class model
        (contaminant merged into background).
    frames : movie frame index of each labelled frame (default ``0 … n − 1``), for the split's record.
    n_classes : 2 or 3 (default 3).
    cfg : the ``segment:`` config section (missing keys take the defaults).
    seed : seeds weights, patch positions, augmentation and dropout.
    threads : torch CPU threads (default: torch's current setting).
    out_dir : where checkpoints and CSV logs go (default: a temporary folder, removed).
    class_names : names of the label classes (default background, wall[, contaminant]).
    progress : False switches off the progress bar and Lightning's info lines and tips.

    Returns the trained model (eval mode, best held-out mean IoU, its ``logit_bias`` chosen per
    ``train.decision``) and its per-epoch record (:func:`~ferrolens.segment.model.record_columns`); ``model.split``
    says what was held out, ``model.decision`` the decision rule and what it does on the held-out
    pixels (:func:`calibrate_decision`).
    """
    import tempfile

    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or labels.shape != images.shape:
        raise InputError("images, labels", f"shapes {images.shape} and {labels.shape}", "the same (n, H, W) for both")
    frames = list(range(len(images))) if frames is None else [int(f) for f in frames]
    names = list(class_names) if class_names is not None else ["background", "wall", "contaminant"][: max(n_classes, 2)]
    label, model_names = _model_labels(labels, names, n_classes, "labels")
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="ferrolens-unet-") as tmp:
            return fit(images, labels, frames, n_classes, cfg, seed, threads, tmp, class_names, progress)
    cfg = resolve_config(cfg)
    trained = _fit(
        images,
        label,
        frames,
        model_names,
        cfg,
        seed,
        threads if threads is not None else torch.get_num_threads(),
        Path(out_dir),
        progress,
        where="labels (array)",
    )
    return trained.model, trained.record


def _fit(
    raw: np.ndarray,
    label: np.ndarray,
    frames: list[int],
    names: list[str],
    cfg: SegmentConfig,
    seed: int,
    threads: int,
    out: Path,
    progress: bool = True,
    where: str = "labels",
) -> training.Trained[SegmentationModel]:
    """Train on normalised-here frames with the shared harness (:mod:`ferrolens.training`) into ``out``;
    returns the best held-out model (eval mode, its decision calibrated; ``out/best.ckpt``) and the
    per-epoch record. ``where`` names the labels in error messages (the store's path)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    t, norm = cfg["train"], cfg["normalize"]
    n_classes = len(names)
    par = plan(t["accelerator"], t["devices"], t["strategy"], threads, "segment.train")
    par.set_threads()  # before the normalisation, which runs on torch threads too
    images, _, _ = normalize_frames(raw, norm["low_percentile"], norm["high_percentile"])
    dm = SegmentationData(images, label, frames, n_classes, t, cfg["augment"], seed, where=where)
    log.info("%s", describe_split(dm.split))
    weights = dm.class_weights()
    hparams: dict[str, Any] = dict(
        n_classes=n_classes,
        class_names=names,
        **cfg["model"],
        learning_rate=float(t["learning_rate"]),
        class_weights=weights,
        norm_low=float(norm["low_percentile"]),
        norm_high=float(norm["high_percentile"]),
    )
    # what must be equal for last.ckpt to be resumed (max_epochs may grow)
    data_hash = hashlib.sha256(label.tobytes() + images.tobytes()).hexdigest()
    fixed = {
        k: v
        for k, v in t.items()
        if k
        not in ("max_epochs", "max_minutes", "num_workers", "accelerator", "devices", "strategy", "min_iou", "decision")
    }  # the decision is chosen after training
    # several processes train with a larger total batch: another training (the key of one process is unchanged)
    processes = {"devices": par.devices} if par.devices > 1 else {}
    key = config_digest(
        {
            "hparams": hparams,
            "train": fixed,
            "augment": cfg["augment"],
            "seed": seed,
            "data": data_hash,
            "split": dm.split,
            **processes,
        }
    )

    training.seed_everything(seed)
    model = SegmentationModel(**hparams)
    best_cb = ModelCheckpoint(
        dirpath=out,
        filename=BEST,
        monitor="val_miou",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    fitted = training.fit(
        model,
        dm,
        par=par,
        out=out,
        seed=seed,
        salt=11,
        resume_key=key,
        kind=MODEL_KIND,
        max_epochs=int(t["max_epochs"]),
        record=model.record_columns,
        callbacks=[best_cb],
        stale=[f"{BEST}.ckpt"],
        progress=progress,
        max_time=None if t["max_minutes"] is None else {"minutes": float(t["max_minutes"])},
        log_every_n_steps=max(1, min(50, int(t["steps_per_epoch"]))),
    )

    best = out / f"{BEST}.ckpt"
    # rank 0 decides (every process must take part in save_checkpoint, or none)
    if fitted.trainer.strategy.broadcast(not best_cb.best_model_path or not best.exists()):
        save_checkpoint_atomic(fitted.trainer, best, weights_only=False)  # e.g. max_minutes hit before validating
    trained = SegmentationModel.load_from_checkpoint(best, map_location="cpu", weights_only=True).eval()
    trained.history = fitted.record.to_dict("records")
    trained.split = dm.split
    trained.decision = calibrate_decision(trained, dm.val_sources, cfg)
    return dataclasses.replace(fitted, model=trained)


def heldout_logits(
    model: SegmentationModel, sources: list[tuple[np.ndarray, np.ndarray]], cfg: SegmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, K)`` (up to a per-pixel constant) and labels ``(N,)`` of the held-out ``sources``
    (normalised image, labels), as the prediction path computes them (fused net with the model's
    current ``logit_bias``, tiling, float32)."""
    from .apply import _inference_net

    p: SegmentPredictConfig = {**cfg["predict"], "precision": "float32"}
    net, device, _ = _inference_net(model, p)
    logits, truth = [], []
    for im, lab in sources:
        # log-probabilities: the logits up to a per-pixel constant, which no argmax sees
        prob = predict_frames(net, im[None], int(p["tile"]), int(p["overlap"]), 1, device)[0]
        logits.append(np.log(np.maximum(prob, 1e-30)).reshape(prob.shape[0], -1).T)
        truth.append(lab.ravel())
    return np.concatenate(logits), np.concatenate(truth)


def calibrate_decision(
    model: SegmentationModel, sources: list[tuple[np.ndarray, np.ndarray]], cfg: SegmentConfig
) -> dict[str, Any]:
    """Choose ``model.logit_bias`` on the held-out ``sources`` (normalised image, labels) per
    ``train.decision`` and return its record (for ``quality.json``).

    ``fractions`` / ``iou``: :func:`~ferrolens.segment.calibrate.tune_logit_bias` with that objective,
    on the logits the prediction path gives (:func:`heldout_logits`), so the bias applies to what
    :func:`~ferrolens.segment.predict` computes; ``argmax``: the bias stays 0. Either way the record
    gives the held-out class fractions and IoU with and without it.
    """
    with torch.no_grad():
        model.logit_bias.zero_()
    logits, truth = heldout_logits(model, sources, cfg)
    rule = cfg["train"]["decision"]
    bias = np.zeros(logits.shape[1]) if rule == "argmax" else tune_logit_bias(logits, truth, rule)
    with torch.no_grad():
        model.logit_bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    record = {
        "rule": rule,
        "logit_bias": [float(b) for b in bias],
        **decision_record(logits, truth, bias, model.class_names),
    }
    log.info(
        "decision (%s): logit bias %s; held-out %s fraction true %.4f, argmax %.4f, calibrated %.4f",
        rule,
        np.round(bias, 3).tolist(),
        model.class_names[1],
        record["fraction_true"][1],
        record["fraction_argmax"][1],
        record["fraction_calibrated"][1],
    )
    return record


def _save_model(best: Path, path: Path, model: SegmentationModel) -> None:
    """``model.ckpt``: the checkpoint ``best`` with the model's calibrated ``logit_bias``, its decision
    record and the training's per-epoch record (``model.history``: every epoch, as ``metrics.csv``)."""
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    ckpt["state_dict"]["logit_bias"] = model.logit_bias.detach().clone()
    ckpt["ferrolens_decision"] = model.decision
    ckpt["ferrolens_history"] = [dict(r) for r in model.history]
    write_file_atomic(path, lambda tmp: torch.save(ckpt, tmp))


def train(
    movie: str, labels: str, out_dir: str, n_classes: int, cfg: Partial[SegmentConfig], seed: int, threads: int
) -> None:
    """Train the U-Net on the labelled frames of the stores; write the model and its training record.

    Parameters
    ----------
    movie : movie store (``image(frame, y, x)``, raw intensities).
    labels : labels store (``label(frame, y, x)``: class indices, −1 unlabelled;
        ``frame`` = movie frame index; ``attrs['class_names']``).
    out_dir : folder ``results/{dataset}/segment/c{n_classes}/``; receives
        ``model.ckpt`` (best held-out mean IoU, renamed into place when complete),
        ``last.ckpt`` (resumes a killed training when rerun with the same data and
        config: bit-identical to an uninterrupted run on CPU), ``best.ckpt``,
        ``metrics.csv`` (per epoch: train loss, held-out loss, held-out per-class
        IoU and mean, learning rate, the epoch's wall and CPU seconds:
        :func:`~ferrolens.segment.model.record_columns`), ``quality.json`` (held-out IoU of the model
        kept, judged against ``train.min_iou`` by the figure that reports it; ``decision``: the logit bias
        prediction adds and the held-out class fractions and IoU with and without it, see
        :func:`calibrate_decision`), ``logs/`` (CSV logs).
    n_classes : 2 (wall vs the rest; contaminant merged into background) or 3.
    cfg : the ``segment:`` config section (missing keys take the defaults).
    seed : seeds weights, patch positions, augmentation, dropout; on CPU the same
        inputs give the same weights (unless ``train.max_minutes`` cuts training short).
    threads : torch intra-op threads, shared by the ``train.devices`` processes.

    What is held out (``train.holdout``) is logged and recorded in ``quality.json`` (the
    ``figure_segment_training`` rule draws the curves and says it).
    With ``train.devices > 1`` Lightning trains data-parallel (DDP): it re-runs
    the calling script once per extra device, each process calls this function,
    and only global rank 0 writes the files above (see :mod:`ferrolens.parallel`).
    The held-out IoU is computed from confusion counts summed over the processes (torchmetrics).

    Bad input (labels with one class, a class count the model cannot take, no
    labelled frame, a patch larger than the frame, an empty movie) raises
    :class:`InputError` before training starts. :func:`fit` is the same training on arrays.
    """
    cfg = resolve_config(cfg)
    _, label, raw, frames, names = _training_inputs(movie, labels, n_classes, cfg)
    out = Path(out_dir)
    trained = _fit(raw, label, frames, names, cfg, seed, threads, out, where=str(labels))
    if not trained.trainer.is_global_zero:
        return
    model = trained.model
    _save_model(out / f"{BEST}.ckpt", out / "model.ckpt", model)
    training.write_metrics(out / "metrics.csv", trained.record)
    # the measurement only: train.min_iou is applied where the quality is reported (the figure), so a
    # changed floor retrains nothing
    q = {
        **measure(trained.record),
        "split": model.split,
        "held_out": describe_split(model.split),
        "decision": model.decision,
    }
    write_file_atomic(out / "quality.json", lambda tmp: Path(tmp).write_text(json.dumps(q, indent=1)))
    log.info(
        "held-out IoU of the model kept: wall %.3f, mean %.3f (judged against segment.train.min_iou by "
        "figure_segment_training)",
        q["heldout_iou_wall"],
        q["heldout_miou"],
    )
