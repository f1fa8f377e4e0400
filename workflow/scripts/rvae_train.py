"""Rule rvae_train: train the rVAE of one window size."""

from pathlib import Path

from ferrolens.runlog import run_logged
from ferrolens.rvae import train

sm = snakemake  # noqa: F821 (injected by Snakemake)
# the window size is the windows store's (it was cut there): None
run_logged(sm, train, sm.input[0], str(Path(sm.output.model).parent), None, sm.params.cfg, sm.params.seed, sm.threads)
