"""Segmentation stage: U-Net shapes, aligned augmentation, loss, training,
checkpoints, exact tiling, the stores, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import xarray as xr

import ferrolens.segment as seg
from ferrolens.errors import InputError
from ferrolens.segment import augment as aug
from ferrolens.segment.infer import (
    bf16_is_native,
    blend_weights,
    forward_probabilities,
    predict_frames,
    resolve_precision,
    tile_starts,
)
from ferrolens.store import FRAME, X, Y, frame_coords, open_store, provenance, write_store

torch.set_num_threads(2)
NAMES = ["background", "wall", "contaminant"]
TINY = {
    "model": {"depth": 2, "base_filters": 4},
    "train": {"patch_size": 24, "batch_size": 4, "steps_per_epoch": 4, "max_epochs": 2},
    "predict": {"batch_size": 4, "tile": 64, "overlap": 32},
}


# --- small synthetic data -------------------------------------------------------------
def pattern(n=6, h=45, w=39, seed=0):
    """Dark lines (class 1) and dark discs (class 2) on a bright noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cls = np.zeros((n, h, w), np.uint8)
    for f in range(n):
        for _ in range(2):
            a, b = rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.8) * h
            cls[f][np.abs(yy - (a * (xx - w / 2) + b)) < 1.6] = 1
        for _ in range(3):
            cy, cx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
            cls[f][(yy - cy) ** 2 + (xx - cx) ** 2 < 9] = 2
    img = 1.0 - 0.5 * (cls == 1) - 0.8 * (cls == 2) + rng.normal(0, 0.05, cls.shape)
    return (1000 + 400 * img).astype(np.float32), cls


def write_movie(path, img):
    n = img.shape[0]
    ds = xr.Dataset(
        {"image": ((FRAME, Y, X), img)},
        coords=frame_coords(n, bias=np.linspace(-1, 1, n), time=np.arange(n) * 0.5),
        attrs=provenance("movie", {}),
    )
    return str(write_store(ds, path))


def write_labels(path, label, frames, names=NAMES):
    ds = xr.Dataset(
        {"label": ((FRAME, Y, X), np.asarray(label, np.int16))},
        coords={FRAME: np.asarray(frames)},
        attrs=provenance("labels", {}, class_names=list(names)),
    )
    return str(write_store(ds, path))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg")
    img, cls = pattern()
    frames = [0, 2, 4]
    return {
        "dir": d,
        "img": img,
        "cls": cls,
        "movie": write_movie(d / "movie.zarr", img),
        "labels": write_labels(d / "labels.zarr", cls[frames], frames),
    }


@pytest.fixture(scope="module")
def trained(stores):
    """One tiny training (2 epochs) and its prediction, shared by several tests."""
    out = stores["dir"] / "c3"
    seg.train(stores["movie"], stores["labels"], str(out), 3, TINY, seed=0, threads=2)
    pred = stores["dir"] / "segmentation.zarr"
    seg.predict(stores["movie"], str(out / "model.ckpt"), str(pred), TINY, threads=2)
    return out, pred


