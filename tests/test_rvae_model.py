"""rVAE model: KL closed forms, the loss record, the notebook API, hyper-parameter checks."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ferrolens.errors import InputError
from ferrolens.rvae import RVAE, Encoder, SpatialDecoder, kl_normal
from ferrolens.rvae.net import LossParts

torch.set_num_threads(1)


@pytest.mark.parametrize("prior_sd", [1.0, 0.1, math.pi / 4])
def test_kl_equals_closed_form(prior_sd):
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(50, generator=g, dtype=torch.float64) * 2
    logsd = torch.randn(50, generator=g, dtype=torch.float64)
    sd = logsd.exp()
    # with mean penalty: KL(N(μ, s²) || N(0, σ²))
    expected = kl_divergence(Normal(mean, sd), Normal(torch.zeros_like(mean), torch.full_like(mean, prior_sd)))
    torch.testing.assert_close(kl_normal(mean, logsd, prior_sd), expected)
    # hand-written closed form
    closed = math.log(prior_sd) - logsd + (sd**2 + mean**2) / (2 * prior_sd**2) - 0.5
    torch.testing.assert_close(kl_normal(mean, logsd, prior_sd), closed)
    # without mean penalty: KL from the prior centred on the posterior mean (width only)
    expected_w = kl_divergence(Normal(mean, sd), Normal(mean, torch.full_like(mean, prior_sd)))
    torch.testing.assert_close(kl_normal(mean, logsd, prior_sd, mean_penalty=False), expected_w)
    # minimum (0) where the posterior equals the prior
    assert kl_normal(torch.zeros(1), torch.tensor([math.log(prior_sd)]), prior_sd).abs().item() < 1e-6


def _parts_with_fixed_noise(model, x, seed=3):
    torch.manual_seed(seed)
    return model.loss(x)


def test_loss_record_parts_and_kl_terms():
    torch.manual_seed(0)
    model = RVAE(7, latent_dim=3, rotation_prior_sd=0.3, translation_prior_sd=0.2)
    x = torch.rand(5, 7, 7)
    parts = _parts_with_fixed_noise(model, x)
    assert isinstance(parts, LossParts)
    assert parts._fields == ("reconstruction", "kl_angle", "kl_shift", "kl_z")
    assert all(torch.isfinite(p) and p.dim() == 0 for p in parts)
    assert parts.total.item() == pytest.approx(sum(p.item() for p in parts))
    # the KL parts are the closed forms on the encoder's outputs
    mean, logsd = model.encoder(x)
    torch.testing.assert_close(parts.kl_angle, kl_normal(mean[:, 0], logsd[:, 0], 0.3, False).mean())
    torch.testing.assert_close(parts.kl_shift, kl_normal(mean[:, 1:3], logsd[:, 1:3], 0.2).sum(1).mean())
    torch.testing.assert_close(parts.kl_z, kl_normal(mean[:, 3:], logsd[:, 3:]).sum(1).mean())
    # translation off: no shift KL
    model_nt = RVAE(7, latent_dim=3, translation=False)
    assert _parts_with_fixed_noise(model_nt, x).kl_shift.item() == 0.0


def test_reconstruction_forms():
    torch.manual_seed(0)
    x = torch.rand(4, 7, 7)
    gauss = RVAE(7, reconstruction="gaussian", noise_sd=0.5)
    mse = RVAE(7, reconstruction="mse", noise_sd=0.5)  # mse ignores noise_sd (σ = 1)
    mse.load_state_dict(gauss.state_dict())
    r_g = _parts_with_fixed_noise(gauss, x).reconstruction
    r_m = _parts_with_fixed_noise(mse, x).reconstruction
    torch.testing.assert_close(r_g, r_m / 0.25)
    bce = RVAE(7, reconstruction="bce")
    bce.load_state_dict(gauss.state_dict())
    torch.manual_seed(3)
    mean, logsd = bce.encoder(x)
    code = mean + logsd.exp() * torch.randn_like(mean)
    logits = bce.generate(code)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, x.reshape(4, -1), reduction="sum") / 4
    torch.testing.assert_close(_parts_with_fixed_noise(bce, x).reconstruction, expected)
    # bce decodes to probabilities
    out = bce.decode(np.zeros((2, 2), np.float32))
    assert out.min() >= 0 and out.max() <= 1


def test_bernoulli_reconstruction_of_a_flat_decoder_is_log_2_per_pixel():
    # an untrained image decoder draws logit 0 everywhere: p = 1/2, so every pixel costs ln 2 nats whatever
    # its value in [0, 1]; the Gaussian's cost of the same output 0 is Σ x² / (2 σ²)
    torch.manual_seed(0)
    x = torch.rand(6, 9, 9)
    x[0] = 1.0
    x[1] = 0.0
    bce = RVAE(9, architecture="equivariant", decoder="image", reconstruction="bce")
    assert bce.loss(x).reconstruction.item() == pytest.approx(81 * math.log(2), rel=1e-6)
    gauss = RVAE(9, architecture="equivariant", decoder="image", reconstruction="gaussian", noise_sd=0.1)
    assert gauss.loss(x).reconstruction.item() == pytest.approx((x**2).sum().item() / 6 / 0.02, rel=1e-5)
    np.testing.assert_allclose(bce.decode(np.zeros((1, 2), np.float32)), 0.5)


def test_kl_warmup_ramps_the_kl_weight_over_the_first_steps():
    from types import SimpleNamespace

    model = RVAE(9, kl_warmup=0.25)
    assert model.kl_weight() == 1.0  # no trainer: the plain ELBO
    model._trainer = SimpleNamespace(estimated_stepping_batches=200, global_step=0)
    model.train()
    weights = []
    for step in (0, 24, 49, 50, 199):
        model._trainer.global_step = step
        weights.append(model.kl_weight())
    assert weights == pytest.approx([1 / 50, 25 / 50, 1.0, 1.0, 1.0])
    model.eval()
    assert model.kl_weight() == 1.0  # validation scores the plain ELBO
    model._trainer = None
    assert RVAE(9).kl_weight() == 1.0
    with pytest.raises(InputError, match="kl_warmup"):
        RVAE(9, kl_warmup=1.0)


def test_plain_modules_shapes():
    enc = Encoder(12, 5)
    m, s = enc(torch.rand(3, 12, 12))
    assert m.shape == s.shape == (3, 5)
    assert enc.features(torch.rand(1, 1, 20, 30)).shape == (1, 128, 16, 26)
    w, b = enc.head_as_conv()
    assert w.shape == (10, 128, 8, 8) and b.shape == (10,)
    dec = SpatialDecoder(2)
    assert dec(torch.rand(3, 49, 2), torch.rand(3, 2)).shape == (3, 49)


def test_encode_decode_api():
    torch.manual_seed(0)
    model = RVAE(9, latent_dim=2)
    w = np.random.default_rng(0).random((10, 9, 9)).astype(np.float32)
    mean, logsd = model.encode(w, batch_size=3)
    assert mean.shape == logsd.shape == (10, 5) and mean.dtype == np.float32
    m_t, _ = model.encode(torch.from_numpy(w), batch_size=3)
    np.testing.assert_array_equal(mean, m_t)
    np.testing.assert_allclose(model.encode(w)[0], mean, atol=1e-6)  # batching changes only rounding
    assert model.labels == ["angle", "dx", "dy", "z1", "z2"]
    # decode is symmetric with encode: the code's parts go back in
    rec = model.decode(mean[:, 3:], angle=mean[:, 0], shift=mean[:, 1:3])
    assert rec.shape == (10, 9, 9)
    assert model.decode(mean[:, 3:], grid=20).shape == (10, 20, 20)
    # training mode is restored
    model.train()
    model.encode(w)
    assert model.training
    with pytest.raises(InputError):
        model.encode(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(InputError):
        model.decode(np.zeros((2, 3), np.float32))


def test_translation_off_reports_no_shift():
    model = RVAE(9, translation=False)
    mean, logsd = model.encode(np.random.default_rng(0).random((4, 9, 9)).astype(np.float32))
    assert np.all(mean[:, 1:3] == 0) and np.all(np.isnan(logsd[:, 1:3]))
    assert np.all(np.isfinite(logsd[:, [0, 3, 4]]))
    maps = model.latent_maps(np.random.default_rng(1).random((1, 12, 12)).astype(np.float32))
    assert np.all(maps[..., 1:3] == 0)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"window": 4}, "window"),
        ({"window": 9, "latent_dim": 0}, "latent_dim"),
        ({"window": 9, "rotation_prior_sd": 0.0}, "rotation_prior_sd"),
        ({"window": 9, "reconstruction": "l1"}, "reconstruction"),
        ({"window": 9, "noise_sd": -1.0}, "noise_sd"),
        ({"window": 9, "lr": 0.0}, "lr"),
    ],
)
def test_bad_hyper_parameters(kwargs, key):
    with pytest.raises(InputError, match=f"rvae.{key}"):
        RVAE(**kwargs)


@pytest.mark.parametrize("n", [8, 9])
def test_image_decoder_reads_its_canonical_image_at_the_turned_pixel_centres(n):
    """No turn, no shift: the window is the image's centre crop exactly; a quarter turn turns that crop
    (np.rot90 of the display, counter-clockwise); a shift of one pixel pitch moves it by one pixel."""
    from ferrolens.rvae.geometry import coordinate_grid, rotate_translate
    from ferrolens.rvae.modules import ImageDecoder

    torch.manual_seed(0)
    dec = ImageDecoder(2, n)
    torch.nn.init.normal_(dec.net[-1].weight)  # some image (it starts flat)
    z = torch.randn(3, 2)
    img = dec.image(z)[:, 0].detach().numpy()
    m = dec.size
    assert (m - n) % 2 == 0 and m >= 2 * n - 1
    a = (m - n) // 2
    crop = img[:, a : a + n, a : a + n]
    grid = coordinate_grid(n)
    with torch.no_grad():
        out = dec(grid.unsqueeze(0), z).reshape(3, n, n).numpy()
        quarter = dec(rotate_translate(grid, torch.full((3,), np.pi / 2)), z).reshape(3, n, n).numpy()
        step = torch.tensor([2 / (n - 1), 0.0])  # one pixel pitch in x
        moved = dec(rotate_translate(grid, torch.zeros(3), step), z).reshape(3, n, n).numpy()
    np.testing.assert_allclose(out, crop, atol=1e-4)  # values ~10: float32 rounding of the coordinates
    np.testing.assert_allclose(moved, img[:, a : a + n, a + 1 : a + n + 1], atol=1e-4)
    # +90° turns the drawn content counter-clockwise as displayed (np.rot90), the package's convention
    np.testing.assert_allclose(quarter, np.rot90(crop, 1, axes=(1, 2)), atol=1e-4)
    assert np.abs(quarter - np.rot90(crop, -1, axes=(1, 2))).max() > 1e-2


def test_equivariant_model_takes_the_image_decoder_and_refuses_an_unknown_one():
    from ferrolens.rvae.modules import ImageDecoder

    model = RVAE(12, architecture="equivariant", decoder="image", decoder_units=64, filters=8)
    assert isinstance(model.decoder, ImageDecoder)
    assert model.decode(np.zeros((4, 2), np.float32), grid=20).shape == (4, 20, 20)
    with pytest.raises(InputError, match="decoder"):
        RVAE(12, architecture="equivariant", decoder="conv")


def test_an_untrained_image_decoder_draws_a_flat_image_not_noise():
    """Pixel noise of unit contrast would pass the paper's physical criterion (0.95–1.05) unearned."""
    from ferrolens.rvae.modules import ImageDecoder

    torch.manual_seed(0)
    model = RVAE(12, architecture="equivariant", decoder="image", filters=8)
    assert isinstance(model.decoder, ImageDecoder)
    out = model.decode(np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32))
    assert np.ptp(out, axis=(1, 2)).max() == 0.0


