"""Checked lazy reads: stores open through xarray's own zarr backend, and every read that fails
to decode names the store, the variable and the damaged chunk.

The reads stay what ``xr.open_zarr`` gives without dask: lazy (opening and ``isel`` read no chunk,
chained selections are composed and read once) and bounded (a selection reads the chunks it
touches). The one xarray API used beyond ``open_dataset`` is the public backend interface
(``xarray.backends.BackendEntrypoint``, ``BackendArray``) with the lazy-indexing helpers its guide
prescribes for a lazily loaded backend array (``LazilyIndexedArray``, ``explicit_indexing_adapter``,
``IndexingSupport``; docs.xarray.dev, "How to add a new backend": "How to support lazy loading").
xarray's ``open_dataset`` wraps the result in its copy-on-write and cache layers as for any engine.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint, ZarrBackendEntrypoint
from xarray.core.indexing import IndexingSupport, LazilyIndexedArray, explicit_indexing_adapter

from ..errors import InputError
from .declarations import STORE_KINDS
from .integrity import REWRITE, check_chunks, chunk_name


def _covered_chunks(arr: Any, key: tuple) -> Iterable[tuple[int, ...]]:
    """Chunk coordinates an (outer) indexing key touches."""
    per_axis = []
    for k, n, c in zip(key, arr.shape, arr.chunks, strict=False):
        idx = np.arange(n)[k] if isinstance(k, slice) else np.atleast_1d(np.asarray(k)) % max(n, 1)
        per_axis.append(sorted(set((idx // c).tolist())))
    return itertools.product(*per_axis)


class CheckedArray(BackendArray):
    """Lazy read of one zarr array that turns any decoding failure into an InputError
    naming the store, the variable and the damaged chunk (an xarray backend array)."""

    def __init__(self, arr: Any, store_path: Path, name: str):
        self._arr, self._path, self._name = arr, Path(store_path), name
        self.shape, self.dtype = tuple(arr.shape), np.dtype(arr.dtype)

    def __getitem__(self, key: Any) -> Any:
        # zarr reads basic and orthogonal selections; xarray turns a vectorised one into those
        return explicit_indexing_adapter(key, self.shape, IndexingSupport.OUTER, self._read)

    def _read(self, key: tuple) -> Any:
        try:
            if any(isinstance(k, np.ndarray) for k in key):
                return self._arr.oindex[key]
            return self._arr[key]
        except Exception as exc:
            bad = None
            for c in _covered_chunks(self._arr, key):
                try:
                    self._arr.get_block_selection(c)
                except Exception:
                    bad = c
                    break
            where = f"chunk {bad} ({chunk_name(self._arr, bad)})" if bad is not None else "a chunk"
            raise InputError(
                self._path, f"variable {self._name!r}: {where} cannot be read ({type(exc).__name__}: {exc})", REWRITE
            ) from exc


def _guard_reads(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """``ds`` (as xarray's zarr backend opened ``path``) with its lazy reads routed through :class:`CheckedArray`.

    Only variables that xarray reads unchanged (no scale/offset, no integer
    fill masking, same dtype as on disk) are rerouted; they are all that
    ferrolens writes. Dimension coordinates (read at once into their index) stay as they are.
    """
    import zarr

    arrays = dict(zarr.open_group(str(path), mode="r").arrays())
    checked: dict[str, xr.Variable] = {}
    for name, var in ds.variables.items():
        if name in ds.indexes or name in ds.dims or name not in arrays:
            continue
        arr, enc = arrays[str(name)], var.encoding
        if np.dtype(arr.dtype) != var.dtype or var.dtype.kind not in "fiub":
            continue
        if "scale_factor" in enc or "add_offset" in enc:
            continue
        fill = enc.get("_FillValue")
        if fill is not None and not (var.dtype.kind == "f" and np.isnan(fill)):
            continue
        lazy = LazilyIndexedArray(CheckedArray(arr, path, str(name)))
        checked[str(name)] = xr.Variable(var.dims, lazy, var.attrs, var.encoding)
    out = ds.assign_coords({k: v for k, v in checked.items() if k in ds.coords})
    out = out.assign({k: v for k, v in checked.items() if k not in ds.coords})
    out.set_close(ds.close)
    return out


class CheckedZarrBackend(BackendEntrypoint):
    """xarray's zarr engine with checked reads: ``xr.open_dataset(path, engine=CheckedZarrBackend)``.

    Takes every argument of xarray's zarr engine (``consolidated``, ``zarr_format`` …) and opens
    the store with it; the variables it reads unchanged then read through :class:`CheckedArray`.
    """

    description = "zarr (ferrolens): a chunk that does not decode is named"
    open_dataset_parameters = tuple(
        p for p in inspect.signature(ZarrBackendEntrypoint.open_dataset).parameters if p != "self"
    )

    def open_dataset(self, filename_or_obj: Any, *, drop_variables: Any = None, **kwargs: Any) -> xr.Dataset:
        ds = ZarrBackendEntrypoint().open_dataset(filename_or_obj, drop_variables=drop_variables, **kwargs)
        return _guard_reads(ds, Path(filename_or_obj))


def open_zarr_checked(
    path: str | Path, expected: str, variables: Iterable[str] | None = None, **open_kw: Any
) -> xr.Dataset:
    """``xr.open_zarr`` (without dask chunks) that names the store on any failure: unreadable
    metadata, missing chunks (``check_chunks`` on ``variables``, default all) and, later,
    chunks that do not decode (reads go through :class:`CheckedArray`).
    ``expected`` says what should be there; ``open_kw`` go to xarray's zarr engine."""
    path = Path(path)
    try:
        ds = xr.open_dataset(path, engine=CheckedZarrBackend, **{"chunks": None, **open_kw})
    except Exception as exc:  # zarr raises many types for a broken folder
        raise InputError(path, f"cannot be opened as a zarr store ({type(exc).__name__}: {exc})", expected) from exc
    check_chunks(path, variables)
    return ds


def open_store(
    path: str | Path,
    kind: str | Iterable[str],
    variables: Iterable[str] | None = None,
) -> xr.Dataset:
    """Open a ferrolens store lazily and check it against its kind's declaration.

    Parameters
    ----------
    path : the ``.zarr`` folder.
    kind : expected ``ferrolens_kind`` (or several accepted kinds).
    variables : data variables that must be present besides the declared ones
        (default: just those, :attr:`StoreKind.variables`).

    Checked, from metadata only (:meth:`StoreKind.problems`): the kind, the
    declared variables and coordinates and their dims, the declared attrs,
    and declared units where the store states units. Raises
    :class:`~ferrolens.errors.InputError` naming the store, what it holds and
    what was expected; also for a missing chunk (at once) and for a chunk that
    cannot be decoded (when it is read), naming the chunk.
    """
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    expected = f"a {' or '.join(kinds)} store written by ferrolens"
    if not path.exists():
        raise InputError(path, "store does not exist", expected)
    ds = open_zarr_checked(path, expected)
    found = ds.attrs.get("ferrolens_kind")
    if found not in kinds or found not in STORE_KINDS:
        raise InputError(path, f"store kind is {found!r}", f"kind {' or '.join(map(repr, kinds))}")
    problems = STORE_KINDS[found].problems(ds, variables or ())
    if problems:
        problem, want = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InputError(path, problem + more, want)
    return ds
