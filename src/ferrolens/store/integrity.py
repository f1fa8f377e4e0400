"""Integrity of what is on disk: a missing chunk of a store and an unreadable or foreign
checkpoint are named (file, variable, chunk) instead of read as fill values or unpickled."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

REWRITE = "an intact store: delete it and run the rule (or function) that writes it again"


def chunk_name(arr: Any, coords: tuple[int, ...]) -> str:
    """Path of chunk ``coords`` of zarr array ``arr`` inside its store (e.g. ``image/c/2/0/0``)."""
    return f"{arr.path}/{arr.metadata.encode_chunk_key(tuple(coords))}"


def check_chunks(path: str | Path, variables: Iterable[str] | None = None) -> None:
    """Raise :class:`InputError` naming the store and chunk when a chunk file is missing.

    ferrolens writes every chunk (``write_empty_chunks``), so a missing one is
    damage (a deleted or lost file) that would otherwise read as the fill value
    (NaN, or 0 for integers) without a word. ``variables``: the arrays to check
    (default: all of the group's arrays).
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        arrays = dict(group.arrays())
    except Exception as exc:
        raise InputError(
            path, f"cannot be opened as a zarr group ({type(exc).__name__}: {exc})", "a zarr store"
        ) from exc
    for name in arrays if variables is None else [v for v in variables if v in arrays]:
        arr = arrays[name]
        if arr.nchunks_initialized >= arr.nchunks:
            continue
        missing = [
            c
            for c in itertools.product(*(range(n) for n in arr.cdata_shape))
            if not (path / chunk_name(arr, c)).exists()
        ]
        if not missing:  # not a local folder layout: trust the count
            raise InputError(
                path,
                f"variable {name!r} has {arr.nchunks - arr.nchunks_initialized} of {arr.nchunks} chunks missing",
                REWRITE,
            )
        shown = ", ".join(f"{c} ({chunk_name(arr, c)})" for c in missing[:3])
        fill = np.asarray(arr.metadata.fill_value).item()
        raise InputError(
            path,
            f"variable {name!r}: {len(missing)} of {arr.nchunks} chunks missing, e.g. chunk "
            f"{shown}; they would read as the fill value {fill!r}",
            REWRITE,
        )


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
