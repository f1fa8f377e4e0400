"""Rule dynamics_kde_nmf: latent densities per frame, NMF and hysteresis."""

from ferrolens.dynamics import kde_nmf
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(
    sm,
    kde_nmf,
    sm.input.latents,
    sm.input.segmentation or None,
    sm.output.store,
    sm.output.table,
    sm.params.cfg,
    sm.params.seed,
)
