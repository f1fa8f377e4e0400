# Segmentation: a U-Net per class count (2: wall vs rest; 3: background, wall,
# contaminant) trained on the labelled frames, then applied to every frame.


rule segment_train:
    """Train the U-Net on the labelled frames (resumes from last.ckpt when rerun)."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        labels=f"{RESULTS}/{{dataset}}/labels.zarr",
    output:
        model=f"{RESULTS}/{{dataset}}/segment/c{{classes}}/model.ckpt",
        metrics=f"{RESULTS}/{{dataset}}/segment/c{{classes}}/metrics.csv",
        quality=f"{RESULTS}/{{dataset}}/segment/c{{classes}}/quality.json",
        curves=report(
            f"{RESULTS}/{{dataset}}/segment/c{{classes}}/training.png",
            caption="../report/segment_training.rst",
            category="Segmentation",
            labels={"figure": "training curves", "classes": "{classes}"},
        ),
    params:
        cfg=config["segment"],
        seed=lambda wc: seed("segment", wc.dataset, wc.classes),
    log:
        f"{LOGS}/{{dataset}}/segment_train_c{{classes}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/segment_train_c{{classes}}.tsv"
    threads: 2
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/segment_train.py"


rule segment_predict:
    """Class probabilities and labels of every frame, streamed in batches."""
    input:
        movie=f"{RESULTS}/{{dataset}}/movie.zarr",
        model=f"{RESULTS}/{{dataset}}/segment/c{{classes}}/model.ckpt",
    output:
        directory(f"{RESULTS}/{{dataset}}/segment/c{{classes}}/segmentation.zarr"),
    params:
        cfg=config["segment"],
    log:
        f"{LOGS}/{{dataset}}/segment_predict_c{{classes}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/segment_predict_c{{classes}}.tsv"
    threads: 2
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/segment_predict.py"
