# The paper's figures, one rule per figure kind; each is a report() item.
# All call workflow/scripts/figure.py, which calls ferrolens.figures.<kind>
# with the rule's named inputs as keyword arguments.

rule figure_frames:
    """Fig. 1: frames at chosen biases."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
    output:
        fig_output("fig1_frames", "frames", "1 movie"),
    params:
        kind="frames_at_bias",
        cfg=config["figures"],
    log:
        f"{LOGS}/{{dataset}}/figure_frames.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_frames.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_segmentation:
    """Fig. 2: raw frame, 2- and 3-class segmentation, wall channel."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        segmentations=expand(
            f"{RESULTS}/{{{{dataset}}}}/segment/c{{classes}}/segmentation.zarr", classes=SEG_VARIANTS
        ),
    output:
        fig_output("fig2_segmentation", "segmentation", "2 segmentation"),
    params:
        kind="segmentation_overview",
        cfg=config["figures"],
    log:
        f"{LOGS}/{{dataset}}/figure_segmentation.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_segmentation.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_latent_codes:
    """Fig. 3: decoded manifold, latent points by frame, angle histogram (per window size)."""
    input:
        latents=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latents.zarr",
        latent_space=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latent_space.zarr",
    output:
        fig_output("fig3_latent_codes_n{window}", "latent_codes", "3 latent codes", window="n = {window}"),
    params:
        kind="latent_codes",
        cfg=config["figures"],
    log:
        f"{LOGS}/{{dataset}}/figure_latent_codes_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_latent_codes_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_latent_maps:
    """Fig. 4: per-pixel latent maps of one frame for every window size."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        latents=expand(f"{RESULTS}/{{{{dataset}}}}/rvae/n{{window}}/latents.zarr", window=WINDOWS),
    output:
        fig_output("fig4_latent_maps", "latent_maps", "4 latent maps"),
    params:
        kind="latent_maps",
        cfg=config["figures"],
        extra={"windows": WINDOWS},
    log:
        f"{LOGS}/{{dataset}}/figure_latent_maps.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_latent_maps.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_dynamics:
    """Fig. 5: KDE images, NMF components, hysteresis loops and table (per window size)."""
    input:
        dynamics_store=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/dynamics.zarr",
        table=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/hysteresis.csv",
    output:
        fig_output("fig5_dynamics_n{window}", "dynamics", "5 dynamics", window="n = {window}"),
    params:
        kind="dynamics",
        cfg=config["figures"],
    log:
        f"{LOGS}/{{dataset}}/figure_dynamics_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_dynamics_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_latent_space:
    """Fig. 6: dense manifold, density, max contrast, physical mask, RGB composite (per window size)."""
    input:
        latent_space=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latent_space.zarr",
    output:
        fig_output("fig6_latent_space_n{window}", "latent_space", "6 latent space", window="n = {window}"),
    params:
        kind="latent_space_maps",
        cfg=config["figures"],
    log:
        f"{LOGS}/{{dataset}}/figure_latent_space_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_latent_space_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_nmf_maps:
    """Fig. 7: image- and histogram-NMF loading maps of the latent space (per window size)."""
    input:
        latent_space=f"{RESULTS}/{{dataset}}/rvae/n{{window}}/latent_space.zarr",
    output:
        fig_output("fig7_nmf_maps_n{window}", "nmf_maps", "7 NMF maps", window="n = {window}"),
    params:
        kind="nmf_maps",
        cfg=config["figures"],
    log:
        f"{LOGS}/{{dataset}}/figure_nmf_maps_n{{window}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_nmf_maps_n{{window}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_rvae_training:
    """rVAE loss curves (reconstruction and each KL term) of every window size."""
    input:
        metrics=expand(f"{RESULTS}/{{{{dataset}}}}/rvae/n{{window}}/metrics.csv", window=WINDOWS),
    output:
        fig_output("rvae_training", "rvae_training", "3 latent codes"),
    params:
        kind="training_curves",
        cfg=config["figures"],
        extra={"labels": [f"n={w}" for w in WINDOWS], "title": "rVAE training"},
    log:
        f"{LOGS}/{{dataset}}/figure_rvae_training.log",
    benchmark:
        f"{BENCH}/{{dataset}}/figure_rvae_training.tsv"
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"
