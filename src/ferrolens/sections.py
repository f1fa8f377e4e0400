"""Types of the checked config sections, generated from the schema fragments by
``python -m ferrolens.config > src/ferrolens/sections.py``; ``tests/test_config.py`` checks it
is current. :func:`ferrolens.config.section` hands these out, frozen."""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "Config",
    "DatasetBiasConfig",
    "DatasetConfig",
    "DatasetFramesConfig",
    "DatasetLabelsConfig",
    "DatasetSyntheticConfig",
    "DynamicsConfig",
    "FiguresConfig",
    "LatentSpaceConfig",
    "RvaeAngleConfidenceConfig",
    "RvaeConfig",
    "RvaeQualityConfig",
    "SegmentAugmentBlurConfig",
    "SegmentAugmentConfig",
    "SegmentAugmentContrastConfig",
    "SegmentAugmentGaussianNoiseConfig",
    "SegmentAugmentPoissonNoiseConfig",
    "SegmentAugmentZoomConfig",
    "SegmentConfig",
    "SegmentModelConfig",
    "SegmentNormalizeConfig",
    "SegmentPredictConfig",
    "SegmentTrainConfig",
    "SwitchingConfig",
]


class SegmentModelConfig(TypedDict):
    """``segment.model:`` (checked, defaults filled, read-only)."""

    depth: int
    """Number of 2x2 poolings. Filters are base_filters * 2**level, so depth 3 with 16 base filters gives 16-32-64 and a
    128-filter bottleneck (the field's reference size)."""
    base_filters: int
    """Filters of the first level (doubling at each level)."""
    convs_per_block: int
    """3x3 convolutions (each + batch-norm + ReLU) per level."""
    batchnorm: bool
    """Batch normalisation after every convolution."""
    dropout: float
    """Channel-dropout probability at the bottleneck (0 = none)."""


class SegmentNormalizeConfig(TypedDict):
    """``segment.normalize:`` (checked, defaults filled, read-only)."""

    low_percentile: float
    """Percentile (0-100) mapped to 0."""
    high_percentile: float
    """Percentile (0-100) mapped to 1; must exceed low_percentile."""


class SegmentTrainConfig(TypedDict):
    """``segment.train:`` (checked, defaults filled, read-only)."""

    patch_size: int
    """Side in pixels of the square training patches; at most the (training part of the) frame."""
    batch_size: int
    """Patches per optimisation step."""
    steps_per_epoch: int
    """Optimisation steps per epoch (validation and checkpoints after each epoch)."""
    max_epochs: int
    """Epochs to train; a rerun with a larger value resumes from last.ckpt."""
    max_minutes: float | None
    """Wall-clock cap on training in minutes (null = none). When it cuts training short the result depends on machine
    speed, so it is no longer reproducible."""
    learning_rate: float
    """Adam learning rate (the paper's 1e-3)."""
    class_weights: Literal['auto', 'none'] | list[float]
    """Cross-entropy class weights: "auto" = inverse square root of the training label frequencies (frequency-weighted
    mean 1), "none" = uniform, or one weight per class."""
    rare_class_fraction: float
    """Fraction of patches placed over a labelled pixel of a class drawn uniformly among the classes present, so a rare
    class (contaminant) keeps appearing; the rest are placed uniformly."""
    min_iou: float
    """Held-out IoU (of the wall class and the mean over classes) below which the log, the model's quality.json, the
    segmentation store and the report warn plainly that the segmentation is poor. A warning, not a filter: nothing is
    dropped or hidden."""
    decision: Literal['fractions', 'iou', 'argmax']
    """How prediction turns logits into labels. After training, a logit bias per class (background fixed at 0; -4 ... 4
    in steps of 0.02; a class with under 100 held-out pixels keeps 0) is chosen on the held-out pixels: "fractions" = so
    that each class's predicted fraction of them matches its labelled fraction, "iou" = to maximise their mean IoU;
    prediction labels argmax(logits + bias) and stores softmax(logits + bias). It undoes the push of the class weights
    and the Dice term towards rare classes (the plain argmax over-marks walls). "argmax": no bias. The bias is saved in
    model.ckpt, quality.json (with the held-out class fractions and IoU with and without it) and the segmentation
    store's attrs."""
    holdout: Literal['regions', 'frames']
    """What the held-out IoU is measured on. "regions": every labelled frame holds out a strip of val_fraction of its
    height (or width) at one edge - bottom, right, top, left in turn - and trains on the rest, so a few labelled frames
    all train the model (the paper's premise). "frames": val_fraction of the labelled frames are held out whole (a
    single labelled frame still holds out a strip). The log and the training figure say what was held out."""
    val_frames: list[int] | None
    """Labelled movie frames held out whole for validation, overriding holdout (null = as holdout says)."""
    val_fraction: float
    """Fraction held out: of each labelled frame's height or width (holdout regions), or of the labelled frames (holdout
    frames: at least one, at most all but one)."""
    num_workers: int
    """DataLoader worker processes making augmented patches (0 = in the training process)."""
    accelerator: Literal['auto', 'cpu', 'gpu', 'cuda', 'mps']
    """Lightning accelerator; "auto" uses a GPU when one is present."""
    devices: int
    """Devices (GPUs, or CPU processes with accelerator cpu) that train this one model together, data-parallel (DDP), on
    one node: one process each, started by Lightning. On SLURM the profile's `gpu` resource of rule segment_train must
    ask for the same number of GPUs (and its threads are shared: threads // devices per process); see docs/hpc.md.
    batch_size is per process and an epoch's steps_per_epoch x batch_size patches are shared among the processes."""
    strategy: Literal['auto', 'ddp']
    """Lightning strategy: "auto" = one process for one device, DDP for several; "ddp" = DDP. ddp_spawn is not offered
    (its processes would re-run the workflow script)."""


