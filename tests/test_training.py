"""The shared training harness's per-epoch record (ferrolens.training.EpochRecord) on a toy model:
what the model logged, NaN in an epoch without validation, the learning rate each epoch ended with,
and a resumed training's record equal to an uninterrupted one's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ferrolens import training
from ferrolens.parallel import plan

COLUMNS = training.RecordColumns(
    train=("train/loss",), val=("val/loss", "val/never_logged"), train_loss="train/loss", val_loss="val/loss"
)
STEPS = 4  # batches of 8 in an epoch


class Line(pl.LightningModule):
    """y = a·x + b by SGD; logs the epoch mean of its training loss and its held-out loss."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Linear(1, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), batch_size=len(batch[0]))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        # halves the learning rate after every step: each epoch ends with its own rate
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5), "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint):
        checkpoint["ferrolens_model"] = "toy"


class Data(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        x = torch.linspace(-1, 1, 8 * STEPS + 8)[:, None]
        y = 3 * x + 1 + 0.1 * torch.sin(17 * x)
        self.train_set, self.val_set = TensorDataset(x[:-8], y[:-8]), TensorDataset(x[-8:], y[-8:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=8, sampler=training.EpochSampler(len(self.train_set), seed=0))

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=8)


def _fit(out, epochs: int) -> training.Trained:
    training.seed_everything(0)
    return training.fit(
        Line(),
        Data(),
        par=plan("cpu", 1, "auto", 1, "toy"),
        out=out,
        seed=0,
        salt=3,
        resume_key="toy-1",
        kind="toy",
        max_epochs=epochs,
        record=COLUMNS,
        progress=False,
        check_val_every_n_epoch=2,
    )


def test_record_holds_what_was_logged_and_nan_where_nothing_was(tmp_path):
    trained = _fit(tmp_path / "run", 3)
    rec = trained.record
    assert (
        list(rec.columns)
        == ["epoch", "step", "train/loss", "val/loss", "val/never_logged", "lr", "wall_s", "cpu_s"]
        == COLUMNS.names
    )
    assert rec["epoch"].tolist() == [0, 1, 2] and rec["step"].tolist() == [STEPS, 2 * STEPS, 3 * STEPS]
    # validated after epoch 1 only: epoch 2 has no held-out loss (not epoch 1's, still in the trainer's metrics)
    assert np.isnan(rec["val/loss"][0]) and np.isfinite(rec["val/loss"][1]) and np.isnan(rec["val/loss"][2])
    assert rec["val/never_logged"].isna().all()
    # the numbers Lightning's own CSV logger wrote for the same epochs
    logged = pd.read_csv(tmp_path / "run" / "logs" / "version_0" / "metrics.csv")
    np.testing.assert_array_equal(rec["train/loss"], logged["train/loss"].dropna().to_numpy())
    assert rec["val/loss"][1] == logged["val/loss"].dropna().item()
    # the rate of each epoch's last step: 0.05 halved after each of the steps before it
    np.testing.assert_allclose(rec["lr"], [0.05 * 0.5 ** (s - 1) for s in rec["step"]], rtol=1e-12)
    assert (rec["wall_s"] > 0).all() and (rec["cpu_s"] > 0).all()
    assert rec.dtypes["epoch"] == np.int64 and rec.dtypes["train/loss"] == np.float64


def test_resumed_record_equals_an_uninterrupted_one(tmp_path):
    whole = _fit(tmp_path / "whole", 3).record
    first = _fit(tmp_path / "cut", 1).record  # a run killed after its first epoch leaves last.ckpt
    resumed = _fit(tmp_path / "cut", 3).record
    times = list(training.TIMES)
    pd.testing.assert_frame_equal(resumed.drop(columns=times), whole.drop(columns=times), check_exact=True)
    # the epoch trained before the "kill" keeps the times it was measured with (carried in last.ckpt)
    pd.testing.assert_frame_equal(resumed.iloc[:1], first, check_exact=True)
    # the record is what metrics.csv holds, bit for bit
    training.write_metrics(tmp_path / "metrics.csv", resumed)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), resumed, check_exact=True)


def test_record_columns_are_declared_once():
    with pytest.raises(ValueError, match="losses"):
        training.RecordColumns(train=("train/a",), val=("val/loss",), train_loss="train/loss", val_loss="val/loss")
    empty = COLUMNS.frame()
    assert list(empty.columns) == COLUMNS.names and len(empty) == 0
    assert math.isnan(COLUMNS.frame([{"epoch": 0, "step": 1}])["lr"][0])
