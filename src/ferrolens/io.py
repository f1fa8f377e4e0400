"""Readers: turn a microscopy file (or several) into frames (frame, y, x).

Supported sources, chosen by extension (or ``format`` in config):

* multi-page TIFF (``.tif``/``.tiff``); a folder of TIFF/PNG frames in natural
  order; a list of single-frame files read as one series;
* RGB images (PNG, and TIFF whose photometric tag says RGB, planar (3, H, W)
  or interleaved (H, W, 3)) are one frame each, turned to luminance
  0.299 R + 0.587 G + 0.114 B, or to one colour sample with ``channel:``
  (0 = R, 1 = G, 2 = B) — a planar RGB TIFF is never read as three frames;
* NumPy ``.npy`` / ``.npz`` (``dataset`` = the npz key);
* HDF5 (``.h5``/``.hdf5``) by dataset path, or by channel name in the
  sidpy/pyNSID layout (the dataset attribute ``quantity``), honouring its
  ``DIMENSION_LABELS`` so that images come out as (y, x) and a spectral/bias
  axis becomes the frame axis with its dimension scale as bias;
* a zarr store with an ``image`` variable (e.g. the demo movie);
* Gatan ``.dm3``/``.dm4`` and Velox ``.emd`` through rosettasciio (optional
  extra ``ferrolens[microscopy]``).

Several files (a list or a folder) must be one series: frames of one shape
and, where the files state them, one pixel size, pixel units, scan size and
position. Files that differ are refused with every file's value named, unless
``mixed_series: true`` says to join them anyway.

Every problem raises :class:`~ferrolens.errors.InputError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from .errors import InputError

IMAGE_EXT = {".tif", ".tiff", ".png"}
FORMATS = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "image",
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".nxs": "hdf5",
    ".zarr": "zarr",
    ".dm3": "dm",
    ".dm4": "dm",
    ".emd": "emd",
}

#: ``frames_from`` attr of a movie whose frames are the bias steps of a spectroscopy cube (kept in the movie
#: store; the rVAE's ``raw_normalize: auto`` scales such a movie as a whole)
CUBE_BIAS_AXIS = "bias axis of a spectroscopy cube"


@dataclass
class Frames:
    """Frames read from a source, before selection.

    image : (frame, y, x) array (any real dtype).
    bias, time : per-frame values found in the file (V, s), or None.
    attrs : units, pixel size/units, anything the file states (``frames_from`` =
        :data:`CUBE_BIAS_AXIS` when the frames are a spectroscopy cube's bias steps).
    geometry : what places the frames in the sample, where the file states it
        (``pixel_size``, ``pixel_units``, ``scan_size`` (y, x) and ``offset``
        (y, x) in pixel units): several files must agree on it to be one series.
    """

    image: np.ndarray
    bias: np.ndarray | None = None
    time: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    geometry: dict[str, Any] = field(default_factory=dict)


def natural_key(path: Path) -> list:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def expand_paths(path: str | Path | list) -> list[Path]:
    """A file, a folder of image frames, or a list of files → list of files."""
    if isinstance(path, (list, tuple)):
        paths = [Path(p) for p in path]
        if not paths:
            raise InputError("path", "is an empty list", "one or more files")
    else:
        p = Path(path)
        if p.is_dir() and p.suffix != ".zarr":
            paths = sorted((q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXT), key=natural_key)
            if not paths:
                raise InputError(p, "folder holds no TIFF/PNG frames", f"files ending in {sorted(IMAGE_EXT)}")
        else:
            paths = [p]
    for p in paths:
        if not p.exists():
            raise InputError(p, "does not exist", "an existing file")
    return paths


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            path, f"unknown extension {path.suffix!r}", f"one of {sorted(FORMATS)} or `format:` set in config"
        )
    return kind


def _as_frames(arr: np.ndarray, where: Path, channel: int | None = None) -> np.ndarray:
    """Bring an array to (frame, y, x): 2-D → one frame; 4-D needs a channel index (last axis)."""
    if arr.ndim == 4:
        if channel is None:
            raise InputError(
                where,
                f"array of shape {arr.shape} has a channel axis",
                "`channel:` set to the channel index (last axis)",
            )
        if not 0 <= int(channel) < arr.shape[-1]:
            raise InputError(
                where, f"channel {channel} out of range for {arr.shape[-1]} channels", f"0 … {arr.shape[-1] - 1}"
            )
        arr = arr[..., int(channel)]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(where, f"array of shape {arr.shape}", "2-D (y, x) or 3-D (frame, y, x) data")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise InputError(where, f"data type {arr.dtype}", "real numbers")
    return arr


# --- single-format readers ------------------------------------------------------
LUMINANCE = (0.299, 0.587, 0.114)


def _rgb_to_gray(arr: np.ndarray, channel: Any, where: Path) -> np.ndarray:
    """(…, y, x, 3|4) colour samples → (…, y, x): luminance, or the sample ``channel`` (0 R, 1 G, 2 B)."""
    if channel is None:
        return arr[..., :3].astype(np.float64) @ np.asarray(LUMINANCE)
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < arr.shape[-1]:
        raise InputError(
            where,
            f"channel {channel!r} for an RGB image of {arr.shape[-1]} samples",
            f"`channel:` 0 … {arr.shape[-1] - 1} (0 = R, 1 = G, 2 = B), or null for luminance",
        )
    return arr[..., int(channel)]


def _tiff_colour_last(tif) -> tuple[np.ndarray, bool]:
    """A TIFF's first series with RGB colour samples moved to the last axis (a planar
    page reads as (3, y, x)), and whether the photometric tag says RGB."""
    import tifffile

    arr, axes = tif.asarray(), tif.series[0].axes
    if tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB and "S" in axes:
        return np.moveaxis(arr, axes.index("S"), -1), True
    return arr, False


def read_image_array(path: Path) -> tuple[np.ndarray, bool]:
    """One PNG/TIFF/.npy image file as an array with colour samples last, and whether it is RGB(A).

    For label images (class maps or colour masks); a file that cannot be decoded in
    full (a truncated PNG) raises :class:`InputError` naming it.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False), False
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _tiff_colour_last(tif)
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im), im.mode in ("RGB", "RGBA")  # decodes all: a truncated file fails here
    except Exception as exc:
        raise InputError(
            path,
            f"cannot be read as an image ({type(exc).__name__}: {exc})",
            "a complete PNG/TIFF/.npy file (copy or export it again)",
        ) from exc


