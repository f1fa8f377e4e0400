"""Rule rvae_windows: cut the windows the rVAE trains on."""

from ferrolens.pipeline import rvae_windows
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(
    sm,
    rvae_windows,
    sm.input.movie,
    sm.input.segmentation or None,
    sm.output[0],
    int(sm.wildcards.window),
    sm.params.cfg,
    sm.params.seed,
)
