"""Rule segment_train: train the U-Net on the labelled frames."""

from pathlib import Path

from ferrolens.runlog import run_logged
from ferrolens.segment import train

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(
    sm,
    train,
    sm.input.movie,
    sm.input.labels,
    str(Path(sm.output.model).parent),
    int(sm.wildcards.classes),
    sm.params.cfg,
    sm.params.seed,
    sm.threads,
)
