"""End to end: the Snakemake workflow on a tiny config, in a temporary folder."""

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
DATA = ROOT / "tests" / "data"

TINY = {
    "seed": 0,
    "windows": [8],
    "datasets": {
        "demo": {
            "synthetic": {"n_frames": 8, "size": 48, "seed": 0, "needles_per_family": 4, "n_contaminants": 2},
            "labels": {"source": "truth", "frames": [0, 3, 5]},
        },
        "pzt": {
            "path": [str(DATA / "PZT_final0001.h5"), str(DATA / "PZT_final0002.h5")],
            "channel": "PhaseRetrace",
            "crop": [0, 64, 0, 64],
            "bias": {"source": "list", "values": [0.0, 1.0]},
        },
    },
}


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    cfg = workdir / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(config or TINY))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    proc = snakemake(wd)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd


@pytest.mark.workflow
def test_outputs_open_with_named_dims(tiny_run):
    movie = xr.open_zarr(tiny_run / "results/demo/movie.zarr")
    assert movie.image.dims == ("frame", "y", "x") and movie.image.shape == (8, 48, 48)
    assert movie.bias.attrs["units"] == "V"
    labels = xr.open_zarr(tiny_run / "results/demo/labels.zarr")
    assert list(labels.frame.values) == [0, 3, 5]
    pzt = xr.open_zarr(tiny_run / "results/pzt/movie.zarr")
    assert pzt.image.shape == (2, 64, 64) and list(pzt.bias.values) == [0.0, 1.0]
    assert (tiny_run / "logs/demo/ingest_movie.log").exists()
    assert (tiny_run / "benchmarks/workflow/demo/ingest_movie.tsv").exists()


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
    np.save(movie, np.zeros((3, 16, 16), np.float32))
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
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