class SegmentAugmentZoomConfig(TypedDict):
    """``segment.augment.zoom:`` (checked, defaults filled, read-only)."""

    enabled: bool
    """Apply zoom."""
    probability: float
    """Probability that a patch is zoomed."""
    max_factor: float
    """Largest magnification (drawn uniformly from 1 to this)."""


class SegmentAugmentContrastConfig(TypedDict):
    """``segment.augment.contrast:`` (checked, defaults filled, read-only)."""

    enabled: bool
    """Apply contrast/gamma changes."""
    probability: float
    """Probability that a patch is changed."""
    scale_range: list[float]
    """[low, high] of the contrast scale (uniform)."""
    shift: float
    """Largest brightness shift in normalised units (uniform in -shift..shift)."""
    gamma_range: list[float]
    """[low, high] of the gamma exponent (uniform)."""


class SegmentAugmentGaussianNoiseConfig(TypedDict):
    """``segment.augment.gaussian_noise:`` (checked, defaults filled, read-only)."""

    enabled: bool
    """Add Gaussian noise."""
    probability: float
    """Probability that a patch gets noise."""
    max_sigma: float
    """Largest standard deviation in normalised units (drawn uniformly from 0)."""


class SegmentAugmentPoissonNoiseConfig(TypedDict):
    """``segment.augment.poisson_noise:`` (checked, defaults filled, read-only)."""

    enabled: bool
    """Add Poisson noise."""
    probability: float
    """Probability that a patch gets shot noise."""
    peak_range: list[float]
    """[low, high] counts at intensity 1 (uniform); fewer counts = more noise."""


class SegmentAugmentBlurConfig(TypedDict):
    """``segment.augment.blur:`` (checked, defaults filled, read-only)."""

    enabled: bool
    """Blur patches."""
    probability: float
    """Probability that a patch is blurred."""
    max_sigma: float
    """Largest blur standard deviation in pixels (drawn uniformly from 0)."""


class SegmentAugmentConfig(TypedDict):
    """``segment.augment:`` (checked, defaults filled, read-only)."""

    rotate90: bool
    """Random rotation by 0, 90, 180 or 270 degrees (image and labels together)."""
    flip: bool
    """Random vertical and horizontal flips (each with probability 0.5)."""
    zoom: SegmentAugmentZoomConfig
    """Zoom in - crop a 1/factor window and resize it back (image bilinear, labels nearest)."""
    contrast: SegmentAugmentContrastConfig
    """Gamma on the patch's own range, then (x - mean) * scale + mean + shift."""
    gaussian_noise: SegmentAugmentGaussianNoiseConfig
    """Additive white Gaussian noise."""
    poisson_noise: SegmentAugmentPoissonNoiseConfig
    """Shot noise, as if normalised intensity 1 collected `peak` counts."""
    blur: SegmentAugmentBlurConfig
    """Gaussian blur."""


class SegmentPredictConfig(TypedDict):
    """``segment.predict:`` (checked, defaults filled, read-only)."""

    batch_size: int
    """Frames read, normalised and predicted together (also tiles per forward pass); small batches keep activations in
    cache on a CPU."""
    tile: int
    """Frames larger than this (pixels, either axis) are cut into tile x tile pieces; a multiple of 2**depth."""
    overlap: int
    """Overlap of neighbouring tiles in pixels, a multiple of 2**depth. Above twice the model's context margin (56 px at
    depth 3) the blended result equals the whole-frame prediction."""
    precision: Literal['auto', 'float32', 'bf16']
    """Arithmetic of the forward pass. "auto" = bfloat16 autocast where the device computes it natively (a CPU with
    AVX512-BF16 or AMX, a CUDA GPU supporting it), float32 elsewhere; "float32"; "bf16" = bfloat16 autocast everywhere
    (emulated, so slower, on other CPUs). bfloat16 ran 2-2.5x faster than float32 on a 2-core AVX512-BF16 CPU;
    probabilities change by about 1e-2 and labels by well under 1 % of pixels, and tiling is then exact only to that.
    The store records the precision used."""
    accelerator: Literal['auto', 'cpu', 'gpu', 'cuda', 'mps']
    """Device for prediction; "auto" uses a GPU when one is present."""


class SegmentConfig(TypedDict):
    """``segment:`` (checked, defaults filled, read-only)."""

    n_classes: list[Literal[2, 3]]
    """Models to train, as in the paper: 2 = domain wall vs the rest (contaminant merged into background), 3 =
    background, domain wall, contaminant. Each goes to results/{dataset}/segment/c{n}/."""
    model: SegmentModelConfig
    """U-Net architecture (plain nn.Module ferrolens.segment.UNet)."""
    normalize: SegmentNormalizeConfig
    """Per-frame robust normalisation (x - p_low) / (p_high - p_low), no clipping; the percentiles are stored in the
    model and used again by prediction and by the rVAE's "raw" input."""
    train: SegmentTrainConfig
    """Training of the U-Net on the labelled frames (Lightning Trainer, seeded)."""
    augment: SegmentAugmentConfig
    """Seeded on-the-fly augmentation of training patches; each operation can be switched off."""
    predict: SegmentPredictConfig
    """Applying the trained model to every frame."""


