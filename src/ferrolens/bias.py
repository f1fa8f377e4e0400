"""The applied stimulus per frame: bias waveforms and bias tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError


def triangular_waveform(n_frames: int, amplitude: float, cycles: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """Triangular bias, one value per frame (V).

    Frame ``i`` sits at phase ``t = phase + cycles * i / n_frames`` (in cycles);
    ``t = 0`` is 0 V rising, 0.25 is +amplitude, 0.5 is 0 V falling, 0.75 is
    -amplitude. The movie samples whole periods without repeating the first
    value at the end, as a recorded sweep does.

    Returns float64 array (n_frames,).
    """
    if n_frames < 1:
        raise InputError("bias.waveform", f"n_frames = {n_frames}", "at least one frame")
    t = phase + cycles * np.arange(n_frames) / n_frames
    u = np.mod(t - 0.25, 1.0)
    return amplitude * (4.0 * np.abs(u - 0.5) - 1.0)


def read_bias_csv(path: str | Path) -> pd.DataFrame:
    """Read a bias table with columns ``frame, bias`` and optionally ``time``.

    Returns a DataFrame indexed by frame (sorted), columns bias [, time].
    """
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise InputError(path, f"cannot be read as CSV ({exc})", "a CSV with columns frame,bias[,time]") from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = {"frame", "bias"} - set(df.columns)
    if missing:
        raise InputError(
            path, f"columns are {list(df.columns)}, missing {sorted(missing)}", "columns frame,bias[,time]"
        )
    for col in [c for c in ("frame", "bias", "time") if c in df.columns]:
        # pandas may give a string or object dtype that numpy cannot interpret: coerce, then name the rows
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            shown = ", ".join(f"row {i + 2}: {df[col].iloc[i]!r}" for i in bad[:5])  # +2: header, 1-based
            raise InputError(
                path,
                f"column {col!r} has {bad.size} non-numeric or non-finite value(s) ({shown}"
                f"{' …' if bad.size > 5 else ''})",
                "finite numbers",
            )
        df[col] = values
    if not np.all(df["frame"] == np.round(df["frame"])):
        fractional = df.loc[df["frame"] != np.round(df["frame"]), "frame"].tolist()[:5]
        raise InputError(path, f"column 'frame' has fractional values {fractional}", "whole source-frame indices")
    df["frame"] = df["frame"].astype(np.int64)
    if df["frame"].duplicated().any():
        raise InputError(
            path, f"frames {sorted(df.loc[df['frame'].duplicated(), 'frame'].unique())} repeat", "one row per frame"
        )
    return df.set_index("frame").sort_index()


def check_length(values, n_frames: int, where: str) -> np.ndarray:
    """Bias/time values as float64, checking that there is one per frame."""
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size != n_frames:
        raise InputError(where, f"has {arr.size} values but the movie has {n_frames} frames", "one value per frame")
    if not np.isfinite(arr).all():
        raise InputError(
            where,
            f"values at positions {np.flatnonzero(~np.isfinite(arr))[:10].tolist()} are not finite",
            "finite numbers",
        )
    return arr
