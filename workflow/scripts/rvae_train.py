"""Rule rvae_train: train the rVAE of one window size."""
from pathlib import Path

from ferrolens.runlog import run_logged
from ferrolens.rvae import train

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(sm, train, sm.input[0], str(Path(sm.output.model).parent), int(sm.wildcards.window),
           sm.params.cfg, sm.params.seed, sm.threads)
