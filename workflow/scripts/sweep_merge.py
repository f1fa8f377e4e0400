"""Rule sweep_merge: all window sizes in one store."""

from ferrolens.dynamics import sweep_merge
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(sm, sweep_merge, list(sm.input.dynamics), list(sm.input.latents), sm.params.windows, sm.output[0])