def random_model(depth=2, base=4, n_classes=3, seed=0):
    """A model with random weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    m = seg.SegmentationModel(n_classes, depth=depth, base_filters=base, dropout=0.2)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 1, 40, 40) * 2 + 0.5)
        m.net.head.weight *= 30  # sharp outputs, so that a wrong tiling shows
    return m.eval()


# --- U-Net ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(37, 29), (1, 1), (5, 3), (64, 17)])
def test_unet_any_size_gives_same_size(shape):
    net = seg.UNet(1, 3, depth=3, base_filters=4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 3, *shape)
    assert torch.isfinite(out).all()


def test_fused_inference_net_equals_the_model():
    model = random_model(depth=3, base=8)
    fast = seg.fuse_for_inference(model.net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(3, 1, 50, 45)
    with torch.no_grad():
        np.testing.assert_allclose(
            fast(x.contiguous(memory_format=torch.channels_last)).numpy(), model(x).numpy(), atol=2e-4, rtol=1e-5
        )
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched


def test_reference_size_unet_filters():
    net = seg.UNet()  # defaults: 16-32-64 encoder, 128 bottleneck
    widths = [b[0].out_channels for b in net.down] + [net.bottleneck[0].out_channels]
    assert widths == [16, 32, 64, 128]


# --- augmentation ----------------------------------------------------------------------
def test_rotations_and_flips_keep_pixels_aligned():
    lab = np.arange(7 * 5).reshape(7, 5)  # every pixel unique
    img = lab.astype(np.float32)
    for k in range(4):
        i, la = aug.rotate90(img, lab, k)
        np.testing.assert_array_equal(i, la)
        np.testing.assert_array_equal(la, np.rot90(lab, k))
    for axis in (0, 1):
        i, la = aug.flip(img, lab, axis)
        np.testing.assert_array_equal(i, la)
        assert not np.array_equal(la, lab)


def test_zoom_keeps_labels_on_the_image():
    # image = coordinate ramps (bilinear is exact on them), labels = the same ramp as integers:
    # after zoom, each label must be the image value rounded, i.e. within half a pixel
    n = 32
    yy, xx = np.mgrid[0:n, 0:n]
    for ramp in (yy, xx):
        img, lab = aug.zoom(ramp.astype(np.float32), ramp, factor=1.7, position_y=0.3, position_x=0.8)
        assert img.shape == lab.shape == (n, n)
        assert np.abs(img - lab).max() <= 0.5 + 1e-6
        assert lab.max() - lab.min() < n - 1  # really zoomed in (a sub-window)
        assert len(np.unique(lab)) > n / 2


def test_full_augmentation_alignment_and_determinism():
    cfg = seg.resolve_config(None)["augment"]
    geo = {
        **cfg,
        **{k: {**cfg[k], "enabled": False} for k in ("contrast", "gaussian_noise", "poisson_noise", "blur")},
        "zoom": {**cfg["zoom"], "probability": 1.0},
    }
    n = 24
    yy, xx = np.mgrid[0:n, 0:n]
    for seed in range(8):
        iy, ly = aug.augment_pair(yy.astype(np.float32), yy, np.random.default_rng(seed), geo)
        ix, lx = aug.augment_pair(xx.astype(np.float32), xx, np.random.default_rng(seed), geo)
        assert np.abs(iy - ly).max() <= 0.5 + 1e-5 and np.abs(ix - lx).max() <= 0.5 + 1e-5
    # intensity operations leave labels alone; same seed → same patch
    img, cls = pattern(n=1)
    a = aug.augment_pair(img[0] / 1000, cls[0], np.random.default_rng(3), cfg)
    b = aug.augment_pair(img[0] / 1000, cls[0], np.random.default_rng(3), cfg)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    noisy = {
        **cfg,
        "rotate90": False,
        "flip": False,
        "zoom": {**cfg["zoom"], "enabled": False},
        **{k: {**cfg[k], "probability": 1.0} for k in ("contrast", "gaussian_noise", "poisson_noise", "blur")},
    }
    i, la = aug.augment_pair(img[0] / 1000, cls[0], np.random.default_rng(0), noisy)
    np.testing.assert_array_equal(la, cls[0])
    assert not np.allclose(i, img[0] / 1000)


# --- loss --------------------------------------------------------------------------------
def test_loss_finite_with_absent_class_and_no_labels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 8, 8))  # class 2 absent
    w = torch.tensor(seg.auto_class_weights([100, 10, 0]))
    assert np.isfinite(w.numpy()).all()
    loss, wsum = seg.weighted_cross_entropy(logits, target, w)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and wsum > 0
    assert torch.isfinite(logits.grad).all()
    # matches torch's weighted mean where torch is defined
    ref = torch.nn.functional.cross_entropy(logits, target, weight=w)
    assert torch.allclose(loss, ref, atol=1e-6)
    none, wsum = seg.weighted_cross_entropy(logits, torch.full((2, 8, 8), -1), w)
    assert float(none.detach()) == 0.0 and float(wsum) == 0.0


def test_dice_loss_scores_overlap_per_class_and_ignores_unlabelled_pixels():
    target = torch.zeros(1, 8, 8, dtype=torch.int64)
    target[0, 3, :] = 1  # one thin line: 8 of 64 pixels
    sure = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 40 - 20
    assert float(seg.soft_dice_loss(sure, target)) < 0.02  # right everywhere (class 2 absent: smoothed)
    # calling the line background costs cross-entropy 1/8 of its worst, Dice a third of its worst
    miss = sure.clone()
    miss[0, :, 3, :] = sure[0, :, 0, :]
    ce_ratio = float(seg.weighted_cross_entropy(miss, target)[0]) / 40.0
    assert ce_ratio < 0.13 and float(seg.soft_dice_loss(miss, target)) > 0.3
    # unlabelled pixels count for nothing, however wrong
    unl = target.clone()
    unl[0, 3, :] = -1
    assert float(seg.soft_dice_loss(miss, unl)) < 0.02
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss, wsum = seg.segmentation_loss(logits, torch.randint(0, 2, (2, 8, 8)))
    loss.backward()
    assert torch.isfinite(loss) and float(wsum) == 128 and torch.isfinite(logits.grad).all()


def test_a_few_training_steps_lower_the_loss():
    img, cls = pattern(n=3)
    images, _, _ = seg.normalize_frames(img)
    cfg = seg.resolve_config(TINY)
    dm = seg.SegmentationData(images, cls, [0, 1, 2], 3, cfg["train"], cfg["augment"], seed=0)
    pl.seed_everything(0, verbose=False)
    model = seg.SegmentationModel(3, depth=2, base_filters=8, class_weights=dm.class_weights())
    opt = model.configure_optimizers()
    fixed = next(iter(torch.utils.data.DataLoader(dm.train_set, batch_size=8)))

    def fixed_loss():
        model.train()  # batch statistics: eval-mode running averages lag a few steps behind
        with torch.no_grad():
            return float(seg.weighted_cross_entropy(model(fixed[0]), fixed[1], model.class_weight)[0])

    before = fixed_loss()
    loader = torch.utils.data.DataLoader(dm.train_set, batch_size=4, sampler=range(8, 200))
    for _, batch in zip(range(15), loader, strict=False):  # the first 15 batches
        loss = seg.weighted_cross_entropy(model(batch[0]), batch[1], model.class_weight)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.85 * before, (before, after)


# --- data module -----------------------------------------------------------------------------
def test_rare_class_is_oversampled_and_split_is_held_out():
    img, cls = pattern(n=4)
    images, _, _ = seg.normalize_frames(img)
    cfg = seg.resolve_config(TINY)
    by_frames = {**cfg["train"], "holdout": "frames"}
    dm = seg.SegmentationData(images, cls, [0, 3, 5, 7], 3, by_frames, cfg["augment"], seed=0)
    assert dm.split["val_frames"] == [5] and dm.split["train_frames"] == [0, 3, 7]
    assert seg.describe_split(dm.split) == (
        "held out for validation: whole labelled frames [5] (trained on frames [0, 3, 7])"
    )
    # make the contaminant rare: one 3×3 spot in one training frame
    rare = np.where(cls == 2, 0, cls)
    rare[1, 20:23, 20:23] = 2

    def share(fraction):  # share of patches that contain the rare class
        t = {**cfg["train"], "rare_class_fraction": fraction}
        d = seg.SegmentationData(images, rare, [0, 3, 5, 7], 3, t, cfg["augment"], seed=0)
        return np.mean([(d.train_set[k][1].numpy() == 2).any() for k in range(120)]), d

    uniform, _ = share(0.0)
    balanced, dm = share(0.5)
    # a third of the centred half lands on the spot (1/6), on top of uniform placement
    assert balanced > uniform + 0.08, (uniform, balanced)
    assert dm.train_set.classes == [0, 1, 2]
    # single labelled frame: spatial split into disjoint row blocks
    one = seg.SegmentationData(images[:1], cls[:1], [0], 3, cfg["train"], cfg["augment"])
    (tr_img, _), (va_img, _) = one.train_sources[0], one.val_sources[0]
    assert tr_img.shape[0] + va_img.shape[0] == images.shape[1]
    assert one.split["regions"] == [{"frame": 0, "side": "bottom", "y": [tr_img.shape[0], 45], "x": [0, 39]}]


def test_region_holdout_trains_on_every_labelled_frame_and_holds_out_a_strip_of_each():
    """Two labelled frames: both train the model (the paper's premise), a strip of each is held out."""
    img, cls = pattern(n=3, h=48, w=40)
    images, _, _ = seg.normalize_frames(img)
    cfg = seg.resolve_config(TINY)
    dm = seg.SegmentationData(images, cls, [2, 9, 11], 3, cfg["train"], cfg["augment"], seed=0)
    assert dm.split["holdout"] == "regions" and dm.split["train_frames"] == [2, 9, 11]
    sides = [r["side"] for r in dm.split["regions"]]
    assert sides == ["bottom", "right", "top"]
    for k, r in enumerate(dm.split["regions"]):
        (tr_img, _), (va_img, va_lab) = dm.train_sources[k], dm.val_sources[k]
        y0, y1 = r["y"]
        x0, x1 = r["x"]
        np.testing.assert_array_equal(va_img, images[k][y0:y1, x0:x1])
        np.testing.assert_array_equal(va_lab, cls[k][y0:y1, x0:x1])
        # train and held-out parts tile the frame without overlap
        assert tr_img.size + va_img.size == images[k].size
        held = np.zeros(images[k].shape, bool)
        held[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(np.sort(tr_img.ravel()), np.sort(images[k][~held].ravel()))
    assert (dm.split["regions"][0]["y"], dm.split["regions"][1]["x"]) == ([36, 48], [30, 40])  # 25 % of 48, of 40
    text = seg.describe_split(dm.split)
    assert text == (
        "held out for validation: a strip of each labelled frame — frame 2 rows 36–47 (bottom), "
        "frame 9 columns 30–39 (right), frame 11 rows 0–11 (top)"
    )


# --- exact tiling ---------------------------------------------------------------------------
def test_tiled_prediction_equals_whole_frame():
    model = random_model(depth=2, base=4)
    margin = model.context_margin()
    tile, overlap = 96, 64
    assert 2 * margin < overlap and tile % 4 == 0 and overlap % 4 == 0
    rng = np.random.default_rng(0)
    frames = rng.normal(0.5, 0.3, (1, 221, 203)).astype(np.float32)
    assert len(tile_starts(221, tile, overlap)) >= 5  # really tiled
    whole = forward_probabilities(model, frames, 2, torch.device("cpu"))
    tiled = predict_frames(model, frames, tile, overlap, 3, torch.device("cpu"))
    assert tiled.shape == whole.shape == (1, 3, 221, 203)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(tiled[inner] - whole[inner]).max() < 1e-5
    assert np.abs(tiled - whole).max() < 1e-5  # the frame border too, by construction
    # the test can fail: trusting the tiles up to their cut edges (no margin) breaks equality
    cut = predict_frames(model, frames, tile, overlap, 3, torch.device("cpu"), margin=0)
    assert np.abs(cut - whole).max() > 1e-3


def test_blend_weights_sum_to_one():
    n, tile, overlap, margin = 300, 96, 64, 20
    total = np.zeros(n)
    for s in tile_starts(n, tile, overlap):
        length = min(tile, n - s)
        total[s : s + length] += blend_weights(s, length, n, overlap, margin)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


# --- train / predict / checkpoints ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize("low,high", [(1.0, 99.0), (0.0, 100.0), (10.0, 50.0), (2.5, 97.3)])
def test_normalize_frames_equals_numpy_percentiles(dtype, low, high):
    rng = np.random.default_rng(1)
    frames = (rng.gamma(2.0, 300.0, (3, 37, 29)) + np.arange(3)[:, None, None] * 500).astype(dtype)
    frames[1, :5] = frames[1, 5]  # ties
    out, lo, hi = seg.normalize_frames(frames, low, high)
    flat = frames.reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(lo, np.percentile(flat, low, axis=1), rtol=1e-6)
    np.testing.assert_allclose(hi, np.percentile(flat, high, axis=1), rtol=1e-6)
    expect = (frames - lo[:, None, None]) / (hi - lo)[:, None, None]
    assert out.dtype == np.float32 and out.shape == frames.shape
    np.testing.assert_allclose(out, expect, atol=1e-5)
    one, lo1, _ = seg.normalize_frames(frames[2], low, high)  # one frame: same values, no frame axis
    np.testing.assert_array_equal(one, out[2])
    assert lo1.shape == (1,) and lo1[0] == lo[2]


def test_normalize_frames_flat_frame_is_only_shifted():
    out, lo, hi = seg.normalize_frames(np.full((2, 4, 5), 7.0, np.float32))
    assert np.all(out == 0) and np.all(lo == 7) and np.all(hi == 7)


def test_precision_auto_follows_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) is False and resolve_precision("bf16", cpu) is True
    assert resolve_precision("auto", cpu) == bf16_is_native(cpu)
    info = Path("/proc/cpuinfo")
    if info.exists():  # an independent reading of the same CPU flags
        flags = set(info.read_text().split())
        assert bf16_is_native(cpu) == bool({"avx512_bf16", "amx_bf16", "amx_tile"} & flags)
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp16", cpu)


def test_inference_net_is_reused_until_the_weights_change():
    from ferrolens.segment.apply import _inference_net

    model = random_model()
    p = seg.resolve_config(TINY)["predict"]
    net, _, _ = _inference_net(model, p)
    assert _inference_net(model, p)[0] is net
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
        model.net.head.bias += 1.0  # in place, as an optimiser step changes weights
    net2, _, _ = _inference_net(model, p)
    assert net2 is not net
    with torch.no_grad():
        np.testing.assert_allclose(net2(x).numpy(), (before + 1.0).numpy(), atol=1e-5)


def test_train_writes_outputs_and_is_reproducible(stores, trained, tmp_path):
    out, _ = trained
    for name in ("model.ckpt", "last.ckpt", "metrics.csv", "quality.json"):
        assert (out / name).stat().st_size > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,step,train_loss,val_loss,val_miou,iou_background,iou_wall,iou_contaminant,lr,wall_s,cpu_s"
    assert len(rows) == 3 and all(np.isfinite(float(v)) for v in rows[1].split(","))
    # 4 steps an epoch at the configured learning rate; model.ckpt carries the whole record
    m = pd.read_csv(out / "metrics.csv")
    assert m["step"].tolist() == [4, 8] and (m["lr"] == 1e-3).all()
    pd.testing.assert_frame_equal(seg.metrics_table(seg.load(out / "model.ckpt").history, NAMES), m, check_exact=True)
    # the decision: chosen on the held-out strips, recorded with what it does there, carried by model.ckpt
    d = json.loads((out / "quality.json").read_text())["decision"]
    assert d["rule"] == "fractions" and len(d["logit_bias"]) == 3 and d["logit_bias"][0] == 0.0
    assert d["pixels"] > 0 and abs(sum(d["fraction_true"]) - 1) < 1e-9 and len(d["iou_calibrated"]) == 3
    assert seg.load(out / "model.ckpt").logit_bias.tolist() == pytest.approx(d["logit_bias"])
    # same inputs and seed → same weights
    seg.train(stores["movie"], stores["labels"], str(tmp_path / "again"), 3, TINY, seed=0, threads=2)
    a = torch.load(out / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "again" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_reuses_freed_blocks_instead_of_fresh_pages():
    """While the harness trains, a large block freed by one step is reused by the next instead of
    being unmapped and faulted in again page by page (glibc's default for blocks over 32 MiB, and
    what a training step met for its 2–17 MB blocks; without the setting every block here faults
    all its pages)."""
    import platform
    import resource

    from ferrolens.training import _reuse_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's mallopt")
    pages = (64 << 20) // resource.getpagesize()

    def faults():
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 << 20)  # 64 MB written, freed at once
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0

    with _reuse_freed_memory():
        inside = np.median([faults() for _ in range(9)])
    assert inside < pages / 20


@pytest.mark.slow
def test_resumed_training_is_bit_identical_to_an_uninterrupted_one(stores, tmp_path):
    """A training stopped after epoch 1 (as a kill would) and rerun equals one that ran through
    (dropout is reseeded per epoch; before, the 2-class weights differed after a resume)."""
    three = {**TINY, "model": {**TINY["model"], "dropout": 0.3}, "train": {**TINY["train"], "max_epochs": 3}}
    seg.train(stores["movie"], stores["labels"], str(tmp_path / "whole"), 2, three, seed=4, threads=2)
    one = {**three, "train": {**three["train"], "max_epochs": 1}}
    seg.train(stores["movie"], stores["labels"], str(tmp_path / "cut"), 2, one, seed=4, threads=2)
    seg.train(stores["movie"], stores["labels"], str(tmp_path / "cut"), 2, three, seed=4, threads=2)
    a = torch.load(tmp_path / "whole" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # the same record, bit for bit, but for the epochs' times
    whole, cut = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=["wall_s", "cpu_s"]) for d in ("whole", "cut"))
    pd.testing.assert_frame_equal(whole, cut, check_exact=True)