def _read_tiff(path: Path, opts: dict) -> Frames:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            arr, rgb = _tiff_colour_last(tif)
            attrs: dict[str, Any] = {}
            geometry: dict[str, Any] = {}
            page = cast("tifffile.TiffPage", tif.pages[0])  # the first page is always read as a TiffPage
            unit = page.tags.get("ResolutionUnit")
            if unit is not None and int(unit.value) in (2, 3):
                metres = 2.54e-2 if int(unit.value) == 2 else 1e-2  # per inch / per cm
                sizes = []
                for tag in ("YResolution", "XResolution"):
                    res = page.tags.get(tag)
                    sizes.append(metres * res.value[1] / res.value[0] if res is not None and res.value[0] else None)
                if sizes[1] is not None:
                    attrs["pixel_size"], attrs["pixel_units"] = sizes[1], "m"
                    geometry.update(pixel_size=(sizes[0], sizes[1]), pixel_units="m")
                    y_pos, x_pos = (page.tags.get(t) for t in ("YPosition", "XPosition"))
                    if y_pos is not None and x_pos is not None:  # in resolution units
                        geometry["offset"] = tuple(metres * t.value[0] / t.value[1] for t in (y_pos, x_pos))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            path, f"cannot be read as TIFF ({type(exc).__name__}: {exc})", "a readable (multi-page) TIFF"
        ) from exc
    channel = opts.get("channel")
    if rgb:  # colour samples are one image, never frames (a planar RGB page reads as (3, y, x))
        arr = _rgb_to_gray(arr, channel, path)
        attrs["colour"] = "luminance 0.299 R + 0.587 G + 0.114 B" if channel is None else f"RGB sample {channel}"
        channel = None
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4 and channel is None:
        raise InputError(path, f"looks like an RGB image {arr.shape}", "a grayscale stack, or `channel:` set")
    frames = _as_frames(arr, path, channel)
    if "pixel_size" in geometry:
        py, px = geometry["pixel_size"]
        geometry["scan_size"] = (None if py is None else py * frames.shape[1], px * frames.shape[2])
    return Frames(frames, attrs=attrs, geometry=geometry)


