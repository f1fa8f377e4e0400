"""The U-Net's calibrated decision: a per-class logit bias chosen on held-out pixels
(:mod:`ferrolens.segment.calibrate`), carried by the model and applied in prediction."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import ferrolens.segment as seg
from ferrolens.segment.calibrate import BIAS_STEP, decision_record, tune_logit_bias

torch.set_num_threads(2)


def logits_and_truth(n=8000, seed=0, noisy=False):
    """Logits ``(n, 3)`` of a known posterior and labels: its argmax, or drawn from it (``noisy``)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 3)) + np.array([1.5, 0.0, -0.5])
    if not noisy:
        return z, z.argmax(1)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return z, (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)


def test_tuning_recovers_a_known_shift_of_the_logits():
    z, truth = logits_and_truth()
    shift = np.array([0.0, 0.8, -0.5])
    bias = tune_logit_bias(z + shift, truth)  # the mean IoU: 1 exactly at the true shift
    np.testing.assert_allclose(bias, -shift, atol=BIAS_STEP + 1e-9)
    rec = decision_record(z + shift, truth, bias, ["background", "wall", "contaminant"])
    assert rec["iou_argmax"][1] < 0.8 and min(rec["iou_calibrated"]) > 0.98
    assert rec["pixels"] == len(truth) and abs(rec["fraction_calibrated"][1] - rec["fraction_true"][1]) < 0.005
    # unshifted logits: nothing scores better than no bias, so none is set
    assert tune_logit_bias(z, truth).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("objective", ["iou", "fractions"])
def test_calibration_moves_an_overpredicted_class_towards_its_true_fraction(objective):
    # labels drawn from softmax(z); the model's logits favour class 1 (as the class weights and Dice do)
    z, truth = logits_and_truth(noisy=True, seed=1)
    biased = z + np.log([0.7, 2.5, 1.0])
    bias = tune_logit_bias(biased, truth, objective)
    rec = decision_record(biased, truth, bias, ["background", "wall", "contaminant"])
    true, raw, cal = rec["fraction_true"][1], rec["fraction_argmax"][1], rec["fraction_calibrated"][1]
    assert raw - true > 0.05  # the over-prediction is there ...
    assert abs(cal - true) < 0.5 * abs(raw - true)  # ... and the calibration takes most of it back
    assert bias[1] < 0 and rec["iou_calibrated"][1] > rec["iou_argmax"][1]
    assert np.nanmean(rec["iou_calibrated"]) >= np.nanmean(rec["iou_argmax"])
    if objective == "fractions":  # every class's fraction matched to the resolution of the bias grid
        np.testing.assert_allclose(rec["fraction_calibrated"], rec["fraction_true"], atol=0.003)
    with pytest.raises(ValueError, match="objective"):
        tune_logit_bias(biased, truth, "dice")


def test_classes_without_enough_held_out_pixels_keep_a_zero_bias():
    z, truth = logits_and_truth()
    truth = np.where(truth == 2, 0, truth)
    truth[:50] = 2  # 50 < MIN_PIXELS contaminant pixels
    shift = np.array([0.0, 0.8, -3.0])
    bias = tune_logit_bias(z + shift, truth)
    assert bias[2] == 0.0 and abs(bias[1] + 0.8) < 0.2
    # unlabelled pixels (−1) are skipped; image-shaped input is accepted
    img, lab = (z + shift).T.reshape(1, 3, 80, 100), truth.reshape(1, 80, 100).copy()
    lab[0, :10] = -1
    assert abs(tune_logit_bias(img, lab)[1] + 0.8) < 0.2


def model_with_bias(bias):
    torch.manual_seed(0)
    m = seg.SegmentationModel(3, depth=2, base_filters=4).eval()
    with torch.no_grad():
        m.logit_bias.copy_(torch.tensor(bias))
    return m


def test_prediction_adds_the_models_bias_and_checkpoints_carry_it(tmp_path):
    model = model_with_bias([0.0, 0.0, 0.0])
    x = torch.randn(2, 1, 24, 20)
    frames = np.random.default_rng(0).normal(size=(2, 24, 20)).astype(np.float32)
    cfg = {"predict": {"tile": 64, "overlap": 32, "precision": "float32"}}
    plain = seg.probabilities(model, frames, cfg)
    with torch.no_grad():
        model.logit_bias.copy_(torch.tensor([0.0, 1.5, -0.5]))
        fused = seg.fuse_for_inference(model.net, model.logit_bias)
        np.testing.assert_allclose(fused(x).numpy(), (model(x) + model.logit_bias[:, None, None]).numpy(), atol=2e-4)
    # the bias changed in place: the cached inference net is made again, and it shifts the log-odds
    shifted = seg.probabilities(model, frames, cfg)
    np.testing.assert_allclose(
        np.log(shifted[:, 1] / shifted[:, 0]), np.log(plain[:, 1] / plain[:, 0]) + 1.5, atol=1e-3
    )
    with torch.no_grad():
        model.logit_bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
    assert (seg.probabilities(model, frames, cfg).argmax(1) == 1).all()

    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    assert seg.load(tmp_path / "m.ckpt").logit_bias.tolist() == [0.0, 50.0, 0.0]
    # a checkpoint from before the decision rule loads as plain argmax
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=True)
    del ckpt["state_dict"]["logit_bias"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    old = seg.load(tmp_path / "old.ckpt")
    assert old.logit_bias.tolist() == [0.0, 0.0, 0.0] and old.decision == {"rule": "argmax"}