@pytest.mark.slow
def test_fit_on_arrays_returns_the_model_and_metrics_and_warns_when_poor(stores, tmp_path, caplog):
    """The notebook entry point: arrays in, model and metrics out, no files left behind; a model
    trained for a few steps is reported as poor, in plain words."""
    img, cls = stores["img"], stores["cls"]
    model, metrics = seg.fit(
        img[[0, 2, 4]], cls[[0, 2, 4]], frames=[0, 2, 4], n_classes=3, cfg=TINY, seed=0, threads=2, progress=False
    )
    assert isinstance(model, seg.SegmentationModel) and not model.training
    assert list(metrics.columns) == [
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "val_miou",
        "iou_background",
        "iou_wall",
        "iou_contaminant",
        "lr",
        "wall_s",
        "cpu_s",
    ]
    assert metrics["epoch"].tolist() == [0, 1] and np.isfinite(metrics["val_loss"]).all()
    assert model.split["holdout"] == "regions" and model.split["train_frames"] == [0, 2, 4]
    # the same training through the stores gives the same weights
    seg.train(stores["movie"], stores["labels"], str(tmp_path / "store"), 3, TINY, seed=0, threads=2)
    stored = seg.load(tmp_path / "store" / "model.ckpt").state_dict()
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    q = json.loads((tmp_path / "store" / "quality.json").read_text())
    # training records the measurement; the floor (train.min_iou) is judged where it is reported
    assert q["held_out"].startswith("held out for validation: a strip") and "min_iou" not in q
    assert q["heldout_miou"] == seg.measure(metrics)["heldout_miou"] and "quality_ok" not in q
    assert seg.judge(q, 0.6)["quality_ok"] is False and "POOR SEGMENTATION" in seg.judge(q, 0.6)["quality_warning"]
    assert seg.judge(q, 0.0) == {"quality_ok": True, "quality_warning": ""}
    assert seg.quality(metrics, seg.resolve_config({"train": {"min_iou": 0.0}}))["quality_ok"] is True


