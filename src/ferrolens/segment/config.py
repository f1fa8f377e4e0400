"""Defaults of the ``segment:`` config section and their checks.

The workflow validates the section against
``workflow/schemas/fragments/segment.yaml`` (which fills the same defaults);
these mirror it so that the entry functions also work from a notebook with a
partial dict. A test keeps the two in step.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..config import require
from ..config import section as config_section
from .infer import PRECISIONS

#: Defaults of the ``segment:`` section, read from its schema fragment (the one source of them).
DEFAULTS: dict[str, Any] = config_section("segment")

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def resolve_config(cfg: dict | None) -> dict:
    """``cfg`` (the ``segment:`` section, possibly partial) merged over :data:`DEFAULTS`.

    Unknown keys and out-of-range values raise :class:`InputError` naming the key.
    Returns a new dict each call (the caller may change it; :func:`ferrolens.config.section`
    remembers checked sections).
    """
    # the schema fills defaults and rejects unknown keys and wrong types; _check, what it cannot say
    out = config_section("segment", cfg)
    _check(out)
    return out


_need = partial(require, "segment")


def _check(c: dict) -> None:
    for k in ("depth", "base_filters", "convs_per_block"):
        v = c["model"][k]
        _need(isinstance(v, int) and v >= 1, f"model.{k}", v, "an integer ≥ 1")
    _need(0 <= c["model"]["dropout"] < 1, "model.dropout", c["model"]["dropout"], "0 ≤ dropout < 1")
    lo, hi = c["normalize"]["low_percentile"], c["normalize"]["high_percentile"]
    _need(0 <= lo < hi <= 100, "normalize", [lo, hi], "0 ≤ low_percentile < high_percentile ≤ 100")
    t = c["train"]
    for k in ("patch_size", "batch_size", "steps_per_epoch", "max_epochs"):
        _need(isinstance(t[k], int) and t[k] >= 1, f"train.{k}", t[k], "an integer ≥ 1")
    _need(t["learning_rate"] > 0, "train.learning_rate", t["learning_rate"], "a positive number")
    _need(0 <= t["rare_class_fraction"] <= 1, "train.rare_class_fraction", t["rare_class_fraction"], "0 … 1")
    _need(0 < t["val_fraction"] < 1, "train.val_fraction", t["val_fraction"], "0 < val_fraction < 1")
    _need(isinstance(t["num_workers"], int) and t["num_workers"] >= 0, "train.num_workers", t["num_workers"],
          "an integer ≥ 0")
    cw = t["class_weights"]
    _need(cw in ("auto", "none") or (isinstance(cw, list) and all(float(w) >= 0 for w in cw)),
          "train.class_weights", cw, "'auto', 'none' or a list of non-negative weights, one per class")
    mm = t["max_minutes"]
    _need(mm is None or mm > 0, "train.max_minutes", mm, "null or a positive number of minutes")
    vf = t["val_frames"]
    _need(vf is None or (isinstance(vf, list) and all(isinstance(f, int) for f in vf)),
          "train.val_frames", vf, "null or a list of labelled movie frame indices")
    p = c["predict"]
    for k in ("batch_size", "tile"):
        _need(isinstance(p[k], int) and p[k] >= 1, f"predict.{k}", p[k], "an integer ≥ 1")
    _need(isinstance(p["overlap"], int) and 0 <= p["overlap"] < p["tile"], "predict.overlap", p["overlap"],
          f"an integer 0 ≤ overlap < tile ({p['tile']})")
    _need(p["precision"] in PRECISIONS, "predict.precision", p["precision"], " or ".join(PRECISIONS))
    for section in ("train", "predict"):
        acc = c[section]["accelerator"]
        _need(acc in ACCELERATORS, f"{section}.accelerator", acc, " or ".join(ACCELERATORS))
    a = c["augment"]
    for k in ("zoom", "contrast", "gaussian_noise", "poisson_noise", "blur"):
        _need(0 <= a[k]["probability"] <= 1, f"augment.{k}.probability", a[k]["probability"], "0 … 1")
    _need(a["zoom"]["max_factor"] >= 1, "augment.zoom.max_factor", a["zoom"]["max_factor"], "≥ 1")
    for k, rng in (("contrast.scale_range", a["contrast"]["scale_range"]),
                   ("contrast.gamma_range", a["contrast"]["gamma_range"]),
                   ("poisson_noise.peak_range", a["poisson_noise"]["peak_range"])):
        _need(len(rng) == 2 and 0 < rng[0] <= rng[1], f"augment.{k}", rng, "[low, high] with 0 < low ≤ high")
