"""The ``rvae:`` config section: its defaults, the checked section of a (partial) dict, and what
the code reads from it (the model's typed hyper-parameters, epochs per window size).

All from ``workflow/schemas/fragments/rvae.yaml`` and the cross-field rules in :mod:`ferrolens.config`.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from ..config import section as config_section
from ..errors import InputError
from ..sections import RvaeConfig

#: Defaults of the ``rvae:`` config section, read from its schema fragment (the one source of them).
DEFAULTS: dict[str, Any] = config_section("rvae")


def resolve_config(cfg: dict | None) -> RvaeConfig:
    """``cfg`` with defaults filled and checked against the schema; a bad key is an :class:`InputError`."""
    return cast(RvaeConfig, config_section("rvae", cfg))


def model_hparams(cfg: dict, window: int) -> dict[str, Any]:
    """Typed hyper-parameters of :class:`RVAE` from a filled config section.

    ``architecture: paper`` is the paper's model exactly (128-filter encoder,
    plain-coordinate decoder of 128 units); the equivariant model takes ``filters``,
    ``rotations``, ``angle_symmetry``, ``decoder``, ``decoder_units`` and the Fourier
    features from the config.
    """
    paper = cfg["architecture"] == "paper"
    return {
        "window": int(window),
        "architecture": str(cfg["architecture"]),
        "filters": 128 if paper else int(cfg["filters"]),
        "rotations": int(cfg["rotations"]),
        "rotation_filters": int(cfg["rotation_filters"]),
        "symmetry": int(cfg["angle_symmetry"]),
        "fourier": 0 if paper else int(cfg["fourier_features"]),
        "decoder": "spatial" if paper else str(cfg["decoder"]),
        "units": 128 if paper else int(cfg["decoder_units"]),
        "fourier_scale": float(cfg["fourier_scale"]),
        "lr_schedule": str(cfg["lr_schedule"]),
        "warmup": float(cfg["warmup"]),
        "kl_warmup": float(cfg["kl_warmup"]),
        "pixel_fraction": min(1.0, int(cfg["decoder_pixels"]) / window**2) if int(cfg["decoder_pixels"]) > 0 else 1.0,
        "latent_dim": int(cfg["latent_dim"]),
        "rotation_prior_sd": float(cfg["rotation_prior_sd"]),
        "angle_mean_penalty": bool(cfg["angle_mean_penalty"]),
        "translation": bool(cfg["translation"]),
        "translation_prior_sd": float(cfg["translation_prior_sd"]),
        "reconstruction": str(cfg["reconstruction"]),
        "noise_sd": float(cfg["noise_sd"]),
        "lr": float(cfg["lr"]),
    }


def epochs_for(cfg: dict, window: int) -> int:
    """Training epochs of window size ``window``: ``epochs``, or its entry for ``window`` when a mapping."""
    value = cfg["epochs"]
    if isinstance(value, dict):
        if int(window) not in value and str(window) not in value:
            raise InputError("rvae.epochs", f"gives epochs for window sizes {sorted(value)} but not for {window}",
                             "one number for every window size, or an entry for each")
        value = value.get(int(window), value.get(str(window)))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError("rvae.epochs", f"value {value!r} for window {window}", "an integer >= 1")
    return int(value)