def test_rerun_resumes_from_last_checkpoint(stores, tmp_path):
    out = tmp_path / "c2"
    seg.train(stores["movie"], stores["labels"], str(out), 2, TINY, seed=1, threads=2)
    first = (out / "metrics.csv").read_text().splitlines()
    longer = {**TINY, "train": {**TINY["train"], "max_epochs": 3}}
    seg.train(stores["movie"], stores["labels"], str(out), 2, longer, seed=1, threads=2)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[:3] == first  # the two earlier epochs were kept, not retrained
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert seg.load(out / "model.ckpt").class_names == ["background", "wall"]


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    model = random_model()
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = seg.load(tmp_path / "m.ckpt")
    x = torch.randn(2, 1, 33, 47)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    assert not loaded.training and loaded.hparams.n_classes == 3


def test_prediction_store(stores, trained):
    out, pred = trained
    ds = xr.open_zarr(pred, consolidated=False)
    n, h, w = stores["img"].shape
    assert ds.attrs["ferrolens_kind"] == "segmentation"
    assert ds.probability.dims == (FRAME, "class", Y, X) and ds.probability.shape == (n, 3, h, w)
    assert ds.probability.dtype == np.float32 and ds.label.dtype == np.uint8
    assert list(ds["class"].values) == NAMES
    np.testing.assert_allclose(ds.probability.sum("class"), 1.0, atol=1e-5)
    np.testing.assert_array_equal(ds.label, ds.probability.argmax("class"))
    np.testing.assert_allclose(ds.bias, np.linspace(-1, 1, n))
    assert ds.attrs["norm_percentiles"] == [1.0, 99.0] and "percentile" in ds.attrs["normalisation"]
    # float32: the array entry point equals the loaded model applied to the normalised frames
    model = seg.load(out / "model.ckpt")
    normed, lo, _ = seg.normalize_frames(stores["img"], 1.0, 99.0)
    # the model as trained plus its decision bias (segment.train.decision, chosen on the held-out strips)
    direct = forward_probabilities(lambda x: model(x) + model.logit_bias[:, None, None], normed, 2, torch.device("cpu"))
    assert ds.attrs["decision"] == "fractions" and ds.attrs["logit_bias"] == model.logit_bias.tolist()
    np.testing.assert_allclose(ds.norm_low, lo)
    cfg = {**TINY, "predict": {**TINY["predict"], "batch_size": 4}}
    f32 = {**cfg, "predict": {**cfg["predict"], "precision": "float32"}}
    np.testing.assert_allclose(seg.probabilities(model, stores["img"], f32), direct, atol=1e-6)
    np.testing.assert_allclose(seg.probabilities(model, stores["img"][2], f32), direct[2], atol=1e-6)
    # the store was written at the default precision (auto), and says which; the array entry point agrees
    bf16 = resolve_precision("auto", torch.device("cpu"))
    assert ds.attrs["precision"] == ("bfloat16 autocast" if bf16 else "float32")
    np.testing.assert_allclose(seg.probabilities(model, stores["img"], cfg), ds.probability.values, atol=1e-6)
    # bfloat16 really ran, is close, and labels the same pixels (bar a few near-ties)
    fast = seg.probabilities(model, stores["img"], {**cfg, "predict": {**cfg["predict"], "precision": "bf16"}})
    assert 1e-6 < np.abs(fast - direct).max() < 0.1
    assert (fast.argmax(1) == direct.argmax(1)).mean() > 0.99
    with pytest.raises(InputError, match="frames"):
        seg.probabilities(model, np.zeros((2, 0, 5)), cfg)


