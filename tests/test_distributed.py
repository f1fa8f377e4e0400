"""Several devices per training job (DDP): the Trainer arguments, the thread split, ranks and
logs, global held-out metrics, and one real 2-process CPU training of each model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import xarray as xr
from pytorch_lightning.plugins import environments as envs

from ferrolens import parallel
from ferrolens.config import section
from ferrolens.errors import InputError
from ferrolens.runlog import run_logged
from ferrolens.segment.data import RegionDataset, ShardedEvalSampler
from ferrolens.segment.model import SegmentationModel

torch.set_num_threads(1)
SCRIPT = Path(__file__).with_name("ddp_train.py")
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_PROCID", "OMP_NUM_THREADS")


@pytest.fixture
def clean_env(monkeypatch):
    """No rank, SLURM or thread variables from the surroundings."""
    for var in [*LAUNCH_VARS, *(v for v in os.environ if v.startswith("SLURM_"))]:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# --- the helper ----------------------------------------------------------------------------
def test_plan_kwargs_and_thread_split(clean_env):
    one = parallel.plan("cpu", 1, "auto", 4, "rvae")
    kw = one.trainer_kwargs()
    assert (kw["accelerator"], kw["devices"], kw["strategy"], one.threads) == ("cpu", 1, "auto", 4)
    assert [type(p) for p in kw["plugins"]] == [envs.LightningEnvironment]
    two = parallel.plan("cpu", 2, "ddp", 5, "rvae")
    assert (two.trainer_kwargs()["devices"], two.trainer_kwargs()["strategy"], two.threads) == (2, "ddp", 2)
    assert parallel.plan("cpu", 4, "ddp", 2, "rvae").threads == 1  # never 0


def test_lightning_environment_inside_a_slurm_job(clean_env):
    """Under `srun -n1` (as the SLURM executor runs a job) Lightning alone would pick SLURMEnvironment
    with a world size of 1; with the plan's plugin it starts its own 2 processes."""
    for var, value in {
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "snakejob.rvae_train",
    }.items():
        clean_env.setenv(var, value)
    assert parallel.is_rank_zero()
    common = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    kw = parallel.plan("cpu", 2, "ddp", 2, "rvae").trainer_kwargs()
    ours = pl.Trainer(**kw, **common)
    assert isinstance(ours.strategy.cluster_environment, envs.LightningEnvironment)
    assert ours.world_size == 2 and not ours.strategy.cluster_environment.creates_processes_externally
    plain = pl.Trainer(**{k: v for k, v in kw.items() if k != "plugins"}, **common)
    assert isinstance(plain.strategy.cluster_environment, envs.SLURMEnvironment)
    assert plain.world_size == 1  # the silent single-process run this avoids


def test_ranks_from_the_environment(clean_env):
    assert parallel.process_rank() == 0 and parallel.is_rank_zero()
    clean_env.setenv("LOCAL_RANK", "1")  # a process started by Lightning's DDP launcher
    assert parallel.process_rank() == 1 and not parallel.is_rank_zero()
    clean_env.setenv("RANK", "0")
    assert parallel.is_rank_zero()


def test_fit_threads_keep_lightning_from_resetting_them(clean_env):
    before = torch.get_num_threads()
    try:
        with parallel.plan("cpu", 2, "ddp", 2, "rvae").fit_threads():
            assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
        assert "OMP_NUM_THREADS" not in os.environ
        clean_env.setenv("OMP_NUM_THREADS", "7")
        with parallel.plan("cpu", 1, "auto", 3, "rvae").fit_threads():  # one process: left alone
            assert os.environ["OMP_NUM_THREADS"] == "7" and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_clear_errors_before_training(clean_env):
    clean_env.setattr(parallel, "visible_gpus", lambda: 1)
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(
        InputError,
        match=r"segment\.train\.devices.*value 2 .*'gpu'.*sees 1 CUDA.*"
        r"CUDA_VISIBLE_DEVICES='3'.*at most 1",
    ):
        parallel.plan("gpu", 2, "ddp", 4, "segment.train")
    with pytest.raises(InputError, match=r"rvae\.devices.*sees 1"):
        parallel.plan("auto", 2, "auto", 4, "rvae")  # auto takes the visible GPU
    clean_env.setattr(parallel, "visible_gpus", lambda: 0)
    clean_env.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(InputError, match=r"sees 0 CUDA.*CUDA_VISIBLE_DEVICES unset"):
        parallel.plan("cuda", 1, "auto", 1, "rvae")
    with pytest.warns(UserWarning, match="no GPU is visible: training with 2 CPU processes"):
        parallel.plan("auto", 2, "auto", 2, "rvae")
    with pytest.raises(InputError, match="mps"):
        parallel.plan("mps", 2, "ddp", 2, "segment.train")
    with pytest.raises(InputError, match=r"rvae\.strategy.*ddp_spawn"):
        parallel.plan("cpu", 2, "ddp_spawn", 2, "rvae")
    # the schema has the same keys, defaults and limits in both sections
    assert {k: section("rvae")[k] for k in ("devices", "strategy")} == {"devices": 1, "strategy": "auto"}
    assert {k: section("segment")["train"][k] for k in ("devices", "strategy")} == {"devices": 1, "strategy": "auto"}
    for bad in ({"devices": 0}, {"strategy": "ddp_spawn"}):
        with pytest.raises(InputError):
            section("rvae", bad)
        with pytest.raises(InputError):
            section("segment", {"train": bad})