def _read_image(path: Path, opts: dict) -> Frames:
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as exc:
        raise InputError(
            path, f"cannot be read as an image ({type(exc).__name__}: {exc})", "a readable PNG/TIFF"
        ) from exc
    attrs = {}
    if arr.ndim == 3:  # RGB(A) frame: luminance unless a channel is chosen
        ch = opts.get("channel")
        arr = _rgb_to_gray(arr, ch, path)
        attrs["colour"] = "luminance 0.299 R + 0.587 G + 0.114 B" if ch is None else f"RGB sample {ch}"
    return Frames(_as_frames(arr, path), attrs=attrs)


def _read_npy(path: Path, opts: dict) -> Frames:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"cannot be read as .npy ({type(exc).__name__}: {exc})", "a NumPy .npy file") from exc
    return Frames(_as_frames(np.asarray(arr), path, opts.get("channel")))


def _read_npz(path: Path, opts: dict) -> Frames:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            key = opts.get("dataset")
            if key is None:
                key = next((k for k in ("image", "images", "data", "frames") if k in keys), None)
                if key is None and len(keys) == 1:
                    key = keys[0]
            if key not in keys:
                raise InputError(path, f"key {key!r} not found; keys are {keys}", "`dataset:` naming one of them")
            arr = npz[key]
            bias = npz["bias"] if "bias" in keys and key != "bias" else None
            time = npz["time"] if "time" in keys and key != "time" else None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"cannot be read as .npz ({type(exc).__name__}: {exc})", "a NumPy .npz file") from exc
    return Frames(_as_frames(arr, path, opts.get("channel")), bias=bias, time=time)


def _h5_attr(obj, name, default=None):
    val = obj.attrs.get(name, default)
    if isinstance(val, bytes):
        val = val.decode()
    return val