def test_input_images(stores, trained):
    _, pred = trained
    movie = open_store(stores["movie"], "movie", ["image"])
    s = open_store(pred, "segmentation", ["probability", "label"])
    for kind in seg.INPUT_KINDS:
        a = seg.input_image(movie, s, kind)
        assert a.dims == (FRAME, Y, X) and a.dtype == np.float32 and a.shape == stores["img"].shape
        assert not isinstance(a.variable._data, np.ndarray)  # lazy until read
    np.testing.assert_array_equal(seg.input_image(movie, s, "walls").values, s.probability.values[:, 1])
    np.testing.assert_array_equal(
        seg.input_image(movie, s, "classes").isel(frame=[1, 3]).values, s.label.values[[1, 3]] / 2.0
    )
    raw = seg.input_image(movie, None, "raw")
    expect = np.clip(seg.normalize_frames(stores["img"][2])[0], 0, 1)
    np.testing.assert_array_equal(raw[2, 5:9, ::3].values, expect[5:9, ::3])
    assert float(raw.isel(frame=0).quantile(0.99)) == pytest.approx(1.0, abs=1e-3)


def test_raw_input_is_clipped_to_the_unit_range_the_rvae_accepts(stores):
    """Real frames (PFM phase) have ~1 % of pixels beyond the 1–99 % percentiles: the rVAE's
    input check wants 0…1, so the normalised frame saturates there instead of failing."""
    from ferrolens.rvae.inputs import check_images

    movie = open_store(stores["movie"], "movie", ["image"])
    unclipped = seg.normalize_frames(stores["img"])[0]
    assert unclipped.min() < -0.05 and unclipped.max() > 1.05  # the case that used to fail
    raw = seg.input_image(movie, None, "raw")
    vals = raw.values
    assert vals.min() == 0.0 and vals.max() == 1.0
    np.testing.assert_array_equal(vals, np.clip(unclipped, 0, 1))
    check_images(raw, window=8)  # no InputError


