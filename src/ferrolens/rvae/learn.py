"""Training the rVAE through the shared harness (:mod:`ferrolens.training`): :func:`train`
(``rvae_train``: ``windows.zarr`` → ``model.ckpt``, ``last.ckpt``, ``metrics.csv``), :func:`fit`
(arrays, for notebooks), :func:`load`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from .. import training
from ..config import Partial
from ..errors import InputError
from ..parallel import plan
from ..sections import RvaeConfig
from ..store import (
    config_digest,
    sha256_file,
)
from . import quality as _quality
from .config import epochs_for, model_hparams, resolve_config
from .data import WindowDataModule, read_windows
from .inputs import check_window
from .model import RVAE
from .net import MODEL_KIND, LossParts

log = logging.getLogger(__name__)

_PARTS = sorted(("loss", *LossParts._fields))  # the negative ELBO and its parts, as RVAE logs them
#: The rVAE's per-epoch record (``metrics.csv``): epoch means of the negative ELBO and its parts on the
#: training and the held-out windows (nats per window, as logged), then the final held-out checks
#: ``val/r2`` and ``val/angle_follow`` (:func:`ferrolens.rvae.quality.assess`, the last epoch's row only).
RECORD = training.RecordColumns(
    train=tuple(f"train/{p}" for p in _PARTS),
    val=(*(f"val/{p}" for p in _PARTS), "val/r2", "val/angle_follow"),
    train_loss="train/loss",
    val_loss="val/loss",
)


# --- rvae_train -----------------------------------------------------------------------------
def train(windows: str, out_dir: str, window: int | None, cfg: Partial[RvaeConfig], seed: int, threads: int) -> None:
    """Train one rVAE on a windows store.

    Writes ``out_dir/model.ckpt`` (weights-only Lightning checkpoint, atomic
    final name), ``out_dir/last.ckpt`` (full state after every epoch, also
    atomic: rerunning a killed job resumes from it when data, hyper-parameters
    and seed are unchanged) and ``out_dir/metrics.csv`` (one row per epoch,
    :data:`RECORD`: ``train/loss``, ``train/reconstruction``, ``train/kl_angle``,
    ``train/kl_shift``, ``train/kl_z`` and the same for ``val/`` (NaN without held-out
    windows), ``val/r2`` and ``val/angle_follow`` on the last row, ``lr``, the epoch's
    ``wall_s`` and ``cpu_s``). Raw CSVLogger files stay in ``out_dir/logs/``.

    Parameters
    ----------
    windows : path of ``windows.zarr``.
    out_dir : output folder (created).
    window : the window size ``n`` expected (checked against the store's), or None: the store's
        (the windows store owns it; the workflow passes None).
    cfg : the ``rvae`` config section.
    seed : seed of weights, split, shuffles and sampling noise (CPU runs are
        bit-reproducible; each epoch's randomness depends only on seed and epoch).
    threads : torch CPU threads, shared by the ``devices`` processes.

    With ``cfg["devices"] > 1`` Lightning trains data-parallel (DDP): it re-runs
    the calling script once per extra device, each process calls this function,
    and only global rank 0 writes the files above (see :mod:`ferrolens.parallel`).
    """
    cfg = resolve_config(cfg)
    arr = read_windows(windows, None if window is None else check_window(window))
    n = check_window(arr.shape[1], where=str(windows))
    _fit(arr, Path(out_dir), n, cfg, int(seed), threads, data_key=sha256_file(windows), where=str(windows))


def fit(
    windows: np.ndarray,
    cfg: Partial[RvaeConfig] = None,
    seed: int = 0,
    threads: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[RVAE, pd.DataFrame]:
    """Train an rVAE on windows given as an array: the notebook entry point.

    Parameters
    ----------
    windows : ``(S, n, n)`` float32 windows (values in 0…1 for ``reconstruction: bce``).
    cfg : the ``rvae:`` config section (missing keys take the defaults).
    seed : seed of weights, split, shuffles and sampling noise.
    threads : torch CPU threads (default: torch's current setting).
    out_dir : where ``last.ckpt``, ``model.ckpt`` and the CSV logs go (default: a
        temporary folder, removed afterwards).
    progress : False switches off the progress bar and Lightning's info lines and tips.

    Returns the trained model (eval mode; ``model.quality`` holds the gate's held-out
    measurements, :func:`ferrolens.rvae.quality.assess`; their verdict under ``cfg``'s
    ``quality`` thresholds is logged) and its metrics, one row per epoch, as :func:`train`
    writes them.
    """
    import hashlib
    import tempfile

    arr = np.asarray(windows, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] == 0:
        raise InputError("windows", f"an array of shape {arr.shape}", "(S, n, n) windows, S ≥ 1")
    if not np.isfinite(arr).all():
        raise InputError("windows", "contain NaN or infinite values", "finite values")
    n = check_window(arr.shape[1])
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="ferrolens-rvae-") as tmp:
            return fit(arr, cfg, seed, threads, tmp, progress)
    cfg = resolve_config(cfg)
    trained = _fit(
        arr,
        Path(out_dir),
        n,
        cfg,
        int(seed),
        threads if threads is not None else torch.get_num_threads(),
        data_key=hashlib.sha256(arr.tobytes()).hexdigest(),
        where="windows (array)",
        progress=progress,
    )
    model = trained.model
    if model.quality:  # in a notebook the verdict is reported here (the workflow: rule rvae_quality)
        for text in _quality.judge(model.quality, cfg["quality"], what=f"rVAE n={n}"):
            log.warning("%s", text)
    return model.eval(), trained.record


def _fit(
    arr: np.ndarray,
    out: Path,
    n: int,
    cfg: RvaeConfig,
    seed: int,
    threads: int,
    data_key: str,
    where: str,
    progress: bool = True,
) -> training.Trained[RVAE]:
    """Train on ``(S, n, n)`` windows into ``out`` with the shared harness (:mod:`ferrolens.training`);
    returns the model (``model.quality``: the gate's measurements) and its per-epoch record with the
    final checks on the last row (rank 0 writes ``model.ckpt`` and ``metrics.csv``)."""
    par = plan(str(cfg["accelerator"]), cfg["devices"], str(cfg["strategy"]), threads, "rvae")
    par.set_threads()  # the rule's threads from here on (fit_threads keeps them while fitting)
    if cfg["reconstruction"] == "bce" and (arr.min() < 0 or arr.max() > 1):
        raise InputError(
            where,
            f"window values span [{arr.min():.4g}, {arr.max():.4g}]",
            "values in [0, 1] for rvae.reconstruction = 'bce'",
        )
    hp = model_hparams(cfg, n)
    epochs = epochs_for(cfg, n)
    # several processes train with a larger total batch: another training (the key of one process is unchanged)
    processes = {"devices": par.devices} if par.devices > 1 else {}
    # a decaying learning rate depends on the total number of steps: a longer run is another training
    schedule = {"epochs": epochs, "max_steps": int(cfg["max_steps"])} if hp["lr_schedule"] != "constant" else {}
    clip = {"gradient_clip": float(cfg["gradient_clip"])} if float(cfg["gradient_clip"]) else {}
    resume_key = config_digest(
        {
            "hparams": hp,
            "batch_size": int(cfg["batch_size"]),
            "val_fraction": float(cfg["val_fraction"]),
            "seed": int(seed),
            "windows_sha256": data_key,
            **processes,
            **schedule,
            **clip,
        }
    )

    training.seed_everything(seed)
    model = RVAE(**hp)
    dm = WindowDataModule(
        arr, batch_size=int(cfg["batch_size"]), val_fraction=float(cfg["val_fraction"]), seed=int(seed)
    )
    n_train = arr.shape[0] - round(float(cfg["val_fraction"]) * arr.shape[0])
    steps_per_epoch = max(1, math.ceil(n_train / par.devices / int(cfg["batch_size"])))
    bar = pl.callbacks.TQDMProgressBar(refresh_rate=max(1, steps_per_epoch // 20))  # ~20 updates per epoch in logs
    trained = training.fit(
        model,
        dm,
        par=par,
        out=out,
        seed=seed,
        salt=7,
        resume_key=resume_key,
        kind=MODEL_KIND,
        max_epochs=epochs,
        record=RECORD,
        callbacks=[bar] if progress else [],
        progress=progress,
        max_steps=int(cfg["max_steps"]),
        gradient_clip_val=float(cfg["gradient_clip"]) or None,
        limit_val_batches=1.0 if float(cfg["val_fraction"]) > 0 else 0,
    )
    metrics = trained.record
    if trained.trainer.is_global_zero:
        model.quality = q = assess_model(model, dm, cfg, int(seed), metrics)
    training.save_model(trained.trainer, out / "model.ckpt")
    if not trained.trainer.is_global_zero:
        return trained
    # measured here, judged where reported (rule rvae_quality): a threshold changes no model
    log.info("rVAE n=%d quality: %s", n, _quality.summary(q))
    if len(metrics):  # the final held-out checks on the last epoch's row
        metrics.loc[metrics.index[-1], "val/r2"] = q["r2"]
        metrics.loc[metrics.index[-1], "val/angle_follow"] = q["angle_follow"]
    training.write_metrics(out / "metrics.csv", metrics)
    return trained


def assess_model(
    model: RVAE, dm: WindowDataModule, cfg: RvaeConfig, seed: int, metrics: pd.DataFrame | None = None
) -> dict[str, Any]:
    """The gate's measurements (:func:`ferrolens.rvae.quality.assess`) of a trained model.

    On the validation windows, or, with ``val_fraction = 0``, on training
    windows (then ``held_out`` is false); ``loss_tail`` from the per-epoch
    ``val/loss`` of ``metrics`` (NaN without).
    """
    held_out = dm.val_set is not None and len(dm.val_set) > 0
    source = dm.val_set if held_out else dm.train_set
    assert source is not None, "assess_model after the data module was set up"
    windows = source.tensors[0].numpy()
    model.eval()
    val = metrics[RECORD.val_loss].dropna().to_numpy() if metrics is not None and RECORD.val_loss in metrics else None
    q = _quality.assess(model, windows, int(cfg["angle_symmetry"]), int(cfg["quality"]["windows"]), seed, val_loss=val)
    q["held_out"] = bool(held_out)
    return q
