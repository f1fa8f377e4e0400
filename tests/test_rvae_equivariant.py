"""The equivariant encoder: turning the input turns the code; a small model learns line orientations;
the held-out checks warn about a model that has not learned."""

import logging
import math

import numpy as np
import pytest
import torch

from ferrolens.rvae import RVAE, circular_agreement
from ferrolens.rvae.modules import RotationEncoder, rotation_operator
from ferrolens.rvae.quality import assess, judge, reconstruction_r2, rotation_check, turned, warn
from ferrolens.rvae.toy import oriented_bars

torch.set_num_threads(2)


def test_kernel_rotation_operators():
    w = torch.arange(25.0).reshape(5, 5)
    # multiples of 90°: exactly np.rot90 (counter-clockwise as displayed)
    for k in range(4):
        got = (rotation_operator(5, k * math.pi / 2) @ w.reshape(-1)).reshape(5, 5)
        np.testing.assert_array_equal(got.numpy(), np.rot90(w.numpy(), k))
    # 3×3 at 45°: the ring moves one cell counter-clockwise, eight steps are the identity
    r = rotation_operator(3, math.pi / 4)
    v = torch.arange(9.0)
    assert (r @ v).reshape(3, 3)[0, 2] == 5.0  # the right-middle value went to the top-right
    assert torch.equal(torch.linalg.matrix_power(r, 8), torch.eye(9))
    assert torch.equal(torch.linalg.matrix_power(r, 2), rotation_operator(3, math.pi / 2))
    # other angles: bilinear, rows sum to at most 1 (taps outside the kernel dropped)
    b = rotation_operator(7, 0.3)
    assert b.sum(1).max() <= 1 + 1e-6 and b.sum(1)[24] == pytest.approx(1.0)


@pytest.mark.parametrize("symmetry", [1, 2])
def test_quarter_turn_of_the_input_turns_the_angle(symmetry):
    torch.manual_seed(0)
    enc = RotationEncoder(12, 5, filters=8, symmetry=symmetry)
    with torch.no_grad():
        enc.head.weight.mul_(10)  # a peaked posterior over rotations: angles of order 1
    x = torch.rand(16, 12, 12)
    period = 2 * math.pi / symmetry
    m0, _ = enc(x)
    for k in (1, 2, 3):
        mk, _ = enc(torch.rot90(x, k, dims=(1, 2)))  # counter-clockwise as displayed
        d = (mk[:, 0] - m0[:, 0] - k * math.pi / 2 + period / 2) % period - period / 2
        assert d.abs().max() < 1e-4, (k, d)
    assert m0[:, 0].std() > 0.3  # the angles are not all alike


def test_turned_windows():
    w = np.random.default_rng(0).random((3, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(turned(w, math.pi / 2), np.rot90(turned(w, 0.0), 1, axes=(1, 2)), atol=1e-5)
    t = turned(w, 0.4)
    assert t[:, 0, 0].tolist() == pytest.approx(np.median(w.reshape(3, -1), 1).tolist())  # corners: median
    np.testing.assert_array_equal(turned(w, 0.0)[:, 4], w[:, 4])  # inside the disc, unturned: exact


@pytest.fixture(scope="module")
def trained_on_bars():
    """An equivariant rVAE trained for 150 steps on 9×9 bars at uniform orientations (seeded)."""
    n = 9
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, math.pi, 1024)
    shifts = rng.uniform(-0.2, 0.2, (1024, 2))
    bars = oriented_bars(n, angles, shifts=shifts)
    torch.manual_seed(0)
    model = RVAE(
        n,
        architecture="equivariant",
        decoder="spatial",
        filters=8,
        decoder_units=64,
        fourier_features=8,
        lr=3e-3,
        translation_prior_sd=0.5,
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(bars)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = model.loss(x[torch.randint(0, len(x), (64,), generator=g)]).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), bars, angles


def test_small_model_recovers_line_orientation(trained_on_bars):
    model, bars, angles = trained_on_bars
    mean, _ = model.encode(bars)
    # lines look the same after a half turn: the angle equals the bar's orientation mod π up to one offset
    assert circular_agreement(mean[:, 0], angles, period=math.pi) >= 0.95
    err = np.angle(np.exp(2j * (mean[:, 0] - angles)) / np.mean(np.exp(2j * (mean[:, 0] - angles)))) / 2
    assert np.mean(np.abs(err) < math.radians(15)) >= 0.9


def test_trained_model_passes_the_checks_and_untrained_ones_warn(trained_on_bars, caplog):
    model, bars, _ = trained_on_bars
    q = assess(model, bars, symmetry=2, max_windows=256)
    assert q["r2"] >= 0.6 and q["angle_follow"] >= 0.9, q
    assert judge(q, {"min_r2": 0.5, "min_angle_follow": 0.8}) == []
    for architecture in ("paper", "equivariant"):
        torch.manual_seed(1)
        raw = RVAE(9, architecture=architecture, filters=8).eval()
        q0 = assess(raw, bars, symmetry=2, max_windows=256)
        assert q0["r2"] < 0.2, q0
        with caplog.at_level(logging.WARNING):
            msgs = warn(logging.getLogger("test"), q0, {"min_r2": 0.8, "min_angle_follow": 0.8}, what="rVAE n=9")
        assert any("RECONSTRUCTION check failed" in m for m in msgs)
        assert "RECONSTRUCTION check failed" in caplog.text
    # the paper's untrained encoder has no sense of rotation at all
    assert rotation_check(RVAE(9, architecture="paper").eval(), bars[:128])["follow"] < 0.5


def test_r2_of_a_perfect_and_a_mean_decoder():
    class Fake:
        def __init__(self, rec):
            self.rec = rec

        def encode(self, w, batch_size=1024):
            return np.zeros((len(w), 5), np.float32), None

        def decode(self, z, angle=0.0, shift=(0.0, 0.0)):
            return self.rec[: len(z)]

    w = np.random.default_rng(0).random((10, 6, 6)).astype(np.float32)
    assert reconstruction_r2(Fake(w), w) == pytest.approx(1.0)
    assert reconstruction_r2(Fake(np.full_like(w, w.mean())), w) == pytest.approx(0.0, abs=1e-6)