def test_a_checkpoint_saved_before_the_schemas_names_loads_as_it_was(tmp_path):
    """Checkpoints written before issue 27 hold symmetry, units, fourier, pixel_fraction (and lack keys added
    later): the load-time shim (model.legacy_hparams) rebuilds the same model, which encodes identically."""
    from ferrolens.rvae.net import legacy_hparams

    torch.manual_seed(0)
    model = RVAE(
        9,
        architecture="equivariant",
        decoder="spatial",
        filters=4,
        rotation_filters=4,
        decoder_units=8,
        fourier_features=4,
        angle_symmetry=1,
        decoder_pixels=40,
        lr=1e-3,
        latent_dim=3,
    ).eval()
    renamed = {"angle_symmetry": "symmetry", "decoder_units": "units", "fourier_features": "fourier"}
    old = {renamed.get(k, k): v for k, v in model.hparams.items() if k != "decoder_pixels"}
    old["pixel_fraction"] = min(1.0, 40 / 81)  # as the old config layer made it
    for late in ("kl_warmup", "decoder"):  # keys added after some checkpoints were written: old defaults
        del old[late]
    assert legacy_hparams(old) == dict(model.hparams)
    assert legacy_hparams(dict(model.hparams)) == dict(model.hparams)  # a new checkpoint is left as it is
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": old}, tmp_path / "old.ckpt")
    back = RVAE.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    assert dict(back.hparams) == dict(model.hparams) and back.pixel_fraction == model.pixel_fraction == 40 / 81
    x = np.random.default_rng(0).random((6, 9, 9)).astype(np.float32)
    for a, b in zip(model.encode(x), back.encode(x), strict=True):
        np.testing.assert_array_equal(a, b)