class RvaeQualityConfig(TypedDict):
    """``rvae.quality:`` (checked, defaults filled, read-only)."""

    min_r2: float | dict[str, float] | None
    """Fail reconstruction when the held-out R^2 (windows decoded from their posterior means) is below this. Off by
    default: the blurred R^2 agreed better with the truth (pixel noise lowers R^2 without the model being worse)."""
    min_r2_blur: float | dict[str, float] | None
    """Fail reconstruction when the held-out R^2 after a Gaussian blur of 1 px of windows and reconstructions (pixel
    noise, which no model should draw, removed) is below this. Calibrated (see quality): 0.371."""
    min_r2_gain: float | dict[str, float] | None
    """Fail reconstruction when the held-out R^2 minus that of a PCA with as many numbers per window as the code (3 +
    latent_dim components, fitted on the same windows) is below this. Off by default: in the calibration no PCA-relative
    threshold agreed with the truth better than the blurred R^2 (PCA, fitted in-sample on 512 or fewer windows, beat
    every model: the gain is negative throughout)."""
    min_angle_follow: float | dict[str, float] | None
    """Fail orientation when fewer than this fraction of held-out windows, turned by known angles (none a multiple of 45
    degrees), have a latent angle that moves by the turn to within 15 degrees (modulo 360/angle_symmetry). Calibrated
    (see quality): 0.488; it fails the paper's model at this budget (0.16-0.23) and the scrambled angle networks
    (0.25-0.40)."""
    max_loss_tail: float | dict[str, float] | None
    """Fail "not converged" when the held-out loss still made more than this share of its whole improvement in the last
    quarter of the epochs (a run of one epoch cannot tell and fails). Calibrated (see quality): 0.051; one- and
    two-epoch runs fail it."""
    windows: int
    """Held-out windows (at most) the measurements use (training's; a threshold is not)."""


class RvaeAngleConfidenceConfig(TypedDict):
    """``rvae.angle_confidence:`` (checked, defaults filled, read-only)."""

    min_contrast: float
    """Input contrast (the rVAE input's units, 0..1) of the straight step whose gradient energy a window needs: below it
    the window is flat (background, noise) and its angle noise."""
    min_coherence: float
    """Structure-tensor coherence a window needs: 1 for parallel walls, about 0 for isotropic noise, crossings and
    corners, where no single angle describes the window."""


