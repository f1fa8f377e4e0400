"""The segmentation LightningModule: loss, optimiser, per-class IoU (torchmetrics), one shared step."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassJaccardIndex

from .. import __version__
from ..training import RecordColumns
from .unet import UNet

MODEL_KIND = "ferrolens.segment.unet"  # written into every checkpoint; checked by load()

CLASS_NAMES = {2: ["background", "wall"], 3: ["background", "wall", "contaminant"]}


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-weighted cross-entropy averaged over labelled pixels.

    Parameters
    ----------
    logits : ``(B, K, H, W)``; target : ``(B, H, W)`` int64 class indices,
    ``ignore_index`` where unlabelled; weight : ``(K,)`` or None.

    Returns ``(loss, weight_sum)``: ``Σ w_y·(−log p_y) / Σ w_y`` (0 when no pixel
    is labelled, instead of torch's NaN), and the denominator, so that means
    over batches can be weighted. A class absent from the batch simply
    contributes nothing.
    """
    valid = target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target))
    nll = -torch.gather(F.log_softmax(logits.float(), dim=1), 1, t[:, None])[:, 0]
    w = valid.to(nll.dtype)
    if weight is not None:
        w = w * weight.to(nll.dtype)[t]
    wsum = w.sum()
    return (w * nll).sum() / wsum.clamp_min(1e-12), wsum


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -1, smooth: float = 1.0
) -> torch.Tensor:
    """Soft Dice loss ``1 − (2 Σ p_c y_c + s) / (Σ p_c + Σ y_c + s)``, averaged over the ``K`` classes.

    Parameters
    ----------
    logits : ``(B, K, H, W)``; target : ``(B, H, W)`` int64, ``ignore_index`` where unlabelled.
    smooth : ``s``, keeps a class absent from the batch finite (its term only pushes ``p_c`` down).

    Sums run over the labelled pixels of the whole batch. Unlike cross-entropy, every class
    weighs the same however few pixels it has: thin walls and small contaminant spots are
    scored by overlap, as the IoU scores them.
    """
    k = logits.shape[1]
    valid = (target != ignore_index)[:, None]
    p = torch.softmax(logits.float(), dim=1) * valid
    onehot = F.one_hot(torch.where(valid[:, 0], target, 0), k).permute(0, 3, 1, 2) * valid
    inter = (p * onehot).sum((0, 2, 3))
    total = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1.0 - ((2.0 * inter + smooth) / (total + smooth)).mean()


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective: :func:`weighted_cross_entropy` + :func:`soft_dice_loss`.

    Returns ``(loss, weight_sum)`` as :func:`weighted_cross_entropy` does. On the peer
    benchmark (200 steps, 4 labelled frames) the Dice term raised the contaminant IoU
    from 0.82 to 0.86 at an equal wall IoU (``benchmarks/bench_segment_vs_atomai.py``).
    """
    ce, wsum = weighted_cross_entropy(logits, target, weight, ignore_index)
    return ce + soft_dice_loss(logits, target, ignore_index), wsum


class SegmentationModel(pl.LightningModule):
    """U-Net segmentation of normalised frames into ``n_classes`` classes.

    Hyper-parameters are primitives (saved with ``save_hyperparameters``), so
    ``SegmentationModel.load_from_checkpoint(path, weights_only=True)`` rebuilds it.

    Parameters
    ----------
    n_classes : 2 (background+contaminant vs wall) or 3 (background, wall, contaminant).
    class_names : one name per class (default from ``n_classes``).
    depth, base_filters, convs_per_block, batchnorm, dropout : see :class:`UNet`.
    learning_rate : Adam learning rate (default 1e-3, as in the paper).
    class_weights : cross-entropy weight per class (None = uniform).

    Trained and validated on :func:`segmentation_loss` (class-weighted cross-entropy + soft Dice).
    norm_low, norm_high : the percentiles of the per-frame normalisation the
        model was trained with; prediction uses the same.
    """

    # buffers (typed here: nn.Module's attribute lookup says Tensor | Module)
    class_weight: torch.Tensor
    logit_bias: torch.Tensor
    #: what was held out (set by training, :func:`ferrolens.segment.learn.fit`)
    split: dict[str, Any]

    def __init__(
        self,
        n_classes: int = 3,
        class_names: list[str] | None = None,
        depth: int = 3,
        base_filters: int = 16,
        convs_per_block: int = 2,
        batchnorm: bool = True,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        class_weights: list[float] | None = None,
        norm_low: float = 1.0,
        norm_high: float = 99.0,
    ) -> None:
        super().__init__()
        if class_names is None:
            class_names = CLASS_NAMES.get(n_classes, [f"class{i}" for i in range(n_classes)])
        class_names = list(class_names)
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
        self.save_hyperparameters()
        if len(class_names) != n_classes or (class_weights is not None and len(class_weights) != n_classes):
            raise ValueError("class_names and class_weights need one entry per class")
        self.net = UNet(1, n_classes, depth, base_filters, convs_per_block, batchnorm, dropout)
        self.register_buffer(
            "class_weight", torch.tensor(class_weights or [1.0] * n_classes, dtype=torch.float32), persistent=False
        )
        # the decision rule: prediction labels argmax(logits + logit_bias) (see .calibrate); zero
        # while training, chosen on the held-out pixels after it, saved in the state dict
        self.register_buffer("logit_bias", torch.zeros(n_classes, dtype=torch.float32))
        # the training's per-epoch record (rows of metrics.csv) that model.ckpt carries (learn._save_model);
        # empty while training (the harness records, ferrolens.training.EpochRecord)
        self.history: list[dict[str, float]] = []
        # the decision rule and its held-out record (learn.calibrate_decision; model.ckpt's ferrolens_decision)
        self.decision: dict[str, Any] = {"rule": "argmax"}
        # epoch accumulators; under DDP, compute() sums them over the processes (each validated its
        # own regions), so every process logs, monitors and records the same global values. Not in
        # the state dict.
        self.val_iou = MulticlassJaccardIndex(n_classes, average="none", ignore_index=-1, zero_division=float("nan"))
        # weighted by labelled pixels ("disable" would drop the weights, torchmetrics 1.9)
        self.val_loss = MeanMetric(nan_strategy="warn")
        # mean over steps; "disable": no NaN check, so no host sync per step (it matters on a GPU)
        self.train_loss = MeanMetric(nan_strategy="disable")

    # --- plain inference ---------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` of normalised images ``(B, 1, H, W)``, as trained (without
        ``logit_bias``, which prediction adds: :func:`~ferrolens.segment.unet.fuse_for_inference`)."""
        return self.net(x)

    def context_margin(self) -> int:
        return self.net.context_margin()

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams["class_names"])

    # --- one shared step -------------------------------------------------------------
    def on_fit_start(self) -> None:
        # channels-last convolutions train ~1.3× faster on CPU (oneDNN) and use tensor cores on GPU
        self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (torch's stub lacks it)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        image, label = batch
        logits = self(image.contiguous(memory_format=torch.channels_last))
        loss, wsum = segmentation_loss(logits, label, self.class_weight)
        return {"loss": loss, "weight_sum": wsum, "logits": logits, "label": label}

    @property
    def record_columns(self) -> RecordColumns:
        """The per-epoch record (``metrics.csv``): the columns this model logs (:func:`record_columns`)."""
        return record_columns(self.class_names)

    def training_step(self, batch, batch_idx):
        out = self._step(batch)
        self.log(
            "train/loss",
            out["loss"],
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            logger=False,
            batch_size=batch[0].shape[0],
        )  # the progress bar's
        self.train_loss.update(out["loss"].detach())
        # the epoch's mean over steps, computed (and summed over DDP processes) when the epoch ends
        self.log("train_loss", self.train_loss, on_step=False, on_epoch=True)
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        out = self._step(batch)
        self.val_loss.update(out["loss"].detach(), out["weight_sum"].detach())
        self.val_iou.update(out["logits"].argmax(1), out["label"])

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()
        self.val_iou.reset()

    def on_validation_epoch_end(self) -> None:
        iou = self.val_iou.compute().double().cpu().numpy()
        val_loss = float(self.val_loss.compute()) if self.val_loss.update_called else 0.0
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
        # float64 tensors: Lightning keeps their precision, so the record holds these numbers as computed
        self.log("val_loss", _f64(val_loss))
        self.log("val_miou", _f64(miou), prog_bar=True)
        for name, v in zip(self.class_names, iou, strict=True):
            self.log(f"iou_{name}", _f64(v))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams["learning_rate"])

    # --- checkpoint contents ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ferrolens_model"] = MODEL_KIND
        checkpoint["ferrolens_version"] = __version__
        checkpoint["ferrolens_history"] = [dict(r) for r in self.history]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = [dict(r) for r in checkpoint.get("ferrolens_history", [])]
        # a checkpoint from before the calibrated decision: plain argmax
        checkpoint["state_dict"].setdefault("logit_bias", torch.zeros(self.hparams["n_classes"]))
        self.decision = dict(checkpoint.get("ferrolens_decision") or {"rule": "argmax"})


def _f64(value: float) -> torch.Tensor:
    return torch.tensor(float(value), dtype=torch.float64)


# --- the model's record ------------------------------------------------------------------
def record_columns(names: list[str]) -> RecordColumns:
    """The U-Net's per-epoch record (``metrics.csv``) for classes ``names``: ``epoch, step, train_loss,
    val_loss, val_miou, iou_<class> …`` (held out), then the harness's ``lr, wall_s, cpu_s``.

    ``train_loss``: mean over the epoch's steps of the training loss (augmented patches);
    ``val_loss``: the held-out loss weighted by labelled pixels; ``val_miou``: mean of the held-out
    per-class IoUs ``iou_<class>`` (0 when none is defined)."""
    return RecordColumns(
        train=("train_loss",),
        val=("val_loss", "val_miou", *(f"iou_{n}" for n in names)),
        train_loss="train_loss",
        val_loss="val_loss",
    )


def metrics_table(history: list[dict], names: list[str]) -> pd.DataFrame:
    """The record (:func:`record_columns`) of rows, e.g. ``model.history`` (NaN where an older
    checkpoint's rows lack a column)."""
    return record_columns(names).frame(history)
