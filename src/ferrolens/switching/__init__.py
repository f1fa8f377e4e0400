"""Switching stage: where, and at what bias, each pixel (or block) of the sample switches.

From the per-pixel latent maps: each pixel's state between its two saturated levels against the
stimulus (:mod:`.core`), per branch its switching bias with an interval, its loop area and
imprint, pixels that never switch or never settle marked; :mod:`.truth` holds the demo
generator's true switching biases and the map's error against them, :mod:`.loopfit` a classical
per-pixel parametric fit of a measured loop (piezoresponse), :mod:`.api` the entry function. The
``switching:`` section is ``ferrolens.config.section("switching", cfg)``, a ``ferrolens.sections.SwitchingConfig``.
"""

from .api import switching

__all__ = ["switching"]