def _h5_datasets(f) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def _read_hdf5(path: Path, opts: dict) -> Frames:
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise InputError(
            path, f"cannot be opened as HDF5 ({type(exc).__name__}: {exc})", "a readable HDF5 file"
        ) from exc
    with f:
        geometry: dict[str, Any] = {}
        dsets = _h5_datasets(f)
        name, channel = opts.get("dataset"), opts.get("channel")
        if name is not None:
            if name.strip("/") not in dsets:
                raise InputError(
                    path,
                    f"dataset {name!r} is not there",
                    f"one of {sorted(n for n, d in dsets.items() if d.ndim >= 2)}",
                )
            name = name.strip("/")
        else:
            images = {n: d for n, d in dsets.items() if d.ndim >= 2}
            if isinstance(channel, str):
                by_q = {n: d for n, d in images.items() if _h5_attr(d, "quantity") == channel}
                if not by_q:
                    quantities = sorted(
                        {str(_h5_attr(d, "quantity")) for d in images.values() if _h5_attr(d, "quantity") is not None}
                    )
                    raise InputError(
                        path,
                        f"no dataset has quantity {channel!r}",
                        f"`channel:` one of {quantities}" if quantities else "`dataset:` set",
                    )
                images = by_q
            if len(images) != 1:
                listing = {n: _h5_attr(d, "quantity") for n, d in images.items()}
                raise InputError(
                    path,
                    f"{len(images)} candidate image datasets {listing}",
                    "`dataset:` (path) or `channel:` (quantity name) choosing one",
                )
            name = next(iter(images))
        d = dsets[name]
        arr = d[()]
        attrs: dict[str, Any] = {"dataset": name}
        if _h5_attr(d, "quantity") is not None:
            attrs["quantity"] = str(_h5_attr(d, "quantity"))
        if _h5_attr(d, "units") is not None:
            attrs["units"] = str(_h5_attr(d, "units"))
        labels = [str(s.decode() if isinstance(s, bytes) else s) for s in d.attrs.get("DIMENSION_LABELS", [])]
        scales: list[Any] = []  # an h5py dimension scale, or None
        for dim in d.dims:  # HDF5 dimension scales, as pyNSID writes them
            scales.append(dim[0] if len(dim) else None)
        bias = None
        if len(labels) == arr.ndim and {"x", "y"} <= {s.lower() for s in labels}:
            low = [s.lower() for s in labels]
            other = [i for i, s in enumerate(low) if s not in ("x", "y")]
            order = [*other, low.index("y"), low.index("x")]
            arr = np.transpose(arr, order)
            xs, ys = scales[low.index("x")], scales[low.index("y")]
            geometry = _scale_geometry(ys, xs, dsets)
            if xs is not None and len(xs) > 1:
                attrs["pixel_size"] = float(abs(xs[1] - xs[0]))
                attrs["pixel_units"] = _spatial_units(xs, dsets)
            s = scales[other[0]] if other else None
            if s is not None:
                attrs["frame_axis_name"] = labels[other[0]]
                if str(_h5_attr(s, "units", "")) == "V" or str(_h5_attr(s, "quantity", "")).lower() == "bias":
                    bias = np.asarray(s[()], dtype=float)
                    attrs["frames_from"] = CUBE_BIAS_AXIS
        elif opts.get("frame_axis") not in (None, 0) and arr.ndim == 3:
            arr = np.moveaxis(arr, int(opts["frame_axis"]), 0)
        bias_name = (opts.get("bias") or {}).get("dataset")
        if bias_name is not None:
            if bias_name.strip("/") not in dsets:
                raise InputError(path, f"bias dataset {bias_name!r} is not there", f"one of {sorted(dsets)}")
            bias = np.asarray(dsets[bias_name.strip("/")][()], dtype=float).ravel()
    return Frames(_as_frames(arr, path), bias=bias, attrs=attrs, geometry=geometry)


LENGTH_UNITS = {"m", "mm", "um", "µm", "μm", "nm", "pm", "A", "Å", "angstrom"}


def _spatial_units(xs, dsets: dict[str, Any]) -> str:
    """Units of a spatial dimension scale. sidpy/pyNSID files (the PZT PFM scans) may stamp
    a channel's own units (deg for a phase) on its x/y scales; then the units come from
    another channel's scale of the same name and values that states a length."""
    units = str(_h5_attr(xs, "units", ""))
    if units in LENGTH_UNITS or str(_h5_attr(xs, "dimension_type", "")).upper() != "SPATIAL":
        return units
    base, values = xs.name.rsplit("/", 1)[-1], xs[()]
    for other in dsets.values():
        if (
            other.name.rsplit("/", 1)[-1] == base
            and str(_h5_attr(other, "units", "")) in LENGTH_UNITS
            and other.shape == xs.shape
            and np.array_equal(other[()], values)
        ):
            return str(_h5_attr(other, "units"))
    return units


def _scale_geometry(ys, xs, dsets: dict[str, Any]) -> dict[str, Any]:
    """Pixel size, scan size and offset (y, x) from sidpy/pyNSID dimension scales."""
    geometry: dict[str, Any] = {}
    if ys is None or xs is None or len(ys) < 2 or len(xs) < 2:
        return geometry
    y, x = np.asarray(ys[()], dtype=float), np.asarray(xs[()], dtype=float)
    geometry["pixel_size"] = (float(abs(y[1] - y[0])), float(abs(x[1] - x[0])))
    geometry["pixel_units"] = _spatial_units(xs, dsets)
    geometry["scan_size"] = (float(abs(y[-1] - y[0])), float(abs(x[-1] - x[0])))
    geometry["offset"] = (float(y[0]), float(x[0]))
    return geometry


