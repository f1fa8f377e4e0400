"""A microscopist's own movie, end to end, exactly as README says.

Each run lays out a project folder as a user would (the workflow beside a
``data/`` folder with their files and their config files) and runs
``snakemake --cores 2 --configfile .test/tiny.yaml my.yaml ...`` with no target
list: the tests' training budget first, then the user's files verbatim, which
Snakemake merges key by key. The user's files: README's own-movie example (read
from README itself) as ``my.yaml`` with the PNG-folder config beside it (one run,
two datasets), and the PZT HDF5 series without labels (a run of its own: the rVAE
reads raw frames there, a setting of the whole config).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".test"
DATA = ROOT / "tests" / "data"

pytestmark = pytest.mark.workflow


def readme_example() -> str:
    """The YAML block README's "Your own movie" marks as the one this test runs."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- own-movie-example[^>]*-->\s*```yaml\n(.*?)```", text, re.S)
    assert m, "README lost its own-movie example block"
    return m.group(1)


def project(tmp: Path, configs: dict[str, str], data: dict[str, Path]) -> Path:
    """A user's project folder: the workflow (linked), data/ (copied) and their config files."""
    for name in ("Snakefile", "workflow", "envs", "config", "profiles"):
        os.symlink(ROOT / name, tmp / name)
    (tmp / "data").mkdir()
    for name, src in data.items():
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, tmp / "data" / name)
    for name, text in configs.items():
        (tmp / name).write_text(text)
    return tmp


def run(wd: Path, configs: list[str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--configfile",
        str(FIXTURES / "tiny.yaml"),
        *configs,
        *extra,
    ]
    return subprocess.run(cmd, cwd=wd, capture_output=True, text=True, timeout=1500)


def figures(wd: Path, dataset: str) -> set[str]:
    return {p.stem for p in (wd / "results" / dataset / "figures").glob("*.png")}


def checksums(folder: Path) -> dict[str, bytes]:
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).digest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


USER_CONFIGS = ["my.yaml", "scan.yaml"]  # README's example, the PNG-folder dataset


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """README's TIFF + bias CSV + PNG labels (my_movie) and a folder of PNG frames with a label
    folder and no bias (scan), in one project and one run."""
    tiff, png = FIXTURES / "tiff", FIXTURES / "png_frames"
    wd = project(
        tmp_path_factory.mktemp("own"),
        {"my.yaml": readme_example(), "scan.yaml": (png / "config.yaml").read_text()},
        {
            "movie.tif": tiff / "movie.tif",
            "bias.csv": tiff / "bias.csv",
            "label_000.png": tiff / "label_000.png",
            "label_008.png": tiff / "label_008.png",
            "frames": png / "frames",
            "labels": png / "labels",
        },
    )
    before = checksums(wd / "data")
    proc = run(wd, USER_CONFIGS)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert checksums(wd / "data") == before  # inputs never modified
    return wd


def test_only_the_datasets_the_user_names_run(user_run):
    assert sorted(p.name for p in (user_run / "results").iterdir()) == ["my_movie", "scan"]


def test_readme_tiff_movie_with_bias_csv_and_png_labels(user_run):
    wd = user_run
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
    assert {
        "fig1_frames",
        "fig2_segmentation",
        "fig3_latent_codes_n8",
        "fig4_latent_maps",
        "fig5_dynamics_n8",
        "fig6_latent_space_n8",
        "fig7_nmf_maps_n8",
        "rvae_training",
    } <= figures(wd, "my_movie")
    assert (wd / "results/my_movie/rvae/n8/hysteresis.csv").exists()


