"""Segmentation stage: a U-Net trained on a few labelled frames, applied to the whole movie.

Layers (DESIGN.md): :class:`UNet` (plain ``nn.Module``), :class:`SegmentationModel`
(LightningModule), :class:`SegmentationData` (LightningDataModule), pure seeded
augmentation in :mod:`.augment`, normalisation and exact tiled inference in
:mod:`.infer`; entry functions :func:`train` (:mod:`.learn`), :func:`predict`,
:func:`input_image`, :func:`load` (:mod:`.apply`); :func:`fit` trains on arrays and
:func:`probabilities` predicts them (notebooks).
"""

from .apply import INPUT_KINDS, input_image, load, predict, probabilities
from .config import DEFAULTS, resolve_config
from .data import SegmentationData, auto_class_weights, describe_split
from .infer import normalize_frames, predict_frames
from .learn import fit, train
from .model import (
                    CLASS_NAMES,
                    MODEL_KIND,
                    SegmentationModel,
                    metrics_table,
                    quality,
                    segmentation_loss,
                    soft_dice_loss,
                    weighted_cross_entropy,
)
from .unet import UNet, context_margin, fuse_for_inference

__all__ = [
    "CLASS_NAMES", "DEFAULTS", "INPUT_KINDS", "MODEL_KIND", "SegmentationData", "SegmentationModel", "UNet",
    "auto_class_weights", "context_margin", "describe_split", "fit", "fuse_for_inference", "input_image", "load",
    "metrics_table", "normalize_frames", "predict", "probabilities", "quality",
    "predict_frames", "resolve_config", "segmentation_loss", "soft_dice_loss", "train", "weighted_cross_entropy",
]
