# Ingest: source movie (or demo generator) → movie.zarr; human labels → labels.zarr.


rule ingest_synthetic:
    """Generate the demo movie and its ground truth (synthetic datasets)."""
    output:
        directory(f"{RESULTS}/{{dataset}}/synthetic.zarr"),
    params:
        spec=lambda wc: dataset_cfg(wc)["synthetic"],
    log:
        f"{LOGS}/{{dataset}}/ingest_synthetic.log",
    benchmark:
        f"{BENCH}/{{dataset}}/ingest_synthetic.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/ingest_synthetic.py"


rule ingest_movie:
    """Read, select, crop, bin and check the movie; write movie.zarr."""
    input:
        movie=movie_source,
        bias=bias_table,
    output:
        directory(f"{RESULTS}/{{dataset}}/movie.zarr"),
    params:
        cfg=dataset_cfg,
        windows=rvae_windows,
    log:
        f"{LOGS}/{{dataset}}/ingest_movie.log",
    benchmark:
        f"{BENCH}/{{dataset}}/ingest_movie.tsv"
    threads: 1
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
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        truth=truth_source,
        files=label_files,
    output:
        directory(f"{RESULTS}/{{dataset}}/labels.zarr"),
    params:
        cfg=dataset_cfg,
        classes=config["classes"],
    log:
        f"{LOGS}/{{dataset}}/ingest_labels.log",
    benchmark:
        f"{BENCH}/{{dataset}}/ingest_labels.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/ingest_labels.py"
