"""The run comparison behind issue 16's "behaviour unchanged": it must see every kind of change."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from ferrolens.compare import compare_runs, main


def _run(root, value=1.0, attrs=None, pixel=0, metric=0.5, seconds=1.0):
    (root / "rvae").mkdir(parents=True)
    ds = xr.Dataset(
        {"mean": (("frame", "y"), np.full((2, 3), value, np.float32))},
        coords={"frame": [0, 1], "bias": ("frame", [0.0, 1.5])},
        attrs={
            "ferrolens_kind": "latents",
            "checkpoint": str(root / "model.ckpt"),
            "quality": json.dumps({"r2": metric}),
            **(attrs or {}),
        },
    )
    ds.to_zarr(root / "rvae" / "latents.zarr", zarr_format=3, consolidated=False)
    pd.DataFrame({"epoch": [0, 1], "val/r2": [0.1, metric], "wall_s": [seconds, 2.0], "cpu_s": [seconds, 3.0]}).to_csv(
        root / "rvae" / "metrics.csv", index=False
    )
    img = np.zeros((4, 5, 3), np.uint8)
    img[0, 0, 0] = pixel
    Image.fromarray(img).save(root / "fig.png")
    (root / "rvae" / "model.ckpt").write_bytes(str(root).encode())  # checkpoints are not compared
    return root


def test_two_equal_runs_agree_though_their_paths_differ(tmp_path):
    assert compare_runs(_run(tmp_path / "a"), _run(tmp_path / "b")) == []


def test_the_seconds_a_training_took_are_no_result(tmp_path):
    from ferrolens import compare, training

    assert set(compare.VOLATILE_COLUMNS) == set(training.TIMES)
    assert compare_runs(_run(tmp_path / "a"), _run(tmp_path / "b", seconds=7.5)) == []
    # nor is a store's record of its own run time (the switching stage's `seconds` attr)
    a, b = _run(tmp_path / "c", attrs={"seconds": 21.2}), _run(tmp_path / "d", attrs={"seconds": 5.9})
    assert compare_runs(a, b) == []


@pytest.mark.parametrize(
    "change, where",
    [
        ({"value": 1.0 + 1e-6}, "rvae/latents.zarr"),
        ({"attrs": {"window": 8}}, "rvae/latents.zarr"),
        ({"metric": 0.51}, "rvae/metrics.csv"),
        ({"pixel": 3}, "fig.png"),
    ],
)
def test_a_changed_value_attribute_table_or_pixel_is_found(tmp_path, change, where):
    diffs = compare_runs(_run(tmp_path / "a"), _run(tmp_path / "b", **change))
    assert where in {d.path for d in diffs}


def test_tolerance_accepts_last_digit_changes_and_the_exit_status_says_so(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", value=1.0 + 1e-6, metric=0.5 + 1e-9)
    assert main([str(a), str(b)]) == 1
    assert main([str(a), str(b), "--rtol", "1e-5"]) == 0
    (b / "extra.csv").write_text("x\n1\n")
    assert main([str(a), str(b), "--rtol", "1e-5"]) == 1
    assert "extra.csv: only in" in capsys.readouterr().out