def _read_zarr(path: Path, opts: dict) -> Frames:
    from .store import open_zarr_checked

    var = opts.get("dataset") or "image"
    # missing chunks of the frames (and their bias/time) are named, not read as fill values;
    # a chunk that does not decode is named when read
    ds = open_zarr_checked(path, "a zarr store with the frames", variables=[var, "bias", "time"], consolidated=False)
    if var not in ds:
        raise InputError(path, f"variable {var!r} is not there", f"`dataset:` one of {sorted(map(str, ds.data_vars))}")
    da = ds[var]
    attrs = {k: ds.attrs[k] for k in ("pixel_size", "pixel_units") if k in ds.attrs}
    geometry = {k: ds.attrs[k] for k in ("pixel_size", "pixel_units") if k in ds.attrs}
    if "units" in da.attrs:
        attrs["units"] = da.attrs["units"]
    bias = ds["bias"].values if "bias" in ds.coords else None
    time = ds["time"].values if "time" in ds.coords else None
    return Frames(_as_frames(da.values, path), bias=bias, time=time, attrs=attrs, geometry=geometry)


def _read_rosettasciio(path: Path, opts: dict, module: str) -> Frames:
    try:
        import importlib

        reader = importlib.import_module(f"rsciio.{module}").file_reader
    except ImportError as exc:
        raise InputError(
            path,
            "reading Gatan/Velox files needs rosettasciio, which is not installed",
            "`pip install 'ferrolens[microscopy]'`",
        ) from exc
    try:
        signals = reader(str(path))
    except Exception as exc:
        raise InputError(
            path, f"cannot be read by rosettasciio ({type(exc).__name__}: {exc})", "a readable .dm3/.dm4/.emd file"
        ) from exc
    images = [s for s in signals if np.ndim(s["data"]) >= 2]
    ch = opts.get("channel")
    if len(images) > 1 and ch is None:
        names = [s.get("metadata", {}).get("General", {}).get("title", str(i)) for i, s in enumerate(images)]
        raise InputError(path, f"{len(images)} signals {names}", "`channel:` (index or title) choosing one")
    sig = (
        images[0]
        if ch is None
        else (
            images[int(ch)]
            if isinstance(ch, int)
            else next((s for s in images if s.get("metadata", {}).get("General", {}).get("title") == ch), None)
        )
    )
    if sig is None:
        raise InputError(path, f"no signal titled {ch!r}", "`channel:` naming an existing signal")
    attrs: dict[str, Any] = {}
    geometry: dict[str, Any] = {}
    axes = sig.get("axes", [])
    if axes:
        attrs["pixel_size"] = float(axes[-1].get("scale", 1.0))
        attrs["pixel_units"] = str(axes[-1].get("units", ""))
    if len(axes) >= 2:
        ya, xa = axes[-2], axes[-1]
        geometry = {
            "pixel_size": (float(ya.get("scale", 1.0)), float(xa.get("scale", 1.0))),
            "pixel_units": str(xa.get("units", "")),
            "scan_size": tuple(float(a.get("scale", 1.0)) * int(a.get("size", 0)) for a in (ya, xa)),
            "offset": (float(ya.get("offset", 0.0)), float(xa.get("offset", 0.0))),
        }
    return Frames(_as_frames(np.asarray(sig["data"]), path), attrs=attrs, geometry=geometry)


READERS = {
    "tiff": _read_tiff,
    "image": _read_image,
    "npy": _read_npy,
    "npz": _read_npz,
    "hdf5": _read_hdf5,
    "zarr": _read_zarr,
    "dm": lambda p, o: _read_rosettasciio(p, o, "digitalmicrograph"),
    "emd": lambda p, o: _read_rosettasciio(p, o, "emd"),
}


