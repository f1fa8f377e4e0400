"""The ``segment:`` config section: its defaults and the checked section of a (partial) dict.

Both come from ``workflow/schemas/fragments/segment.yaml`` and the cross-field rules in
:mod:`ferrolens.config`, so the entry functions also work from a notebook with a partial dict.
"""

from __future__ import annotations

from typing import Any, cast

from ..config import section as config_section
from ..sections import SegmentConfig

#: Defaults of the ``segment:`` section, read from its schema fragment (the one source of them).
DEFAULTS: dict[str, Any] = config_section("segment")

def resolve_config(cfg: dict | None) -> SegmentConfig:
    """``cfg`` (the ``segment:`` section, possibly partial) with defaults filled, checked and
    frozen (:func:`ferrolens.config.section`: the schema, then its cross-field rules).

    Unknown keys and out-of-range values raise :class:`InputError` naming the key.
    """
    return cast(SegmentConfig, config_section("segment", cfg))
