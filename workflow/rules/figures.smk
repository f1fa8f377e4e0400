# The paper's figures and the training curves, one rule per figure (figure_<name>), all made by
# the loop below from the table FIGURES. Each calls workflow/scripts/figure.py, which calls
# ferrolens.figures.<kind> with the rule's named inputs as keyword arguments (and params.extra),
# and is a report() item with the caption workflow/report/<name>.rst.
# Per table entry: doc (the rule's docstring), file (PNG name under results/{dataset}/figures/;
# with {window}: one figure per window size), kind, category (report), datasets (those that get
# it), input, and optionally extra (keyword arguments), settings (the figures: keys it reads besides dpi
# and vector) and resources (above profiles/default's).
FIGURES = {
    "frames": dict(
        doc="Fig. 1: frames at chosen biases.",
        file="fig1_frames", kind="frames_at_bias", category="1 movie", datasets=DATASETS,
        input=dict(movie=rules.ingest_movie.output[0]), settings=["biases"],
    ),
    "segmentation": dict(
        doc="Fig. 2: raw frame, 2- and 3-class segmentation, wall channel.",
        file="fig2_segmentation", kind="segmentation_overview", category="2 segmentation", datasets=LABELLED,
        input=dict(
            movie=rules.ingest_movie.output[0],
            segmentations=expand(rules.segment_predict.output[0], classes=SEG_VARIANTS, allow_missing=True),
        ),
        settings=["frame"],
    ),
    "segment_training": dict(
        doc="U-Net training curves (losses, held-out IoU per class) of every class count.",
        file="segment_training", kind="segment_training", category="2 segmentation", datasets=LABELLED,
        input=dict(
            metrics=expand(rules.segment_train.output.metrics, classes=SEG_VARIANTS, allow_missing=True),
            quality=expand(rules.segment_train.output.quality, classes=SEG_VARIANTS, allow_missing=True),
        ),
        extra={"min_iou": config["segment"]["train"]["min_iou"]},  # judged here, not in training
    ),
    "latent_codes": dict(
        doc="Fig. 3: decoded manifold, latent points by frame, angle histogram (per window size).",
        file="fig3_latent_codes_n{window}", kind="latent_codes", category="3 latent codes", datasets=RVAE_DATASETS,
        input=dict(latents=rules.rvae_encode.output[0], latent_space=rules.latent_space_map.output[0],
                   quality=rules.rvae_quality.output[0]),
    ),
    "rvae_training": dict(
        doc="rVAE loss curves (reconstruction and each KL term) of every window size.",
        file="rvae_training", kind="training_curves", category="3 latent codes", datasets=RVAE_DATASETS,
        input=dict(metrics=expand(rules.rvae_train.output.metrics, window=WINDOWS, allow_missing=True)),
        extra={"labels": [f"n={w}" for w in WINDOWS], "title": "rVAE training"},
    ),
    "latent_maps": dict(
        doc="Fig. 4: per-pixel latent maps of one frame for every window size.",
        file="fig4_latent_maps", kind="latent_maps", category="4 latent maps", datasets=RVAE_DATASETS,
        input=dict(
            movie=rules.ingest_movie.output[0],
            latents=expand(rules.rvae_encode.output[0], window=WINDOWS, allow_missing=True),
            quality=expand(rules.rvae_quality.output[0], window=WINDOWS, allow_missing=True),
        ),
        extra={"windows": WINDOWS},
        settings=["frame"],
        resources={"mem_mb": 4000},
    ),
    "dynamics": dict(
        doc="Fig. 5: KDE images, NMF components, hysteresis loops and table (per window size).",
        file="fig5_dynamics_n{window}", kind="dynamics", category="5 dynamics", datasets=RVAE_DATASETS,
        input=dict(dynamics_store=rules.dynamics_kde_nmf.output.store, table=rules.dynamics_kde_nmf.output.table,
                   quality=rules.rvae_quality.output[0]),
    ),
    "latent_space": dict(
        doc="Fig. 6: dense manifold, density, max contrast, physical mask, RGB composite (per window size).",
        file="fig6_latent_space_n{window}", kind="latent_space_maps", category="6 latent space",
        datasets=RVAE_DATASETS, input=dict(latent_space=rules.latent_space_map.output[0], quality=rules.rvae_quality.output[0]),
    ),
    "nmf_maps": dict(
        doc="Fig. 7: image- and histogram-NMF loading maps of the latent space (per window size).",
        file="fig7_nmf_maps_n{window}", kind="nmf_maps", category="7 NMF maps", datasets=RVAE_DATASETS,
        input=dict(latent_space=rules.latent_space_map.output[0], quality=rules.rvae_quality.output[0]),
    ),
    "switching": dict(
        doc="Switching maps: rising/falling switching bias beside a frame, switching-field histogram, nucleation order (per window size).",
        file="fig8_switching_n{window}", kind="switching_maps", category="8 switching", datasets=RVAE_DATASETS,
        input=dict(movie=rules.ingest_movie.output[0], switching=rules.switching.output[0]),
    ),
}


FIGURE_CODE = code_digest("ferrolens.figures")

for fig_name, fig in FIGURES.items():

    rule:
        name:
            f"figure_{fig_name}"
        input:
            **fig["input"],
        output:
            report(
                figure_path(fig["file"]),
                caption=f"../report/{fig_name}.rst",
                category=fig["category"],
                labels={"figure": fig_name.replace("_", " "),
                        **({"window": "n = {window}"} if "{window}" in fig["file"] else {})},
            ),
        params:
            kind=fig["kind"],
            cfg=pick(config["figures"], "dpi", "vector", *fig.get("settings", [])),
            code=FIGURE_CODE,  # editing a figure function redraws the figures (common.smk: code_digest)
            **({"extra": fig["extra"]} if "extra" in fig else {}),
        log:
            log_of(figure_path(fig["file"])),
        benchmark:
            benchmark_of(figure_path(fig["file"]))
        conda:
            CONDA_ENV
        resources:
            **fig.get("resources", {}),
        script:
            "../scripts/figure.py"

    getattr(rules, f"figure_{fig_name}").rule.docstring = fig["doc"]  # `snakemake --list-rules` shows it


def all_figures(wildcards):
    """Every figure of every dataset that gets it (FIGURES' datasets), per window size where drawn per window."""
    return [
        path
        for name, fig in FIGURES.items()
        for path in expand(getattr(rules, f"figure_{name}").output[0], dataset=fig["datasets"],
                           **({"window": WINDOWS} if "{window}" in fig["file"] else {}))
    ]
