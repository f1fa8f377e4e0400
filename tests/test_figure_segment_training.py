"""The U-Net training-curve figure (rule figure_segment_training) from small fake training records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ferrolens.errors import InputError
from ferrolens.figures import segment_training
from ferrolens.figures.segment import segment_training_figure

REGIONS = {
    "holdout": "regions",
    "train_frames": [0, 3],
    "val_frames": [0, 3],
    "regions": [{"frame": 0, "side": "bottom", "y": [40, 48], "x": [0, 48]}],
}


def record(folder, names, iou=0.5):
    """metrics.csv and quality.json as segment.train writes them, for a model of len(names) classes
    whose held-out IoU is ``iou`` (mean; wall 0.05 lower)."""
    folder.mkdir()
    epochs = np.arange(4)
    df = pd.DataFrame(
        {
            "epoch": epochs,
            "step": 10 * (epochs + 1),
            "train_loss": 1.0 / (epochs + 1),
            "val_loss": 1.2 / (epochs + 1),
            "val_miou": 0.2 + 0.1 * epochs,
        }
    )
    for i, n in enumerate(names):
        df[f"iou_{n}"] = 0.15 + 0.1 * epochs + 0.05 * i
    df.to_csv(folder / "metrics.csv", index=False)
    q = {
        "heldout_miou": iou,
        "heldout_iou_wall": iou - 0.05,
        "split": REGIONS,
        "held_out": "held out for validation: a strip of each labelled frame",
    }
    (folder / "quality.json").write_text(json.dumps(q))
    return str(folder / "metrics.csv"), str(folder / "quality.json")


def texts(fig):
    return [t.get_text() for t in fig.texts] + [ax.get_title() for ax in fig.axes]


def test_one_row_per_model_written_as_png(tmp_path):
    runs = [
        record(tmp_path / "c2", ["background", "wall"]),
        record(tmp_path / "c3", ["background", "wall", "contaminant"]),
    ]
    out = segment_training(
        [m for m, _ in runs], [q for _, q in runs], str(tmp_path / "segment_training.png"), {"dpi": 60}, min_iou=0.3
    )
    with Image.open(out) as im:
        w, h = im.size
        arr = np.asarray(im.convert("L"))
    assert 300 < w < 2000 and 300 < h < 2000 and h > 0.6 * w  # two rows of two panels
    assert arr.std() > 5
    fig = segment_training_figure([m for m, _ in runs], [q for _, q in runs], min_iou=0.3)
    assert len(fig.axes) == 4
    assert {"2-class U-Net: loss", "3-class U-Net: loss"} <= set(texts(fig))
    assert not any("WARNING" in t for t in texts(fig))


def test_quality_warning_drawn_in_red(tmp_path):
    """The floor is judged by the figure (training records the measurement): the same record is
    poor against min_iou 0.3 and good against 0.1."""
    m, q = record(tmp_path / "c3", ["background", "wall", "contaminant"], iou=0.2)
    fig = segment_training_figure([m], [q], min_iou=0.3)
    warned = [t for t in fig.texts if "WARNING" in t.get_text()]
    assert len(warned) == 1 and "3-class U-Net: POOR SEGMENTATION" in warned[0].get_text()
    assert "held-out IoU wall 0.15, mean 0.20 is below segment.train.min_iou = 0.30" in warned[0].get_text()
    assert warned[0].get_color() == "C3"
    assert not any("WARNING" in t.get_text() for t in segment_training_figure([m], [q], min_iou=0.1).texts)


def test_not_a_unet_metrics_csv_is_named(tmp_path):
    m, q = record(tmp_path / "c2", ["background", "wall"])
    pd.DataFrame({"epoch": [0], "train/loss": [1.0]}).to_csv(m, index=False)
    with pytest.raises(InputError, match=r"metrics\.csv"):
        segment_training_figure([m], [q])
