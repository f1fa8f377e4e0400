"""Entry functions of the rVAE stage (one per Snakemake rule) and ``load``.

* :func:`make_windows` — ``rvae_windows``: images → ``windows.zarr``
* :func:`train` — ``rvae_train``: ``windows.zarr`` → ``model.ckpt``, ``last.ckpt``, ``metrics.csv``
* :func:`encode` — ``rvae_encode``: images, windows, model → ``latents.zarr``
* :func:`load` — a trained model for a notebook

``cfg`` is the ``rvae:`` config section (``workflow/schemas/fragments/rvae.yaml``);
keys left out take the defaults in :data:`DEFAULTS` (the same as the schema's).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import xarray as xr

from ..config import section as config_section
from ..errors import InputError
from .. import training
from ..parallel import device_for, plan, set_threads
from ..store import (
    BIAS, FRAME, LATENT, SAMPLE, UNITS, WX, WY, X, Y,
    check_checkpoint, config_digest, open_store, provenance, sha256_file, write_store, write_store_streamed,
)
from .data import WindowDataModule, read_windows
from . import quality as _quality
from .maps import iter_latent_maps
from .model import MODEL_KIND, RVAE
from .windows import sample_windows

log = logging.getLogger(__name__)

#: Defaults of the ``rvae:`` config section, read from its schema fragment (the one source of them).
DEFAULTS: dict[str, Any] = config_section("rvae")

CENTRE = ("centre pixel: a window at (y, x) covers rows y - n//2 ... y - n//2 + n - 1 "
          "and columns x - n//2 ... x - n//2 + n - 1 (0-based, row 0 at the top)")
PADDING = ("reflect (numpy.pad mode='reflect', mirror without repeating the edge pixel): "
           "n//2 pixels before and n - 1 - n//2 after on each axis, so every pixel has a centred window")
ANGLE_DOC = ("angle: radians, rotation of the decoded content counter-clockwise as displayed (row 0 at top); "
             "the decoder samples its template at R(angle)·p + (dx, dy) for pixel coordinates p in [-1, 1]^2. "
             "Line-like content (walls) is pi-periodic: compare angles modulo pi, circularly. "
             "dx, dy: grid units, 1 = (n - 1)/2 pixels; the content appears moved by -(dx, dy). z: dimensionless.")


def latent_units(latent_dim: int) -> list[str]:
    """Units along the latent axis: ``rad, grid, grid, 1, 1 …``."""
    return ["rad", "grid", "grid"] + ["1"] * latent_dim


def config(cfg: dict | None) -> dict:
    """``cfg`` with defaults filled and checked against the schema; a bad key is an :class:`InputError`."""
    return config_section("rvae", cfg)


def model_hparams(cfg: dict, window: int) -> dict[str, Any]:
    """Typed hyper-parameters of :class:`RVAE` from a filled config section.

    ``architecture: paper`` is the paper's model exactly (128-filter encoder,
    plain-coordinate decoder of 128 units); the equivariant model takes ``filters``,
    ``rotations``, ``angle_symmetry``, ``decoder``, ``decoder_units`` and the Fourier
    features from the config.
    """
    paper = cfg["architecture"] == "paper"
    return {
        "window": int(window),
        "architecture": str(cfg["architecture"]),
        "filters": 128 if paper else int(cfg["filters"]),
        "rotations": int(cfg["rotations"]),
        "rotation_filters": int(cfg["rotation_filters"]),
        "symmetry": int(cfg["angle_symmetry"]),
        "fourier": 0 if paper else int(cfg["fourier_features"]),
        "decoder": "spatial" if paper else str(cfg["decoder"]),
        "units": 128 if paper else int(cfg["decoder_units"]),
        "fourier_scale": float(cfg["fourier_scale"]),
        "lr_schedule": str(cfg["lr_schedule"]),
        "warmup": float(cfg["warmup"]),
        "pixel_fraction": min(1.0, int(cfg["decoder_pixels"]) / window**2) if int(cfg["decoder_pixels"]) > 0 else 1.0,
        "latent_dim": int(cfg["latent_dim"]),
        "rotation_prior_sd": float(cfg["rotation_prior_sd"]),
        "angle_mean_penalty": bool(cfg["angle_mean_penalty"]),
        "translation": bool(cfg["translation"]),
        "translation_prior_sd": float(cfg["translation_prior_sd"]),
        "reconstruction": str(cfg["reconstruction"]),
        "noise_sd": float(cfg["noise_sd"]),
        "lr": float(cfg["lr"]),
    }


# --- checks -------------------------------------------------------------------------
def _where(images: xr.DataArray) -> str:
    src = images.attrs.get("source") or images.encoding.get("source")
    return str(src) if src else f"images ({images.name or 'unnamed'})"


def check_window(window: Any, height: int | None = None, width: int | None = None, where: str = "window") -> int:
    """A valid window size ``n`` (>= 5, no larger than the frame) or :class:`InputError`."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise InputError(where, f"window size {window!r}", "an integer number of pixels")
    n = int(window)
    if n < 5:
        raise InputError(where, f"window size {n}",
                         "at least 5 pixels (the encoder's two valid 3×3 convolutions take 4 away)")
    if height is not None and width is not None and n > min(height, width):
        raise InputError(where, f"window size {n} is larger than the {height}×{width} frames",
                         "a window no larger than the frame")
    return n


