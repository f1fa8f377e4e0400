"""LightningDataModule of rVAE windows (in memory: windows are small)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..errors import InputError
from ..store import WX, WY, open_store
from ..training import EpochSampler


def read_windows(path: str | Path, window: int | None = None) -> np.ndarray:
    """The ``(S, n, n)`` float32 windows of a windows store, checked.

    Raises :class:`InputError` for a store of another kind, a window size
    other than ``window``, no windows, or values that are not finite.
    """
    da = open_store(path, "windows")["windows"]  # kind, variable and dims checked against the declaration
    if window is not None and (da.sizes[WY], da.sizes[WX]) != (window, window):
        raise InputError(
            path, f"windows are {da.sizes[WY]}×{da.sizes[WX]} pixels", f"{window}×{window} windows (window={window})"
        )
    arr = np.asarray(da.values, dtype=np.float32)
    if arr.shape[0] == 0:
        raise InputError(path, "store holds no windows", "at least one window")
    if not np.isfinite(arr).all():
        raise InputError(path, "windows contain NaN or infinite values", "finite values in [0, 1]")
    return arr


class WindowDataModule(pl.LightningDataModule):
    """Windows ``(S, n, n)`` split into train and validation sets (seeded).

    Parameters
    ----------
    windows : path of a windows store, or an ``(S, n, n)`` array.
    batch_size : windows per training step.
    val_fraction : fraction held out for validation (0: none).
    seed : seed of the split and of the training shuffle (:class:`~ferrolens.training.EpochSampler`).
    window : expected window size (checked when reading a store).
    """

    def __init__(
        self,
        windows: str | Path | np.ndarray,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        seed: int = 0,
        window: int | None = None,
    ):
        super().__init__()
        self.source = windows
        self.batch_size, self.val_fraction, self.seed, self.window = batch_size, val_fraction, seed, window
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if isinstance(self.source, (str, Path)):
            arr = read_windows(self.source, self.window)
        else:
            arr = np.asarray(self.source, dtype=np.float32)
        order = np.random.default_rng(self.seed).permutation(arr.shape[0])
        n_val = round(self.val_fraction * arr.shape[0]) if arr.shape[0] > 1 else 0
        x = torch.from_numpy(arr)
        self.train_set = TensorDataset(x[np.sort(order[n_val:])])
        self.val_set = TensorDataset(x[np.sort(order[:n_val])]) if n_val > 0 else None

    def train_dataloader(self) -> DataLoader:
        # each epoch's order depends only on (seed, epoch): a resumed run sees the batches an
        # uninterrupted one would
        train_set = self._train_set()
        sampler = EpochSampler(len(train_set), self.seed)
        return DataLoader(train_set, batch_size=self.batch_size, sampler=sampler, num_workers=0)

    def _train_set(self) -> TensorDataset:
        if self.train_set is None:  # Lightning calls setup() first
            raise RuntimeError("setup() has not run")
        return self.train_set

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=0)
