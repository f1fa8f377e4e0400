"""End to end: the Snakemake workflow on the tiny config of ``.test/`` (the same the SLURM test runs),
in a temporary folder: ``--configfile .test/tiny.yaml .test/workflow.yaml``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = [ROOT / ".test" / "tiny.yaml", ROOT / ".test" / "workflow.yaml"]  # budget, then the datasets


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir`` on the tiny config, or on ``config`` written there."""
    files = TINY
    if config is not None:
        files = [workdir / "bad.yaml"]
        files[0].write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *map(str, files),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500)


# tiny_run (tests/conftest.py): the workflow run on TINY once per session, shared with test_dependencies.py


@pytest.mark.workflow
def test_outputs_open_with_named_dims(tiny_run):
    movie = xr.open_zarr(tiny_run / "results/demo/movie.zarr")
    assert movie.image.dims == ("frame", "y", "x") and movie.image.shape == (8, 48, 48)
    assert movie.bias.attrs["units"] == "V"
    labels = xr.open_zarr(tiny_run / "results/demo/labels.zarr")
    assert list(labels.frame.values) == [0, 3, 5]
    # the dataset without labels: its movie and Fig. 1, no segmentation, no rVAE
    plain = xr.open_zarr(tiny_run / "results/plain/movie.zarr")
    assert plain.image.shape == (4, 32, 32)
    assert sorted(p.name for p in (tiny_run / "results/plain").iterdir()) == ["figures", "movie.zarr", "synthetic.zarr"]
    assert [p.name for p in (tiny_run / "results/plain/figures").glob("*.png")] == ["fig1_frames.png"]
    # each job's log and timing mirror its main output's path under results/
    assert (tiny_run / "logs/demo/movie.zarr.log").exists()
    assert (tiny_run / "logs/demo/figures/fig1_frames.png.log").exists()
    assert (tiny_run / "benchmarks/workflow/demo/rvae/n8/model.ckpt.tsv").exists()
    seg = xr.open_zarr(tiny_run / "results/demo/segment/c3/segmentation.zarr")
    assert seg.probability.dims == ("frame", "class", "y", "x") and seg.probability.shape == (8, 3, 48, 48)
    np.testing.assert_allclose(seg.probability.sum("class"), 1.0, atol=1e-5)
    lat = xr.open_zarr(tiny_run / "results/demo/rvae/n8/latents.zarr")
    assert lat["mean"].dims == ("frame", "y", "x", "latent") and lat["mean"].shape[:3] == (8, 48, 48)
    assert list(lat.latent.values[:3]) == ["angle", "dx", "dy"]
    dyn = xr.open_zarr(tiny_run / "results/demo/rvae/n8/dynamics.zarr")
    assert {"variable", "frame", "grid"} <= set(dyn.kde.dims) and "bias" in dyn.coords
    ls = xr.open_zarr(tiny_run / "results/demo/rvae/n8/latent_space.zarr")
    assert ls.decoded.dims == ("z1", "z2", "wy", "wx")
    sweep = xr.open_zarr(tiny_run / "results/demo/sweep.zarr")
    assert "window" in sweep.dims and "bias" in sweep.coords


@pytest.mark.workflow
def test_every_figure_is_a_nonempty_image_and_the_report_builds(tiny_run):
    from PIL import Image

    figs = sorted((tiny_run / "results/demo/figures").glob("*.png"))
    names = {p.stem for p in figs}
    assert {
        "fig1_frames",
        "fig2_segmentation",
        "fig3_latent_codes_n8",
        "fig4_latent_maps",
        "fig5_dynamics_n8",
        "fig6_latent_space_n8",
        "fig7_nmf_maps_n8",
        "rvae_training",
        "segment_training",
    } <= names
    for p in figs:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L"))
        assert arr.shape[0] > 100 and arr.shape[1] > 100 and arr.std() > 5, p.name  # not blank
    proc = snakemake(tiny_run, "--report", str(tiny_run / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tiny_run / "report.html").stat().st_size > 50_000


@pytest.mark.workflow
def test_rerun_has_nothing_to_do(tiny_run):
    proc = snakemake(tiny_run, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_bad_config_key_named_before_any_job(tmp_path):
    bad = {"datasets": {"demo": {"synthetic": {"n_frames": 4}, "bining": 2}}}
    proc = snakemake(tmp_path, config=bad)
    assert proc.returncode != 0
    assert "'bining' was unexpected" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_bad_input_one_clear_line_and_no_output(tmp_path):
    movie = tmp_path / "m.npy"
    np.save(movie, np.random.default_rng(0).random((3, 16, 16), np.float32))
    bad = {"datasets": {"m": {"path": str(movie), "bias": {"source": "list", "values": [1.0, 2.0]}}}}
    proc = snakemake(tmp_path, config=bad)
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    assert "bad input: datasets.m: bias.values: has 2 values but the movie has 3 frames" in out
    assert not (tmp_path / "results/m/movie.zarr").exists()


@pytest.mark.workflow
def test_lint_is_clean():
    if shutil.which("snakemake") is None:
        pytest.skip("snakemake not on PATH")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
