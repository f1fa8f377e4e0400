"""Compare the results of two workflow runs: every store, table, record and figure.

``python -m ferrolens.compare RUN_A RUN_B [--rtol R] [--atol A]`` walks two result folders
(e.g. ``results/demo`` of two commits) and prints, per file, whether the two runs agree:

* zarr stores: the same variables and coordinates (names, dims, dtypes, shapes) and values
  equal, or within ``rtol``/``atol`` for floats (NaN equals NaN); attrs equal, except those
  that name where or when a run happened (paths, checkpoint digests, the package version);
* CSV tables: the same columns and rows, numbers within the tolerance (the columns that time a
  run, :data:`VOLATILE_COLUMNS`, left out);
* JSON records: equal, numbers within the tolerance;
* PNG figures: the same pixels (the largest difference of a channel is printed otherwise).

Checkpoints, logs, benchmarks and PDFs are not compared (their bytes carry times and
paths); a model's numbers show in the stores it makes. Exit status 0 when everything
agrees, 1 otherwise: a refactor that keeps behaviour passes with ``--rtol 0 --atol 0``
wherever the arithmetic is unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Snakemake's timestamp file in a directory output is not part of the store
warnings.filterwarnings("ignore", message=".*snakemake_timestamp")

#: Attributes that name where or when a run happened, not what it computed.
VOLATILE_ATTRS = (
    "ferrolens_version",
    "checkpoint",
    "checkpoint_sha256",
    "movie",
    "windows",
    "latents",
    "source_sha256",
    "created",
    "git_commit",
    "seconds",  # the switching store's run time
)
#: CSV columns that time a run, not what it computed: a training record's seconds per epoch
#: (:data:`ferrolens.training.TIMES`).
VOLATILE_COLUMNS = ("wall_s", "cpu_s")
#: Files whose bytes are not results (times, paths, binary state).
SKIP_SUFFIXES = (".ckpt", ".log", ".pdf", ".tsv")
SKIP_DIRS = ("logs", "csv_logs", ".snakemake")


@dataclass
class Difference:
    path: str
    what: str


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> tuple[bool, str]:
    if a.shape != b.shape:
        return False, f"shape {a.shape} vs {b.shape}"
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        same_nan = np.isnan(a64) == np.isnan(b64)
        ok = same_nan & (np.isnan(a64) | np.isclose(a64, b64, rtol=rtol, atol=atol))
        if ok.all():
            return True, ""
        finite = np.isfinite(a64) & np.isfinite(b64)
        gap = float(np.max(np.abs(a64 - b64)[finite])) if finite.any() else math.nan
        return False, f"{int((~ok).sum())} of {a.size} values differ (largest |a − b| {gap:.3g})"
    if np.array_equal(a, b):
        return True, ""
    return False, f"{int((a != b).sum())} of {a.size} values differ"


def _same_value(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "{[" and b[:1] in "{[":
        try:  # JSON kept in an attribute (config_json, quality)
            return _same_value(json.loads(a), json.loads(b), rtol, atol)
        except ValueError:
            pass
    return a == b


def compare_store(a: Path, b: Path, rtol: float, atol: float) -> list[str]:
    """Differences between two zarr stores (empty when they agree)."""
    import xarray as xr

    out = []
    da, db = xr.open_zarr(a, consolidated=False), xr.open_zarr(b, consolidated=False)
    for kind, va, vb in (("variable", da.data_vars, db.data_vars), ("coordinate", da.coords, db.coords)):
        if set(va) != set(vb):
            out.append(f"{kind}s {sorted(set(va) ^ set(vb))} in only one run")
        for name in sorted(set(va) & set(vb)):
            x, y = va[name], vb[name]
            if x.dims != y.dims or x.dtype != y.dtype:
                out.append(f"{name}: dims/dtype {x.dims} {x.dtype} vs {y.dims} {y.dtype}")
                continue
            ok, why = _close(np.asarray(x.values), np.asarray(y.values), rtol, atol)
            if not ok:
                out.append(f"{name}: {why}")
            if not _same_value(dict(x.attrs), dict(y.attrs), rtol, atol):
                out.append(f"{name}: attrs differ")
    keys = (set(da.attrs) | set(db.attrs)) - set(VOLATILE_ATTRS)
    for k in sorted(keys):
        if not _same_value(da.attrs.get(k), db.attrs.get(k), rtol, atol):
            out.append(f"attr {k}: {str(da.attrs.get(k))[:80]!r} vs {str(db.attrs.get(k))[:80]!r}")
    return out


def compare_csv(a: Path, b: Path, rtol: float, atol: float) -> list[str]:
    import pandas as pd

    x, y = (t.drop(columns=[c for c in VOLATILE_COLUMNS if c in t]) for t in (pd.read_csv(a), pd.read_csv(b)))
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return [f"columns/rows {list(x.columns)} × {len(x)} vs {list(y.columns)} × {len(y)}"]
    out = []
    for c in x.columns:
        ok, why = (
            _close(x[c].to_numpy(), y[c].to_numpy(), rtol, atol)
            if x[c].dtype.kind in "iufb" and y[c].dtype.kind in "iufb"
            else (x[c].astype(str).equals(y[c].astype(str)), "text differs")
        )
        if not ok:
            out.append(f"column {c}: {why}")
    return out


def compare_json(a: Path, b: Path, rtol: float, atol: float) -> list[str]:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    return [] if _same_value(x, y, rtol, atol) else ["records differ"]


def compare_png(a: Path, b: Path) -> list[str]:
    from PIL import Image

    x, y = np.asarray(Image.open(a).convert("RGBA")), np.asarray(Image.open(b).convert("RGBA"))
    if x.shape != y.shape:
        return [f"size {x.shape[1]}×{x.shape[0]} vs {y.shape[1]}×{y.shape[0]}"]
    diff = np.abs(x.astype(int) - y.astype(int)).max(-1)
    return [] if not diff.any() else [f"{int((diff > 0).sum())} pixels differ (largest {int(diff.max())}/255)"]


def _entries(root: Path) -> dict[str, Path]:
    found = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts) or any(part.endswith(".zarr") for part in rel.parts[:-1]):
            continue
        zarr_store = p.suffix == ".zarr" and p.is_dir()
        plain_file = p.is_file() and p.suffix not in SKIP_SUFFIXES and not p.name.startswith(".")
        if zarr_store or plain_file:
            found[str(rel)] = p
    return found


def compare_runs(a: str | Path, b: str | Path, rtol: float = 0.0, atol: float = 0.0) -> list[Difference]:
    """Every difference between the result folders ``a`` and ``b`` (empty when they agree)."""
    ea, eb = _entries(Path(a)), _entries(Path(b))
    diffs = [Difference(k, f"only in {a if k in ea else b}") for k in sorted(set(ea) ^ set(eb))]
    for k in sorted(set(ea) & set(eb)):
        pa, pb = ea[k], eb[k]
        if pa.suffix == ".zarr":
            found = compare_store(pa, pb, rtol, atol)
        elif pa.suffix == ".csv":
            found = compare_csv(pa, pb, rtol, atol)
        elif pa.suffix == ".json":
            found = compare_json(pa, pb, rtol, atol)
        elif pa.suffix == ".png":
            found = compare_png(pa, pb)
        else:
            found = [] if pa.read_bytes() == pb.read_bytes() else ["bytes differ"]
        diffs += [Difference(k, w) for w in found]
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ferrolens.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="result folder of one run (e.g. results/demo)")
    ap.add_argument("b", type=Path, help="result folder of the other run")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance of numbers (default 0: equal)")
    ap.add_argument("--atol", type=float, default=0.0, help="absolute tolerance of numbers (default 0)")
    args = ap.parse_args(argv)
    for root in (args.a, args.b):
        if not root.is_dir():
            print(f"ferrolens: bad input: {root}: not a folder (expected a run's result folder)", file=sys.stderr)
            return 2
    n = len(_entries(args.a))
    diffs = compare_runs(args.a, args.b, args.rtol, args.atol)
    for d in diffs:
        print(f"DIFFERENT {d.path}: {d.what}")
    print(
        f"{n} results compared (rtol {args.rtol:g}, atol {args.atol:g}): "
        + ("all agree" if not diffs else f"{len({d.path for d in diffs})} differ")
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