class RvaeConfig(TypedDict):
    """``rvae:`` (checked, defaults filled, read-only)."""

    input: Literal['walls', 'classes', 'raw']
    """Image the rVAE sees, values in [0, 1]: `walls` = wall probability from the segmentation, `classes` = decoded
    class labels scaled to [0, 1], `raw` = the normalised raw frame."""
    raw_normalize: Literal['auto', 'frame', 'movie']
    """How the `raw` input is scaled to [0, 1] (the 1-99 % percentiles, clipped): `frame` = each frame to its own
    percentiles (contrast kept, level and sign lost: a frame whose mean piezoresponse flipped looks like the one
    before); `movie` = one pair of percentiles over the whole movie (the level and sign that carry the polarization in
    spectroscopy data kept; a drifting brightness kept too). `auto` = `movie` for a spectroscopy cube (frames read from
    the bias axis of a file, e.g. a BEPS HDF5 cube), `frame` otherwise; frames laid out by hand (.npy + bias CSV) are
    not known to be a cube: set `movie`. The choice is recorded in the windows and latents stores (`raw_normalize`) and
    logged. Ignored unless input is `raw`."""
    segmentation: Literal[2, 3]
    """Class count of the segmentation model whose output feeds the rVAE (`walls`/`classes` input); it must be one of
    segment.n_classes."""
    sampling: Literal['random', 'dense']
    """How training windows are cut: `random` = `count` positions drawn without replacement over all frames (seeded);
    `dense` = every position on a grid of step `stride` in every frame. Windows lie fully inside the frame; their centre
    pixel is stored."""
    count: int
    """Number of random windows per window size (fewer if fewer positions pass `min_std`)."""
    stride: int
    """Step in pixels between the top-left corners of `dense` windows (ignored for `random`)."""
    min_std: float
    """Keep only windows "with structure": pixel standard deviation >= this (flat background of a wall probability map
    has std ~ 0). 0 keeps every window."""
    weighting: Literal['uniform', 'content']
    """How `random` windows are drawn among the positions that pass `min_std`: `uniform` = every position alike;
    `content` = with probability proportional to the window's mean value (for a wall-probability input, its wall
    content), so that windows a wall crosses are drawn more often than those holding a wall's edge in a corner. Ignored
    for `dense`. Measured at n = 24 on the demo's walls (2 epochs, issue 22): side-wall angle within 15 deg on 82 % of
    pixels against 75 % uniform, all walls 63 % against 58 % (ceiling 69 %), but the decoded contrast at angle 0 falls
    (largest 0.30 against 1.28), so `uniform` stays the default."""
    architecture: Literal['equivariant', 'paper']
    """`paper`: the paper's model exactly (encoder of two 3x3 convolutions with 128 filters and linear heads; Bepler's
    spatial decoder on plain coordinates). `equivariant`: the angle comes from `rotations` copies of a small CNN with
    kernels turned by 360/rotations degrees, a softmax over the copies is a posterior over discrete rotations and the
    angle its circular mean (with a learned sub-step offset), so the angle follows a turned input by construction; shift
    and z come from a plain encoder of `filters` channels; the decoder is `decoder`. Measured side by side in
    benchmarks/bench_rvae_fidelity.py. Each value names an encoder of ferrolens.rvae.registry.ENCODERS (a new encoder:
    its module, one line there and its value here); what an architecture fixes whatever the other keys say is
    ferrolens.rvae.registry.FIXED (`paper`: 128 filters, the spatial decoder of 128 units, no Fourier features)."""
    decoder: Literal['image', 'spatial']
    """The equivariant model's decoder. `image`: z through an MLP to one canonical image (twice the window's extent, the
    window's pixel pitch), read at the turned and shifted pixel coordinates by bilinear interpolation (a spatial
    transformer). `spatial`: Bepler's decoder, an MLP evaluated at every turned pixel coordinate (with
    `fourier_features`). On the demo's wall windows at the demo's budget neither is ahead everywhere: n = 12, 6 epochs,
    held-out R^2 over three seeds image 0.55 / 0.71 / 0.70, spatial 0.67 / 0.63 / 0.63; n = 8 in
    benchmarks/bench_rvae_fidelity.py image 0.66, spatial 0.86 at the same training time. The image decoder draws walls
    sharp; its image starts flat, so an undertrained model decodes flat images, not noise that could pass the physical
    criterion. Each value names a decoder of ferrolens.rvae.registry.DECODERS."""
    decoder_units: int
    """Width of the two hidden layers of the equivariant model's decoder (the paper model has 128)."""
    filters: int
    """Channels of the equivariant model's plain encoder (two 3x3 convolutions, as the paper's) that gives shift, z and
    every log-sd; the paper model always has 128."""
    rotation_filters: int
    """Channels of the 3x3 convolutions of each rotated copy of the equivariant model's angle network."""
    rotations: int
    """Rotated copies K of the equivariant model's angle network (a multiple of 4; 90-degree turns are exact)."""
    angle_symmetry: int
    """Symmetry order m of the content: the latent angle is read modulo 360/m degrees (2: walls and other lines look the
    same after a half turn; 1: no symmetry, e.g. digits). Used by the equivariant encoder and by the rotation check of
    every model."""
    fourier_features: int
    """Random Fourier frequencies of the spatial decoder's coordinates, [p, sin(2 pi B p), cos(2 pi B p)] (0: plain
    coordinates as in the paper; `decoder: image` has none). They let the decoder draw sharp walls."""
    fourier_scale: float
    """Standard deviation of the Fourier frequencies B, in cycles per grid unit (the window spans 2 units)."""
    lr_schedule: Literal['cosine', 'constant']
    """`constant`: Adam at `lr` throughout (the paper). `cosine`: linear warm-up over the first `warmup` fraction of the
    steps, then cosine decay to 0 at the last step."""
    warmup: float
    """Fraction of the training steps spent warming the learning rate up (cosine schedule only)."""
    kl_warmup: float
    """Fraction of the training steps over which the weight of the KL terms in the training objective rises linearly
    from 0 to 1 (0: the plain negative ELBO throughout). The logged losses are the plain ELBO. Measured at n = 24 on the
    demo's walls (2 epochs): 0.3 ends at held-out loss 1903 against 1657 without."""
    decoder_pixels: int
    """Pixels per window the decoder draws in a training step (a random subset per batch; the reconstruction sum is
    scaled up to the whole window, an unbiased estimate): the spatial decoder's cost grows with n^2, so n = 24 windows
    (576 pixels) train about twice as fast at 256. 0 = every pixel (the paper); validation, the quality checks and every
    output use every pixel."""
    gradient_clip: float
    """Clip the gradient norm of every step at this value (0 = no clipping, the paper)."""
    quality: RvaeQualityConfig
    """The rVAE's quality gate (ferrolens.rvae.quality). Training measures, on held-out windows, the reconstruction R^2
    (also after a 1-px blur, and against a PCA with as many numbers per window as the code), whether the latent angle
    follows known turns, and whether the held-out loss levelled off, and stores them in model.ckpt; rule rvae_quality
    applies these thresholds (changing one neither retrains nor re-encodes) and writes rvae/n{window}/quality.json,
    whose verdict the figures stamp in red with what failed and what to do. Each threshold is a number, a mapping window
    size -> number, or null (check off). The defaults are calibrated against ground truth
    (benchmarks/bench_rvae_fidelity.py --ladder, table in docs/rvae_gate_calibration.md): 72 models (the demo's needles
    and a/c stripes with curved walls; n = 8, 12, 24; two seeds; untrained, 1 epoch, 4, 12-16, the paper's model, the
    long model with its angle network scrambled), 6 of them truly good (angle within 15 degrees of the true wall
    direction on >= 85 % of side-wall pixels, all walls within 0.15 of the structure-tensor ceiling, (z1, z2) predicting
    a window's wall or variant fraction with CV R^2 >= 0.6). The check set and thresholds whose verdict agrees best with
    the truth's (balanced accuracy over every set of up to three checks) pass 5 of the 6 and fail 61 of the 66 others
    (today's R^2 >= 0.8 and follow >= 0.8 failed all 72: balanced accuracy 0.50 against 0.88); thresholds chosen on one
    seed's models and judged on the other's: 0.71. Every untrained, 1-epoch, paper-at-this-budget and scrambled model
    fails; the 5 bad ones that pass are trained models whose side-wall angle is 0.70-0.83 right, and one whose angle is
    off though it reconstructs (no check without truth sees that). One threshold for every window size: per-size
    thresholds agreed better in-sample (0.95) but rest on one or no truly good model at n = 12 and 24."""
    latent_dim: int
    """Number L of free latents z1..zL besides angle, dx, dy (paper L = 2)."""
    rotation_prior_sd: float
    """Prior standard deviation of the angle (radians). Without a mean penalty it is the width the angle posterior is
    pulled towards, i.e. the angular jitter the decoder is trained with; 0.1 rad (~6 deg, atomai's default) keeps
    orientation resolution fine while regularising. Bepler et al. use pi/4 with the mean penalty on."""
    angle_mean_penalty: bool
    """Include the mean^2/(2 sd^2) term in the angle KL (Bepler et al.). Off (atomai, the paper's group): only the
    posterior width is regularised, so wall orientations, which are pi-periodic and have no preferred direction, are not
    pulled towards 0."""
    translation: bool
    """Infer a shift (dx, dy) of each window; false fixes it at 0 (dx = dy = 0, log-sd NaN in outputs)."""
    translation_prior_sd: float
    """Prior standard deviation of dx, dy in grid units (the window spans [-1, 1]; 1 unit = (n-1)/2 pixels); Bepler's
    dx_scale. 1 (default): a wall may cross a randomly placed window anywhere, and the shift is what places it; the
    paper's group used 0.1, which pins walls near the centre and leaves their offset to z."""
    reconstruction: Literal['gaussian', 'mse', 'bce']
    """Reconstruction term: `gaussian` = sum of squared errors / (2 noise_sd^2); `mse` = atomai's 0.5 * sum of squared
    errors (gaussian with sd 1, the paper's group's setting); `bce` = binary cross-entropy on decoder logits (binary or
    probability inputs in [0, 1]). On the demo's wall probability (n = 24, 2 epochs) `bce` scored held-out R^2 0.17
    against 0.23 for `gaussian`, side-wall angle within 15 deg 60 % against 75 %, largest decoded contrast 0.48 against
    1.28: per pixel it is a far weaker likelihood against the KL terms than the Gaussian with noise_sd 0.1, so
    `gaussian` stays the default for probabilities."""
    noise_sd: float
    """Pixel noise standard deviation of the `gaussian` reconstruction, in data units (inputs span [0, 1])."""
    lr: float
    """Adam (peak) learning rate (paper and Bepler et al. 1e-4 at a constant rate)."""
    batch_size: int
    """Windows per training step."""
    epochs: int | dict[str, int]
    """Training epochs (passes over the training windows): one number for every window size, or one per window size,
    e.g. {8: 24, 12: 15, 24: 8} (small windows train at thousands of windows per second, large ones far slower). A
    number in your config replaces the demo's mapping; a mapping is merged into it."""
    max_steps: int
    """Stop after this many optimiser steps even if `epochs` are not done; -1 = no limit."""
    val_fraction: float
    """Fraction of the windows held out (seeded) for the validation loss (val/* in metrics.csv); 0 = none."""
    accelerator: Literal['auto', 'cpu', 'gpu', 'cuda']
    """Where to train and encode; `auto` uses a CUDA GPU when one is visible, else the CPU."""
    devices: int
    """Devices (GPUs, or CPU processes with accelerator cpu) that train one window size's model together, data-parallel
    (DDP), on one node: one process each, started by Lightning. On SLURM the profile's `gpu` resource of rule rvae_train
    must ask for the same number of GPUs (and its threads are shared: threads // devices per process); see docs/hpc.md.
    batch_size is per process, so a step sees devices x batch_size windows and an epoch has 1/devices of the steps;
    max_steps counts steps. Encoding uses one device."""
    strategy: Literal['auto', 'ddp']
    """Lightning strategy of training: `auto` = one process for one device, DDP for several; `ddp` = DDP. ddp_spawn is
    not offered (its processes would re-run the workflow script)."""
    encode_batch: int
    """Sampled windows per forward pass when encoding their codes."""
    maps_logsd: bool
    """Also write per-pixel log-sd maps (doubles the size of latents.zarr)."""
    maps_chunk_mb: float
    """Memory budget (MiB) of the convolution activations while computing per-pixel maps; frames are batched, or cut
    into strips of rows, to stay under it."""
    angle_confidence: RvaeAngleConfidenceConfig
    """Where the per-pixel latent angle is determined (ferrolens.rvae.confidence): where the pixel's n x n window of the
    rVAE input holds one dominant orientation. Structure tensor of the input (gradients of a 1-px Gaussian, averaged
    over exactly the window the angle is read from): the window needs at least the gradient energy of one straight step
    of contrast `min_contrast` across it and a coherence (lambda1 - lambda2) / (lambda1 + lambda2) of at least
    `min_coherence`. The latents store holds angle_confidence(frame, y, x) (the coherence, 0 below the energy floor) and
    this rule in its attributes; Fig. 4 greys the angle out and the dynamics' angle KDE leaves it out elsewhere. 0 and 0
    keep every pixel with any gradient. Calibrated on the demo's truth (benchmarks/bench_angle_confidence.py; wall
    probability and raw frames): 0.3 is the smallest contrast of 0.1 ... 0.5 whose energy floor alone keeps at most 5 %
    of flat pixels (no wall within the window) at n = 8, 12 and 24 on both inputs (raw n = 24: 61 % at 0.25, 0 % at 0.3)
    and still 99.8 % of wall pixels; below coherence 0.4 the rVAE's angle on side walls is within 15 degrees of the
    truth on fewer than half the pixels of some coherence bin, from 0.4 up on at least 56 % in every bin. Together, at n
    = 8 and 12: 0 % of flat and 78-88 % of wall pixels kept, the kept walls' median angle error 0.4-4.7 degrees against
    31-42 degrees for the dropped (junctions, needle tips)."""


