"""The demo movie: deterministic, consistent ground truth, hysteretic."""

import time

import numpy as np
import pytest

from ferrolens.bias import triangular_waveform
from ferrolens.synthetic import make_demo


@pytest.fixture(scope="module")
def demo_default():
    """The demo movie at its default size, made once, and the seconds it took."""
    t0 = time.perf_counter()
    ds = make_demo()
    return ds, time.perf_counter() - t0


def test_default_size_fast_and_deterministic(demo_default, demo_small):
    a, elapsed = demo_default
    assert a.image.shape == (40, 256, 256) and a.image.dtype == np.float32
    assert elapsed < 10.0
    # same spec and seed, same movie (bit for bit); another seed, another movie
    np.testing.assert_array_equal(
        make_demo(
            n_frames=12,
            size=64,
            seed=3,
            needles_per_family=4,
            n_contaminants=2,
            needle_length=(20.0, 40.0),
            needle_width=(4.0, 7.0),
        ).image.values,
        demo_small.image.values,
    )
    c = make_demo(seed=1, n_frames=12, size=64)
    assert not np.array_equal(make_demo(n_frames=12, size=64).image.values, c.image.values)


def test_truth_consistent_with_frames(demo_small):
    ds = demo_small
    img, cls = ds.image.values, ds.class_map.values
    assert set(np.unique(cls)) <= {0, 1, 2} and (cls == 1).any() and (cls == 2).any()
    # walls and contaminants are dark lines / spots: clearly darker than the domains
    for f in range(img.shape[0]):
        bg, wall, cont = (img[f][cls[f] == k].mean() for k in (0, 1, 2))
        assert wall < bg - 0.05 and cont < wall
    # fractions sum to one and match the variant maps
    np.testing.assert_allclose(ds.fraction.sum("variant"), 1.0)
    np.testing.assert_allclose(ds.fraction.sel(variant="a"), (ds.variant_map == 1).mean(("y", "x")))
    # orientation is defined exactly on wall pixels away from contaminants, mod pi
    ori = ds.orientation.values
    assert np.all(np.isnan(ori[cls != 1]))
    vals = ori[np.isfinite(ori)]
    np.testing.assert_allclose(np.sort(np.unique(np.round(vals, 4))), np.round([np.pi / 4, 3 * np.pi / 4], 4))
    np.testing.assert_allclose(ds.bias.values, triangular_waveform(12, 10.0))


def test_hysteresis_state_at_zero_bias_differs_between_branches(demo_default):
    ds, _ = demo_default
    bias = ds.bias.values
    frac_a = ds.fraction.sel(variant="a").values
    # frame 0: 0 V before any positive bias; frame 20: 0 V after +10 V
    assert bias[0] == 0 and bias[20] == 0
    assert frac_a[20] > frac_a[0] + 0.03
    # the field-favoured family grows: a peaks near +V, b near -V
    assert np.argmax(frac_a) in range(8, 20)
    assert np.argmax(ds.fraction.sel(variant="b").values) in range(28, 40)
    # rising vs falling branch at the same bias (+5 V) differ: a loop, not a curve
    up, down = np.flatnonzero(bias == 5.0)
    assert abs(frac_a[down] - frac_a[up]) > 0.02


def test_triangular_waveform_phases():
    np.testing.assert_allclose(triangular_waveform(4, 2.0), [0, 2, 0, -2])
    np.testing.assert_allclose(triangular_waveform(4, 2.0, phase=0.25), [2, 0, -2, 0])
    w = triangular_waveform(80, 1.0, cycles=2)
    assert np.isclose(w.max(), 1) and np.sum(np.isclose(w, 1.0)) == 2