# --- bad input ---------------------------------------------------------------------------------
def test_labels_with_a_single_class(stores, tmp_path):
    one = write_labels(tmp_path / "one.zarr", np.zeros((2, 45, 39)), [0, 1])
    with pytest.raises(InputError, match="all labelled pixels are class 0"):
        seg.train(stores["movie"], one, str(tmp_path / "o"), 3, TINY, 0, 1)
    named = write_labels(tmp_path / "named.zarr", stores["cls"][:1], [0], names=["background"])
    with pytest.raises(InputError, match=r"named.zarr.*1 class"):
        seg.train(stores["movie"], named, str(tmp_path / "o"), 2, TINY, 0, 1)


def test_class_count_different_from_the_model(stores, tmp_path):
    two = write_labels(tmp_path / "two.zarr", (stores["cls"][:2] == 1), [0, 1], names=["background", "wall"])
    with pytest.raises(InputError, match=r"two.zarr: labels have 2 classes.*expected 3 classes"):
        seg.train(stores["movie"], two, str(tmp_path / "o"), 3, TINY, 0, 1)
    with pytest.raises(InputError, match="n_classes"):
        seg.train(stores["movie"], stores["labels"], str(tmp_path / "o"), 4, TINY, 0, 1)
    bad = write_labels(tmp_path / "bad.zarr", np.full((1, 45, 39), 5), [0])
    with pytest.raises(InputError, match=r"label values \[5\]"):
        seg.train(stores["movie"], bad, str(tmp_path / "o"), 3, TINY, 0, 1)


