# Dynamics: per-frame KDEs of the latents, their NMF against the stimulus (bias), hysteresis
# with intervals from what varies and a test against no loop;
# latent-space maps; all window sizes merged into sweep.zarr.


rule dynamics_kde_nmf:
    """KDE(variable, frame, grid), NMF components/weights and the hysteresis table."""
    input:
        latents=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latents.zarr",
        segmentation=rvae_segmentation,
    output:
        store=directory(f"{RESULTS}/{{dataset}}/rvae/n{{window}}/dynamics.zarr"),
        table=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/hysteresis.csv",
    params:
        cfg=config["dynamics"],
        seed=lambda wc: seed("dynamics", wc.dataset, wc.window),
    log:
        f"{LOGS}/{{dataset}}/dynamics_kde_nmf_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/dynamics_kde_nmf_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/dynamics_kde_nmf.py"


rule latent_space_map:
    """Decoded latent grids, max contrast, physical mask, image/histogram NMF maps."""
    input:
        latents=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latents.zarr",
        model=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/model.ckpt",
    output:
        directory(f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latent_space.zarr"),
    params:
        cfg=config["latent_space"],
        seed=lambda wc: seed("latent_space", wc.dataset, wc.window),
    log:
        f"{LOGS}/{{dataset}}/latent_space_map_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/latent_space_map_n{{window}}.tsv"
    threads: 1
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
        dynamics=expand(f"{RESULTS}/{{{{dataset}}}}/rvae/n{{window}}/dynamics.zarr", window=WINDOWS),
        latents=expand(f"{RESULTS}/{{{{dataset}}}}/rvae/n{{window}}/latents.zarr", window=WINDOWS),
    output:
        directory(f"{RESULTS}/{{dataset}}/sweep.zarr"),
    params:
        windows=WINDOWS,
    log:
        f"{LOGS}/{{dataset}}/sweep_merge.log",
    benchmark:
        f"{BENCH}/{{dataset}}/sweep_merge.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/sweep_merge.py"
