"""Dynamics stage (paper Fig. 5): per-frame KDE of latent variables, NMF of
KDE(L, t) into latent distributions and their weights over time, and the
hysteresis of those weights against the applied bias (or another stimulus that cycles).

Modules: :mod:`.kde` (fast linear-binning + FFT KDE, circular for the angle),
:mod:`.nmf` (seeded NMF with a deterministic component order),
:mod:`.hysteresis` (branches, virgin curve and cycles of a cycling stimulus, loop
metrics, intervals from what varies and a test against no loop),
:mod:`.pixels` (the pixels used per frame and their spatial blocks),
:mod:`.densities` (grids, bandwidths and KDEs of the frames), :mod:`.bootstrap`
(resampled KDEs and NMF weights), :mod:`.table` (the hysteresis table and its
text), :mod:`.layout` (the dynamics and sweep stores as Datasets), :mod:`.core`
(the array core: values in, dataset and table out), :mod:`.api` (entry functions called by the
workflow: paths in, paths out). Only :mod:`.api` reads or writes files. The ``dynamics:`` section
is ``ferrolens.config.section("dynamics", cfg)``, a ``ferrolens.sections.DynamicsConfig``.
"""

from .api import dynamics_core, kde_nmf, select_pixels, select_values, sweep_merge

__all__ = ["dynamics_core", "kde_nmf", "select_pixels", "select_values", "sweep_merge"]
