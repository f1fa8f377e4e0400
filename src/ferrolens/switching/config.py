"""The ``switching:`` config section: its defaults and the checked section of a (partial) dict
(from ``workflow/schemas/fragments/switching.yaml``)."""

from __future__ import annotations

from typing import Any, cast

from ..config import section as config_section
from ..sections import SwitchingConfig

#: Defaults of the ``switching:`` section, read from its schema fragment (the one source of them).
DEFAULTS: dict[str, Any] = config_section("switching")


def resolve_config(cfg: dict | None) -> SwitchingConfig:
    """``cfg`` (the ``switching:`` section, possibly partial) with defaults filled, checked and frozen."""
    return cast(SwitchingConfig, config_section("switching", cfg))