def test_png_frame_folder_with_label_folder_and_no_bias(user_run):
    wd, d = user_run, FIXTURES / "png_frames"
    movie = xr.open_zarr(wd / "results/scan/movie.zarr")
    assert movie.image.shape == (12, 80, 80)
    # natural order: frame_10.png is the tenth frame, not the second
    from PIL import Image

    tenth = np.asarray(Image.open(d / "frames/frame_10.png"), np.float32)
    np.testing.assert_array_equal(movie.image.values[9], tenth)
    np.testing.assert_allclose(movie.time.values, np.arange(12) * 2.0)
    assert "bias" not in movie.coords or not np.isfinite(movie.bias.values).any()
    labels = xr.open_zarr(wd / "results/scan/labels.zarr")
    truth = np.asarray(Image.open(d / "labels/label_7.png"))  # the label folder's second image: frame 6
    assert list(labels.frame.values) == [0, 6]
    np.testing.assert_array_equal(labels.label.values[1], truth)
    assert {"fig1_frames", "fig2_segmentation", "fig5_dynamics_n8"} <= figures(wd, "scan")
    log = (wd / "logs/scan/segment/c3/model.ckpt.log").read_text()
    assert "held out" in log
    # a time series: the hysteresis table names time as its stimulus
    table = pd.read_csv(wd / "results/scan/rvae/n8/hysteresis.csv")
    assert len(table) and (table.stimulus == "time").all()


def planned(wd: Path) -> set[str]:
    """The rules a dry run would run now because an input file is newer than an output."""
    proc = run(wd, USER_CONFIGS, "-n", "--rerun-triggers", "mtime")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(re.findall(r"^rule (\w+):", proc.stdout + proc.stderr, re.M))


def test_editing_the_bias_csv_or_a_label_reruns_what_depends_on_it(user_run):
    """Last of the tests on user_run: it edits the user's files (and puts them back)."""
    wd = user_run
    assert planned(wd) == set()  # a rerun with nothing to do
    csv, label = wd / "data/bias.csv", wd / "data/label_008.png"
    text = csv.read_text()
    csv.write_text(text.replace("15,-2.5000,", "15,-1.2500,"))  # the last frame's bias corrected
    assert csv.read_text() != text
    assert {"ingest_movie", "ingest_labels", "segment_train", "rvae_train"} <= planned(wd)
    csv.write_text(text)  # put back as it was: same content as when the store was made
    assert planned(wd) == set()
    from PIL import Image

    original = label.read_bytes()
    lab = np.asarray(Image.open(label)).copy()
    lab[0, 0] = 1 - min(int(lab[0, 0]), 1)  # a person corrects one pixel
    Image.fromarray(lab).save(label)
    now = planned(wd)
    assert {"ingest_labels", "segment_train"} <= now and "ingest_movie" not in now
    assert not any("scan" in line for line in now)  # the other dataset is left alone
    label.write_bytes(original)
    assert planned(wd) == set()


def test_pzt_hdf5_series_without_labels_runs_on_raw_frames(tmp_path):
    files = [DATA / f"PZT_final000{i}.h5" for i in (1, 2)]
    wd = project(tmp_path, {"pzt.yaml": (FIXTURES / "pzt.yaml").read_text()}, {f.name: f for f in files})
    proc = run(wd, ["pzt.yaml"])
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert sorted(p.name for p in (wd / "results").iterdir()) == ["pzt"]  # not the demo
    assert not (wd / "results/pzt/segment").exists()  # no labels: no U-Net
    movie = xr.open_zarr(wd / "results/pzt/movie.zarr")
    assert movie.image.shape == (2, 128, 128) and movie.attrs["quantity"] == "PhaseRetrace"
    np.testing.assert_allclose(movie.time.values, [0.0, 1.0])  # frame_interval
    lat = xr.open_zarr(wd / "results/pzt/rvae/n8/latents.zarr")
    assert lat["mean"].shape[:3] == (2, 128, 128) and np.isfinite(lat["mean"].values).all()
    windows = xr.open_zarr(wd / "results/pzt/rvae/n8/windows.zarr")
    assert float(windows["windows"].min()) >= 0.0 and float(windows["windows"].max()) <= 1.0  # normalised frames
    assert {"fig1_frames", "fig4_latent_maps", "fig5_dynamics_n8", "fig6_latent_space_n8"} <= figures(wd, "pzt")


def test_my_yaml_without_the_demo_keys_is_not_merged_with_the_demo_config(tmp_path):
    """A config naming only its own datasets plans only their jobs (a dry run)."""
    d = FIXTURES / "tiff"
    wd = project(tmp_path, {"my.yaml": readme_example()}, {p.name: p for p in d.iterdir()})
    proc = run(wd, ["my.yaml"], "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "results/my_movie/movie.zarr" in out and "results/demo" not in out and "ingest_synthetic" not in out
    cfg = yaml.safe_load((wd / "my.yaml").read_text())
    assert "demo" not in cfg["datasets"]
