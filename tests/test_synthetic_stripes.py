"""The stripe movie (the rVAE gate's second generator): shapes, determinism, truth consistent with the frames."""

import numpy as np
import pytest
from scipy import ndimage

from ferrolens.bias import triangular_waveform
from ferrolens.synthetic_stripes import make_stripes


@pytest.fixture(scope="module")
def stripes():
    return make_stripes(n_frames=8, size=96, seed=2)


def test_shapes_and_determinism(stripes):
    ds = stripes
    assert ds.image.shape == (8, 96, 96) and ds.image.dtype == np.float32
    for v in ("class_map", "variant_map", "orientation"):
        assert ds[v].shape == (8, 96, 96)
    assert ds.fraction.shape == (8, 2)
    np.testing.assert_array_equal(make_stripes(n_frames=8, size=96, seed=2).image.values, ds.image.values)
    assert not np.array_equal(make_stripes(n_frames=8, size=96, seed=3).image.values, ds.image.values)
    np.testing.assert_allclose(ds.bias.values, triangular_waveform(8, 10.0))


def test_truth_consistent_with_frames(stripes):
    ds = stripes
    img, cls, var, ori = (ds[v].values for v in ("image", "class_map", "variant_map", "orientation"))
    # walls are bright bands, a domains brighter than c domains
    for f in range(img.shape[0]):
        c = img[f][(cls[f] == 0) & (var[f] == 0)].mean()
        a = img[f][(cls[f] == 0) & (var[f] == 1)].mean()
        wall = img[f][cls[f] == 1].mean()
        assert c + 0.1 < a < wall
    # every variant change between 4-neighbours lies on a wall pixel
    change = var[:, 1:] != var[:, :-1]
    assert cls[:, 1:][change].all()
    # orientation: defined only on walls, in [0, π), and along the walls: the variant map is the same
    # 3 px to either side along the truth's direction, and differs across it
    assert np.all(np.isnan(ori[cls != 1])) and np.isfinite(ori).any()
    vals = ori[np.isfinite(ori)]
    assert vals.min() >= 0 and vals.max() < np.pi
    f, y, x = np.nonzero(np.isfinite(ori))
    t = ori[f, y, x]

    def same(dy, dx):
        """Fraction of wall pixels whose two neighbours 3 px away in direction ±(dy, dx) share their variant."""
        sides = [
            var[f, np.clip(np.round(y + s * dy).astype(int), 0, 95), np.clip(np.round(x + s * dx).astype(int), 0, 95)]
            for s in (-1, 1)
        ]
        return np.mean(sides[0] == sides[1])

    along, across = same(3 * np.sin(t), 3 * np.cos(t)), same(3 * np.cos(t), -3 * np.sin(t))
    assert along > 0.7 and across < 0.1, (along, across)  # measured 0.80 and 0.005 (curved walls bend away)
    # fractions sum to one, match the maps and switch with the bias (hysteresis: 0 V rising ≠ 0 V falling)
    np.testing.assert_allclose(ds.fraction.sum("variant"), 1.0)
    np.testing.assert_allclose(ds.fraction.sel(variant="a"), (var == 1).mean((1, 2)))
    frac = ds.fraction.sel(variant="a").values
    assert frac[2] > frac[0] + 0.05 and frac[6] < frac[2] - 0.05 and frac[4] != frac[0]
    # the wall band is wider than the demo's: most walls 3 px across
    assert ndimage.binary_erosion(cls[0] == 1).sum() > 0.1 * (cls[0] == 1).sum()
