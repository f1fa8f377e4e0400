"""Rule switching: per-pixel switching maps of one window size."""

from ferrolens.runlog import run_logged
from ferrolens.switching import switching

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(
    sm, switching, sm.input.latents, sm.output[0], sm.params.cfg, sm.params.dynamics, truth=sm.input.truth or None
)
