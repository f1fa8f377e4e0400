"""The one training harness of both models (the U-Net and the rVAE).

A training job of either model goes the same way, here:

1. :func:`ferrolens.parallel.plan` decides devices, processes and torch threads;
2. ``last.ckpt`` in the output folder is resumed only when its resume key — a
   digest of everything that must be equal (data, hyper-parameters, seed,
   process count, schedule) — equals this training's (:func:`resumable`);
3. :func:`fit` seeds everything, builds the ``pl.Trainer`` (CSV logger in
   ``out/logs``, :class:`EpochSeed`, :class:`EpochRecord`, :class:`LastCheckpoint`),
   fits and returns the trainer and the per-epoch record (:class:`Trained`);
4. :func:`save_model` puts ``model.ckpt`` in place and :func:`write_metrics`
   ``metrics.csv`` (the record), each atomically and by global rank 0 only.

Both models keep the same per-epoch record: the columns ``epoch``, ``step``, the values the
model logs (declared once per model, :class:`RecordColumns`), ``lr``, ``wall_s`` and ``cpu_s``.

Each epoch's randomness (shuffle, patches, dropout, sampling noise) depends
only on ``(seed, epoch)``, so a run resumed from ``last.ckpt`` gives the same
weights as one never interrupted (bit-identical on CPU; tests/test_segment.py
and tests/test_rvae_train.py kill and resume); the record travels in ``last.ckpt``, so a
resumed run's record equals an uninterrupted one's (but for the epochs' times).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import Sampler

from .parallel import Plan, quiet_lightning, save_checkpoint_atomic
from .store import write_file_atomic

log = logging.getLogger(__name__)

#: Key under which a checkpoint records the resume key of the training that wrote it.
RESUME_KEY = "ferrolens_resume_key"
#: Folder of the CSVLogger files inside a training's output folder.
LOG_DIR = "logs"
#: The record's columns after the model's own: learning rate of the epoch's last optimizer step, and the
#: epoch's wall-clock and CPU seconds (its validation included; CPU time of the process, all threads).
LR, TIMES = "lr", ("wall_s", "cpu_s")


@dataclass(frozen=True)
class RecordColumns:
    """The per-epoch record of a model (``metrics.csv``, one row per epoch), declared once per model.

    Columns, in order: ``epoch`` (0-based), ``step`` (optimizer steps taken by the end of the
    epoch), :attr:`train`, :attr:`val`, ``lr`` and the times :data:`TIMES` (filled by
    :class:`EpochRecord`). A column of :attr:`train` or :attr:`val` is the name the model logs
    (``self.log``) its epoch value under.

    train : values logged while training, read when the epoch ends (e.g. an epoch-mean loss).
    val : values logged while validating, read when the validation ends; NaN in an epoch without
        validation. A name nobody logs stays NaN for the caller to fill (the rVAE's final checks).
    train_loss, val_loss : which of them are the training and the held-out loss.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    train_loss: str
    val_loss: str

    def __post_init__(self) -> None:
        if self.train_loss not in self.train or self.val_loss not in self.val:
            raise ValueError(f"the losses {self.train_loss!r}, {self.val_loss!r} must be columns of train and val")

    @property
    def names(self) -> list[str]:
        """Every column of the record, in order."""
        return ["epoch", "step", *self.train, *self.val, LR, *TIMES]

    def frame(self, rows: Sequence[dict[str, float]] = ()) -> pd.DataFrame:
        """The record as a table: one row per epoch, exactly :attr:`names` (NaN where a row has no value)."""
        df = pd.DataFrame([{c: r.get(c, math.nan) for c in self.names} for r in rows], columns=self.names)
        return df.astype({c: "int64" if c in ("epoch", "step") else "float64" for c in self.names})


def _number(value: Any) -> float:
    """A logged value as a Python float (a tensor's own precision: float64 stays float64); NaN when absent."""
    if value is None:
        return math.nan
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


class EpochRecord(pl.Callback):
    """One row per training epoch (:class:`RecordColumns`), in :attr:`rows`; kept in every full checkpoint.

    The values are what the model logged: :attr:`RecordColumns.val` as they stand when the epoch's
    validation ends (Lightning validates before the epoch ends), :attr:`RecordColumns.train` when
    the epoch ends; nothing is recomputed, so the record holds the numbers the model computed.
    ``last.ckpt`` carries the rows (``state_dict``): a resumed training keeps the earlier epochs'.
    Listed before :class:`LastCheckpoint`, so the epoch's row is in the checkpoint written at its end.
    """

    def __init__(self, columns: RecordColumns) -> None:
        self.columns = columns
        self.rows: list[dict[str, float]] = []
        self._epoch, self._lr, self._t0 = -1, math.nan, (0.0, 0.0)
        self._val: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]

    def _start(self, epoch: int) -> None:
        self._epoch, self._val, self._lr = epoch, {}, math.nan
        self._t0 = (time.perf_counter(), time.process_time())

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer.current_epoch)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._epoch != trainer.current_epoch:  # right after a resume the epoch-start hook may be skipped
            self._start(trainer.current_epoch)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self._lr = float(optimizer.param_groups[0]["lr"])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        self._val = {k: _number(logged[k]) for k in self.columns.val if k in logged}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch != trainer.current_epoch:  # no batch of this epoch ran in this process
            return
        logged = trainer.callback_metrics
        wall, cpu = time.perf_counter() - self._t0[0], time.process_time() - self._t0[1]
        row = {
            "epoch": int(trainer.current_epoch),
            "step": int(trainer.global_step),
            **{k: _number(logged.get(k)) for k in self.columns.train},
            **{k: self._val.get(k, math.nan) for k in self.columns.val},
            LR: self._lr,
            TIMES[0]: wall,
            TIMES[1]: cpu,
        }
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]

    def frame(self) -> pd.DataFrame:
        """The record so far (:meth:`RecordColumns.frame`)."""
        return self.columns.frame(self.rows)


