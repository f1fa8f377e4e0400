"""Rule latent_space_map: maps of the decoded latent space."""

from ferrolens.pipeline import latent_space_map
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(sm, latent_space_map, sm.input.latents, sm.input.model, sm.output[0], sm.params.cfg, sm.params.seed)