def check_images(images: Any, window: int | None = None, batch: int = 16) -> None:
    """Check the rVAE input: DataArray ``(frame, y, x)``, finite values in ``[0, 1]``.

    Streams the frames in batches (bounded memory) so a bad movie is reported
    before any training or encoding starts.
    """
    if not isinstance(images, xr.DataArray):
        raise InputError("images", f"a {type(images).__name__}", "an xarray.DataArray images(frame, y, x)")
    where = _where(images)
    if images.dims != (FRAME, Y, X):
        raise InputError(where, f"images have dims {images.dims}", f"dims ({FRAME}, {Y}, {X})")
    n_frames, height, width = (int(s) for s in images.shape)
    if n_frames == 0 or height == 0 or width == 0:
        raise InputError(where, f"images have shape {images.shape}", "at least one non-empty frame")
    if window is not None:
        check_window(window, height, width)
    tol = 1e-3
    for a in range(0, n_frames, batch):
        block = np.asarray(images[a : a + batch].values, dtype=np.float32)
        if not np.isfinite(block).all():
            raise InputError(where, f"frames {a}..{a + len(block) - 1} contain NaN or infinite values", "finite values in [0, 1]")
        lo, hi = float(block.min()), float(block.max())
        if lo < -tol or hi > 1 + tol:
            raise InputError(where, f"values span [{lo:.4g}, {hi:.4g}] in frames {a}..{a + len(block) - 1}",
                             "values in [0, 1] (wall probability, class fraction or a normalised frame)")


def _frame_values(images: xr.DataArray) -> np.ndarray:
    return np.asarray(images[FRAME].values) if FRAME in images.coords else np.arange(images.sizes[FRAME])


def _bias(images: xr.DataArray) -> np.ndarray:
    if BIAS in images.coords and images[BIAS].dims == (FRAME,):
        return np.asarray(images[BIAS].values, dtype=np.float64)
    return np.full(images.sizes[FRAME], np.nan)


def _source_attrs(images: xr.DataArray) -> dict[str, Any]:
    keep = {k: v for k, v in images.attrs.items() if k.startswith("source") and isinstance(v, (str, int, float))}
    return {"input": str(images.name or "images"), **keep}


