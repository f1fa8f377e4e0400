"""Rule ingest_movie: read one dataset's movie into movie.zarr."""

from ferrolens.ingest import ingest_movie
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
movie = list(sm.input.movie) if isinstance(sm.input.movie, list) else [sm.input.movie]  # bias CSV: its own input
source = movie if len(movie) > 1 else movie[0]
# the rVAE window sizes (if it runs on this dataset: raw input, or labelled for the segmentation): frames too
# small are refused here, before training. A check, not a setting the movie depends on, so it is read from the
# config, not from params: a new window size does not ingest the movie again (schemas/dependencies.yaml)
c = sm.config
rvae_runs = c["rvae"]["input"] == "raw" or bool(c["datasets"][sm.wildcards.dataset]["labels"]["frames"])
run_logged(
    sm,
    ingest_movie,
    sm.params.cfg,
    sm.output[0],
    source=source,
    name=sm.wildcards.dataset,
    windows=c["windows"] if rvae_runs else [],
)