GEOMETRY = {
    "pixel_units": "pixel units",
    "pixel_size": "pixel size (y, x)",
    "scan_size": "scan size (y, x)",
    "offset": "position/offset (y, x)",
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-6, atol=0.0))
    return a == b


def _show(v: Any) -> str:
    if v is None:
        return "not stated"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_show(u) for u in v) + ")"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def check_one_series(paths: list[Path], parts: list[Frames]) -> None:
    """Refuse files that are not one series: they differ in pixel units, pixel size,
    scan size or position (where any file states them), naming every file's value."""
    for key, label in GEOMETRY.items():
        values = [fr.geometry.get(key) for fr in parts]
        if all(v is None for v in values) or all(_same(v, values[0]) for v in values[1:]):
            continue
        first_bad = next(i for i, v in enumerate(values) if not _same(v, values[0]))
        units = next((fr.geometry.get("pixel_units") for fr in parts if fr.geometry.get("pixel_units")), "")
        unit = f" {units}" if key in ("pixel_size", "scan_size", "offset") and units else ""
        listing = "; ".join(
            f"{p.name}: {_show(v)}{unit if v is not None else ''}" for p, v in zip(paths, values, strict=True)
        )
        raise InputError(
            paths[first_bad],
            f"the {len(paths)} files are not one series: their {label} differ ({listing})",
            "files of one scan (same pixel size, scan size and position), "
            "or `mixed_series: true` in the dataset's config to join them anyway",
        )


def read_frames(path: str | Path | list, opts: dict | None = None) -> Frames:
    """Read every frame of a source (one file, a folder, or a list of files).

    ``opts``: ``format`` (auto), ``dataset``, ``channel``, ``frame_axis``,
    ``bias`` (dict; its ``dataset`` names an HDF5 bias dataset),
    ``mixed_series``. Several files are concatenated along frame; their frames
    must share one size and, unless ``mixed_series`` is true, one pixel size,
    scan size and position (:func:`check_one_series`).
    """
    opts = dict(opts or {})
    paths = expand_paths(path)
    parts: list[Frames] = []
    biases: list[np.ndarray | None] = []
    attrs: dict[str, Any] = {}
    for p in paths:
        fmt = detect_format(p, opts.get("format", "auto"))
        if fmt not in READERS:
            raise InputError(p, f"format {fmt!r}", f"one of {sorted(READERS)}")
        fr = READERS[fmt](p, opts)
        if parts and fr.image.shape[1:] != parts[0].image.shape[1:]:
            raise InputError(
                p,
                f"frame size {fr.image.shape[1:]} differs from {parts[0].image.shape[1:]} of {paths[0].name}",
                "frames of one size",
            )
        parts.append(fr)
        biases.append(fr.bias)
        attrs = {**fr.attrs, **attrs}
    if len(parts) > 1 and not opts.get("mixed_series"):
        check_one_series(paths, parts)
    if len(parts) > 1 and opts.get("mixed_series"):
        attrs["mixed_series"] = True
        sizes = [q.geometry.get("pixel_size") for q in parts]
        if not all(_same(v, sizes[0]) for v in sizes[1:]):  # no one pixel size: none is stamped on the movie
            attrs.pop("pixel_size", None)
            attrs["source_pixel_size"] = [None if v is None else list(v) for v in sizes]
    image = parts[0].image if len(parts) == 1 else np.concatenate([q.image for q in parts])
    bias = (
        parts[0].bias
        if len(parts) == 1
        else (np.concatenate([b for b in biases if b is not None]) if all(b is not None for b in biases) else None)
    )
    time = parts[0].time if len(parts) == 1 else None
    if image.shape[0] == 0 or 0 in image.shape[1:]:
        raise InputError(paths[0], f"holds no frames (shape {image.shape})", "at least one non-empty frame")
    attrs["source_files"] = [str(p) for p in paths]
    return Frames(image=image, bias=bias, time=time, attrs=attrs)
