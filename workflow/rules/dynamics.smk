# Dynamics: per-frame KDEs of the latents, their NMF against the stimulus (bias), hysteresis
# with intervals from what varies and a test against no loop;
# latent-space maps; all window sizes merged into sweep.zarr.


rule dynamics_kde_nmf:
    """KDE(variable, frame, grid), NMF components/weights and the hysteresis table."""
    input:
        latents=rules.rvae_encode.output[0],
        segmentation=rvae_segmentation,
    output:
        store=directory(DYNAMICS),
        table=f"{RVAE}/hysteresis.csv",
    params:
        cfg=pick(config["dynamics"]),
        seed=seed_of("dynamics", "window"),
    log:
        log_of(DYNAMICS),
    benchmark:
        benchmark_of(DYNAMICS)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=30,
    priority: window_rank
    script:
        "../scripts/dynamics_kde_nmf.py"


rule latent_space_map:
    """Decoded latent grids, max contrast, physical mask, image/histogram NMF maps."""
    input:
        latents=rules.rvae_encode.output[0],
        model=rules.rvae_train.output.model,
    output:
        directory(LATENT_SPACE),
    params:
        cfg=pick(config["latent_space"]),
        seed=seed_of("latent_space", "window"),
    log:
        log_of(LATENT_SPACE),
    benchmark:
        benchmark_of(LATENT_SPACE)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/latent_space_map.py"


rule sweep_merge:
    """Every window size's per-frame outputs in one dataset indexed by window, frame and bias."""
    input:
        dynamics=expand(rules.dynamics_kde_nmf.output.store, window=WINDOWS, allow_missing=True),
        latents=expand(rules.rvae_encode.output[0], window=WINDOWS, allow_missing=True),
    output:
        directory(SWEEP),
    params:
        windows=WINDOWS,
    log:
        log_of(SWEEP),
    benchmark:
        benchmark_of(SWEEP)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/sweep_merge.py"
