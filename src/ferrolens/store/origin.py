"""Where a store came from: the provenance attrs every store carries, file digests, and the
quality attrs a latents store hands on to the stores made from it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import __version__
from .declarations import KINDS


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


#: Attributes of a latents store that carry the model's checks on to every store derived from it
#: (dynamics, latent space), so that each figure of those latents can say whether they were earned.
QUALITY_ATTRS = ("quality_r2", "quality_angle_follow", "quality_warning")


def inherited_quality(attrs: dict) -> dict:
    """The :data:`QUALITY_ATTRS` of a latents store's ``attrs`` (those present)."""
    return {k: attrs[k] for k in QUALITY_ATTRS if k in attrs}