def test_log_of_other_ranks_is_appended(clean_env, tmp_path):
    log = tmp_path / "job.log"
    log.write_text("a previous run\n")
    job = types.SimpleNamespace(log=[str(log)])
    run_logged(job, print, "rank 0 line")
    clean_env.setenv("LOCAL_RANK", "1")
    run_logged(job, print, "rank 1 line")
    lines = log.read_text().splitlines()
    assert lines[0] == "rank 0 line" and "rank 1" in lines[1] and lines[2] == "rank 1 line"
    clean_env.delenv("LOCAL_RANK")
    run_logged(job, print, "again")  # rank 0 of the next run starts the log afresh
    assert log.read_text() == "again\n"


# --- global held-out metrics -------------------------------------------------------------------
def test_sharded_validation_sees_every_region_once():
    regions = RegionDataset([(np.zeros((4, 4)), np.full((4, 4), c)) for c in range(5)])
    for world in (1, 2, 3, 7):
        shards = [list(ShardedEvalSampler(regions, world, r)) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # same number of steps on every process
        real = sorted(i for s in shards for i in s if i < 5)
        assert real == list(range(5))
        for i in (i for s in shards for i in s if i >= 5):  # padding: a region with no label
            assert (regions[i][1] == -1).all() and regions[i][0].shape == regions[i - 5][0].shape


def _iou(conf: np.ndarray) -> np.ndarray:
    """Plain per-class IoU ``tp / (tp + fp + fn)`` of a confusion matrix (rows truth): the reference."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def _batch(conf: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and labels (with unlabelled −1 pixels) whose confusion matrix is ``conf``."""
    truth = np.repeat(np.repeat(np.arange(3), 3), conf.ravel())
    pred = np.repeat(np.tile(np.arange(3), 3), conf.ravel())
    order = np.random.default_rng(seed).permutation(len(truth))
    truth, pred = np.r_[truth[order], [-1, -1]], np.r_[pred[order], [2, 0]]
    return torch.from_numpy(pred), torch.from_numpy(truth)


def test_held_out_iou_and_loss_are_summed_over_processes():
    """Each process validates its own regions; the epoch's IoU and loss are of all of them."""
    mine = np.array([[50, 2, 0], [3, 10, 0], [1, 0, 0]])
    other = np.array([[40, 0, 1], [9, 2, 0], [0, 0, 6]])
    a, b = (SegmentationModel(n_classes=3, depth=1, base_filters=2) for _ in range(2))
    for model, conf, (loss, w) in ((a, mine, (0.5, 4.0)), (b, other, (2.0, 12.0))):
        model.val_iou.update(*_batch(conf, 0))
        model.val_loss.update(torch.tensor(loss), torch.tensor(w))
    np.testing.assert_allclose(a.val_iou.compute().numpy(), _iou(mine), rtol=1e-6)  # one process: its own
    for metric, theirs in ((a.val_iou, b.val_iou), (a.val_loss, b.val_loss)):
        metric.reset_compute = True
        metric._computed = None
        queue = [getattr(theirs, name) for name in metric._reductions]  # the other process's states, in order
        metric.dist_sync_fn = lambda t, group=None, q=queue: [t, q.pop(0)]
        metric.distributed_available_fn = lambda: True
    glob = a.val_iou.compute().numpy()
    np.testing.assert_allclose(glob, _iou(mine + other), rtol=1e-6)
    assert np.nanmean(glob) != pytest.approx(np.nanmean(_iou(mine)), abs=0.05)  # the sum matters here
    assert float(a.val_loss.compute()) == pytest.approx((0.5 * 4 + 2.0 * 12) / 16)  # weighted by labelled pixels


# --- real 2-process CPU training ------------------------------------------------------------------
def _ddp_start(root: Path, job: dict) -> subprocess.Popen:
    """``tests/ddp_train.py`` on one job in its own folder ``root`` (started, not waited for)."""
    root.mkdir()
    (root / "jobs.json").write_text(json.dumps([job]))
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
    )


