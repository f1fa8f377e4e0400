"""Ingest: a source file (or the demo generator) → ``movie.zarr``, and human
labels → ``labels.zarr``.

The same frame selection, crop and binning are applied to images and to
labels drawn from ground truth, so that labels always match frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import store
from .bias import check_length, read_bias_csv, triangular_waveform
from .config import Partial, dataset_section
from .errors import InputError
from .io import Frames, expand_paths, read_frames, read_image_array
from .sections import DatasetConfig, DatasetFramesConfig

UNLABELLED = -1  # the label value of a pixel nobody labelled


# --- selection -----------------------------------------------------------------
def frame_indices(n_source: int, frames: DatasetFramesConfig, where: str) -> np.ndarray:
    """Source-frame indices kept by ``frames: {start, stop, step}``."""
    idx = np.arange(n_source)[slice(frames["start"], frames["stop"], frames["step"])]
    if idx.size == 0:
        raise InputError(where, f"frames {frames} select nothing from {n_source} frames", "a non-empty frame range")
    return idx


def crop_bin(
    arr: np.ndarray, crop: list[int | None] | None, binning: int, where: str, labels: bool = False
) -> np.ndarray:
    """Crop ``[y0, y1, x0, x1]`` (None = to the edge), then bin by ``binning``.

    Images are binned by block means; labels by taking each block's top-left
    pixel (a class cannot be averaged). Trailing rows/columns that do not
    fill a block are dropped. ``arr`` is (frame, y, x).
    """
    if crop:
        y0, y1, x0, x1 = crop
        ny, nx = arr.shape[1:]
        if not (
            0 <= (y0 or 0) < (ny if y1 is None else min(y1, ny))
            and 0 <= (x0 or 0) < (nx if x1 is None else min(x1, nx))
        ):
            raise InputError(
                where, f"crop {crop} is empty for frames of {ny}×{nx}", "0 ≤ y0 < y1 ≤ height, 0 ≤ x0 < x1 ≤ width"
            )
        arr = arr[:, y0:y1, x0:x1]
    b = int(binning)
    if b > 1:
        ny, nx = (arr.shape[1] // b) * b, (arr.shape[2] // b) * b
        if ny == 0 or nx == 0:
            raise InputError(where, f"binning {b} is larger than the frame {arr.shape[1:]}", "a smaller bin factor")
        arr = arr[:, :ny, :nx]
        arr = (
            arr[:, ::b, ::b]
            if labels  # a class cannot be averaged: the block's top-left pixel
            else arr.reshape(arr.shape[0], ny // b, b, nx // b, b).mean(axis=(2, 4))
        )
    return arr


def resolve_bias(
    cfg: DatasetConfig, fr: Frames, idx: np.ndarray, where: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Bias (V) and time (s) of the kept frames from the configured source.

    ``bias.source``: ``auto`` (the file's, else none), ``file``, ``csv``
    (columns frame,bias[,time] by source frame), ``list`` (one value per kept
    frame), ``waveform`` (triangular; one value per kept frame) or ``none``.
    """
    bcfg = cfg["bias"]
    src = bcfg["source"]
    n = idx.size
    bias = time = None
    if fr.time is not None:
        time = check_length(fr.time, len(fr.image), f"{where}: time in the file")[idx]
    if src in ("auto", "file"):
        if fr.bias is not None:
            bias = check_length(fr.bias, len(fr.image), f"{where}: bias in the file")[idx]
        elif src == "file":
            raise InputError(
                where,
                "bias.source is 'file' but the file holds no bias",
                "bias.dataset naming it, or another bias.source",
            )
    elif src == "csv":
        csv = str(bcfg["csv"])  # set: checked with the dataset (check_dataset)
        table = read_bias_csv(csv)
        missing = sorted(set(idx.tolist()) - set(table.index.tolist()))
        if missing:
            raise InputError(
                csv,
                f"has no rows for frames {missing[:10]}{' …' if len(missing) > 10 else ''}",
                f"a bias for each of the {n} kept frames",
            )
        bias = table.loc[idx, "bias"].to_numpy(float)
        if "time" in table:
            time = table.loc[idx, "time"].to_numpy(float)
    elif src == "list":
        bias = check_length(bcfg["values"], n, f"{where}: bias.values")
    elif src == "waveform":
        bias = triangular_waveform(n, bcfg["amplitude"], bcfg["cycles"], bcfg["phase"])
    elif src != "none":
        raise InputError(where, f"bias.source = {src!r}", "auto, file, csv, list, waveform or none")
    if time is None and cfg["frame_interval"]:
        time = np.arange(n) * float(cfg["frame_interval"])
    return bias, time


