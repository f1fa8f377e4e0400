"""Rule ingest_labels: labels of a few frames into labels.zarr."""

from ferrolens.ingest import ingest_labels
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
truth = sm.input.get("truth") or None  # the demo's ground-truth store, absent for real data
run_logged(
    sm,
    ingest_labels,
    sm.params.cfg,
    sm.params.classes,
    sm.input.movie,
    sm.output[0],
    truth=truth,
    name=sm.wildcards.dataset,
)
