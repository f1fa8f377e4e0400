"""Entry functions of the segmentation stage (one per Snakemake rule, plus the
images the rVAE takes): :func:`train`, :func:`predict`, :func:`input_image`, :func:`load`; on arrays
(notebooks): :func:`fit`, :func:`probabilities`."""

from __future__ import annotations

import hashlib
import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from ..errors import InputError
from .. import training
from ..parallel import device_for, plan, save_checkpoint_atomic, set_threads
from ..store import (BIAS, CLASS, FRAME, TIME, X, Y, check_checkpoint, config_digest, open_store, provenance, sha256_file,
                     write_file_atomic, write_store_streamed)
from .config import DEFAULTS, resolve_config
from .data import SegmentationData, describe_split
from .infer import normalize_frames, predict_frames, resolve_precision
from .model import MODEL_KIND, SegmentationModel
from .unet import fuse_for_inference

log = logging.getLogger(__name__)
INPUT_KINDS = ("walls", "classes", "raw")
NORMALISATION = "per-frame robust percentiles: (x - p_low) / (p_high - p_low), no clipping"


# --- shared checks ---------------------------------------------------------------------
def _movie_image(ds: xr.Dataset, where: str | Path) -> xr.DataArray:
    image = ds["image"]
    if image.dims != (FRAME, Y, X):
        raise InputError(where, f"image has dims {image.dims}", f"image dims {(FRAME, Y, X)}")
    if 0 in image.shape:
        raise InputError(where, f"the movie is empty: image shape {dict(zip(image.dims, image.shape))}",
                         "at least one frame of at least 1×1 pixels")
    return image


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
    path = check_checkpoint(checkpoint, MODEL_KIND,
                            "a segmentation checkpoint (model.ckpt) written by ferrolens.segment.train")
    model = SegmentationModel.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return model.eval()


# --- train --------------------------------------------------------------------------------
def _training_inputs(movie: str, labels: str, n_classes: int, cfg: dict):
    """Normalised labelled frames, labels in the model's classes and class names; checks first."""
    mov = open_store(movie, "movie", ["image"])
    image = _movie_image(mov, movie)
    lab = open_store(labels, "labels", ["label"])
    names = [str(n) for n in lab.attrs.get("class_names", [])]
    _model_labels(None, names, n_classes, labels)
    if lab["label"].dims != (FRAME, Y, X):
        raise InputError(labels, f"label has dims {lab['label'].dims}", f"dims {(FRAME, Y, X)}")
    if lab.sizes[FRAME] == 0:
        raise InputError(labels, "no labelled frames (the label store has 0 frames)", "at least one labelled frame")
    if (lab.sizes[Y], lab.sizes[X]) != (image.sizes[Y], image.sizes[X]):
        raise InputError(labels, f"label frames are {lab.sizes[Y]}×{lab.sizes[X]}",
                         f"the movie's frame size {image.sizes[Y]}×{image.sizes[X]}")
    movie_frames = {int(f): i for i, f in enumerate(mov[FRAME].values)}
    frames = [int(f) for f in lab[FRAME].values]
    missing = [f for f in frames if f not in movie_frames]
    if missing:
        raise InputError(labels, f"label frames {missing} are not frames of the movie {movie}",
                         f"frame indices among 0…{len(movie_frames) - 1}")
    label, model_names = _model_labels(lab["label"].values, names, n_classes, labels)
    raw = image.isel({FRAME: [movie_frames[f] for f in frames]}).values
    return mov, label, raw, frames, model_names


