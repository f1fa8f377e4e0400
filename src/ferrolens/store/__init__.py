"""Zarr stores: the one vocabulary of dimension names, each store kind declared once,
provenance attrs, atomic writes and checked reads.

Every store the workflow writes is an :class:`xarray.Dataset` on zarr (format 3)
carrying ``attrs["ferrolens_kind"]`` (what the store is), the package version,
a digest of the config that made it and, where it came from a file, that
file's path and sha256.

One module per job, every public name re-exported here (``from ferrolens.store import …``):

- :mod:`.declarations`: dimension names (``DIMS``), ``STORE_KINDS`` with typed attrs
  (``Attr``; ``json_attr``/``read_attr`` write and read the JSON-text ones), ``check_layout``;
- :mod:`.origin`: ``provenance()`` attrs, ``sha256_file``, ``config_digest``, inherited quality attrs;
- :mod:`.atomic`: ``write_store``, ``write_store_streamed``, ``write_file_atomic`` (temporary + rename);
- :mod:`.integrity`: missing chunks (``check_chunks``) and checkpoints (``check_checkpoint``) named;
- :mod:`.reader`: ``open_store`` / ``open_zarr_checked``, lazy reads that name a damaged chunk.
"""

from __future__ import annotations

import warnings

from .atomic import remove_stale_temporaries, replace_atomically, write_file_atomic, write_store, write_store_streamed
from .declarations import (
    BIAS,
    CHANNEL,
    CLASS,
    COMPONENT,
    DIMS,
    DIRECTION,
    FRAME,
    GRID,
    HIST_BIN,
    HIST_COMPONENT,
    KINDS,
    LATENT,
    PROVENANCE_ATTRS,
    SAMPLE,
    STIM_POINT,
    STORE_KINDS,
    TIME,
    UNITS,
    VARIABLE,
    VARIABLE_NMF,
    VARIANT,
    WINDOW,
    WX,
    WY,
    Z1,
    Z1D,
    Z2,
    Z2D,
    Attr,
    LayoutError,
    StoreKind,
    X,
    Y,
    check_layout,
    frame_coords,
    json_attr,
    latent_labels,
    read_attr,
)
from .integrity import REWRITE, check_checkpoint, check_chunks
from .origin import QUALITY_ATTRS, config_digest, inherited_quality, provenance, sha256_file
from .reader import CheckedArray, CheckedZarrBackend, open_store, open_zarr_checked

# Snakemake leaves a .snakemake_timestamp file in directory outputs; zarr warns
# about it on every read of a store, though it is harmless.
warnings.filterwarnings("ignore", message=".*snakemake_timestamp")

__all__ = [
    "BIAS",
    "CHANNEL",
    "CLASS",
    "COMPONENT",
    "DIMS",
    "DIRECTION",
    "FRAME",
    "GRID",
    "HIST_BIN",
    "HIST_COMPONENT",
    "KINDS",
    "LATENT",
    "PROVENANCE_ATTRS",
    "QUALITY_ATTRS",
    "REWRITE",
    "SAMPLE",
    "STIM_POINT",
    "STORE_KINDS",
    "TIME",
    "UNITS",
    "VARIABLE",
    "VARIABLE_NMF",
    "VARIANT",
    "WINDOW",
    "WX",
    "WY",
    "Z1",
    "Z1D",
    "Z2",
    "Z2D",
    "Attr",
    "CheckedArray",
    "CheckedZarrBackend",
    "LayoutError",
    "StoreKind",
    "X",
    "Y",
    "check_checkpoint",
    "check_chunks",
    "check_layout",
    "config_digest",
    "frame_coords",
    "inherited_quality",
    "json_attr",
    "latent_labels",
    "open_store",
    "open_zarr_checked",
    "provenance",
    "read_attr",
    "remove_stale_temporaries",
    "replace_atomically",
    "sha256_file",
    "write_file_atomic",
    "write_store",
    "write_store_streamed",
]
