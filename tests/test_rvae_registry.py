"""The rVAE's parts registry (ferrolens.rvae.registry): the schema's enums and the registry agree, and a
new encoder is one module, one registry line and one schema enum value (shown with a test encoder)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ferrolens import config
from ferrolens.errors import InputError
from ferrolens.rvae import RVAE, fit, registry
from ferrolens.rvae.maps import centred_windows
from ferrolens.rvae.toy import oriented_bars

FRAGMENT = config.SCHEMA.parent / "fragments" / "rvae.yaml"


def test_the_registry_builds_exactly_the_schemas_enums():
    props = yaml.safe_load(FRAGMENT.read_text())["properties"]
    assert set(registry.ENCODERS) == set(props["architecture"]["enum"])
    assert set(registry.DECODERS) == set(props["decoder"]["enum"])
    assert set(registry.FIXED) <= set(props["architecture"]["enum"])
    for fixed in registry.FIXED.values():  # what an architecture fixes is a valid value of the schema
        assert set(fixed) <= set(props)
        config.section("rvae", fixed)
    for architecture in registry.ENCODERS:
        model = RVAE(9, architecture=architecture, filters=4, rotation_filters=4, decoder_units=8)
        assert isinstance(model.encoder, registry.WindowEncoder)
        assert isinstance(model.decoder, registry.CoordinateDecoder)
        assert all(model.hparams[k] == v for k, v in registry.FIXED.get(architecture, {}).items())


class TinyEncoder(nn.Module):
    """The smallest :class:`~ferrolens.rvae.registry.WindowEncoder`: one valid 3×3 convolution (tanh),
    then a head that is one ``(n - 2) × (n - 2)`` convolution giving mean and log-sd of the code."""

    def __init__(self, window: int, n_latent: int, channels: int):
        super().__init__()
        self.window, self.n_latent, self.channels = window, n_latent, channels
        self.conv = nn.Conv2d(1, channels, 3)
        self.head = nn.Conv2d(channels, 2 * n_latent, window - 2)

    @property
    def feature_channels(self) -> int:
        return self.channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        mean, logsd = self.finish(self.head(torch.tanh(self.conv(x)))[:, :, 0, 0])
        assert logsd is not None
        return mean, logsd

    def dense_fn(self, logsd: bool = True):
        c = 2 * self.n_latent if logsd else self.n_latent
        return lambda x: F.conv2d(torch.tanh(self.conv(x)), self.head.weight[:c], self.head.bias[:c])

    def finish(self, raw: torch.Tensor, logsd: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.n_latent
        return raw[..., :c], (raw[..., c:] if logsd else None)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """TinyEncoder registered as ``architecture: tiny``: its schema enum value (in a copy of the schema
    folder, so the shared tree is not touched) and its registry line."""
    shutil.copytree(config.SCHEMA.parent, tmp_path / "schemas")
    fragment = tmp_path / "schemas" / "fragments" / "rvae.yaml"
    text = fragment.read_text()
    assert text.count("enum: [equivariant, paper]") == 1
    fragment.write_text(text.replace("enum: [equivariant, paper]", "enum: [equivariant, paper, tiny]"))
    monkeypatch.setattr(config, "SCHEMA", tmp_path / "schemas" / config.SCHEMA.name)
    monkeypatch.setitem(registry.ENCODERS, "tiny", lambda n, c, hp: TinyEncoder(n, c, hp["filters"]))


def test_an_architecture_outside_the_schemas_enum_is_refused():
    with pytest.raises(InputError, match=r"rvae\.architecture"):
        RVAE(9, architecture="tiny")


def test_an_encoder_that_lacks_the_protocol_is_refused(monkeypatch):
    monkeypatch.setitem(registry.ENCODERS, "paper", lambda n, c, hp: nn.Linear(n * n, 2 * c))
    with pytest.raises(TypeError, match="does not implement WindowEncoder"):
        RVAE(9, architecture="paper")


def test_a_new_encoder_trains_and_gives_per_pixel_maps_equal_to_per_window_encoding(tiny):
    n = 9
    rng = np.random.default_rng(0)
    bars = oriented_bars(n, rng.uniform(0, np.pi, 96))
    cfg = {
        "architecture": "tiny",
        "filters": 3,
        "decoder": "spatial",
        "decoder_units": 16,
        "latent_dim": 2,
        "epochs": 1,
        "max_steps": 1,
        "batch_size": 32,
        "val_fraction": 0.25,
        "quality": {"windows": 16},
    }
    torch.manual_seed(0)  # as fit seeds (seed 0): the weights fit starts from
    untrained = RVAE(n, **{k: cfg[k] for k in ("architecture", "filters", "decoder", "decoder_units", "latent_dim")})
    # one step through the training harness (ferrolens.training), as the workflow trains
    model, metrics = fit(bars, cfg, seed=0, threads=1, progress=False)
    assert isinstance(model.encoder, TinyEncoder) and model.hparams["architecture"] == "tiny"
    assert len(metrics) == 1 and np.isfinite(metrics["train/loss"]).all()
    # one Adam step from the same start: every weight moved by at most about the learning rate (3e-3)
    start = untrained.state_dict()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, start[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("decoder.") for k in changed)
    assert max(float((model.state_dict()[k] - start[k]).abs().max()) for k in changed) <= 0.01
    # the per-pixel maps (fully convolutional) equal encoding each centred window on its own
    frames = np.clip(rng.random((2, 14, 17)).astype(np.float32), 0, 1)
    mean, logsd = model.latent_maps(frames, logsd=True)
    assert mean.shape == logsd.shape == (2, 14, 17, 5)
    windows = np.concatenate([centred_windows(f, n).reshape(-1, n, n) for f in frames])
    m, s = model.encode(windows)
    np.testing.assert_allclose(mean.reshape(-1, 5), m, atol=1e-5)
    np.testing.assert_allclose(logsd.reshape(-1, 5), s, atol=1e-5)
    assert np.abs(m).max() > 1e-3  # not a trivial zero map
