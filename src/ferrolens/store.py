"""Zarr stores: the one vocabulary of dimension names, provenance attrs,
atomic writes and checked reads.

Every store the workflow writes is an :class:`xarray.Dataset` on zarr (format 3)
carrying ``attrs["ferrolens_kind"]`` (what the store is), the package version,
a digest of the config that made it and, where it came from a file, that
file's path and sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import __version__
from .errors import InputError

# Snakemake leaves a .snakemake_timestamp file in directory outputs; zarr warns
# about it on every read of a store, though it is harmless.
warnings.filterwarnings("ignore", message=".*snakemake_timestamp")

# --- one vocabulary of names (DESIGN.md: data model) -------------------------
FRAME, Y, X = "frame", "y", "x"
CLASS, SAMPLE, WY, WX = "class", "sample", "wy", "wx"
LATENT, WINDOW, VARIABLE, GRID, COMPONENT = "latent", "window", "variable", "grid", "component"
Z1, Z2 = "z1", "z2"
DIMS = (FRAME, Y, X, CLASS, SAMPLE, WY, WX, LATENT, WINDOW, VARIABLE, GRID, COMPONENT, Z1, Z2)

BIAS, TIME = "bias", "time"  # coordinates along `frame`
UNITS = {BIAS: "V", TIME: "s"}

KINDS = (
    "synthetic",
    "movie",
    "labels",
    "segmentation",
    "windows",
    "latents",
    "dynamics",
    "latent_space",
    "sweep",
)


def latent_labels(n_free: int) -> list[str]:
    """Labels of the rVAE latent axis: ``angle, dx, dy, z1 … zL``."""
    return ["angle", "dx", "dy"] + [f"z{i + 1}" for i in range(n_free)]


# --- provenance ---------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of every file below a folder in sorted order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def config_digest(cfg: Any) -> str:
    """Short, stable digest of a JSON-able config fragment."""
    text = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(kind: str, cfg: Any = None, **extra: Any) -> dict[str, Any]:
    """The attrs every store carries: kind, package version, config digest (+ extras)."""
    if kind not in KINDS:
        raise ValueError(f"unknown store kind {kind!r}; known: {', '.join(KINDS)}")
    attrs: dict[str, Any] = {"ferrolens_kind": kind, "ferrolens_version": __version__}
    if cfg is not None:
        attrs["config_digest"] = config_digest(cfg)
        attrs["config_json"] = json.dumps(cfg, sort_keys=True, default=str)
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


# --- atomic write --------------------------------------------------------------
def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_atomically(tmp: Path, path: Path) -> None:
    """Move a finished ``tmp`` (file or folder) onto ``path``.

    A folder cannot be renamed over a non-empty folder, so an old target is
    first renamed aside; a reader sees either the old or the new store, never
    a half-written one.
    """
    old = None
    if path.exists() or path.is_symlink():
        old = _tmp_beside(path)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        _remove(old)


def write_store(ds: xr.Dataset, path: str | Path, encoding: Mapping | None = None) -> Path:
    """Write ``ds`` to a zarr (v3) store at ``path`` atomically.

    The store is written beside the target under a hidden temporary name and
    renamed into place only when complete; on any error the temporary is
    removed and an existing target is left untouched.
    """
    path = Path(path)
    if "ferrolens_kind" not in ds.attrs:
        raise ValueError("a store needs attrs from ferrolens.store.provenance()")
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed-width numpy strings have no zarr v3 spec yet; variable-length ones do
    ds = ds.assign_coords({k: v.astype(object) for k, v in ds.coords.items() if v.dtype.kind == "U"})
    ds = ds.assign({k: v.astype(object) for k, v in ds.data_vars.items() if v.dtype.kind == "U"})
    tmp = _tmp_beside(path)
    try:
        with warnings.catch_warnings():
            # consolidated metadata is not in the v3 spec yet, but it lets a plain
            # `xr.open_zarr(path)` in a notebook open the store quickly and quietly
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True, encoding=dict(encoding or {}))
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_store_streamed(
    parts: Iterable[xr.Dataset],
    path: str | Path,
    encoding: Mapping | None = None,
    append_dim: str = FRAME,
) -> Path:
    """Write a store part by part (e.g. batches of frames) with bounded memory, atomically.

    The first part creates the store (with ``encoding``; it must carry the
    provenance attrs and any variables without ``append_dim``); every later
    part holds only variables along ``append_dim`` and is appended along it.
    The finished store is consolidated and renamed into place; on any error
    nothing is left behind.
    """
    import zarr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        attrs = None
        for part in parts:
            if attrs is None:
                if "ferrolens_kind" not in part.attrs:
                    raise ValueError("a store needs attrs from ferrolens.store.provenance()")
                attrs = dict(part.attrs)
                part = part.assign_coords({k: v.astype(object) for k, v in part.coords.items() if v.dtype.kind == "U"})
                part.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=dict(encoding or {}))
            else:
                # an append rewrites the group's attrs with the part's: keep the store's
                part = part.copy()
                part.attrs = attrs
                part.to_zarr(tmp, append_dim=append_dim, zarr_format=3, consolidated=False)
        if attrs is None:
            raise ValueError(f"nothing to write to {path}: no parts")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(str(tmp))
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_file_atomic(path: str | Path, writer) -> Path:
    """Call ``writer(tmp_path)`` then rename the result onto ``path``.

    For files other than zarr stores (CSV, JSON, PNG, checkpoints). The
    temporary keeps the target's suffix so writers that dispatch on it work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        writer(tmp)
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


