"""Shared fixtures: small data the tests write, and the project's test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def demo_small():
    """A small demo movie (12 frames of 64², seed 3) with ground truth."""
    from ferrolens.synthetic import make_demo

    return make_demo(
        n_frames=12,
        size=64,
        seed=3,
        needles_per_family=4,
        n_contaminants=2,
        needle_length=(20.0, 40.0),
        needle_width=(4.0, 7.0),
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The workflow run to the end on ``.test/tiny.yaml`` + ``.test/workflow.yaml`` in a temporary
    folder: tests/test_workflow.py reads its outputs, tests/test_dependencies.py dry-runs changes on it
    (neither changes it)."""
    import subprocess
    import sys

    wd = tmp_path_factory.mktemp("wf")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(wd),
        "--configfile",
        str(ROOT / ".test" / "tiny.yaml"),
        str(ROOT / ".test" / "workflow.yaml"),
        "--cores",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd


# The fast tier, for everyday work: `python -m pytest -m "not slow"` (under a minute on 2 cores).
# Slow: Snakemake runs end to end, multi-process training, and tests whose fixture trains a model
# for more than a few seconds. README's `python -m pytest` runs everything, as CI does.
SLOW_MODULES = {"test_distributed.py", "test_own_movie.py", "test_workflow.py"}
# fixtures that train for more than a few seconds (the rVAE on bars of tests/test_rvae_train.py:
# ~12 s on 2 quiet cores; the workflow's tiny run); every test that uses one is slow
SLOW_FIXTURES = {"bars_run", "tiny_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (
            item.path.name in SLOW_MODULES
            or item.get_closest_marker("workflow")
            or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.slow)