def _model_labels(label: np.ndarray | None, names: list[str], n_classes: int, where: Any):
    """Labels (int64) in the model's classes and their names: 3-class labels serve a 2-class model
    with contaminant (2) merged into background (0), wall vs the rest."""
    if n_classes not in (2, 3):
        raise InputError("n_classes", f"value {n_classes!r}",
                         "2 (wall vs the rest) or 3 (background, wall, contaminant)")
    if len(names) < 2:
        raise InputError(where, f"class_names {names} name {len(names)} class(es)",
                         "at least 2 classes, e.g. ['background', 'wall', 'contaminant']")
    if len(names) == n_classes:
        model_names, merge = names, False
    elif len(names) == 3 and n_classes == 2:
        model_names, merge = names[:2], True
    else:
        raise InputError(where, f"labels have {len(names)} classes {names}",
                         f"{n_classes} classes for the {n_classes}-class model (3-class labels also "
                         "serve the 2-class model, contaminant merged into background)")
    if label is None:
        return None, model_names
    label = np.asarray(label).astype(np.int64)
    return (np.where(label == 2, 0, label) if merge else label), model_names


def _plot_history(history: list[dict], names: list[str], split: dict, path: Path, warning: str = "") -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] + 1 for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    a.plot(ep, [r["train_loss"] for r in history], "o-", label="train (augmented patches)")
    a.plot(ep, [r["val_loss"] for r in history], "s-", label="held-out")
    a.set(xlabel="epoch", ylabel="weighted cross-entropy + Dice", yscale="log", title="loss")
    a.legend()
    for n in names:
        b.plot(ep, [r[f"iou_{n}"] for r in history], "o-", label=n)
    b.plot(ep, [r["val_miou"] for r in history], "k--", label="mean")
    held = ("a strip of each labelled frame" if split["holdout"] == "regions"
            else f"frames {split['val_frames']}")
    b.set(xlabel="epoch", ylabel="IoU", ylim=(0, 1.02), title=f"held-out IoU ({held})")
    text = textwrap.fill(describe_split(split), 130)
    if warning:
        text = textwrap.fill(warning, 130) + "\n" + text
    fig.suptitle(text, fontsize="small", color="C3" if warning else "black")
    b.legend(loc="lower right")
    for ax in (a, b):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def metrics_table(history: list[dict], names: list[str]) -> pd.DataFrame:
    """One row per epoch: epoch, step, train_loss, val_loss, val_miou, iou_<class> (held out)."""
    cols = ["epoch", "step", "train_loss", "val_loss", "val_miou"] + [f"iou_{n}" for n in names]
    return pd.DataFrame([{c: r[c] for c in cols} for r in history], columns=cols)


def quality(metrics: pd.DataFrame, cfg: dict) -> dict[str, Any]:
    """The held-out IoU of the model kept (best mean IoU) and whether it is below ``train.min_iou``.

    Returns ``{"heldout_miou", "heldout_iou_wall", "quality_ok", "quality_warning"}``; the
    warning is a plain sentence (empty when the model is good enough).
    """
    if metrics.empty:
        return {"heldout_miou": float("nan"), "heldout_iou_wall": float("nan"), "quality_ok": False,
                "quality_warning": "the U-Net was never validated (no epoch finished)"}
    best = metrics.loc[metrics["val_miou"].fillna(-1).idxmax()]
    miou = float(best["val_miou"])
    wall = float(best["iou_wall"]) if "iou_wall" in best else float("nan")
    floor = float(cfg["train"]["min_iou"])
    ok = bool(np.isfinite(wall) and wall >= floor and miou >= floor)
    warning = "" if ok else (
        f"POOR SEGMENTATION: held-out IoU wall {wall:.2f}, mean {miou:.2f} is below segment.train.min_iou = "
        f"{floor:.2f}; walls and everything downstream (rVAE input, dynamics) may follow the model's errors "
        "rather than the sample: label more frames, train longer, or check the labels")
    return {"heldout_miou": miou, "heldout_iou_wall": wall, "quality_ok": ok, "quality_warning": warning}