M = TypeVar("M", bound=pl.LightningModule)


@dataclass
class Trained(Generic[M]):
    """A finished training, as :func:`fit` and each model's training return it.

    model : the trained model (:func:`fit`: as the trainer left it; a model's training may return
        another, e.g. the U-Net's best held-out checkpoint, in eval mode).
    record : the per-epoch record, :meth:`RecordColumns.frame` (every process holds it; rank 0 writes it).
    trainer : the fitted trainer (``is_global_zero``, ``strategy``).
    data : the data module it was fitted on (the held-out data for checks after training).
    """

    model: M
    record: pd.DataFrame
    trainer: pl.Trainer
    data: pl.LightningDataModule


class EpochSampler(Sampler[int]):
    """Training indices of one epoch that depend only on ``(seed, epoch)``; Lightning calls ``set_epoch``.

    ``seed`` given: a permutation of ``0 … size − 1`` drawn from ``(seed, epoch)`` (rVAE windows).
    ``seed=None``: ``epoch·size … epoch·size + size − 1``, indices unique over epochs, for a
    dataset that draws each item from its index (the U-Net's random patches).
    """

    def __init__(self, size: int, seed: int | None = None) -> None:
        self.size, self.seed, self.epoch = int(size), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if self.seed is None:
            return iter(range(self.epoch * self.size, (self.epoch + 1) * self.size))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist())

    def __len__(self) -> int:
        return self.size


class EpochSeed(pl.Callback):
    """Reseed torch at the first batch of every epoch from ``(seed, epoch, salt[, rank])`` only.

    ``on_train_epoch_start`` is skipped right after a resume, the first batch is not. Under
    DDP each process draws its own noise; a single process draws the same as ever. ``salt``
    keeps the models' streams apart (7: rVAE, 11: U-Net).
    """

    def __init__(self, seed: int, salt: int) -> None:
        self.seed, self.salt = int(seed), int(salt)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 0:
            rank = [trainer.global_rank] if trainer.world_size > 1 else []
            seed = np.random.default_rng([self.seed, trainer.current_epoch, self.salt, *rank]).integers(2**62)
            torch.manual_seed(int(seed))


