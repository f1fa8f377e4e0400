"""Rule segment_predict: segment every frame of the movie."""

from ferrolens.runlog import run_logged
from ferrolens.segment import predict

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(sm, predict, sm.input.movie, sm.input.model, sm.output[0], sm.params.cfg, sm.threads)