# --- checked read ----------------------------------------------------------------
def open_store(
    path: str | Path,
    kind: str | Iterable[str],
    variables: Iterable[str] = (),
) -> xr.Dataset:
    """Open a ferrolens store lazily and check that it is what the caller expects.

    Parameters
    ----------
    path : the ``.zarr`` folder.
    kind : expected ``ferrolens_kind`` (or several accepted kinds).
    variables : data variables that must be present.

    Raises :class:`~ferrolens.errors.InputError` naming the store, what it holds
    and what was expected.
    """
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not path.exists():
        raise InputError(path, "store does not exist", f"a {' or '.join(kinds)} store written by ferrolens")
    try:
        ds = xr.open_zarr(path)
    except Exception as exc:  # zarr raises many types for a broken folder
        raise InputError(path, f"cannot be opened as a zarr store ({type(exc).__name__}: {exc})",
                         f"a {' or '.join(kinds)} store written by ferrolens") from exc
    found = ds.attrs.get("ferrolens_kind")
    if found not in kinds:
        raise InputError(path, f"store kind is {found!r}", f"kind {' or '.join(map(repr, kinds))}")
    missing = [v for v in variables if v not in ds.variables]
    if missing:
        raise InputError(path, f"store lacks variable(s) {missing}; it has {sorted(ds.data_vars)}",
                         f"variables {list(variables)}")
    return ds


def check_checkpoint(path: str | Path, kind: str, expected: str) -> Path:
    """Check that ``path`` is a readable PyTorch checkpoint of ferrolens model ``kind``.

    Loaded with ``weights_only=True`` (no arbitrary unpickling). A missing or
    unreadable file, or a checkpoint of another model kind, raises
    :class:`InputError` naming the file; ``expected`` says what should be there.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file does not exist", expected)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a non-checkpoint
        raise InputError(path, f"is not a readable PyTorch checkpoint ({type(exc).__name__})", expected) from exc
    found = ckpt.get("ferrolens_model") if isinstance(ckpt, dict) else None
    if found != kind:
        if found is None and isinstance(ckpt, dict) and "hyper_parameters" in ckpt:
            found = f"a Lightning checkpoint with hyper-parameters {sorted(ckpt['hyper_parameters'])[:8]}"
        elif found is None:
            found = "no ferrolens model kind"
        else:
            found = repr(found)
        raise InputError(path, f"checkpoint of another model kind ({found})", f"model kind {kind!r}: {expected}")
    return path


def frame_coords(n_frames: int, bias: np.ndarray | None = None, time: np.ndarray | None = None) -> dict:
    """Coordinates along ``frame``: index, and bias (V) / time (s) when known."""
    coords: dict[str, Any] = {FRAME: np.arange(n_frames)}
    if bias is not None:
        coords[BIAS] = (FRAME, np.asarray(bias, dtype="float64"), {"units": UNITS[BIAS], "long_name": "applied bias"})
    if time is not None:
        coords[TIME] = (FRAME, np.asarray(time, dtype="float64"), {"units": UNITS[TIME], "long_name": "time"})
    return coords
