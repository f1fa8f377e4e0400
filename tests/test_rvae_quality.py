"""The rVAE's quality gate (ferrolens.rvae.quality): measurements, verdicts, the rule's report.

Fast: no training here (the trained, untrained and scrambled models are judged in
tests/test_rvae_train.py on the bars model trained there once)."""

import json
import math

import numpy as np
import pytest
import torch

from ferrolens.errors import InputError
from ferrolens.rvae import quality
from ferrolens.rvae.config import DEFAULTS, model_hparams, resolve_config
from ferrolens.rvae.model import RVAE
from ferrolens.rvae.report import read_report
from ferrolens.rvae.toy import oriented_bars

torch.set_num_threads(2)

GOOD = {
    "window": 12,
    "r2": 0.9,
    "r2_blur": 0.95,
    "r2_pca": 0.8,
    "r2_gain": 0.1,
    "angle_follow": 0.95,
    "loss_tail": 0.01,
    "epochs": 20,
    "blur_sigma_px": 1.0,
    "pca_components": 5,
}


def test_loss_tail_tells_levelled_from_falling():
    levelled = [10.0, 5.0, 3.0, 2.2, 2.1, 2.05, 2.02, 2.0]
    falling = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]
    assert quality.loss_tail(levelled) == (pytest.approx(0.05 / 8.0), 8)
    assert quality.loss_tail(falling) == (pytest.approx(2 / 7), 8)
    assert quality.loss_tail([5.0, 4.0]) == (1.0, 2)  # two epochs: all of it in the last "quarter"
    tail, epochs = quality.loss_tail([5.0])
    assert math.isnan(tail) and epochs == 1  # one epoch cannot tell


def test_r2_and_pca_baseline():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6)).astype(np.float32)
    assert quality.r2_score(x, x) == 1.0
    assert quality.r2_score(x, np.full_like(x, x.mean())) == pytest.approx(0.0, abs=1e-12)
    # windows of rank 3 about their mean: 3 components describe them exactly, 1 does not
    basis = rng.normal(size=(3, 36))
    low = (rng.normal(size=(64, 3)) @ basis + 0.5).reshape(64, 6, 6)
    assert quality.pca_r2(low, 3) == pytest.approx(1.0)
    assert quality.pca_r2(low, 1) < 0.9
    # the blur keeps a linear ramp (away from the edges: 4 sigma) and removes pixel noise
    smooth = np.tile(np.linspace(0, 1, 12), (4, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(quality.blurred(smooth)[:, 4:-4, 4:-4], smooth[:, 4:-4, 4:-4], atol=1e-5)
    noise = rng.normal(size=(4, 12, 12)).astype(np.float32)
    assert quality.blurred(noise).std() < 0.5 * noise.std()


def test_judge_names_what_failed_and_what_to_do():
    thresholds = {"min_r2_blur": {8: 0.5, 12: 0.7}, "min_angle_follow": 0.8, "max_loss_tail": 0.1, "min_r2": None}
    assert quality.judge(GOOD, thresholds) == []
    bad = dict(GOOD, r2_blur=0.6, angle_follow=0.5, loss_tail=float("nan"), epochs=1, r2=0.1)
    v = quality.verdict(bad, thresholds, "rVAE n=12")
    assert not v["passed"] and v["failed"] == ["not converged", "orientation", "reconstruction"]
    text = v["quality_warning"]
    assert "RECONSTRUCTION" in text and "0.600 < 0.7" in text and "rvae.quality.min_r2_blur" in text
    assert "ORIENTATION" in text and "50%" in text and "NOT CONVERGED" in text and "1 epoch" in text
    assert "rvae.epochs for n=12" in text  # what to do
    assert "min_r2)" not in text  # null: the check is off
    # the per-window threshold of another size applies to it; a size without one is not checked
    assert quality.judge(dict(bad, window=8, angle_follow=1.0, loss_tail=0.0), thresholds) == []
    assert quality.judge(dict(bad, window=24, angle_follow=1.0, loss_tail=0.0), thresholds) == []
    assert json.loads(json.dumps(v["thresholds"]))["min_r2_blur"] == {"8": 0.5, "12": 0.7}


def test_report_applies_thresholds_without_touching_the_model(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"ferrolens_model": "rvae", "ferrolens_quality": dict(GOOD, r2_blur=0.6)}, ckpt)
    before = ckpt.read_bytes()
    out = tmp_path / "quality.json"
    assert quality.report(str(ckpt), str(out), {"min_r2_blur": 0.5})["passed"]
    assert json.loads(out.read_text())["quality_warning"] == ""
    record = quality.report(str(ckpt), str(out), {"min_r2_blur": 0.7})
    assert not record["passed"] and read_report(str(out)) == json.loads(json.dumps(record))
    assert ckpt.read_bytes() == before
    # an older checkpoint without measurements fails and says to retrain; another model kind is refused
    torch.save({"ferrolens_model": "rvae"}, ckpt)
    assert "retrain" in quality.report(str(ckpt), str(out), {})["quality_warning"]
    torch.save({"ferrolens_model": "unet"}, ckpt)
    with pytest.raises(InputError, match="another model kind"):
        quality.report(str(ckpt), str(out), {})


def test_default_gate_fails_an_untrained_model():
    torch.manual_seed(0)
    model = RVAE(**model_hparams(resolve_config({}), 9)).eval()
    windows = oriented_bars(9, np.random.default_rng(1).uniform(0, np.pi, 96))
    q = quality.assess(model, windows, 2, val_loss=None)
    assert q["r2"] < 0 and q["window"] == 9 and math.isnan(q["loss_tail"])
    v = quality.verdict(q, DEFAULTS["quality"])
    assert not v["passed"] and "reconstruction" in v["failed"]
