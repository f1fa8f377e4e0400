"""The rVAE quality gate's report file, ``quality.json`` (written by :func:`ferrolens.rvae.quality.report`),
read without importing torch: the figures that print its verdict would otherwise pay ~2 s of CPU each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_report(path: str | Path) -> dict[str, Any]:
    """A ``quality.json``: ``{"measurements", "thresholds", "passed", "failed", "quality_warning"}``."""
    return json.loads(Path(path).read_text())
