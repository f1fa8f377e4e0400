"""Atomic writes: a store or file is written beside its target under a hidden temporary
name and renamed into place when complete, so a killed job never leaves one that looks
finished; the next write of the same target removes what a killed writer left."""

from __future__ import annotations

import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from .declarations import FRAME, check_layout


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | Path, suffix: str = "") -> list[Path]:
    """Remove temporaries that killed writers left beside ``path``; return what was removed.

    Only siblings named exactly like this module's temporaries of *this*
    target (``.<name>.tmp-<pid>-<8 hex>``, or ``.<stem>.tmp-<pid>-<8 hex><suffix>``
    for plain files) are candidates, so another store's temporaries are never
    touched; of those, one whose writing process is still alive on this host
    (a concurrent writer) is left alone.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stem = path.stem if suffix else path.name
    pattern = re.compile(rf"\.{re.escape(stem)}\.tmp-(\d+)-[0-9a-f]{{8}}{re.escape(suffix)}")
    removed = []
    for sib in path.parent.iterdir():
        m = pattern.fullmatch(sib.name)
        if m and not _pid_alive(int(m.group(1))):
            _remove(sib)
            removed.append(sib)
    return removed


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

    ``ds`` is first checked against the declaration of its kind
    (:data:`STORE_KINDS`, :func:`check_layout`): a store the declaration does
    not allow raises :class:`LayoutError` before anything is written. The
    store is written beside the target under a hidden temporary name and
    renamed into place only when complete; on any error the temporary is
    removed and an existing target is left untouched.
    """
    path = Path(path)
    check_layout(ds, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # fixed-width numpy strings have no zarr v3 spec yet; variable-length ones do
    ds = ds.assign_coords({k: v.astype(object) for k, v in ds.coords.items() if v.dtype.kind == "U"})
    ds = ds.assign({k: v.astype(object) for k, v in ds.data_vars.items() if v.dtype.kind == "U"})
    tmp = _tmp_beside(path)
    try:
        with warnings.catch_warnings():
            # consolidated metadata is not in the v3 spec yet, but it lets a plain
            # `xr.open_zarr(path)` in a notebook open the store quickly and quietly
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            # every chunk is written, even one equal to the fill value, so that a chunk
            # missing on disk is damage that open_store can name (not a silent fill value)
            ds.to_zarr(
                tmp, mode="w", zarr_format=3, consolidated=True, encoding=dict(encoding or {}), write_empty_chunks=True
            )
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
    finish: Callable[[], xr.Dataset] | None = None,
) -> Path:
    """Write a store part by part (e.g. batches of frames) with bounded memory, atomically.

    The first part creates the store (with ``encoding``; it must carry the
    provenance attrs and every variable the kind declares); every later
    part holds only variables along ``append_dim`` and is appended along it.
    ``finish``, when given, is called once every part is written and returns
    variables of the first part whose values are known only then (e.g.
    gathered from all the parts); they are written over the first part's
    placeholders, same names, shapes and dtypes. Each part is checked against
    the kind's declaration before it is written. The finished store is
    consolidated and renamed into place; on any error nothing is left behind.
    """
    import zarr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_beside(path)
    try:
        attrs = None
        for part in parts:
            if attrs is None:
                check_layout(part, path)
                attrs = dict(part.attrs)
                part = part.assign_coords({k: v.astype(object) for k, v in part.coords.items() if v.dtype.kind == "U"})
                part.to_zarr(
                    tmp,
                    mode="w",
                    zarr_format=3,
                    consolidated=False,
                    encoding=dict(encoding or {}),
                    write_empty_chunks=True,
                )
            else:
                # an append rewrites the group's attrs with the part's: keep the store's
                part = part.copy()
                part.attrs = attrs
                check_layout(part, path, part=True)
                part.to_zarr(tmp, append_dim=append_dim, zarr_format=3, consolidated=False, write_empty_chunks=True)
        if attrs is None:
            raise ValueError(f"nothing to write to {path}: no parts")
        if finish is not None:
            last = finish()
            last.attrs = attrs
            # mode "a" without append_dim overwrites the named arrays in place (their chunks as created)
            last.to_zarr(tmp, mode="a", zarr_format=3, consolidated=False, write_empty_chunks=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(str(tmp))
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_file_atomic(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` then rename the result onto ``path``.

    For files other than zarr stores (CSV, JSON, PNG, checkpoints). The
    temporary keeps the target's suffix so writers that dispatch on it work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix=path.suffix)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        writer(tmp)
        replace_atomically(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path