class DynamicsConfig(TypedDict):
    """``dynamics:`` (checked, defaults filled, read-only)."""

    variables: list[str]
    """Latent labels whose per-frame KDE is computed (angle is circular; others linear)."""
    angle_period: float | None
    """Symmetry period of the angle in radians (π for lines/walls, 2π for vectors); the angle KDE wraps with it. null
    (default): the period the rVAE recorded with its latents (2π / rvae.angle_symmetry), its one owner; a number must
    agree with it, and applies alone only to latents that record none (π is taken for those when null)."""
    pixels: Literal['all', 'subsample', 'structure']
    """Pixels of the per-pixel latent maps that enter the KDE: all finite ones; a seeded random subsample per frame
    (subsample_size); or those the segmentation labels structure_class (needs the segmentation store)."""
    subsample_size: int
    """Pixels per frame kept when pixels is subsample."""
    structure_class: int
    """Segmentation class that counts as structure when pixels is structure (1 = wall)."""
    grid_points: int
    """Points of each variable's KDE grid (the angle grid covers one period)."""
    range_quantiles: list[float]
    """Quantiles of the pooled values (all frames) that bound a linear variable's grid, unless ranges gives it."""
    range_padding: float
    """Bandwidths added beyond the quantile range on each side of a linear grid."""
    ranges: dict[str, list[float]]
    """Fixed grid range per linear variable, e.g. {z1: [-3, 3]} (latent units); overrides range_quantiles."""
    bandwidth: Literal['scott', 'silverman', 'fixed']
    """Kernel bandwidth rule (same 1-D factors as scipy.stats.gaussian_kde; circular sd for the angle), or fixed."""
    fixed_bandwidth: dict[str, float]
    """Kernel standard deviation per variable in its units (rad for angle), e.g. {angle: 0.05, z1: 0.1}; required for
    every variable when bandwidth is fixed."""
    bandwidth_scope: Literal['shared', 'frame']
    """shared: one bandwidth per variable for all frames (median of the per-frame rule values), so KDEs differ only by
    the data; frame: each frame its own rule value."""
    n_components: int
    """NMF components N of every KDE(L, t) (paper N = 2)."""
    nmf_max_iter: int
    """Maximum iterations of scikit-learn's NMF (coordinate descent)."""
    nmf_tol: float
    """Stopping tolerance of scikit-learn's NMF."""
    bootstrap: int
    """Resamples for the confidence intervals: pixels in spatial blocks (the same blocks in every frame) with the NMF
    refitted, and whole cycles where there are several. 0: none (the loop area's interval then comes from the matched
    time blocks alone)."""
    ci_level: float
    """Confidence level of the percentile intervals."""
    spatial_block: int
    """Edge (pixels) of the square pixel blocks resampled together; at least the rVAE window n, since overlapping
    windows are not independent. 0: the window n of the latents store (16 when it has none)."""
    time_block: int | Literal['auto']
    """Frames per time block when the loop metrics' intervals resample the model's residuals along time (within each
    branch). auto: the Politis–White (2004; Patton et al. 2009) block length of the residuals' autocorrelation, per
    curve, reported in the hysteresis table and Fig. 5."""
    drift_degree: int
    """Degree of the smooth drift in time (a polynomial) that the test against no loop allows under "no loop", and that
    is removed from the loop area. Within one cycle time and sweep direction are confounded: a drift up to degree 2 is
    told apart from a loop that closes at both ends of a complete cycle; higher degrees, or a loop left open (a cycle
    from 0 V ends mid-branch), cost power. 0: no drift (the area of the raw curve). A loop is called only where it
    stands under every degree from 1 to this one (the largest p-value): a smooth course in time that one polynomial
    misfits leaves a remainder a loop term can pick up, and a lower degree then disagrees."""
    nmf_resample: Literal['refit', 'project']
    """Per spatial resample, refit the NMF (from the point estimate, components matched to it) or only re-project the
    resampled KDEs onto the fitted components (faster; leaves out the components' own uncertainty)."""
    permutations: int
    """Simulated no-loop curves per noise correlation of the test's reference (12 correlations, once per loop); the
    smallest p-value is 1 / (1 + permutations)."""
    alpha: float
    """Significance level of the test against no hysteresis, applied to Holm-adjusted p-values (corrected for the number
    of loops tested in the table)."""
    stimulus: Literal['auto', 'bias', 'temperature', 'time', 'frame']
    """Coordinate the weights are plotted and looped against. auto: bias when the movie has one, else temperature, else
    time, else the frame index (only a stimulus that turns back gives a loop)."""
    virgin_branch: Literal['auto', 'none']
    """auto: when the sweep starts inside its range (e.g. 0 V), the first quarter-cycle from the initial state is the
    virgin curve, kept out of the loop area and coercive values; none: it is part of the loop."""
    bias_points: int
    """Common stimulus values onto which rising and falling branches are interpolated."""
    reversal_tolerance: float
    """A reversal of the stimulus counts only when it comes back by more than this fraction of its range (ignores noise
    on a measured bias)."""


