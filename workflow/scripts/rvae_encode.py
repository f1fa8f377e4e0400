"""Rule rvae_encode: window codes and per-pixel latent maps."""

from ferrolens.pipeline import rvae_encode
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(
    sm,
    rvae_encode,
    sm.input.movie,
    sm.input.segmentation or None,
    sm.input.windows,
    sm.input.model,
    sm.output[0],
    sm.params.cfg,
    sm.threads,
)