# --- rvae_windows ----------------------------------------------------------------------
def make_windows(images: xr.DataArray, out: str, window: int, cfg: dict, seed: int) -> None:
    """Cut training windows out of ``images`` → ``out`` (a ``windows`` store).

    Parameters
    ----------
    images : ``images(frame, y, x)`` float32 in ``[0, 1]`` with a ``bias`` (V)
        coordinate along ``frame``.
    out : path of ``windows.zarr``.
    window : window size ``n`` (pixels).
    cfg : the ``rvae`` config section (``sampling``, ``count``, ``stride``, ``min_std``).
    seed : seed of the random positions.

    The store holds ``windows(sample, wy, wx)`` float32 and, along ``sample``,
    ``sample_frame`` (the frame coordinate), ``sample_y``, ``sample_x`` (the
    window's **centre** pixel, see attrs ``origin``) and ``sample_bias`` (V).
    """
    cfg = config(cfg)
    check_images(images, window)
    n = int(window)
    s = sample_windows(images, n, mode=cfg["sampling"], count=int(cfg["count"]), stride=int(cfg["stride"]),
                       min_std=float(cfg["min_std"]), seed=int(seed))
    frames = _frame_values(images)
    ds = xr.Dataset(
        {"windows": ((SAMPLE, WY, WX), s.windows,
                     {"long_name": f"{n}×{n} rVAE input windows", "units": str(images.attrs.get("units", "1"))})},
        coords={
            SAMPLE: np.arange(len(s.frame)),
            "sample_frame": (SAMPLE, frames[s.frame], {"long_name": "frame of the window"}),
            "sample_y": (SAMPLE, s.y, {"long_name": "window centre row", "units": "px"}),
            "sample_x": (SAMPLE, s.x, {"long_name": "window centre column", "units": "px"}),
            "sample_bias": (SAMPLE, _bias(images)[s.frame], {"long_name": "applied bias", "units": UNITS[BIAS]}),
        },
        attrs=provenance("windows", cfg, window=n, seed=int(seed), sampling=cfg["sampling"],
                         count_requested=int(cfg["count"]) if cfg["sampling"] == "random" else None,
                         stride=int(cfg["stride"]) if cfg["sampling"] == "dense" else None,
                         min_std=float(cfg["min_std"]), origin=CENTRE, **_source_attrs(images)),
    )
    chunk = max(1, min(len(s.frame), 4096))
    write_store(ds, out, encoding={"windows": {"chunks": (chunk, n, n)}})
    log.info("wrote %d windows of %d×%d to %s", len(s.frame), n, n, out)


# --- rvae_train -----------------------------------------------------------------------------
def train(windows: str, out_dir: str, window: int, cfg: dict, seed: int, threads: int) -> None:
    """Train one rVAE on a windows store.

    Writes ``out_dir/model.ckpt`` (weights-only Lightning checkpoint, atomic
    final name), ``out_dir/last.ckpt`` (full state after every epoch, also
    atomic: rerunning a killed job resumes from it when data, hyper-parameters
    and seed are unchanged) and ``out_dir/metrics.csv`` (one row per epoch:
    ``train/loss``, ``train/reconstruction``, ``train/kl_angle``,
    ``train/kl_shift``, ``train/kl_z`` and the same for ``val/``). Raw
    CSVLogger files stay in ``out_dir/logs/``.

    Parameters
    ----------
    windows : path of ``windows.zarr``.
    out_dir : output folder (created).
    window : window size ``n``; must match the store.
    cfg : the ``rvae`` config section.
    seed : seed of weights, split, shuffles and sampling noise (CPU runs are
        bit-reproducible; each epoch's randomness depends only on seed and epoch).
    threads : torch CPU threads, shared by the ``devices`` processes.

    With ``cfg["devices"] > 1`` Lightning trains data-parallel (DDP): it re-runs
    the calling script once per extra device, each process calls this function,
    and only global rank 0 writes the files above (see :mod:`ferrolens.parallel`).
    """
    cfg = config(cfg)
    n = check_window(window)
    arr = read_windows(windows, n)
    _fit(arr, Path(out_dir), n, cfg, int(seed), threads, data_key=sha256_file(windows), where=str(windows))