class LatentSpaceConfig(TypedDict):
    """``latent_space:`` (checked, defaults filled, read-only)."""

    pair: list[str]
    """The two free latents mapped; with more than two free latents the others are held at the median of the observed
    codes."""
    coarse_grid: int
    """Points per axis of the coarse grid of decoded images (manifold figure)."""
    dense_grid: int
    """Points per axis of the dense grid (contrast, physical mask, density and NMF maps)."""
    range_quantiles: list[float]
    """Quantiles of the observed codes (code_mean of the sampled windows) that bound each grid axis, unless ranges gives
    it."""
    ranges: dict[str, list[float]]
    """Fixed grid range per latent, e.g. {z1: [-2, 2]}; overrides range_quantiles."""
    physical_bounds: list[float]
    """A grid point is physical where the maximum reconstructed contrast lies strictly between these bounds."""
    contrast_reference: Literal['absolute', 'observed']
    """What physical_bounds are relative to. `absolute`: the maximum decoded contrast itself (the paper; segmented
    inputs span 0 to 1, so a realisable structure decodes to about 1). `observed`: that contrast divided by the median
    maximum contrast of the decodings at the observed codes (angle 0, zero shift), for a decoder trained too briefly to
    reach full contrast anywhere; physical then means "as contrasted as the model draws the real windows"."""
    image_components: int
    """NMF components of the decoded images (grid points × pixels)."""
    histogram_components: int
    """NMF components of the decoded images' intensity histograms (grid points × bins)."""
    histogram_bins: int
    """Bins of the intensity histograms."""
    histogram_range: list[float]
    """Intensity range of the histogram bins; values outside count in the end bins."""
    rgb_source: Literal['image', 'histogram']
    """Which NMF's loading maps form the RGB composite."""
    rgb_components: list[int]
    """Component indices (ordered by decreasing total loading) shown as red, green and blue."""
    nmf_max_iter: int
    """Maximum iterations of scikit-learn's NMF."""
    nmf_tol: float
    """Stopping tolerance of scikit-learn's NMF."""
    batch_size: int
    """Latent points decoded per decoder call."""
    store_dense_decoded: bool
    """Also store the dense grid's decoded images (dense_grid² images; large) as decoded_dense."""