class LastCheckpoint(pl.Callback):
    """``last.ckpt`` (full state, atomic, renamed by rank 0) after every epoch; every checkpoint
    written during the fit records the resume key (:data:`RESUME_KEY`)."""

    def __init__(self, path: Path, resume_key: str) -> None:
        self.path, self.resume_key = Path(path), resume_key

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        save_checkpoint_atomic(trainer, self.path, weights_only=False)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[RESUME_KEY] = self.resume_key


def resumable(last: Path, resume_key: str, kind: str, stale: Sequence[str] = ()) -> bool:
    """Whether ``last`` is a checkpoint of this very training: model ``kind`` and ``resume_key``.

    A missing file is simply not resumable. An unreadable one (cut short by a kill) or one
    of another training is said in a warning; then ``last`` and the files named in ``stale``
    (e.g. ``best.ckpt``) beside it are removed, so nothing of the other training is kept.
    """
    last = Path(last)
    if not last.exists():
        return False
    try:
        ck = torch.load(last, map_location="cpu", weights_only=True)
        same = ck.get("ferrolens_model") == kind and ck.get(RESUME_KEY) == resume_key
    except Exception as exc:  # a checkpoint cut short by a kill, or from an older version
        warnings.warn(f"{last}: cannot be read ({type(exc).__name__}); training from scratch", stacklevel=3)
        same = False
    else:
        if not same:
            warnings.warn(
                f"{last}: made with other data, hyper-parameters or seed; training from scratch", stacklevel=3
            )
    if not same:
        for name in (last.name, *stale):
            (last.parent / name).unlink(missing_ok=True)
    return same


class _no_fill:
    """Within: torch does not fill new tensors with NaN under deterministic mode (a bug trap
    that cost ~5 % of a CPU training step). Results are unchanged: no kernel reads memory it
    has not written (the resume tests check bit-identical weights)."""

    def __enter__(self):
        self.was = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = False

    def __exit__(self, *exc):
        torch.utils.deterministic.fill_uninitialized_memory = self.was


#: glibc ``mallopt`` parameters (``malloc.h``) and the values :class:`_reuse_freed_memory` sets and restores.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP = {_M_MMAP_THRESHOLD: 1 << 30, _M_TRIM_THRESHOLD: 1 << 30}
_AFTER = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20}


class _reuse_freed_memory:
    """Within: glibc's ``malloc`` keeps the large blocks a training step frees and hands them to the
    next step, instead of returning each to the kernel and taking fresh zeroed pages back.

    A U-Net step on 8 × 128² patches allocates and frees ~90 MB of activations and gradients in
    blocks of 2–17 MB. Under glibc's default (mmap threshold adjusted up to 32 MiB, heap trimmed
    above twice that) they came back as 17–23 thousand page faults a step: on one thread
    (alternating the two settings step by step in one process) 75 ms of kernel time, user + kernel
    602 ms a step against 551 ms with both thresholds at 1 GiB (9 ms kernel); the demo's c3
    training job 3.56 M faults and 11.7 s of kernel time against 0.24 M and 2.3 s, peak RSS 739 →
    778 MB. Results are unchanged (only where memory comes from). Afterwards the thresholds are
    set to glibc's dynamic ceiling (32 MiB mmap, 64 MiB trim; glibc cannot return to its dynamic
    rule) and what the training kept is given back (``malloc_trim``). Nothing happens where the C
    library has no ``mallopt`` (macOS, Windows)."""

    def __enter__(self):
        import ctypes

        try:
            self.libc = ctypes.CDLL(None)
            self.libc.mallopt, self.libc.malloc_trim  # noqa: B018 (glibc only)
        except (OSError, AttributeError, TypeError):
            self.libc = None
        self._set(_KEEP)

    def __exit__(self, *exc):
        self._set(_AFTER)
        if self.libc is not None:
            self.libc.malloc_trim(0)

    def _set(self, values: dict[int, int]) -> None:
        if self.libc is not None:
            for param, value in values.items():
                self.libc.mallopt(param, value)


