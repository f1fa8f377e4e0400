# rVAE: per window size n, windows → training → per-pixel latent maps.


rule rvae_windows:
    """n×n windows of the rVAE input (random, or dense with a stride: rvae.sampling), with frame/y/x/bias."""
    input:
        movie=rules.ingest_movie.output[0],
        segmentation=rvae_segmentation,
    output:
        directory(WINDOW_STORE),
    params:
        cfg=pick(config["rvae"], *RVAE_WINDOW_KEYS),
        seed=seed_of("rvae_windows", "window"),
    log:
        log_of(WINDOW_STORE),
    benchmark:
        benchmark_of(WINDOW_STORE)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=30,
    priority: window_rank
    script:
        "../scripts/rvae_windows.py"


rule rvae_train:
    """Train one rVAE per window size (one job each: parallel locally, one GPU each on a cluster)."""
    input:
        rules.rvae_windows.output[0],
    output:
        model=RVAE_MODEL,
        metrics=f"{RVAE}/metrics.csv",
    params:
        cfg=rvae_train_settings,
        seed=seed_of("rvae_train", "window"),
    log:
        log_of(RVAE_MODEL),
    benchmark:
        benchmark_of(RVAE_MODEL)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    priority: window_rank
    script:
        "../scripts/rvae_train.py"


rule rvae_quality:
    """The quality gate's verdict on one window size's model: its stored measurements against rvae.quality's thresholds."""
    input:
        rules.rvae_train.output.model,
    output:
        RVAE_QUALITY,
    params:
        thresholds=pick(config["rvae"]["quality"], drop=["windows"]),
    log:
        log_of(RVAE_QUALITY),
    benchmark:
        benchmark_of(RVAE_QUALITY)
    conda:
        CONDA_ENV
    script:
        "../scripts/rvae_quality.py"


rule rvae_encode:
    """Codes of the sampled windows and per-pixel latent maps of every frame."""
    input:
        movie=rules.ingest_movie.output[0],
        segmentation=rvae_segmentation,
        windows=rules.rvae_windows.output[0],
        model=rules.rvae_train.output.model,
    output:
        directory(LATENTS),
    params:
        cfg=pick(config["rvae"], *RVAE_ENCODE_KEYS),
    log:
        log_of(LATENTS),
    benchmark:
        benchmark_of(LATENTS)
    threads: 1  # the maps are the same on any thread count (tested); one thread packs best beside the others
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=60,
    priority: window_rank
    script:
        "../scripts/rvae_encode.py"
