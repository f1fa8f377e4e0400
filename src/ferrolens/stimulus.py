"""The stimulus a movie's frames are recorded under: bias, temperature, time or just the frame index.

Figures and tables name the stimulus they plot against (``stimulus(ds).label``)
rather than saying "bias" for a movie that has none, and leave out, with one
sentence of why, what does not apply (:attr:`Stimulus.why_no_loop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .store import FRAME

# coordinates along frame that can drive a transformation, in order of preference, with default units
CANDIDATES = (("bias", "V"), ("temperature", "K"), ("time", "s"))


@dataclass(frozen=True)
class Stimulus:
    """What the frames are plotted against.

    name : ``bias``, ``temperature``, ``time`` or ``frame``.
    values : ``(F,)`` float64, one per frame (the frame index for ``frame``).
    units : e.g. ``V``; ``""`` for the frame index.
    """

    name: str
    values: np.ndarray
    units: str

    @property
    def label(self) -> str:
        """Axis label, e.g. ``bias (V)`` or ``frame index``."""
        return f"{self.name} ({self.units})" if self.units else "frame index"

    @property
    def applied(self) -> bool:
        """True for an external stimulus (bias, temperature), False for time or the frame index."""
        return self.name in ("bias", "temperature")

    def value_text(self, i: int) -> str:
        """The value at frame position ``i``, e.g. ``+4.00 V``, ``t = 3.0 s`` or ``""`` (frame index)."""
        v = float(self.values[i])
        if self.name == "bias":
            return f"{v:+.2f} V"
        if self.name == "time":
            return f"t = {v:.3g} s"
        if self.name == "frame":
            return ""
        return f"{v:.4g} {self.units}".strip()

    @property
    def reversals(self) -> int:
        """How many times the stimulus turns back (0: it never cycles, so there is no loop)."""
        v = self.values[np.isfinite(self.values)]
        d = np.sign(np.diff(v))
        d = d[d != 0]
        return int((d[1:] != d[:-1]).sum()) if d.size > 1 else 0

    @property
    def why_no_loop(self) -> str | None:
        """One sentence on why hysteresis does not apply, or None when the stimulus cycles."""
        if self.name == "frame":
            return "The movie has no bias, temperature or time: frames are plotted in order and there is no loop."
        if not self.applied:
            return f"The movie's only stimulus is {self.name}, which does not cycle: there is no loop."
        if self.reversals == 0:
            return f"The {self.name} does not turn back within the movie: there is no loop."
        return None


def stimulus(ds) -> Stimulus:
    """The stimulus of an xarray Dataset/DataArray with a ``frame`` dimension.

    The first of ``bias``, ``temperature``, ``time`` present as a coordinate along
    ``frame`` with all values finite and not all equal; else the frame index.
    Units come from the coordinate's ``units`` attribute.
    """
    for name, default_units in CANDIDATES:
        if name in ds.coords and ds[name].dims == (FRAME,):
            v = np.asarray(ds[name].values, dtype=np.float64)
            if v.size and np.isfinite(v).all() and np.ptp(v) > 0:
                return Stimulus(name, v, str(ds[name].attrs.get("units", default_units)))
    n = ds.sizes[FRAME]
    values = np.asarray(ds[FRAME].values, dtype=np.float64) if FRAME in ds.coords else np.arange(n, dtype=np.float64)
    return Stimulus("frame", values, "")
