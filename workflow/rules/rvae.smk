# rVAE: per window size n, windows → training → per-pixel latent maps.


rule rvae_windows:
    """n×n windows of the rVAE input (random, or dense with a stride: rvae.sampling), with frame/y/x/bias."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        segmentation=rvae_segmentation,
    output:
        directory(f"{RESULTS}/{{dataset}}/rvae/n{{window}}/windows.zarr"),
    params:
        cfg=config["rvae"],
        seed=lambda wc: seed("rvae_windows", wc.dataset, wc.window),
    log:
        f"{LOGS}/{{dataset}}/rvae_windows_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/rvae_windows_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/rvae_windows.py"


rule rvae_train:
    """Train one rVAE per window size (one job each: parallel locally, one GPU each on a cluster)."""
    input:
        f"{RESULTS}/{{dataset}}/rvae/n{{window}}/windows.zarr",
    output:
        model=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/model.ckpt",
        metrics=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/metrics.csv",
    params:
        cfg=config["rvae"],
        seed=lambda wc: seed("rvae_train", wc.dataset, wc.window),
    log:
        f"{LOGS}/{{dataset}}/rvae_train_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/rvae_train_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/rvae_train.py"


rule rvae_encode:
    """Codes of the sampled windows and per-pixel latent maps of every frame."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        segmentation=rvae_segmentation,
        windows=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/windows.zarr",
        model=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/model.ckpt",
    output:
        directory(f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latents.zarr"),
    params:
        cfg=config["rvae"],
    log:
        f"{LOGS}/{{dataset}}/rvae_encode_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/rvae_encode_n{{window}}.tsv"
    threads: 2
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/rvae_encode.py"