def _frame_list(kept: np.ndarray, frames: np.ndarray) -> str:
    listed = kept[frames][:20].tolist()
    return f"{listed}{' …' if len(frames) > 20 else ''} ({len(frames)} of {len(kept)})"


def _fix_nonfinite(image: np.ndarray, policy: str | float, where: str, kept: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(image)
    if not bad.any():
        return image
    empty = np.flatnonzero(bad.all(axis=(1, 2)))
    if empty.size:  # a fill would make a constant frame that fails much later (or teaches nothing)
        raise InputError(
            where,
            f"source frames {_frame_list(kept, empty)} have no finite pixel (all NaN/inf)",
            "frames with data: leave them out with `frames:` (start/stop/step) or fix the file",
        )
    if policy == "error":
        frames = np.flatnonzero(bad.any(axis=(1, 2)))
        raise InputError(
            where,
            f"non-finite pixels in source frames {_frame_list(kept, frames)}",
            "finite pixels, or `nonfinite:` set to a fill value or 'median'",
        )
    fill = np.nanmedian(image[~bad]) if policy == "median" else float(policy)
    return np.where(bad, fill, image)


def check_movie(image: np.ndarray, kept: np.ndarray, where: str, source: str, windows: list[int] | None = None) -> None:
    """Refuse a movie (float32, after selection, crop and binning) that later stages
    could only fail on, or analyse as if it held data.

    - values beyond the float32 range (they became ±inf in the cast);
    - fewer than two frames (dynamics follow change between frames);
    - a constant movie (all zero, or any single value): nothing to segment;
    - frames smaller than the largest rVAE window (config ``windows``).
    """
    over = ~np.isfinite(image)
    if over.any():
        frames = np.flatnonzero(over.any(axis=(1, 2)))
        raise InputError(
            where,
            f"{source}: values beyond the float32 range (|value| > 3.4e38) in source frames "
            f"{_frame_list(kept, frames)}",
            "values a float32 movie can hold: rescale the data",
        )
    if image.shape[0] < 2:
        raise InputError(
            where,
            f"{source}: the movie has {image.shape[0]} frame (source frames {kept.tolist()})",
            "at least 2 frames (the analysis follows change from frame to frame); check `frames:`",
        )
    lo, hi = float(image.min()), float(image.max())
    if lo == hi:
        raise InputError(
            where,
            f"{source}: every pixel of all {image.shape[0]} frames is {lo:g}",
            "a movie whose pixels vary (an empty or blank recording cannot be segmented)",
        )
    if windows:
        n = max(int(w) for w in windows)
        ny, nx = image.shape[1:]
        if n > min(ny, nx):
            raise InputError(
                "config windows",
                f"window size {n} is larger than the {ny}×{nx} frames of {where} (after crop and bin)",
                f"windows no larger than {min(ny, nx)} pixels, or a larger crop / smaller bin",
            )


def load_movie(
    cfg: Partial[DatasetConfig],
    source: str | Path | list | None = None,
    where: str | None = None,
    windows: list[int] | None = None,
) -> xr.Dataset:
    """Read, select, crop, bin and check one dataset's movie (no write).

    Parameters
    ----------
    cfg : the dataset's entry of ``datasets:`` (a ``DatasetConfig``; a partial dict is checked and
        filled here, :func:`ferrolens.config.dataset_section`).
    source : file/folder/list to read instead of ``cfg["path"]`` (the demo
        generator's store for synthetic datasets).
    windows : the config's rVAE window sizes: frames smaller than the largest
        are refused here rather than after two trainings (see :func:`check_movie`).

    Returns the ``movie`` Dataset: image(frame, y, x) float32 with coords
    frame, source_frame, bias (V) / time (s) when known, and attrs.
    """
    entry = dataset_section(cfg, where or "dataset")
    src: Any = source if source is not None else entry["path"]
    if src is None:
        raise InputError(where or "dataset", "has neither `path` nor `synthetic`", "a source file")
    where = where or str(src)
    files = expand_paths(src)
    source_name = files[0].name + (f" … ({len(files)} files)" if len(files) > 1 else "")
    fr = read_frames(src, dict(entry))
    idx = frame_indices(fr.image.shape[0], entry["frames"], where)
    image = np.asarray(fr.image[idx], dtype=np.float64)
    image = _fix_nonfinite(image, entry["nonfinite"], where, idx)
    with np.errstate(over="ignore"):  # values beyond float32 become inf: check_movie names them
        image = crop_bin(image, entry["crop"], entry["bin"], where).astype(np.float32)
    check_movie(image, idx, where, source_name, windows)
    bias, time = resolve_bias(entry, fr, idx, where)

    attrs = dict(fr.attrs)
    attrs["source"] = [str(p) for p in files] if len(files) > 1 else str(files[0])
    attrs["source_sha256"] = [store.sha256_file(p) for p in files] if len(files) > 1 else store.sha256_file(files[0])
    if entry["pixel_size"]:
        attrs["pixel_size"], attrs["pixel_units"] = float(entry["pixel_size"]), entry["pixel_units"]
    if "pixel_size" in attrs and entry["bin"] > 1:
        attrs["pixel_size"] = attrs["pixel_size"] * entry["bin"]
    coords = store.frame_coords(len(idx), bias=bias, time=time)
    coords["source_frame"] = (store.FRAME, idx)
    img_attrs = {"units": attrs.pop("units", "arb. units"), "long_name": attrs.get("quantity", "intensity")}
    return xr.Dataset({"image": ((store.FRAME, store.Y, store.X), image, img_attrs)}, coords=coords, attrs=attrs)


def ingest_movie(
    cfg: Partial[DatasetConfig],
    out: str | Path,
    source: str | Path | list | None = None,
    name: str = "dataset",
    windows: list[int] | None = None,
) -> Path:
    """Ingest one dataset into ``movie.zarr`` (atomically).

    Everything is read and checked before the store is written, so bad input
    leaves no output behind; ``windows`` (the config's rVAE window sizes) lets
    frames too small for them be refused here. The store's provenance records ``cfg`` as given
    (the rule's params: the settings the movie depends on, filled by the Snakefile's validation).
    """
    ds = load_movie(cfg, source, where=f"datasets.{name}", windows=windows)
    ds.attrs.update(store.provenance("movie", cfg, dataset=name))
    # one frame per chunk: later stages stream over frames
    return store.write_store(ds, out, encoding={"image": {"chunks": (1, *ds.image.shape[1:])}})


def write_demo_source(spec: dict, out: str | Path) -> Path:
    """Generate the demo movie with its ground truth into a ``synthetic`` store."""
    from .synthetic import make_demo

    ds = make_demo(**spec)
    return store.write_store(
        ds,
        out,
        encoding={v: {"chunks": (1, *ds[v].shape[1:])} for v in ("image", "class_map", "variant_map", "orientation")},
    )


# --- labels ------------------------------------------------------------------------
def _colour_to_class(rgb: np.ndarray, colours: dict[str, list[int]], classes: list[str], where: str) -> np.ndarray:
    out = np.full(rgb.shape[:2], -1, np.int16)
    for name, col in colours.items():
        if name not in classes:
            raise InputError("labels.colors", f"class {name!r}", f"one of {classes}")
        out[np.all(rgb[..., :3] == np.asarray(col[:3]), axis=-1)] = classes.index(name)
    if (out < 0).any():
        unknown = np.unique(rgb[..., :3][out < 0].reshape(-1, 3), axis=0)[:5].tolist()
        raise InputError(where, f"colours {unknown} are not in labels.colors", f"colours {colours}")
    return out


def _read_label_images(paths: list, fmt: str, colours: dict, classes: list[str], n_expected: int) -> list[np.ndarray]:
    files = expand_paths(paths if len(paths) != 1 else paths[0])
    arrays = []
    for p in files:
        a, rgb = read_image_array(p)
        if fmt != "rgb" and rgb:
            raise InputError(
                p,
                f"label image is RGB colour {a.shape}",
                "a single-channel class map (labels.format: index), or labels.format: rgb with labels.colors",
            )
        if fmt != "rgb" and a.dtype.kind == "f":
            frac = ~np.isfinite(a) | (a != np.round(a))
            if frac.any():
                vals = np.unique(a[frac])[:5].tolist()
                raise InputError(
                    p,
                    f"label values {vals} are not whole numbers",
                    "integer class indices (-1 = unlabelled), not fractions or NaN",
                )
        elif fmt != "rgb" and a.dtype.kind not in "iub":
            raise InputError(p, f"label data type {a.dtype}", "integer class indices")
        if fmt == "rgb":
            if a.ndim != 3 or a.shape[-1] not in (3, 4):
                raise InputError(p, f"label image of shape {a.shape}", "an RGB(A) mask (y, x, 3|4)")
            arrays.append(_colour_to_class(a, colours, classes, str(p)))
        else:
            arrays.extend(list(a) if a.ndim == 3 else [a])
    if len(arrays) != n_expected:
        raise InputError(
            "labels.path",
            f"gives {len(arrays)} label images for {n_expected} labels.frames",
            "one label image per listed frame",
        )
    return arrays


def ingest_labels(
    dataset_cfg: Partial[DatasetConfig],
    classes: list[str],
    movie: str | Path,
    out: str | Path,
    truth: str | Path | None = None,
    name: str = "dataset",
) -> Path:
    """Read human labels of a few frames into ``labels.zarr``.

    Labels come from files (integer class maps in PNG/TIFF/npy, or RGB masks
    with ``labels.colors``), or, for the demo, from the generator's ground
    truth (``labels.source: truth``) with the movie's selection applied.
    Output: label(frame, y, x) int16 in 0…K-1 (K = len(classes)), with
    ``frame`` = the movie frame each label belongs to. ``dataset_cfg``: the dataset's entry of
    ``datasets:`` (a partial dict is checked and filled here); the store's provenance records its
    ``labels:`` as given.
    """
    entry = dataset_section(dataset_cfg, f"datasets.{name}")
    lcfg = entry["labels"]
    frames = list(lcfg["frames"])
    where = f"datasets.{name}.labels"
    if not frames:
        raise InputError(f"{where}.frames", "is empty", "the movie frames that have labels")
    mv = store.open_store(movie, "movie")
    n_frames, shape = mv.sizes[store.FRAME], (mv.sizes[store.Y], mv.sizes[store.X])
    bad = [f for f in frames if not 0 <= f < n_frames]
    if bad:
        raise InputError(f"{where}.frames", f"frames {bad} are out of range", f"0 … {n_frames - 1}")
    if lcfg["source"] == "truth":
        if truth is None:
            raise InputError(f"{where}.source", "is 'truth' but the dataset is not synthetic", "labels.path")
        gt = store.open_store(truth, "synthetic")
        src_idx = mv["source_frame"].values[frames]
        arrays = list(
            crop_bin(gt["class_map"].values[src_idx].astype(np.int16), entry["crop"], entry["bin"], where, labels=True)
        )
    else:
        paths = lcfg["path"]
        if not paths:
            raise InputError(f"{where}.path", "is not set", "label files (or source: truth for the demo)")
        arrays = _read_label_images(
            paths if isinstance(paths, list) else [paths], lcfg["format"], lcfg["colors"], classes, len(frames)
        )
    for f, a in zip(frames, arrays, strict=True):  # one label image per frame (counted above)
        if a.shape != shape:
            raise InputError(where, f"label of frame {f} has shape {a.shape}", f"the frame shape {shape}")
        vals = np.unique(a)
        outside: list = (
            [] if lcfg["format"] == "rgb" else [v for v in vals[(vals < 0) | (vals >= len(classes))] if v != UNLABELLED]
        )
        if len(outside):
            raise InputError(
                where,
                f"label of frame {f} has values {list(map(int, outside))}",
                f"class indices 0 … {len(classes) - 1} ({', '.join(classes)})",
            )
    label = np.stack(arrays).astype(np.int16)
    coords: dict[str, Any] = {store.FRAME: np.asarray(frames)}
    if "bias" in mv.coords:
        coords["bias"] = (store.FRAME, mv["bias"].values[frames], {"units": "V"})
    ds = xr.Dataset(
        {
            "label": (
                (store.FRAME, store.Y, store.X),
                label,
                {
                    "flag_values": list(range(len(classes))),
                    "flag_meanings": " ".join(classes),
                    "unlabelled": UNLABELLED,
                },
            )
        },
        coords=coords,
        # the labels: as given, as the movie's provenance records its settings
        attrs=store.provenance(
            "labels", (dataset_cfg or {}).get("labels") or {}, class_names=list(classes), movie=str(movie), dataset=name
        ),
    )
    return store.write_store(ds, out)