def fit(images: np.ndarray, labels: np.ndarray, frames: list[int] | None = None, n_classes: int = 3,
        cfg: dict | None = None, seed: int = 0, threads: int | None = None, out_dir: str | Path | None = None,
        class_names: list[str] | None = None, progress: bool = True) -> tuple[SegmentationModel, pd.DataFrame]:
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

    Returns the trained model (eval mode, best held-out mean IoU) and its metrics,
    one row per epoch (:func:`metrics_table`); ``model.split`` says what was held out.
    """
    import tempfile

    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or labels.shape != images.shape:
        raise InputError("images, labels", f"shapes {images.shape} and {labels.shape}",
                         "the same (n, H, W) for both")
    frames = list(range(len(images))) if frames is None else [int(f) for f in frames]
    names = list(class_names) if class_names is not None else ["background", "wall", "contaminant"][:max(n_classes, 2)]
    label, model_names = _model_labels(labels, names, n_classes, "labels")
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="ferrolens-unet-") as tmp:
            return fit(images, labels, frames, n_classes, cfg, seed, threads, tmp, class_names, progress)
    cfg = resolve_config(cfg)
    model, metrics, _ = _fit(images, label, frames, model_names, cfg, seed,
                             threads if threads is not None else torch.get_num_threads(), Path(out_dir), progress,
                             where="labels (array)")
    return model, metrics


def _fit(raw: np.ndarray, label: np.ndarray, frames: list[int], names: list[str], cfg: dict, seed: int,
         threads: int, out: Path, progress: bool = True, where: str = "labels"):
    """Train on normalised-here frames with the shared harness (:mod:`ferrolens.training`); returns
    (best model in eval mode, metrics, (trainer, best, data)). ``where`` names the labels in error
    messages (the store's path)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    t, norm = cfg["train"], cfg["normalize"]
    n_classes = len(names)
    par = plan(t["accelerator"], t["devices"], t["strategy"], threads, "segment.train")
    images, _, _ = normalize_frames(raw, norm["low_percentile"], norm["high_percentile"])
    dm = SegmentationData(images, label, frames, n_classes, t, cfg["augment"], seed, where=where)
    log.info("%s", describe_split(dm.split))
    weights = dm.class_weights()
    hparams = dict(n_classes=n_classes, class_names=names, **cfg["model"], learning_rate=float(t["learning_rate"]),
                   class_weights=weights, norm_low=float(norm["low_percentile"]),
                   norm_high=float(norm["high_percentile"]))
    # what must be equal for last.ckpt to be resumed (max_epochs may grow)
    data_hash = hashlib.sha256(label.tobytes() + images.tobytes()).hexdigest()
    fixed = {k: v for k, v in t.items()
             if k not in ("max_epochs", "max_minutes", "num_workers", "accelerator", "devices", "strategy",
                          "min_iou")}
    # several processes train with a larger total batch: another training (the key of one process is unchanged)
    processes = {"devices": par.devices} if par.devices > 1 else {}
    key = config_digest({"hparams": hparams, "train": fixed, "augment": cfg["augment"], "seed": seed,
                         "data": data_hash, "split": dm.split, **processes})

    training.seed_everything(seed)
    model = SegmentationModel(**hparams)
    best_cb = ModelCheckpoint(dirpath=out, filename="best", monitor="val/miou", mode="max", save_top_k=1,
                              auto_insert_metric_name=False, enable_version_counter=False)
    trainer = training.fit(
        model, dm, par=par, out=out, seed=seed, salt=11, resume_key=key, kind=MODEL_KIND,
        max_epochs=int(t["max_epochs"]), callbacks=[best_cb], stale=["best.ckpt"], progress=progress,
        max_time=None if t["max_minutes"] is None else {"minutes": float(t["max_minutes"])},
        log_every_n_steps=max(1, min(50, int(t["steps_per_epoch"]))))

    best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    # rank 0 decides (every process must take part in save_checkpoint, or none)
    if trainer.strategy.broadcast(best is None or not best.exists()):  # e.g. max_minutes hit before validating
        best = out / "best.ckpt"
        save_checkpoint_atomic(trainer, best, weights_only=False)
    metrics = metrics_table(trainer.lightning_module.history, names)
    trained = SegmentationModel.load_from_checkpoint(best, map_location="cpu", weights_only=True).eval()
    trained.split = dm.split
    return trained, metrics, (trainer, best, dm)


def train(movie: str, labels: str, out_dir: str, n_classes: int, cfg: dict, seed: int, threads: int) -> None:
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
        IoU and mean), ``training.png``, ``quality.json`` (held-out IoU of the model
        kept, and a plain warning when below ``train.min_iou``), ``logs/`` (CSV logs).
    n_classes : 2 (wall vs the rest; contaminant merged into background) or 3.
    cfg : the ``segment:`` config section (missing keys take the defaults).
    seed : seeds weights, patch positions, augmentation, dropout; on CPU the same
        inputs give the same weights (unless ``train.max_minutes`` cuts training short).
    threads : torch intra-op threads, shared by the ``train.devices`` processes.

    What is held out (``train.holdout``) is logged and shown on ``training.png``.
    With ``train.devices > 1`` Lightning trains data-parallel (DDP): it re-runs
    the calling script once per extra device, each process calls this function,
    and only global rank 0 writes the files above (see :mod:`ferrolens.parallel`).
    The held-out IoU is computed from confusion counts summed over the processes.

    Bad input (labels with one class, a class count the model cannot take, no
    labelled frame, a patch larger than the frame, an empty movie) raises
    :class:`InputError` before training starts. :func:`fit` is the same training on arrays.
    """
    cfg = resolve_config(cfg)
    _, label, raw, frames, names = _training_inputs(movie, labels, n_classes, cfg)
    out = Path(out_dir)
    _, metrics, (trainer, best, dm) = _fit(raw, label, frames, names, cfg, seed, threads, out, where=str(labels))
    if not trainer.is_global_zero:
        return
    training.save_model(trainer, out / "model.ckpt", source=best)
    training.write_metrics(out / "metrics.csv", metrics)
    q = {**quality(metrics, cfg), "min_iou": float(cfg["train"]["min_iou"]), "split": dm.split,
         "held_out": describe_split(dm.split)}
    write_file_atomic(out / "quality.json", lambda tmp: Path(tmp).write_text(json.dumps(q, indent=1)))
    log.info("held-out IoU of the model kept: wall %.3f, mean %.3f", q["heldout_iou_wall"], q["heldout_miou"])
    if q["quality_warning"]:
        log.warning("%s", q["quality_warning"])
    write_file_atomic(out / "training.png", lambda tmp: _plot_history(trainer.lightning_module.history, names,
                                                                         dm.split, tmp, q["quality_warning"]))


# --- predict ---------------------------------------------------------------------------------
def _inference_net(model: SegmentationModel, p: dict) -> tuple[torch.nn.Module, torch.device, bool]:
    """The fused eval copy of ``model.net`` on the ``predict:`` section's device, and whether
    to autocast to bfloat16 there (``predict.precision``); tiles checked.

    The copy is kept on ``model`` and made again only when a weight or buffer has changed
    (torch's in-place version counter, or a new tensor) or the device differs: repeated
    calls on short movies would otherwise spend ~10 ms each on copying and fusing.
    """
    mult = model.net.multiple
    for k in ("tile", "overlap"):
        if p[k] % mult:
            raise InputError(f"config segment.predict.{k}", f"value {p[k]}",
                             f"a multiple of {mult} (2**depth of the model), so tiles align with its pooling")
    device = device_for(p["accelerator"], "config segment.predict.accelerator")
    bf16 = resolve_precision(p["precision"], device)
    key = (str(device), tuple((t.data_ptr(), t._version) for t in model.net.state_dict().values()))
    cached = getattr(model, "_ferrolens_inference", None)
    if cached is None or cached[0] != key:
        cached = (key, fuse_for_inference(model.net).to(device))
        model._ferrolens_inference = cached
    return cached[1], device, bf16


def probabilities(model: SegmentationModel, frames: np.ndarray, cfg: dict | None = None,
                  threads: int | None = None) -> np.ndarray:
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

    Returns ``(n, K, H, W)`` float32 softmax probabilities (``(K, H, W)`` for one frame);
    ``argmax(1)`` is the label image.
    """
    p = resolve_config(cfg)["predict"]
    if threads is not None:
        set_threads(threads)
    a = np.asarray(frames)
    single = a.ndim == 2
    a = a[None] if single else a
    if a.ndim != 3 or 0 in a.shape:
        raise InputError("frames", f"shape {np.shape(frames)}", "(n, H, W) or (H, W) with every size ≥ 1")
    net, device, bf16 = _inference_net(model, p)
    hp, bs = model.hparams, int(p["batch_size"])
    out = None
    for i in range(0, len(a), bs):  # normalised a batch at a time: a long movie is not copied whole
        normed, _, _ = normalize_frames(a[i:i + bs], hp.norm_low, hp.norm_high)
        probs = predict_frames(net, normed, int(p["tile"]), int(p["overlap"]), bs, device, bf16=bf16)
        if out is None:
            out = np.empty((len(a), *probs.shape[1:]), np.float32)
        out[i:i + len(probs)] = probs
    return out[0] if single else out


def predict(movie: str, checkpoint: str, out: str, cfg: dict, threads: int) -> None:
    """Segment every frame of ``movie`` into the store ``out`` (kind ``segmentation``).

    Frames are read, normalised (per frame, the model's robust percentiles) and
    predicted ``predict.batch_size`` at a time, so the movie never has to fit in
    memory; frames larger than ``predict.tile`` are tiled with
    ``predict.overlap`` and blended seamlessly (exactly, see
    :mod:`ferrolens.segment.infer`). The store is renamed into place when complete.

    Store: ``probability(frame, class, y, x)`` float32 (softmax, sums to 1 over
    class), ``label(frame, y, x)`` uint8 (argmax), ``norm_low/norm_high(frame)``
    (the percentiles, raw units); coords ``frame``, ``class`` (names), and
    ``bias`` (V) / ``time`` (s) copied from the movie; attrs record the
    normalisation, the checkpoint (path, sha256, hyper-parameters) and tiling.
    """
    from tqdm.auto import tqdm

    cfg = resolve_config(cfg)
    p = cfg["predict"]
    set_threads(threads)
    mov = open_store(movie, "movie", ["image"])
    image = _movie_image(mov, movie)
    model = load(checkpoint)
    net, device, bf16 = _inference_net(model, p)
    hp = model.hparams
    names = list(hp.class_names)
    n, h, w = image.shape
    bs = int(p["batch_size"])
    attrs = provenance(
        "segmentation", cfg, movie=str(movie), checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_file(checkpoint), model_kind=MODEL_KIND,
        model_hparams=json.dumps(dict(hp), sort_keys=True, default=str), n_classes=int(hp.n_classes),
        class_names=names, normalisation=NORMALISATION, norm_percentiles=[float(hp.norm_low), float(hp.norm_high)],
        tile=int(p["tile"]), overlap=int(p["overlap"]), context_margin=int(model.context_margin()),
        precision="bfloat16 autocast" if bf16 else "float32",
        # the model's own quality, where a notebook user reads the results (see quality())
        **quality(metrics_table(model.history, names), cfg))
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
                    {"probability": ((FRAME, CLASS, Y, X), probs,
                                     {"long_name": "class probability (softmax)", "units": "1"}),
                     "label": ((FRAME, Y, X), label,
                               {"long_name": "most probable class", "flag_values": list(range(len(names))),
                                "flag_meanings": " ".join(names)}),
                     "norm_low": ((FRAME,), lo, {"long_name": f"per-frame {hp.norm_low} percentile",
                                                 "units": "raw intensity"}),
                     "norm_high": ((FRAME,), hi, {"long_name": f"per-frame {hp.norm_high} percentile",
                                                  "units": "raw intensity"})},
                    coords=_frame_coords(mov, sl), attrs=attrs)
                if i == 0:
                    ds = ds.assign_coords({CLASS: names})
                    for c in (Y, X):
                        if c in mov.coords and mov[c].dims == (c,):
                            ds = ds.assign_coords({c: mov[c]})
                yield ds
                bar.update(sl.stop - sl.start)

    write_store_streamed(parts(), out, encoding=encoding)


