"""The stimulus frames are plotted against: bias, temperature, time or frame index, never 'bias' by default."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ferrolens.stimulus import stimulus


def movie(**coords):
    n = 6
    return xr.Dataset(
        {"image": (("frame", "y", "x"), np.zeros((n, 2, 2)))},
        coords={"frame": np.arange(10, 10 + n), **{k: ("frame", v, a) for k, (v, a) in coords.items()}},
    )


def test_bias_first_with_its_units_and_loop():
    ds = movie(bias=([0, 5, 10, 5, 0, -5], {"units": "V"}), time=(np.arange(6.0), {"units": "s"}))
    s = stimulus(ds)
    assert (s.name, s.label, s.reversals, s.why_no_loop) == ("bias", "bias (V)", 1, None)
    assert s.value_text(2) == "+10.00 V"


@pytest.mark.parametrize("bias", [[np.nan] * 6, [1.0] * 6])
def test_a_missing_or_constant_bias_falls_back_to_time_which_has_no_loop(bias):
    ds = movie(bias=(bias, {"units": "V"}), time=(np.arange(6) * 0.5, {"units": "s"}))
    s = stimulus(ds)
    assert (s.name, s.label, s.value_text(3)) == ("time", "time (s)", "t = 1.5 s")
    assert "time" in s.why_no_loop and "no loop" in s.why_no_loop


def test_temperature_ramp_without_reversal_says_so():
    s = stimulus(movie(temperature=(np.linspace(300, 400, 6), {"units": "K"})))
    assert (s.name, s.label, s.applied, s.reversals) == ("temperature", "temperature (K)", True, 0)
    assert "does not turn back" in s.why_no_loop


def test_no_stimulus_is_the_frame_index():
    s = stimulus(movie())
    assert (s.name, s.label, s.value_text(0)) == ("frame", "frame index", "")
    np.testing.assert_array_equal(s.values, np.arange(10, 16))
    assert "no bias, temperature or time" in s.why_no_loop
