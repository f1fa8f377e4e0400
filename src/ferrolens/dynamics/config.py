"""Defaults of the ``dynamics:`` config section and their checks.

The workflow validates the section against
``workflow/schemas/fragments/dynamics.yaml`` (which fills the same defaults);
these mirror it so that the entry functions also work from a notebook with a
partial dict. A test keeps the two in step.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..config import is_int as _is_int
from ..config import is_number as _is_num
from ..config import require
from ..config import section as config_section

#: Defaults of the ``dynamics:`` section, read from its schema fragment (the one source of them).
DEFAULTS: dict[str, Any] = config_section("dynamics")

PIXELS = ("all", "subsample", "structure")
BANDWIDTHS = ("scott", "silverman", "fixed")
SCOPES = ("shared", "frame")
NMF_RESAMPLE = ("refit", "project")
STIMULI = ("auto", "bias", "temperature", "time", "frame")
VIRGIN = ("auto", "none")


_need = partial(require, "dynamics")


def resolve_config(cfg: dict | None) -> dict:
    """``cfg`` (the ``dynamics:`` section, possibly partial) over :data:`DEFAULTS`, checked.

    Unknown keys and out-of-range values raise :class:`InputError` naming the key.
    """
    # the schema fills defaults and rejects unknown keys and wrong types; below, what it cannot say
    c = config_section("dynamics", cfg)

    v = c["variables"]
    _need(isinstance(v, list) and len(v) >= 1 and all(isinstance(s, str) for s in v) and len(set(v)) == len(v),
          "variables", v, "a non-empty list of distinct latent labels, e.g. [angle, z1, z2]")
    _need(_is_num(c["angle_period"]) and c["angle_period"] > 0, "angle_period", c["angle_period"],
          "a positive number of radians (π for lines, 2π for vectors)")
    _need(c["pixels"] in PIXELS, "pixels", c["pixels"], " or ".join(PIXELS))
    _need(_is_int(c["subsample_size"]) and c["subsample_size"] >= 2, "subsample_size", c["subsample_size"],
          "an integer ≥ 2")
    _need(_is_int(c["structure_class"]) and 0 <= c["structure_class"] <= 255, "structure_class",
          c["structure_class"], "a class index 0 … 255")
    _need(_is_int(c["grid_points"]) and c["grid_points"] >= 8, "grid_points", c["grid_points"], "an integer ≥ 8")
    q = c["range_quantiles"]
    _need(isinstance(q, list) and len(q) == 2 and all(_is_num(x) for x in q) and 0 <= q[0] < q[1] <= 1,
          "range_quantiles", q, "[low, high] with 0 ≤ low < high ≤ 1")
    _need(_is_num(c["range_padding"]) and c["range_padding"] >= 0, "range_padding", c["range_padding"],
          "a number of bandwidths ≥ 0")
    r = c["ranges"]
    _need(isinstance(r, dict) and all(isinstance(x, list) and len(x) == 2 and all(_is_num(y) for y in x)
                                      and x[0] < x[1] for x in r.values()),
          "ranges", r, "a mapping variable → [low, high] with low < high")
    _need(c["bandwidth"] in BANDWIDTHS, "bandwidth", c["bandwidth"], " or ".join(BANDWIDTHS))
    fb = c["fixed_bandwidth"]
    _need(isinstance(fb, dict) and all(_is_num(x) and x > 0 for x in fb.values()), "fixed_bandwidth", fb,
          "a mapping variable → positive bandwidth in the variable's units")
    if c["bandwidth"] == "fixed":
        missing = [name for name in v if name not in fb]
        _need(not missing, "fixed_bandwidth", fb, f"a bandwidth for every variable (missing {missing})")
    _need(c["bandwidth_scope"] in SCOPES, "bandwidth_scope", c["bandwidth_scope"], " or ".join(SCOPES))
    _need(_is_int(c["n_components"]) and c["n_components"] >= 1, "n_components", c["n_components"],
          "an integer ≥ 1")
    _need(_is_int(c["nmf_max_iter"]) and c["nmf_max_iter"] >= 1, "nmf_max_iter", c["nmf_max_iter"],
          "an integer ≥ 1")
    _need(_is_num(c["nmf_tol"]) and c["nmf_tol"] > 0, "nmf_tol", c["nmf_tol"], "a positive number")
    _need(_is_int(c["bootstrap"]) and c["bootstrap"] >= 0, "bootstrap", c["bootstrap"],
          "an integer ≥ 0 (0: no confidence intervals)")
    _need(_is_num(c["ci_level"]) and 0 < c["ci_level"] < 1, "ci_level", c["ci_level"], "0 < level < 1")
    _need(_is_int(c["spatial_block"]) and c["spatial_block"] >= 0, "spatial_block", c["spatial_block"],
          "an integer ≥ 0 (pixels; 0: the rVAE window)")
    _need(_is_int(c["time_block"]) and c["time_block"] >= 1, "time_block", c["time_block"], "an integer ≥ 1 (frames)")
    _need(c["nmf_resample"] in NMF_RESAMPLE, "nmf_resample", c["nmf_resample"], " or ".join(NMF_RESAMPLE))
    _need(_is_int(c["permutations"]) and c["permutations"] >= 99, "permutations", c["permutations"], "an integer ≥ 99")
    _need(_is_num(c["alpha"]) and 0 < c["alpha"] < 1, "alpha", c["alpha"], "0 < alpha < 1")
    _need(c["stimulus"] in STIMULI, "stimulus", c["stimulus"], " or ".join(STIMULI))
    _need(c["virgin_branch"] in VIRGIN, "virgin_branch", c["virgin_branch"], " or ".join(VIRGIN))
    _need(_is_int(c["bias_points"]) and c["bias_points"] >= 3, "bias_points", c["bias_points"], "an integer ≥ 3")
    _need(_is_num(c["reversal_tolerance"]) and 0 <= c["reversal_tolerance"] < 1, "reversal_tolerance",
          c["reversal_tolerance"], "a fraction of the bias range, 0 ≤ tolerance < 1")
    return c