# --- the rVAE's input image --------------------------------------------------------------------
class _PerFrame(BackendArray):
    """Lazy ``(frame, y, x)`` array: ``fn`` applied to whole source frames on access."""

    def __init__(self, source: xr.DataArray, fn) -> None:
        self.source, self.fn = source, fn
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._get)

    def _get(self, key):
        fk, yk, xk = key
        scalar = isinstance(fk, (int, np.integer))
        frames = np.asarray(self.source[[fk] if scalar else fk].values)
        out = self.fn(frames)
        out = out[:, yk][:, :, xk] if not isinstance(yk, (int, np.integer)) else out[:, yk][:, xk]
        return out[0] if scalar else out


def _lazy(source: xr.DataArray, fn, name: str, attrs: dict) -> xr.DataArray:
    data = indexing.LazilyIndexedArray(_PerFrame(source.variable, fn))
    coords = {k: v for k, v in source.coords.items() if set(v.dims) <= {FRAME, Y, X}}
    return xr.DataArray(xr.Variable((FRAME, Y, X), data), coords=coords, name=name, attrs=attrs)


def input_image(movie: xr.Dataset, segmentation: xr.Dataset | None, kind: str) -> xr.DataArray:
    """The image the rVAE takes, ``(frame, y, x)`` float32, computed lazily per frame.

    kind : ``walls`` — wall-class probability (0…1);
        ``classes`` — decoded class image ``label / (K − 1)`` (0…1);
        ``raw`` — the normalised frame, with the percentiles recorded in the
        segmentation store's attrs (default 1 and 99 when ``segmentation`` is None),
        exactly as :func:`predict` normalises, then clipped to 0…1 (the 1 % of
        pixels beyond each percentile saturate, as on a display).
    """
    if kind not in INPUT_KINDS:
        raise InputError("rVAE input kind", f"value {kind!r}", f"one of {', '.join(INPUT_KINDS)}")
    image = _movie_image(movie, "movie dataset")
    if segmentation is None:
        if kind != "raw":
            raise InputError("segmentation", f"kind {kind!r} needs a segmentation store, got None",
                             "the dataset written by ferrolens.segment.predict")
        lo, hi = DEFAULTS["normalize"]["low_percentile"], DEFAULTS["normalize"]["high_percentile"]
    else:
        if segmentation.attrs.get("ferrolens_kind") != "segmentation":
            raise InputError("segmentation", f"dataset kind {segmentation.attrs.get('ferrolens_kind')!r}",
                             "kind 'segmentation'")
        if segmentation.sizes.get(FRAME) != image.sizes[FRAME] or (
                segmentation.sizes.get(Y), segmentation.sizes.get(X)) != (image.sizes[Y], image.sizes[X]):
            raise InputError("segmentation", f"shape {dict(segmentation.sizes)}",
                             f"the movie's {dict(image.sizes)}")
        lo, hi = segmentation.attrs.get("norm_percentiles", [1.0, 99.0])
    if kind == "raw":
        return _lazy(image, lambda a: np.clip(normalize_frames(a, lo, hi)[0], 0.0, 1.0), "raw",
                     {"long_name": "normalised frame, clipped to 0…1", "normalisation": NORMALISATION,
                      "norm_percentiles": [float(lo), float(hi)], "units": "1"})
    names = [str(c) for c in segmentation[CLASS].values]
    if kind == "walls":
        if "wall" not in names:
            raise InputError("segmentation", f"classes {names} lack 'wall'", "a class named 'wall'")
        walls = segmentation["probability"].isel({CLASS: names.index("wall")}, drop=True)
        return walls.rename("walls").assign_attrs(long_name="wall-class probability", units="1")
    k = len(names)
    return _lazy(segmentation["label"], lambda a: a.astype(np.float32) / (k - 1), "classes",
                 {"long_name": f"class / {k - 1} ({', '.join(names)})", "units": "1"})
