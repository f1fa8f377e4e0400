"""Rule rvae_quality: the quality gate's verdict on one window size's rVAE (quality.json)."""

from ferrolens.runlog import run_logged
from ferrolens.rvae.quality import report

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(sm, report, sm.input[0], sm.output[0], sm.params.thresholds)