def _check_log(log: Path, stage: str) -> None:
    text = log.read_text()
    starts = re.findall(r"ddp-test start pid=(\d+) LOCAL_RANK=(\S+)", text)
    # rank 0 first (no LOCAL_RANK yet), then the process Lightning started; nothing of rank 0 lost
    assert [r for _, r in starts] == ["None", "1"], (stage, text[-3000:])
    assert "rank 1 (pid" in text and f"ddp-test done pid={starts[0][0]}" in text, (stage, text[-3000:])


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """An rVAE and a U-Net trained on 2 CPU processes each (gloo), one script run (one job) each;
    the two runs at the same time (each waits on its own processes' collectives much of the time)."""
    from ferrolens.ingest import ingest_labels, ingest_movie
    from ferrolens.rvae import make_windows
    from ferrolens.rvae.toy import oriented_bars
    from ferrolens.synthetic import make_demo

    root = tmp_path_factory.mktemp("ddp")
    ddp = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    angles = np.random.default_rng(0).uniform(0, np.pi, 96)
    bars = xr.DataArray(oriented_bars(7, angles), dims=("frame", "y", "x"), coords={"frame": np.arange(96)})
    rvae_cfg = {"count": 96, "min_std": 0.0, "batch_size": 16, "val_fraction": 0.25, "lr": 1e-3, "epochs": 2, **ddp}
    make_windows(bars, str(root / "windows.zarr"), 7, rvae_cfg, seed=0)
    # the U-Net's movie and labels as the workflow writes them: ingest of a .npy movie and label stack
    demo = make_demo(n_frames=5, size=40, seed=0, needles_per_family=3, n_contaminants=3)
    np.save(root / "movie.npy", demo.image.values)
    movie = str(ingest_movie({}, root / "movie.zarr", source=str(root / "movie.npy"), name="ddp"))
    labelled = [0, 1, 2, 3, 4]
    truth = demo.class_map.values[labelled].astype(np.int64)
    truth[2] = 0  # held-out frame 2 all background: rank 1's share differs from rank 0's (frames 1, 3)
    np.save(root / "labels.npy", truth)
    labels = str(
        ingest_labels(
            {"labels": {"frames": labelled, "path": str(root / "labels.npy")}},
            ["background", "wall", "contaminant"],
            movie,
            root / "labels.zarr",
        )
    )
    seg_cfg = {
        "model": {"depth": 2, "base_filters": 4},
        # three held-out frames on two processes: rank 0 validates 1 and 3, rank 1 frame 2 and a blank
        "train": {
            "patch_size": 24,
            "batch_size": 4,
            "steps_per_epoch": 4,
            "max_epochs": 2,
            "val_frames": [1, 2, 3],
            **ddp,
        },
    }
    jobs = {
        "rvae": {
            "stage": "rvae",
            "log": "../rvae.log",
            "args": [str(root / "windows.zarr"), str(root / "rvae"), 7, rvae_cfg, 0, 2],
        },
        "segment": {
            "stage": "segment",
            "log": "../segment.log",
            "args": [movie, labels, str(root / "seg"), 3, seg_cfg, 0, 2],
        },
    }
    running = {name: _ddp_start(root / f"run_{name}", job) for name, job in jobs.items()}
    for name, proc in running.items():
        try:
            out, err = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        log = root / f"{name}.log"
        assert proc.returncode == 0, (out[-3000:], err[-3000:], log.exists() and log.read_text()[-3000:])
    return {"root": root, "img": xr.open_zarr(movie).image.values, "truth": truth}


def test_rvae_trains_on_two_processes(ddp_runs):
    from ferrolens.rvae import load

    root = ddp_runs["root"]
    _check_log(root / "rvae.log", "rvae")
    out = root / "rvae"
    assert load(out / "model.ckpt").window == 7
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1] and np.isfinite(metrics["val/loss"]).all()
    # 72 training windows shared by 2 processes of 16 per step: 3 steps per epoch (5 on one process)
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 6
    assert not list(out.glob(".*tmp-*")), "a checkpoint was left beside its final name"


def test_unet_trains_on_two_processes_with_global_iou(ddp_runs):
    from ferrolens.segment import load
    from ferrolens.segment.infer import normalize_frames

    root, img, truth = ddp_runs["root"], ddp_runs["img"], ddp_runs["truth"]
    _check_log(root / "segment.log", "segment")
    out = root / "seg"
    for name in ("model.ckpt", "metrics.csv", "quality.json"):
        assert (out / name).stat().st_size > 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1]
    # 16 patches per epoch, 4 per step, shared by 2 processes: 2 steps per epoch each
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 4
    # the best model's IoU over all three held-out frames is what was monitored and recorded
    model = load(out / "model.ckpt")
    held = [1, 2, 3]
    images, _, _ = normalize_frames(img[held], model.hparams.norm_low, model.hparams.norm_high)
    with torch.no_grad():
        pred = model(torch.from_numpy(images[:, None].astype(np.float32))).argmax(1).numpy()

    def miou(frames):
        idx = [held.index(f) for f in frames]
        conf = np.zeros((3, 3), np.int64)
        np.add.at(conf, (truth[frames].ravel(), pred[idx].ravel()), 1)
        return float(np.nanmean(_iou(conf)))

    recorded = metrics["val_miou"].max()
    assert recorded == pytest.approx(miou(held), abs=2e-3)
    assert abs(miou([1, 3]) - miou(held)) > 0.01  # rank 0's own frames alone would give another value
