# Segmentation: a U-Net per class count (2: wall vs rest; 3: background, wall,
# contaminant) trained on the labelled frames, then applied to every frame.
# Training curves: rule figure_segment_training (figures.smk).


rule segment_train:
    """Train the U-Net on the labelled frames (resumes from last.ckpt when rerun)."""
    input:
        movie=rules.ingest_movie.output[0],
        labels=rules.ingest_labels.output[0],
    output:
        model=SEGMENT_MODEL,
        metrics=f"{SEGMENT}/metrics.csv",
        quality=f"{SEGMENT}/quality.json",
    params:
        # the quality floor is applied where the quality is drawn (figure_segment_training), not in training
        cfg=pick(config["segment"], "model", "normalize", "train", "augment", drop=["train.min_iou"]),
        seed=seed_of("segment", "classes"),
    log:
        log_of(SEGMENT_MODEL),
    benchmark:
        benchmark_of(SEGMENT_MODEL)
    # one thread: 2 epochs of the demo's 3-class U-Net took 56 CPU s on 1 thread and 83 on 2 (1.29×
    # sooner for 1.5× the CPU), so on a small machine the two U-Nets train side by side; a profile's
    # set-threads gives a larger machine more
    threads: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    priority: feeds_rvae
    script:
        "../scripts/segment_train.py"


rule segment_predict:
    """Class probabilities and labels of every frame, streamed in batches."""
    input:
        movie=rules.ingest_movie.output[0],
        model=rules.segment_train.output.model,
    output:
        directory(SEGMENTATION),
    params:
        cfg=pick(config["segment"], "predict"),
    log:
        log_of(SEGMENTATION),
    benchmark:
        benchmark_of(SEGMENTATION)
    threads: 2
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=60,
    priority: feeds_rvae
    script:
        "../scripts/segment_predict.py"