def test_no_labelled_frames(stores, tmp_path):
    blank = write_labels(tmp_path / "blank.zarr", np.full((2, 45, 39), -1), [0, 1])
    with pytest.raises(InputError, match=r"blank\.zarr: no labelled pixel"):
        seg.train(stores["movie"], blank, str(tmp_path / "o"), 3, TINY, 0, 1)
    empty = write_labels(tmp_path / "empty.zarr", np.zeros((0, 45, 39)), np.zeros(0, int))
    with pytest.raises(InputError, match=r"empty\.zarr: no labelled frames"):
        seg.train(stores["movie"], empty, str(tmp_path / "o"), 3, TINY, 0, 1)
    with pytest.raises(InputError, match="val_frames"):
        seg.train(
            stores["movie"],
            stores["labels"],
            str(tmp_path / "o"),
            3,
            {**TINY, "train": {**TINY["train"], "val_frames": [1]}},
            0,
            1,
        )


def test_patch_larger_than_the_training_region_shrinks_with_a_log_line_or_stops_when_tiny(caplog):
    img, cls = pattern(n=3)  # 45×39 frames: the strips held out leave 34×39 and 45×29 to train on
    images, _, _ = seg.normalize_frames(img)
    cfg = seg.resolve_config(TINY)
    with caplog.at_level("WARNING", logger="ferrolens.segment.data"):
        dm = seg.SegmentationData(images, cls, [0, 1, 2], 3, {**cfg["train"], "patch_size": 128}, cfg["augment"])
    assert dm.patch_size == 24 and dm.train_set[0][0].shape == (1, 24, 24)  # 29 → a multiple of 8
    assert "patch_size = 128 is larger than the training region 45×29 of frame 1: training on 24×24" in caplog.text
    small = images[:, :14, :14], cls[:, :14, :14]
    with pytest.raises(
        InputError,
        match=r"segment.train.patch_size: patch size 128 is larger than the training "
        r"region 10×14 of frame 0 \(expected training regions of at least 16×16",
    ):
        seg.SegmentationData(*small, [0, 1, 2], 3, {**cfg["train"], "patch_size": 128}, cfg["augment"])