class SwitchingConfig(TypedDict):
    """``switching:`` (checked, defaults filled, read-only)."""

    variables: list[str]
    """Latent labels that describe a pixel's state ([]: every latent). The angle enters as a point on the circle (it
    wraps with the rVAE's period); each latent is weighted by its own frame-to-frame noise."""
    block: int
    """Edge (pixels) of the square blocks whose latents are averaged before the analysis; 1 = every pixel."""
    level_margin: float
    """Frames within this fraction of the stimulus range of its maximum (minimum) hold a pixel's top (bottom) level: the
    two saturated states its state is measured between."""
    alpha: float
    """Level of each pixel's tests: two equal levels (never switches), a switch within a branch against none, the state
    settling; and 1 − alpha is the level of the switching-bias and loop-area intervals."""
    virgin: Literal['include', 'exclude']
    """include: crossings on the virgin curve (the first quarter-cycle from the initial state, see
    dynamics.virgin_branch) count as switches of their direction (a first switch); exclude: only the closed loop's
    branches."""
    min_separation: float
    """A pixel is two-level (may switch) only where its two levels also differ by at least this, in units of each
    feature's sd over the movie, the noise's share taken off (ferrolens.switching.core.separation: an effect size beside
    the test's significance; a latent that moves steadily by a hundredth of its range is decided by the test, not a
    switch). 0: the test alone. Calibrated on truth (demo generator) on movies other than the demo: a 96-px demo at seed
    1 (its U-Net and rVAEs, n = 8 and 12) and two 96-px movies at seeds 2, 3 (true walls encoded by the seed-0 96-px
    rVAE, n = 8): of 0, 0.25, ... 4, 2 has the best mean of recall minus false calls over both branches of the four
    (0.39, against 0.30 at 0; each alone is best at 1.25-2). It removes most false calls of pixels with no switching
    pixel in their window; those with one stay (a window descriptor sees its neighbours' walls move).
    benchmarks/bench_switching.py reports the demo's."""


class FiguresConfig(TypedDict):
    """``figures:`` (checked, defaults filled, read-only)."""

    dpi: int
    """Resolution of the PNG figures (dots per inch)."""
    vector: Literal['none', 'svg', 'pdf']
    """Also write each figure as SVG or PDF beside the PNG (none = PNG only)."""
    biases: list[float] | None
    """Fig. 1: show the frames nearest these biases (V); null = six frames spread over the sweep."""
    frame: int | None
    """Figs. 2 and 4: the frame to show (null = the frame at the largest positive bias)."""


class DatasetSyntheticConfig(TypedDict):
    """``datasets.<name>.synthetic:`` (checked, defaults filled, read-only)."""

    n_frames: int
    """Number of frames."""
    size: int
    """Frame edge in pixels."""
    seed: int
    """Seed of the generator."""
    amplitude: float
    """Bias amplitude of the triangular sweep (V)."""
    cycles: float
    """Triangular cycles over the movie."""
    phase: float
    """Starting phase in cycles (0: 0 V rising; 0.25: at +amplitude)."""
    needles_per_family: int
    """Needle domains per orientation family."""
    n_contaminants: int
    """Dark round contaminant spots."""
    dose: float
    """Electrons per pixel at unit intensity (Poisson noise)."""


class DatasetFramesConfig(TypedDict):
    """``datasets.<name>.frames:`` (checked, defaults filled, read-only)."""

    start: int
    """First source frame kept."""
    stop: int | None
    """Source frame to stop before (null = to the end)."""
    step: int
    """Keep every step-th frame."""


