"""rVAE geometry: coordinate grid, rotation/shift, 90° consistency of decoding, circular statistics."""

import math

import numpy as np
import pytest
import torch

from ferrolens.rvae import RVAE, circular_agreement, circular_correlation, coordinate_grid, rotate_translate

torch.set_num_threads(1)


def test_grid_spans_unit_square_row_major():
    g = coordinate_grid(5)
    assert g.shape == (25, 2)
    assert g.min() == -1 and g.max() == 1
    # row-major: x runs fastest (along columns), y is constant within a row
    assert torch.allclose(g[:5, 1], torch.full((5,), -1.0))
    assert torch.allclose(g[:5, 0], torch.linspace(-1, 1, 5))


@pytest.mark.parametrize("theta", [0.3, -1.2, 2.9, 7.0])
def test_rotate_by_theta_then_minus_theta_is_identity(theta):
    g = coordinate_grid(7, dtype=torch.float64)
    back = rotate_translate(rotate_translate(g, theta)[0], -theta)[0]
    assert torch.allclose(back, g, atol=1e-12)
    # with a shift: p' = R p + s is undone by R(-θ)(p' - s)
    s = torch.tensor([0.2, -0.35], dtype=torch.float64)
    fwd = rotate_translate(g, theta, s)[0]
    assert torch.allclose(rotate_translate(fwd - s, -theta)[0], g, atol=1e-12)


def test_rotate_translate_batches_angles_and_shifts():
    g = coordinate_grid(4)
    angles = torch.tensor([0.0, math.pi / 2])
    shifts = torch.tensor([[0.0, 0.0], [0.5, 0.0]])
    out = rotate_translate(g, angles, shifts)
    assert out.shape == (2, 16, 2)
    assert torch.allclose(out[0], g)
    # (x, y) -> (-y, x) + (0.5, 0)
    assert torch.allclose(out[1][:, 0], -g[:, 1] + 0.5, atol=1e-6)
    assert torch.allclose(out[1][:, 1], g[:, 0], atol=1e-6)


@pytest.mark.parametrize("n", [8, 9])
def test_quarter_turns_map_the_grid_onto_itself(n):
    g = coordinate_grid(n, dtype=torch.float64)
    r = rotate_translate(g, math.pi / 2)[0]
    d = (r[:, None, :] - g[None, :, :]).norm(dim=-1)
    assert torch.all(d.min(1).values < 1e-9)


@pytest.mark.parametrize("n", [8, 9])
def test_window_rotated_by_quarter_turns_decodes_consistently(n):
    # decoding at angle k·π/2 is exactly the k-fold counter-clockwise (as displayed) rot90
    torch.manual_seed(0)
    model = RVAE(n, latent_dim=2)
    z = np.random.default_rng(1).normal(size=(4, 2)).astype(np.float32)
    shift = (0.1, -0.05)
    base = model.decode(z, angle=0.0)
    for k in range(1, 4):
        turned = model.decode(z, angle=k * math.pi / 2)
        np.testing.assert_allclose(turned, np.rot90(base, k, axes=(1, 2)), atol=1e-5)
    # the shift acts in the template's frame (R·p + s), so quarter turns still commute with it
    base_s = model.decode(z, angle=0.0, shift=shift)
    for k in range(1, 4):
        turned_s = model.decode(z, angle=k * math.pi / 2, shift=shift)
        np.testing.assert_allclose(turned_s, np.rot90(base_s, k, axes=(1, 2)), atol=1e-5)
    assert base_s.shape == (4, n, n)


def test_circular_correlation_sign_offset_and_period():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 2 * np.pi, 400)
    assert circular_correlation(b + 1.3, b) == pytest.approx(1.0)
    assert circular_correlation(-b + 0.4, b) == pytest.approx(-1.0)
    assert abs(circular_correlation(rng.uniform(0, 2 * np.pi, 400), b)) < 0.15
    # orientations of lines: period π, so φ and φ + π are the same
    lines = rng.uniform(0, np.pi, 400)
    assert circular_correlation(lines + np.pi * rng.integers(0, 2, 400), lines, period=np.pi) == pytest.approx(1.0)
    # a barely varying angle that follows sin(b) is not mistaken for tracking b
    assert abs(circular_correlation(0.01 * np.sin(b - 0.3), b)) < 0.15


def test_circular_agreement():
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 2 * np.pi, 400)
    assert circular_agreement(b + 2.0, b) == pytest.approx(1.0)
    assert circular_agreement(-b + 2.0, b) == pytest.approx(1.0)
    assert circular_agreement(np.full(400, 0.5), b) < 0.2
