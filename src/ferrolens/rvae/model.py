"""The rotationally invariant VAE as a LightningModule: :class:`RVAE`, the training system.

The model, its loss (documented in :mod:`ferrolens.rvae.net`) and the notebook API are
:class:`~ferrolens.rvae.net.RVAENet`'s; this adds the optimiser, the schedules, the logged epoch
means and the checkpoint hooks.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Self

import pytorch_lightning as pl
import torch
from torch import Tensor

from .net import MODEL_KIND, LossParts, RVAENet


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Learning rate over its peak at optimiser step ``step`` of ``total``: linear warm-up, cosine decay."""
    w = round(warmup * total)
    if step < w:
        return (step + 1) / w
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


class RVAE(RVAENet, pl.LightningModule):
    """:class:`~ferrolens.rvae.net.RVAENet` as a LightningModule: the same parameters, loss and API, plus
    training. ``RVAE(window, **hparams)`` takes what ``RVAENet`` takes; its checkpoints hold the
    hyper-parameters (``hparams``), the weights and the recorded quality checks, and
    :func:`ferrolens.rvae.load` reads them back as an ``RVAENet``.
    """

    # Lightning's own (what save_hyperparameters fills, checkpoints and loggers hold), not RVAENet's plain dict
    hparams = pl.LightningModule.hparams

    def _record_hparams(self, hparams: dict[str, Any]) -> None:
        self.save_hyperparameters(hparams)

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> Self:
        """The model of a checkpoint (:meth:`pytorch_lightning.LightningModule.load_from_checkpoint`), also of
        one saved before the model took the schema's names (:func:`~ferrolens.rvae.net.legacy_hparams`)."""
        return cls.from_checkpoint(
            checkpoint_path, map_location, True if strict is None else strict, weights_only is not False, **kwargs
        )

    # --- Lightning ---------------------------------------------------------------------
    def kl_weight(self) -> float:
        """β of the KL terms at the current training step (``kl_warmup``; 1 outside training)."""
        warm = float(self.cfg["kl_warmup"])
        trainer = self._trainer
        if warm <= 0 or trainer is None or not self.training:
            return 1.0
        steps = warm * max(1, int(trainer.estimated_stepping_batches))
        return min(1.0, (self.global_step + 1) / steps)

    def _step(self, batch: Any, stage: str) -> LossParts:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        parts = self.loss(x)
        total = parts.total
        n = x.shape[0]
        # sync_dist: under DDP the epoch means are over every process's windows (a no-op in one process)
        self.log(f"{stage}/loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        for name, value in parts._asdict().items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return parts

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        parts = self._step(batch, "train")
        beta = self.kl_weight()
        if beta >= 1.0:
            return parts.total
        # during the KL warm-up the objective is reconstruction + β KL (the logged loss stays the ELBO)
        return parts.reconstruction + beta * (parts.kl_angle + parts.kl_shift + parts.kl_z)

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val").total

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.cfg["lr"])
        if self.cfg["lr_schedule"] == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        factor = partial(lr_factor, total=total, warmup=float(self.cfg["warmup"]))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ferrolens_model"] = MODEL_KIND
        if getattr(self, "quality", None) is not None:
            checkpoint["ferrolens_quality"] = self.quality

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.quality = checkpoint.get("ferrolens_quality")
