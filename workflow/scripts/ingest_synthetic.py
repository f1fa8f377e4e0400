"""Rule ingest_synthetic: generate the demo movie with its ground truth."""

from ferrolens.ingest import write_demo_source
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_logged(sm, write_demo_source, sm.params.spec, sm.output[0])
