# Ingest: source movie (or demo generator) → movie.zarr; human labels → labels.zarr.
# Resources, threads: rules state only what exceeds profiles/default (see there).


rule ingest_synthetic:
    """Generate the demo movie and its ground truth (synthetic datasets)."""
    output:
        directory(SYNTHETIC),
    params:
        spec=synthetic_spec,
    log:
        log_of(SYNTHETIC),
    benchmark:
        benchmark_of(SYNTHETIC)
    conda:
        CONDA_ENV
    script:
        "../scripts/ingest_synthetic.py"


rule ingest_movie:
    """Read, select, crop, bin and check the movie; write movie.zarr."""
    input:
        movie=movie_source,
        bias=bias_table,
    output:
        directory(MOVIE),
    params:
        cfg=movie_settings,
    log:
        log_of(MOVIE),
    benchmark:
        benchmark_of(MOVIE)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/ingest_movie.py"


rule ingest_labels:
    """Human labels of a few frames (or the demo's ground truth) → labels.zarr."""
    input:
        movie=rules.ingest_movie.output[0],
        truth=truth_source,
        files=label_files,
    output:
        directory(LABELS),
    params:
        cfg=label_settings,
        classes=config["classes"],
    log:
        log_of(LABELS),
    benchmark:
        benchmark_of(LABELS)
    conda:
        CONDA_ENV
    script:
        "../scripts/ingest_labels.py"
