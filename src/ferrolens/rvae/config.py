"""The ``rvae:`` config section: its defaults, the checked section of a (partial) dict, and what
the code reads from it (which keys are the model's hyper-parameters, epochs per window size).

All from ``workflow/schemas/fragments/rvae.yaml`` and the cross-field rules in :mod:`ferrolens.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from .. import config as _config
from ..config import Partial
from ..config import section as config_section
from ..errors import InputError
from ..sections import RvaeConfig

#: Defaults of the ``rvae:`` config section, read from its schema fragment (the one source of them).
DEFAULTS: RvaeConfig = cast(RvaeConfig, config_section("rvae"))


def resolve_config(cfg: Partial[RvaeConfig]) -> RvaeConfig:
    """``cfg`` with defaults filled and checked against the schema; a bad key is an :class:`InputError`.

    The schema is ``ferrolens.config.SCHEMA`` when called, as for :class:`~ferrolens.rvae.net.RVAENet`
    (a test registers a new architecture in a copy of it)."""
    return cast(RvaeConfig, config_section("rvae", cfg, schema=_config.SCHEMA))


#: Keys of the ``rvae:`` section that are the model's hyper-parameters (:class:`~ferrolens.rvae.net.RVAENet`
#: takes them by these names, with the window size; the rest of the section is sampling, training and encoding).
MODEL_KEYS = (
    "architecture",
    "filters",
    "rotations",
    "rotation_filters",
    "angle_symmetry",
    "decoder",
    "decoder_units",
    "fourier_features",
    "fourier_scale",
    "decoder_pixels",
    "lr_schedule",
    "warmup",
    "kl_warmup",
    "latent_dim",
    "rotation_prior_sd",
    "angle_mean_penalty",
    "translation",
    "translation_prior_sd",
    "reconstruction",
    "noise_sd",
    "lr",
)


def model_hparams(cfg: Mapping[str, Any], window: int) -> dict[str, Any]:
    """The model's hyper-parameters in a (checked) section: ``window`` and the section's
    :data:`MODEL_KEYS`, by the schema's names (``RVAE(**model_hparams(cfg, n))``)."""
    return {"window": int(window), **{key: cfg[key] for key in MODEL_KEYS}}


def epochs_for(cfg: Mapping[str, Any], window: int) -> int:
    """Training epochs of window size ``window``: ``epochs``, or its entry for ``window`` when a mapping."""
    value = cfg["epochs"]
    if isinstance(value, dict):
        if int(window) not in value and str(window) not in value:
            raise InputError(
                "rvae.epochs",
                f"gives epochs for window sizes {sorted(value)} but not for {window}",
                "one number for every window size, or an entry for each",
            )
        value = value.get(int(window), value.get(str(window)))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError("rvae.epochs", f"value {value!r} for window {window}", "an integer >= 1")
    return int(value)
