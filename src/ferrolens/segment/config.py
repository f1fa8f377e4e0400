"""The ``segment:`` config section: :func:`ferrolens.config.section` ``("segment", cfg)``, a
``ferrolens.sections.SegmentConfig`` (the schema fragment ``schemas/fragments/segment.yaml``, then the
cross-field rules of :mod:`ferrolens.config`), so the entry functions also work from a notebook with a
partial dict.
"""

from __future__ import annotations

import functools

from ..config import section
from ..sections import SegmentConfig

#: Defaults of the ``segment:`` section, read from its schema fragment (the one source of them).
DEFAULTS: SegmentConfig = section("segment")

#: ``resolve_config(cfg)`` = ``section("segment", cfg)``: the checked, filled, frozen section (the name
#: ``ferrolens.segment`` has exported to notebooks and callers; the one implementation is ``section``).
resolve_config = functools.partial(section, "segment")