def fit(windows: np.ndarray, cfg: dict | None = None, seed: int = 0, threads: int | None = None,
        out_dir: str | Path | None = None, progress: bool = True) -> tuple[RVAE, pd.DataFrame]:
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

    Returns the trained model (eval mode; ``model.quality`` holds its held-out R² and
    rotation check) and its metrics, one row per epoch, as :func:`train` writes them.
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
    model, metrics = _fit(arr, Path(out_dir), n, config(cfg), int(seed),
                          threads if threads is not None else torch.get_num_threads(),
                          data_key=hashlib.sha256(arr.tobytes()).hexdigest(), where="windows (array)",
                          progress=progress)
    return model.eval(), metrics


def _fit(arr: np.ndarray, out: Path, n: int, cfg: dict, seed: int, threads: int, data_key: str, where: str,
         progress: bool = True) -> tuple[RVAE, pd.DataFrame]:
    """Train on ``(S, n, n)`` windows into ``out`` with the shared harness (:mod:`ferrolens.training`);
    returns the model and its metrics (rank 0 writes)."""
    par = plan(str(cfg["accelerator"]), cfg["devices"], str(cfg["strategy"]), threads, "rvae")
    if cfg["reconstruction"] == "bce" and (arr.min() < 0 or arr.max() > 1):
        raise InputError(where, f"window values span [{arr.min():.4g}, {arr.max():.4g}]",
                         "values in [0, 1] for rvae.reconstruction = 'bce'")
    hp = model_hparams(cfg, n)
    epochs = epochs_for(cfg, n)
    # several processes train with a larger total batch: another training (the key of one process is unchanged)
    processes = {"devices": par.devices} if par.devices > 1 else {}
    # a decaying learning rate depends on the total number of steps: a longer run is another training
    schedule = {"epochs": epochs, "max_steps": int(cfg["max_steps"])} if hp["lr_schedule"] != "constant" else {}
    resume_key = config_digest({"hparams": hp, "batch_size": int(cfg["batch_size"]), "val_fraction": float(cfg["val_fraction"]),
                                "seed": int(seed), "windows_sha256": data_key, **processes, **schedule,
                                **({"gradient_clip": float(cfg["gradient_clip"])} if float(cfg["gradient_clip"]) else {})})

    training.seed_everything(seed)
    model = RVAE(**hp)
    dm = WindowDataModule(arr, batch_size=int(cfg["batch_size"]), val_fraction=float(cfg["val_fraction"]), seed=int(seed))
    n_train = arr.shape[0] - int(round(float(cfg["val_fraction"]) * arr.shape[0]))
    steps_per_epoch = max(1, math.ceil(n_train / par.devices / int(cfg["batch_size"])))
    bar = pl.callbacks.TQDMProgressBar(refresh_rate=max(1, steps_per_epoch // 20))  # ~20 updates per epoch in logs
    trainer = training.fit(
        model, dm, par=par, out=out, seed=seed, salt=7, resume_key=resume_key, kind=MODEL_KIND, max_epochs=epochs,
        callbacks=[bar] if progress else [], progress=progress,
        max_steps=int(cfg["max_steps"]), gradient_clip_val=float(cfg["gradient_clip"]) or None,
        limit_val_batches=1.0 if float(cfg["val_fraction"]) > 0 else 0,
    )
    if trainer.is_global_zero:
        model.quality = assess_model(model, dm, cfg, int(seed))
    training.save_model(trainer, out / "model.ckpt")
    if not trainer.is_global_zero:
        return model, pd.DataFrame()
    _quality.warn(log, model.quality, *thresholds(cfg), what=f"rVAE n={n}")
    metrics = training.merge_csv_logs(out)
    if len(metrics):  # the final held-out checks on the last epoch's row
        metrics.loc[metrics.index[-1], "val/r2"] = model.quality["r2"]
        metrics.loc[metrics.index[-1], "val/angle_follow"] = model.quality["angle_follow"]
    training.write_metrics(out / "metrics.csv", metrics)
    return model, metrics


def epochs_for(cfg: dict, window: int) -> int:
    """Training epochs of window size ``window``: ``epochs``, or its entry for ``window`` when a mapping."""
    value = cfg["epochs"]
    if isinstance(value, dict):
        if int(window) not in value and str(window) not in value:
            raise InputError("rvae.epochs", f"gives epochs for window sizes {sorted(value)} but not for {window}",
                             "one number for every window size, or an entry for each")
        value = value.get(int(window), value.get(str(window)))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError("rvae.epochs", f"value {value!r} for window {window}", "an integer >= 1")
    return int(value)


def thresholds(cfg: dict) -> tuple[float, float]:
    """``(min_r2, min_angle_follow)`` of a filled config section."""
    q = cfg["quality"]
    return float(q["min_r2"]), float(q["min_angle_follow"])


def assess_model(model: RVAE, dm: WindowDataModule, cfg: dict, seed: int) -> dict[str, Any]:
    """Held-out R² and the rotation check (:mod:`ferrolens.rvae.quality`) of a trained model.

    On the validation windows, or, with ``val_fraction = 0``, on training
    windows (then ``held_out`` is false).
    """
    held_out = dm.val_set is not None and len(dm.val_set) > 0
    windows = (dm.val_set if held_out else dm.train_set).tensors[0].numpy()
    model.eval()
    q = _quality.assess(model, windows, int(cfg["angle_symmetry"]), int(cfg["quality"]["windows"]), seed)
    q["held_out"] = bool(held_out)
    q["min_r2"], q["min_angle_follow"] = thresholds(cfg)
    return q


# --- load ------------------------------------------------------------------------------------
def load(checkpoint: str | Path) -> RVAE:
    """The trained :class:`RVAE` of a checkpoint (weights only, on CPU, eval mode).

    Raises :class:`InputError` naming the file when it is missing, unreadable
    or holds another kind of model.
    """
    path = check_checkpoint(checkpoint, MODEL_KIND, "an rVAE checkpoint written by ferrolens.rvae.train (model.ckpt)")
    model = RVAE.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return model.eval()


# --- rvae_encode --------------------------------------------------------------------------------
def encode(images: xr.DataArray, windows: str, checkpoint: str, out: str, cfg: dict, threads: int) -> None:
    """Encode the sampled windows and every pixel of every frame → ``latents.zarr``.

    The store holds (``L`` = latent_dim, labels ``angle, dx, dy, z1 … zL``,
    ``latent_units`` ``rad, grid, grid, 1 …``):

    * ``code_mean(sample, latent)``, ``code_logsd(sample, latent)``: the windows
      of ``windows`` with ``sample_frame``, ``sample_y``, ``sample_x``,
      ``sample_bias`` as in the windows store;
    * ``mean(frame, y, x, latent)`` (and ``logsd`` when ``cfg["maps_logsd"]``):
      the code of the window centred on each pixel, reflect padding (attrs
      ``padding``, ``origin``), computed fully convolutionally and streamed to
      disk in frame batches (memory bounded by ``cfg["maps_chunk_mb"]``), with
      a progress bar over frames; ``bias`` (and ``time``) along ``frame``.

    Log-sd of dx, dy is NaN and their mean 0 for a model without translation.
    The store is written beside ``out`` and renamed into place when complete.
    """
    cfg = config(cfg)
    set_threads(threads)
    model = load(checkpoint)
    n = model.window
    check_images(images, n)
    wds = open_store(windows, "windows", ["windows"])
    if (wds.sizes.get(WY), wds.sizes.get(WX)) != (n, n):
        raise InputError(windows, f"windows are {wds.sizes.get(WY)}×{wds.sizes.get(WX)} pixels",
                         f"{n}×{n} windows to match the model {checkpoint}")
    device = device_for(str(cfg["accelerator"]), "config rvae.accelerator")
    model.to(device)
    labels = model.labels
    units = latent_units(int(model.hparams.latent_dim))
    batch = max(1, int(cfg["encode_batch"]))
    quality = model.quality or {}
    warnings_ = _quality.warn(log, quality, *thresholds(cfg), what=f"rVAE n={n}") if quality else [
        f"rVAE n={n}: the checkpoint records no quality checks (trained by an older ferrolens); retrain to check it"]
    if not quality:
        log.warning("%s", warnings_[0])

    # (a) sampled windows' codes
    s_total = wds.sizes[SAMPLE]
    code_mean = np.empty((s_total, len(labels)), np.float32)
    code_logsd = np.empty_like(code_mean)
    for a in range(0, s_total, batch):
        code_mean[a : a + batch], code_logsd[a : a + batch] = model.encode(np.asarray(wds["windows"][a : a + batch].values))

    n_frames, height, width = (int(v) for v in images.shape)
    frames = _frame_values(images)
    along_frame = {k: (FRAME, np.asarray(images[k].values), dict(images[k].attrs))
                   for k, c in images.coords.items() if k != FRAME and c.dims == (FRAME,)}
    along_frame.setdefault(BIAS, (FRAME, _bias(images), {}))
    along_frame[BIAS][2].update(units=UNITS[BIAS], long_name="applied bias")
    latent_attrs = {"long_name": "latent variable", "doc": ANGLE_DOC}
    attrs = provenance(
        "latents", cfg, window=n, checkpoint=str(checkpoint), checkpoint_sha256=sha256_file(checkpoint),
        windows=str(windows), padding=PADDING, origin=CENTRE, latent_doc=ANGLE_DOC,
        hyper_parameters=json.dumps(dict(model.hparams), sort_keys=True), **_source_attrs(images),
        quality=json.dumps(quality, sort_keys=True), quality_r2=float(quality.get("r2", np.nan)),
        quality_angle_follow=float(quality.get("angle_follow", np.nan)),
        quality_warning=" | ".join(warnings_), angle_period=2 * math.pi / int(model.hparams.get("symmetry", 2)),
    )
    head = xr.Dataset(
        {
            "code_mean": ((SAMPLE, LATENT), code_mean, {"long_name": "posterior mean of the sampled windows"}),
            "code_logsd": ((SAMPLE, LATENT), code_logsd, {"long_name": "posterior log standard deviation of the sampled windows"}),
        },
        coords={
            SAMPLE: wds[SAMPLE].values,
            **{k: (SAMPLE, wds[k].values, dict(wds[k].attrs)) for k in ("sample_frame", "sample_y", "sample_x", "sample_bias") if k in wds.coords},
            LATENT: (LATENT, np.array(labels, dtype=object), latent_attrs),
            "latent_units": (LATENT, np.array(units, dtype=object)),
            Y: np.arange(height),
            X: np.arange(width),
            "window": n,
        },
        attrs=attrs,
    )
    map_attrs = {"mean": {"long_name": "posterior mean of the window centred on each pixel"},
                 "logsd": {"long_name": "posterior log standard deviation of the window centred on each pixel"}}
    chunks = (1, min(height, 1024), min(width, 1024), len(labels))

    logsd = bool(cfg["maps_logsd"])
    variables = ["mean", "logsd"] if logsd else ["mean"]

    def parts():
        """The codes with the first frame batch, then one batch of maps after another."""
        for a, b, m, s in iter_latent_maps(model.encoder, images, logsd=logsd, chunk_mb=float(cfg["maps_chunk_mb"]),
                                           device=device, progress=True):
            m, s = model._finish(m, s)
            data = {"mean": ((FRAME, Y, X, LATENT), m, map_attrs["mean"])}
            if logsd:
                data["logsd"] = ((FRAME, Y, X, LATENT), s, map_attrs["logsd"])
            part = xr.Dataset(data, coords={FRAME: frames[a:b], **{k: (FRAME, v[1][a:b], v[2]) for k, v in along_frame.items()}},
                              attrs=attrs)
            yield head.merge(part, combine_attrs="override") if a == 0 else part

    write_store_streamed(parts(), out, encoding={k: {"chunks": chunks} for k in variables})
    log.info("wrote latents of %d windows and %d frames (n=%d) to %s", s_total, n_frames, n, out)