def fit(
    model: M,
    datamodule: pl.LightningDataModule,
    *,
    par: Plan,
    out: Path,
    seed: int,
    salt: int,
    resume_key: str,
    kind: str,
    max_epochs: int,
    record: RecordColumns,
    callbacks: Sequence[pl.Callback] = (),
    stale: Sequence[str] = (),
    progress: bool = True,
    **trainer_kwargs: Any,
) -> Trained[M]:
    """Train ``model`` on ``datamodule`` into the folder ``out``; returns it with the fitted trainer and
    the per-epoch record (every epoch, those of a resumed ``last.ckpt`` included).

    Parameters
    ----------
    par : devices, strategy and threads (:func:`ferrolens.parallel.plan`; its threads apply while
        fitting, :meth:`~ferrolens.parallel.Plan.fit_threads`).
    out : output folder (created): ``last.ckpt``, the CSV logs in ``out/logs``.
    seed : seeds the data order and the per-epoch noise (:class:`EpochSeed`); the caller seeds
        the weights with :func:`seed_everything` before it makes ``model``.
    salt : :class:`EpochSeed`'s stream of this model.
    resume_key : digest of what must be equal to resume ``last.ckpt`` (:func:`resumable`).
    kind : the model kind its checkpoints record (``ferrolens_model``).
    max_epochs : epochs to train.
    record : the model's record columns (:class:`RecordColumns`, :class:`EpochRecord`).
    callbacks : the model's own callbacks (the U-Net's best-model checkpoint, a progress bar).
    stale : files beside ``last.ckpt`` to remove with it when it is not resumed.
    progress : False: no progress bar and none of Lightning's info lines.
    trainer_kwargs : further ``pl.Trainer`` arguments (``max_steps``, ``max_time``,
        ``gradient_clip_val``, ``limit_val_batches``, ``log_every_n_steps``, ``deterministic``).

    CPU kernels are deterministic (``deterministic=True`` there); some CUDA ones (weighted NLL)
    are not, so a GPU run only warns, unless ``deterministic`` is given.
    """
    out = Path(out)
    if not progress:
        quiet_lightning()
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.ckpt"
    ckpt_path = str(last) if resumable(last, resume_key, kind, stale) else None
    on_cpu = par.accelerator == "cpu" or (par.accelerator == "auto" and not torch.cuda.is_available())
    kwargs = {"deterministic": True if on_cpu else "warn", "log_every_n_steps": 1, **trainer_kwargs}
    recorder = EpochRecord(record)
    trainer = pl.Trainer(
        max_epochs=int(max_epochs),
        **par.trainer_kwargs(),
        logger=pl.loggers.CSVLogger(out, name=LOG_DIR),
        callbacks=[EpochSeed(seed, salt), recorder, LastCheckpoint(last, resume_key), *callbacks],
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=out,
        **kwargs,
    )
    with warnings.catch_warnings(), par.fit_threads(), _no_fill(), _reuse_freed_memory():
        # the folder is ours: it holds the CSV logs (and last.ckpt when resuming) by design
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return Trained(model, recorder.frame(), trainer, datamodule)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (and dataloader workers) before a model is made."""
    pl.seed_everything(int(seed), workers=True, verbose=False)


def save_model(trainer: pl.Trainer, path: Path, source: Path | None = None) -> None:
    """``model.ckpt`` atomically: weights of the trainer's model, or a copy of ``source`` (a
    checkpoint the fit kept, e.g. the best held-out one). Every process must call it."""
    import shutil

    if source is None:
        save_checkpoint_atomic(trainer, path, weights_only=True)
    elif trainer.is_global_zero:
        write_file_atomic(path, lambda tmp: shutil.copyfile(source, tmp))


def write_metrics(path: Path, metrics: pd.DataFrame) -> None:
    """``metrics.csv`` (one row per epoch) written atomically."""
    write_file_atomic(path, lambda tmp: metrics.to_csv(tmp, index=False))