class DatasetBiasConfig(TypedDict):
    """``datasets.<name>.bias:`` (checked, defaults filled, read-only)."""

    source: Literal['auto', 'file', 'csv', 'list', 'waveform', 'none']
    """auto: the file's bias if it has one; file: the file's (bias.dataset or the sidpy spectral axis); csv: a table
    frame,bias[,time] by source frame; list: bias.values; waveform: triangular; none."""
    dataset: str | None
    """HDF5 dataset holding the bias (one value per source frame)."""
    csv: str | None
    """CSV file with columns frame,bias[,time] (frame = source frame index); required with source: csv."""
    values: list[float]
    """One bias value per kept frame (source list)."""
    amplitude: float
    """Triangular waveform amplitude (V)."""
    cycles: float
    """Triangular cycles over the kept frames."""
    phase: float
    """Starting phase in cycles (0: 0 V rising, 0.25: at +amplitude, 0.5: 0 V falling)."""


class DatasetLabelsConfig(TypedDict):
    """``datasets.<name>.labels:`` (checked, defaults filled, read-only)."""

    frames: list[int]
    """Movie frames (after selection) that have labels, each listed once."""
    source: Literal['files', 'truth']
    """files: read label images from labels.path; truth: the demo generator's ground truth (synthetic datasets only)."""
    path: str | list[str] | None
    """Label images, one per listed frame (a list of files, a folder in natural order, or one stack file)."""
    format: Literal['index', 'rgb']
    """index: integer class maps (-1 = unlabelled); rgb: colour masks mapped by labels.colors."""
    colors: dict[str, list[int]]
    """Class name → RGB colour, for rgb label masks (e.g. wall: [255, 0, 0])."""


class DatasetConfig(TypedDict):
    """``datasets.<name>:`` (checked, defaults filled, read-only)."""

    path: str | list[str] | None
    """Source: a file (TIFF stack, .npy/.npz, HDF5, .zarr, .dm3/.dm4/.emd), a folder of TIFF/PNG frames (natural order),
    or a list of files read as one series (refused when the files differ in pixel size, scan size or position, unless
    mixed_series is true). null when `synthetic` is used."""
    mixed_series: bool
    """Join several files (a list or a folder) into one movie even when they differ in pixel size, pixel units, scan
    size or position (offset). false: such files are refused with every file's value named, since frames of different
    fields of view are not one movie. When true and pixel sizes differ, the movie states no single pixel size (attrs
    source_pixel_size lists each file's)."""
    synthetic: DatasetSyntheticConfig | None
    """Generate the demo movie instead of reading a file (used when `path` is null). Keys are fields of
    ferrolens.synthetic.DemoSpec."""
    format: Literal['auto', 'tiff', 'image', 'npy', 'npz', 'hdf5', 'zarr', 'dm', 'emd']
    """Reader to use; auto picks it from the file extension."""
    dataset: str | None
    """HDF5 dataset path, .npz key or zarr variable holding the frames (auto when there is only one candidate)."""
    channel: str | int | None
    """Channel: a sidpy/pyNSID `quantity` name in HDF5 (e.g. PhaseRetrace), a signal title (dm/emd), the index of a
    last-axis channel, or the colour sample of RGB images (0 R, 1 G, 2 B; null: luminance 0.299 R + 0.587 G + 0.114
    B)."""
    frame_axis: int | None
    """Axis of a 3-D array that runs over frames (null = 0, or the non-spatial axis of a sidpy dataset)."""
    frames: DatasetFramesConfig
    """Which source frames to keep, as a Python slice."""
    crop: list[int | None] | None
    """Crop [y0, y1, x0, x1] in source pixels (null entries = to the edge), applied before binning; null = no crop."""
    bin: int
    """Bin pixels by this factor (block mean for images, top-left pixel for labels)."""
    nonfinite: Literal['error', 'median'] | float
    """What to do with NaN/inf pixels: 'error' (name the frames and stop), 'median' (fill with the movie median) or a
    finite number within the float32 range to fill with. A frame with no finite pixel is refused whatever the policy."""
    pixel_size: float | None
    """Pixel size, overriding what the file says (null = from the file when it has it)."""
    pixel_units: str
    """Units of pixel_size when it is given here."""
    frame_interval: float | None
    """Seconds between frames, for the time coordinate when the file has no time (null = no time)."""
    bias: DatasetBiasConfig
    """The applied bias per frame (V), the `bias` coordinate along frame."""
    labels: DatasetLabelsConfig
    """Human labels of a few frames for training the segmentation."""


class Config(TypedDict):
    """The whole config (:func:`load_config`: checked, defaults filled)."""

    seed: int
    """Master random seed; every stage derives its own seed from it, so the same config gives the same numbers."""
    classes: list[str]
    """Class names of the label images, in class-index order (0, 1, 2 …). The wall class must be index 1."""
    windows: list[int]
    """rVAE window sizes n (pixels, at least 5: the encoder's two valid 3×3 convolutions take 4); one model, one set of
    latent maps and dynamics per size (paper: 8, 12, 24)."""
    datasets: dict[str, DatasetConfig]
    """The movies to analyse, by name; each name becomes the {dataset} wildcard and a folder under results/, so a name
    holds only letters, digits, _ and - (no dots, slashes or spaces)."""
    segment: SegmentConfig
    rvae: RvaeConfig
    dynamics: DynamicsConfig
    latent_space: LatentSpaceConfig
    switching: SwitchingConfig
    figures: FiguresConfig
