# Switching maps: per pixel (or block), the latent state between its two saturated levels against
# the stimulus and, per branch, where it switches (with intervals), loop area and imprint; for the
# demo also the generator's true switching biases and the map's error against them.

# the sweep's settings are the dynamics section's (one owner); only these reach this rule
SWITCHING_SWEEP_KEYS = ["stimulus", "reversal_tolerance", "virgin_branch", "bias_points", "angle_period"]


rule switching:
    """Switching bias (rising, falling) per pixel with intervals and status, loop area, imprint."""
    input:
        latents=rules.rvae_encode.output[0],
        truth=truth_source,
    output:
        directory(SWITCHING),
    params:
        cfg=pick(config["switching"]),
        dynamics=pick(config["dynamics"], *SWITCHING_SWEEP_KEYS),
    log:
        log_of(SWITCHING),
    benchmark:
        benchmark_of(SWITCHING)
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,  # 0.86 GB peak at the demo's 256² × 40 frames (5 latents); grows with pixels × frames
        runtime=20,
    script:
        "../scripts/switching.py"