def test_empty_movie(stores, tmp_path, trained):
    empty = write_movie(tmp_path / "empty.zarr", np.zeros((0, 45, 39), np.float32))
    with pytest.raises(InputError, match=r"empty\.zarr: the movie is empty"):
        seg.train(empty, stores["labels"], str(tmp_path / "o"), 3, TINY, 0, 1)
    with pytest.raises(InputError, match="the movie is empty"):
        seg.predict(empty, str(trained[0] / "model.ckpt"), str(tmp_path / "s.zarr"), TINY, 1)
    assert not (tmp_path / "s.zarr").exists()


def test_checkpoint_of_another_model_kind(tmp_path):
    class Other(pl.LightningModule):
        def __init__(self, latent: int = 2):
            super().__init__()
            self.save_hyperparameters()
            self.lin = torch.nn.Linear(3, latent)

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(Other())
    trainer.save_checkpoint(tmp_path / "rvae.ckpt")
    with pytest.raises(InputError, match=r"rvae.ckpt: checkpoint of another model kind .*latent"):
        seg.load(tmp_path / "rvae.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"text\.ckpt: is not a readable PyTorch checkpoint"):
        seg.load(tmp_path / "text.ckpt")
    with pytest.raises(InputError, match="does not exist"):
        seg.load(tmp_path / "missing.ckpt")


def test_bad_config_and_kind(stores, trained):
    with pytest.raises(InputError, match="was unexpected"):
        seg.resolve_config({"train": {"patch": 3}})
    with pytest.raises(InputError, match=r"predict\.overlap"):
        seg.resolve_config({"predict": {"tile": 64, "overlap": 64}})
    movie = open_store(stores["movie"], "movie", ["image"])
    with pytest.raises(InputError, match=r"'edges'.*one of walls, classes, raw"):
        seg.input_image(movie, None, "edges")
    with pytest.raises(InputError, match="needs a segmentation store"):
        seg.input_image(movie, None, "walls")
    with pytest.raises(InputError, match=r"predict\.tile.*multiple of 4"):
        seg.predict(
            stores["movie"],
            str(trained[0] / "model.ckpt"),
            str(stores["dir"] / "x.zarr"),
            {**TINY, "predict": {"tile": 62, "overlap": 8}},
            1,
        )
