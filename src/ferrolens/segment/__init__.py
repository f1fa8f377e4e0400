"""Segmentation stage: a U-Net trained on a few labelled frames, applied to the whole movie.

Layers (DESIGN.md): :class:`UNet` (plain ``nn.Module``), :class:`SegmentationModel`
(LightningModule), :class:`SegmentationData` (LightningDataModule), pure seeded
augmentation in :mod:`.augment`, normalisation and exact tiled inference in
:mod:`.infer`; entry functions :func:`train` (:mod:`.learn`), :func:`predict`,
:func:`load` (:mod:`.apply`), :func:`input_image` (:mod:`.images`); :func:`fit` trains on
arrays and :func:`probabilities` predicts them (notebooks).

Names are imported on first use (PEP 562): a job that needs only :func:`input_image`
does not pay for importing Lightning.
"""

from ..lazy import lazy_names

#: Where each public name lives.
_WHERE = {
    "INPUT_KINDS": "images",
    "input_image": "images",
    "load": "apply",
    "predict": "apply",
    "probabilities": "apply",
    "DEFAULTS": "config",
    "resolve_config": "config",
    "SegmentationData": "data",
    "auto_class_weights": "data",
    "describe_split": "data",
    "normalize_frames": "infer",
    "predict_frames": "infer",
    "fit": "learn",
    "train": "learn",
    "CLASS_NAMES": "model",
    "MODEL_KIND": "model",
    "SegmentationModel": "model",
    "metrics_table": "model",
    "quality": "verdict",
    "measure": "verdict",
    "judge": "verdict",
    "segmentation_loss": "model",
    "soft_dice_loss": "model",
    "weighted_cross_entropy": "model",
    "UNet": "unet",
    "context_margin": "unet",
    "fuse_for_inference": "unet",
}
__getattr__, __dir__, __all__ = lazy_names(__name__, _WHERE)
