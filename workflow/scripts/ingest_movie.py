"""Rule ingest_movie: read one dataset's movie into movie.zarr."""
from ferrolens.ingest import ingest_movie
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
source = list(sm.input) if len(sm.input) > 1 else sm.input[0]
run_logged(sm, ingest_movie, sm.params.cfg, sm.output[0], source=source, name=sm.wildcards.dataset)
