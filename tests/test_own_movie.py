"""A microscopist's own movie, end to end, exactly as README says.

Each test lays out a project folder as a user would (the workflow beside a
``data/`` folder with their files and a ``my.yaml``) and runs
``snakemake --cores 2 --configfile my.yaml`` with no target list. ``my.yaml`` is
the tiny training budget of ``.test/tiny.yaml`` followed by the dataset section:
README's own-movie example (read from README itself), the PNG-folder config,
and the PZT HDF5 series without labels.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".test"
SHARED = ROOT.parent / "shared" / "data" / "dtmicroscope"

pytestmark = pytest.mark.workflow


def readme_example() -> str:
    """The YAML block README's "Your own movie" marks as the one this test runs."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- own-movie-example[^>]*-->\s*```yaml\n(.*?)```", text, re.S)
    assert m, "README lost its own-movie example block"
    return m.group(1)


def project(tmp: Path, datasets_yaml: str, data: dict[str, Path]) -> Path:
    """A user's project folder: the workflow (linked), data/ (copied) and my.yaml."""
    for name in ("Snakefile", "workflow", "envs", "config", "profiles"):
        os.symlink(ROOT / name, tmp / name)
    (tmp / "data").mkdir()
    for name, src in data.items():
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, tmp / "data" / name)
    (tmp / "my.yaml").write_text((FIXTURES / "tiny.yaml").read_text() + "\n" + datasets_yaml)
    return tmp


def run(wd: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "my.yaml", *extra]
    return subprocess.run(cmd, cwd=wd, capture_output=True, text=True, timeout=1500)


def figures(wd: Path, dataset: str) -> set[str]:
    return {p.stem for p in (wd / "results" / dataset / "figures").glob("*.png")}


def checksums(folder: Path) -> dict[str, bytes]:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).digest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiff_run(tmp_path_factory):
    d = FIXTURES / "tiff"
    wd = project(tmp_path_factory.mktemp("tiff"), readme_example(),
                 {"movie.tif": d / "movie.tif", "bias.csv": d / "bias.csv",
                  "label_000.png": d / "label_000.png", "label_008.png": d / "label_008.png"})
    before = checksums(wd / "data")
    proc = run(wd)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert checksums(wd / "data") == before  # inputs never modified
    return wd


def test_readme_tiff_movie_with_bias_csv_and_png_labels(tiff_run):
    wd = tiff_run
    assert not (wd / "results" / "demo").exists()  # only the datasets my.yaml names run
    movie = xr.open_zarr(wd / "results/my_movie/movie.zarr")
    assert movie.image.shape == (16, 96, 96)
    bias = np.loadtxt(FIXTURES / "tiff/bias.csv", delimiter=",", skiprows=1)[:, 1]
    np.testing.assert_allclose(movie.bias.values, bias)
    labels = xr.open_zarr(wd / "results/my_movie/labels.zarr")
    assert list(labels.frame.values) == [0, 8]
    assert set(np.unique(labels.label.values)) <= {0, 1, 2}
    for c in (2, 3):
        seg = xr.open_zarr(wd / f"results/my_movie/segment/c{c}/segmentation.zarr")
        assert seg.probability.shape == (16, c, 96, 96)
    lat = xr.open_zarr(wd / "results/my_movie/rvae/n8/latents.zarr")
    assert lat["mean"].shape[:3] == (16, 96, 96)
    assert {"fig1_frames", "fig2_segmentation", "fig3_latent_codes_n8", "fig4_latent_maps", "fig5_dynamics_n8",
            "fig6_latent_space_n8", "fig7_nmf_maps_n8", "rvae_training"} <= figures(wd, "my_movie")
    assert (wd / "results/my_movie/rvae/n8/hysteresis.csv").exists()


def planned(wd: Path) -> set[str]:
    """The rules a dry run would run now because an input file is newer than an output."""
    proc = run(wd, "-n", "--rerun-triggers", "mtime")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(re.findall(r"^rule (\w+):", proc.stdout + proc.stderr, re.M))


def test_editing_the_bias_csv_or_a_label_reruns_what_depends_on_it(tiff_run):
    wd = tiff_run
    assert planned(wd) == set()
    csv, label = wd / "data/bias.csv", wd / "data/label_008.png"
    text = csv.read_text()
    csv.write_text(text.replace("15,-2.5000,", "15,-1.2500,"))  # the last frame's bias corrected
    assert csv.read_text() != text
    assert {"ingest_movie", "ingest_labels", "segment_train", "rvae_train"} <= planned(wd)
    csv.write_text(text)  # put back as it was: same content as when the store was made
    assert planned(wd) == set()
    from PIL import Image

    lab = np.asarray(Image.open(label)).copy()
    lab[0, 0] = 1 - min(int(lab[0, 0]), 1)  # a person corrects one pixel
    Image.fromarray(lab).save(label)
    now = planned(wd)
    assert {"ingest_labels", "segment_train"} <= now and "ingest_movie" not in now


def test_png_frame_folder_with_label_folder_and_no_bias(tmp_path):
    d = FIXTURES / "png_frames"
    wd = project(tmp_path, (d / "config.yaml").read_text(), {"frames": d / "frames", "labels": d / "labels"})
    proc = run(wd)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert not (wd / "results" / "demo").exists()
    movie = xr.open_zarr(wd / "results/scan/movie.zarr")
    assert movie.image.shape == (12, 80, 80)
    # natural order: frame_10.png is the tenth frame, not the second
    from PIL import Image

    tenth = np.asarray(Image.open(d / "frames/frame_10.png"), np.float32)
    np.testing.assert_array_equal(movie.image.values[9], tenth)
    np.testing.assert_allclose(movie.time.values, np.arange(12) * 2.0)
    assert "bias" not in movie.coords or not np.isfinite(movie.bias.values).any()
    assert {"fig1_frames", "fig2_segmentation", "fig5_dynamics_n8"} <= figures(wd, "scan")
    log = (wd / "logs/scan/segment_train_c3.log").read_text()
    assert "held out" in log


def test_pzt_hdf5_series_without_labels_runs_on_raw_frames(tmp_path):
    files = [SHARED / f"PZT_final000{i}.h5" for i in (1, 2, 3)]
    if not all(f.exists() for f in files):
        pytest.skip(f"the PZT series is not in {SHARED}")
    wd = project(tmp_path, (FIXTURES / "pzt.yaml").read_text(), {f.name: f for f in files})
    proc = run(wd)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert not (wd / "results" / "demo").exists()
    assert not (wd / "results/pzt/segment").exists()  # no labels: no U-Net
    movie = xr.open_zarr(wd / "results/pzt/movie.zarr")
    assert movie.image.shape == (3, 128, 128)
    lat = xr.open_zarr(wd / "results/pzt/rvae/n8/latents.zarr")
    assert lat["mean"].shape[:3] == (3, 128, 128) and np.isfinite(lat["mean"].values).all()
    assert {"fig1_frames", "fig4_latent_maps", "fig5_dynamics_n8", "fig6_latent_space_n8"} <= figures(wd, "pzt")


def test_my_yaml_without_the_demo_keys_is_not_merged_with_the_demo_config(tmp_path):
    """A config naming only its own datasets plans only their jobs (a dry run)."""
    d = FIXTURES / "tiff"
    wd = project(tmp_path, readme_example(), {p.name: p for p in d.iterdir()})
    proc = run(wd, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "results/my_movie/movie.zarr" in out and "results/demo" not in out and "ingest_synthetic" not in out
    cfg = yaml.safe_load((wd / "my.yaml").read_text())
    assert "demo" not in cfg["datasets"]
