"""The rotationally invariant VAE as a plain ``nn.Module``: the model, its loss and the notebook API.

:class:`RVAENet` is what inference needs (:func:`load`, :func:`ferrolens.rvae.encode`, the latent-space
maps) and imports no Lightning (~5 s of CPU a job); :class:`ferrolens.rvae.model.RVAE` is the same
model as a LightningModule, the training system.

Loss (negative ELBO per window, averaged over the batch)::

    loss = reconstruction + kl_angle + kl_shift + kl_z

* ``reconstruction``: ``gaussian``: ``Σ (x - x̂)² / (2 σ²)`` over the window's
  pixels with ``σ = noise_sd`` (default 0.1 = a tenth of the ``[0, 1]`` data
  range; the constant of the Gaussian log-likelihood is left out); ``mse``:
  atomai's ``0.5 Σ (x - x̂)²``, i.e. ``gaussian`` with ``σ = 1`` whatever
  ``noise_sd`` says (the paper's group's setting; a weak likelihood for
  ``[0, 1]`` data, so small windows risk uninformative z); ``bce``: binary
  cross-entropy of the decoder's logits, summed over pixels (binary or
  probability-valued inputs in ``[0, 1]``; Bepler et al. on MNIST).
* ``kl_angle``: KL of ``q(angle) = N(μ, s²)`` from the prior ``N(0, σ_θ²)``,
  ``σ_θ = rotation_prior_sd``. With ``angle_mean_penalty = False`` (default)
  the ``μ² / (2σ_θ²)`` term is dropped: only the posterior *width* is
  regularised (pulled towards ``σ_θ``), the mean angle is free. This is the
  choice of atomai's rVAE that the paper's group used, and the right one for
  domain walls: a wall's orientation is the physical quantity we read off,
  walls have no preferred orientation and their angle is π-periodic, so a
  penalty pulling every angle towards 0 would bias and compress the per-frame
  angle distributions. ``True`` gives Bepler et al.'s full Gaussian KL.
* ``kl_shift``: KL of ``q(dx), q(dy)`` from ``N(0, τ²)``, ``τ =
  translation_prior_sd`` in grid units (0.1 = 5 % of the window's width, as
  Bepler's ``dx_scale``); zero when translation is off.
* ``kl_z``: KL of ``q(z)`` from ``N(0, I)``.

Default rotation prior: ``rotation_prior_sd = 0.1`` rad (≈ 6°, atomai's
default). Without a mean penalty, ``σ_θ`` is the width the angle posterior is
pulled towards, i.e. the angular jitter the decoder sees in training: 0.1 rad
keeps the orientation resolution well below the spread of wall orientations
while still regularising; Bepler's ``π/4`` (used with the mean penalty) would
smear the template over ±45°.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, NamedTuple, Self, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import config as _config
from ..errors import InputError
from ..sections import RvaeConfig
from ..store import check_checkpoint, latent_labels
from . import maps as _maps
from .config import MODEL_KEYS
from .geometry import coordinate_grid, rotate_translate
from .inputs import check_window
from .modules import N_POSE
from .registry import build_decoder, build_encoder, with_fixed

MODEL_KIND = "rvae"  # written into every checkpoint; load() checks it

#: Checkpoints saved before the model took the schema's names (before issue 27) hold these
#: hyper-parameters: the old name → the schema's, and the old class defaults (the paper's model) of
#: keys added after a checkpoint was written. Read only by :func:`legacy_hparams` when loading.
_LEGACY_NAMES = {"symmetry": "angle_symmetry", "fourier": "fourier_features", "units": "decoder_units"}
_LEGACY_DEFAULTS: dict[str, Any] = {
    "latent_dim": 2,
    "rotation_prior_sd": 0.1,
    "angle_mean_penalty": False,
    "translation": True,
    "translation_prior_sd": 0.1,
    "reconstruction": "gaussian",
    "noise_sd": 0.1,
    "lr": 1e-4,
    "filters": 128,
    "units": 128,
    "architecture": "paper",
    "rotations": 8,
    "symmetry": 2,
    "rotation_filters": 16,
    "fourier": 0,
    "fourier_scale": 1.0,
    "lr_schedule": "constant",
    "warmup": 0.0,
    "pixel_fraction": 1.0,
    "decoder": "spatial",
    "kl_warmup": 0.0,
}


def legacy_hparams(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved hyper-parameters by the schema's names (the one load-time shim).

    A checkpoint written since issue 27 is returned as it is. An older one (``symmetry``, ``units``,
    ``fourier``, ``pixel_fraction``; keys added over time missing) is mapped: missing keys take the old
    class defaults, names are renamed, and ``pixel_fraction`` becomes ``decoder_pixels`` (the pixel count
    it was made from, ``round(pixel_fraction · n²)``; 0 = every pixel), so the model is rebuilt exactly.
    """
    if "angle_symmetry" in saved:
        return dict(saved)
    old = {**_LEGACY_DEFAULTS, **saved}
    n = int(old["window"])
    fraction = float(old.pop("pixel_fraction"))
    hp = {_LEGACY_NAMES.get(k, k): v for k, v in old.items()}
    hp["decoder_pixels"] = 0 if fraction >= 1.0 else round(fraction * n * n)
    return hp


class LossParts(NamedTuple):
    """Per-batch means of the four parts of the negative ELBO (nats per window)."""

    reconstruction: Tensor
    kl_angle: Tensor
    kl_shift: Tensor
    kl_z: Tensor

    @property
    def total(self) -> Tensor:
        return self.reconstruction + self.kl_angle + self.kl_shift + self.kl_z


def kl_normal(mean: Tensor, logsd: Tensor, prior_sd: float = 1.0, mean_penalty: bool = True) -> Tensor:
    """Elementwise ``KL(N(mean, sd²) || N(0, prior_sd²))``, ``sd = exp(logsd)``.

    ``log σ - log s + (s² + μ²) / (2σ²) - 1/2``; with ``mean_penalty=False`` the
    ``μ²`` term is dropped, which is the KL from a prior centred on the
    posterior mean (only the width is regularised).
    """
    var_ratio = torch.exp(2 * logsd) / prior_sd**2
    kl = math.log(prior_sd) - logsd + 0.5 * var_ratio - 0.5
    if mean_penalty:
        kl = kl + 0.5 * mean**2 / prior_sd**2
    return kl


def _as_tensor(x: Any, device: torch.device) -> Tensor:
    return torch.as_tensor(
        np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x, dtype=torch.float32, device=device
    )


class RVAENet(nn.Module):
    """Rotationally (and translationally) invariant VAE of ``n × n`` windows.

    It holds two plain ``nn.Module`` parts built from the registry (:mod:`ferrolens.rvae.registry`) by the
    ``rvae:`` section's enums: ``encoder`` (a :class:`~ferrolens.rvae.registry.WindowEncoder`, picked by
    ``architecture``) and ``decoder`` (a :class:`~ferrolens.rvae.registry.CoordinateDecoder`, picked by
    ``decoder``), and adds the loss and the notebook API (:meth:`encode`, :meth:`decode`,
    :meth:`latent_maps`).

    Parameters
    ----------
    window : window size ``n`` in pixels (>= 5).
    **hparams : keys of the ``rvae:`` config section that are the model's
        (:data:`ferrolens.rvae.config.MODEL_KEYS`), by the schema's names; a missing key takes the schema's
        default, and the values are checked by the schema (``ferrolens.config.section("rvae", hparams)``),
        the one contract of their meaning, ranges and defaults (``src/ferrolens/schemas/fragments/rvae.yaml``,
        typed as :class:`ferrolens.sections.RvaeConfig`). What an architecture fixes whatever they say
        (the paper's 128 filters and units, spatial decoder, no Fourier features) is
        :data:`ferrolens.rvae.registry.FIXED`, and is what the saved hyper-parameters record.

    ``hparams`` (saved in every checkpoint) holds ``window`` and every model key; :attr:`cfg` is the
    checked, typed section they came from.
    """

    grid: Tensor  # the window's pixel coordinates (a buffer)

    def __init__(self, window: int, **hparams: Any) -> None:
        super().__init__()
        n = check_window(window, where="rvae window")
        unknown = sorted(set(hparams) - set(MODEL_KEYS))
        if unknown:
            raise InputError(
                "RVAE",
                f"hyper-parameters {unknown} are not the model's",
                f"keys of the rvae section among {list(MODEL_KEYS)}",
            )
        # the schema's checks and defaults (config.SCHEMA read at call time: a test may extend its enums)
        checked = _config.section("rvae", hparams, schema=_config.SCHEMA)
        cfg = cast(RvaeConfig, _config.freeze(with_fixed(checked), "rvae"))
        #: the checked ``rvae:`` section the model was built from (defaults filled, :data:`FIXED` applied)
        self.cfg = cfg
        plain = dict(cfg)
        self._record_hparams({"window": n, **{key: plain[key] for key in MODEL_KEYS}})
        # encoder first, then decoder: the order in which their weights draw from the seeded generator
        self.encoder = build_encoder(n, N_POSE + cfg["latent_dim"], cfg)
        self.decoder = build_decoder(n, cfg)
        self.register_buffer("grid", coordinate_grid(n), persistent=False)
        #: held-out checks recorded by :func:`ferrolens.rvae.train` (see :mod:`ferrolens.rvae.quality`)
        self.quality: dict[str, Any] | None = None

    def _record_hparams(self, hparams: dict[str, Any]) -> None:
        """Keep the hyper-parameters (the Lightning system also saves them into its checkpoints)."""
        self._model_hparams = dict(hparams)

    @property
    def hparams(self) -> MutableMapping[str, Any]:
        """``window`` and every model key (:data:`~ferrolens.rvae.config.MODEL_KEYS`): ``RVAENet(**hparams)``
        rebuilds the model."""
        return self._model_hparams

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.grid.device

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        strict: bool = True,
        weights_only: bool = True,
        **overrides: Any,
    ) -> Self:
        """The model of a checkpoint written by :func:`ferrolens.rvae.train` (``weights_only``: no unpickling of
        code), also of one saved before the model took the schema's names (:func:`legacy_hparams`), with its
        recorded quality checks and its weights where ``map_location`` puts them; ``overrides`` replace saved
        hyper-parameters."""
        ckpt = torch.load(checkpoint_path, map_location=map_location or "cpu", weights_only=weights_only)
        model = cls(**{**legacy_hparams(ckpt.get("hyper_parameters", {})), **overrides})
        model.load_state_dict(ckpt["state_dict"], strict=strict)
        model.quality = ckpt.get("ferrolens_quality")
        # where map_location put the weights, as Lightning's own loader does
        return model.to(next((t.device for t in ckpt["state_dict"].values() if isinstance(t, Tensor)), "cpu"))

    @property
    def pixel_fraction(self) -> float:
        """Fraction of each window's pixels the decoder draws in a training step (``decoder_pixels`` of ``n²``)."""
        pixels = self.cfg["decoder_pixels"]
        return min(1.0, pixels / self.window**2) if pixels > 0 else 1.0

    # --- labels ---------------------------------------------------------------
    @property
    def window(self) -> int:
        return int(self.hparams["window"])

    @property
    def labels(self) -> list[str]:
        """Latent labels ``angle, dx, dy, z1 … zL``."""
        return latent_labels(self.cfg["latent_dim"])

    # --- generative pieces ---------------------------------------------------------
    def generate(self, code: Tensor, coords: Tensor | None = None) -> Tensor:
        """Decoder output (values, or logits for ``bce``) ``(N, P)`` for codes ``(N, 3 + L)``."""
        coords = self.grid if coords is None else coords
        shift = code[:, 1:N_POSE] if self.cfg["translation"] else None
        return self.decoder(rotate_translate(coords, code[:, 0], shift), code[:, N_POSE:])

    def loss(self, x: Tensor) -> LossParts:
        """Negative ELBO parts for a batch of windows ``(N, n, n)`` (one posterior sample each)."""
        hp = self.cfg
        mean, logsd = self.encoder(x)
        code = mean + torch.exp(logsd) * torch.randn_like(mean)
        target = x.reshape(x.shape[0], -1)
        fraction = self.pixel_fraction
        if self.training and fraction < 1.0:
            # an unbiased estimate of the sum over all pixels from a random subset (one per batch)
            p = target.shape[1]
            keep = torch.randperm(p, device=x.device)[: max(1, round(fraction * p))]
            out, target, scale = self.generate(code, self.grid[keep]), target[:, keep], p / keep.numel()
        else:
            out, scale = self.generate(code), 1.0
        if hp["reconstruction"] == "bce":
            rec = F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(1) * scale
        else:
            sd = hp["noise_sd"] if hp["reconstruction"] == "gaussian" else 1.0
            rec = 0.5 * ((out - target) ** 2).sum(1) / sd**2 * scale
        kl_angle = kl_normal(mean[:, 0], logsd[:, 0], hp["rotation_prior_sd"], hp["angle_mean_penalty"])
        if hp["translation"]:
            kl_shift = kl_normal(mean[:, 1:N_POSE], logsd[:, 1:N_POSE], hp["translation_prior_sd"]).sum(1)
        else:
            kl_shift = torch.zeros_like(kl_angle)
        kl_z = kl_normal(mean[:, N_POSE:], logsd[:, N_POSE:]).sum(1)
        return LossParts(rec.mean(), kl_angle.mean(), kl_shift.mean(), kl_z.mean())

    # --- public API (notebooks) -----------------------------------------------------------
    def _finish(self, mean: np.ndarray, logsd: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Unused shift latents are reported as dx = dy = 0 with NaN log-sd."""
        if not self.cfg["translation"]:
            mean[..., 1:N_POSE] = 0.0
            if logsd is not None:
                logsd[..., 1:N_POSE] = np.nan
        return mean, logsd

    @torch.no_grad()
    def encode(self, windows: np.ndarray | Tensor, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log-sd of ``(angle, dx, dy, z1 … zL)`` for windows.

        Parameters
        ----------
        windows : ``(N, n, n)`` windows with values in ``[0, 1]``.
        batch_size : windows per forward pass.

        Returns
        -------
        ``mean, logsd``: float32 arrays ``(N, 3 + L)``; angle in radians
        (counter-clockwise as displayed), dx, dy in grid units (1 = ``(n-1)/2``
        pixels), z dimensionless.
        """
        x = windows if isinstance(windows, Tensor) else torch.as_tensor(np.asarray(windows, dtype=np.float32))
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.window, self.window):
            raise InputError("windows", f"shape {tuple(x.shape)}", f"(N, {self.window}, {self.window}) windows")
        was_training = self.training
        self.eval()
        try:
            means, logsds = [], []
            for a in range(0, x.shape[0], batch_size):
                m, s = self.encoder(x[a : a + batch_size].to(self.device, torch.float32))
                means.append(m.cpu())
                logsds.append(s.cpu())
        finally:
            self.train(was_training)
        if not means:
            c = N_POSE + self.cfg["latent_dim"]
            return np.zeros((0, c), np.float32), np.zeros((0, c), np.float32)
        mean, sd = self._finish(torch.cat(means).numpy(), torch.cat(logsds).numpy())
        return mean, cast(np.ndarray, sd)

    @torch.no_grad()
    def decode(
        self,
        z: np.ndarray | Tensor,
        angle: float | np.ndarray | Tensor = 0.0,
        shift: tuple[float, float] | np.ndarray | Tensor = (0.0, 0.0),
        grid: int | None = None,
    ) -> np.ndarray:
        """Images generated from free latents, the inverse of :meth:`encode`.

        Parameters
        ----------
        z : ``(N, L)`` free latents (``code[:, 3:]`` of :meth:`encode`).
        angle : scalar or ``(N,)`` rotation in radians (``code[:, 0]``), default 0.
        shift : ``(2,)`` or ``(N, 2)`` ``(dx, dy)`` in grid units (``code[:, 1:3]``),
            default ``(0, 0)``; ignored when the model has no translation.
        grid : pixels per side of the output (default ``n``); the window's
            ``[-1, 1]²`` extent is resampled, so ``grid > n`` zooms in on detail.

        Returns
        -------
        ``(N, grid, grid)`` float32 in data units (sigmoid of the logits for ``bce``).
        """
        z = _as_tensor(z, self.device)
        if z.dim() != 2 or z.shape[1] != self.cfg["latent_dim"]:
            raise InputError("z", f"shape {tuple(z.shape)}", f"(N, {self.cfg['latent_dim']}) free latents")
        n_out = self.window if grid is None else int(grid)
        if n_out < 2:
            raise InputError("grid", f"value {grid!r}", "an integer >= 2 (pixels per side)")
        count = z.shape[0]
        code = torch.zeros(count, N_POSE + z.shape[1], device=self.device)
        code[:, 0] = _as_tensor(angle, self.device).reshape(-1).expand(count)
        code[:, 1:N_POSE] = _as_tensor(shift, self.device).reshape(-1, 2).expand(count, 2)
        code[:, N_POSE:] = z
        was_training = self.training
        self.eval()
        try:
            out = self.generate(code, coordinate_grid(n_out, device=self.device))
        finally:
            self.train(was_training)
        if self.cfg["reconstruction"] == "bce":
            out = torch.sigmoid(out)
        return out.reshape(count, n_out, n_out).cpu().numpy()

    def latent_maps(
        self,
        frames: Any,
        logsd: bool = False,
        chunk_mb: float = 256.0,
        progress: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Per-pixel maps ``(F, H, W, 3 + L)`` of whole frames ``(F, H, W)``.

        The value at ``(f, y, x)`` equals :meth:`encode` of the window centred
        on that pixel (reflect padding; see :mod:`ferrolens.rvae.maps`),
        computed fully convolutionally. With ``logsd=True`` returns
        ``(mean, logsd)``.
        """
        shape = tuple(getattr(frames, "shape", ()))
        if len(shape) != 3:
            raise InputError("frames", f"shape {shape}", "(frame, y, x) images")
        if self.window > min(shape[1:]):
            raise InputError(
                "frames",
                f"frames are {shape[1]}×{shape[2]} pixels, smaller than the window {self.window}",
                f"frames of at least {self.window}×{self.window} pixels",
            )
        out = _maps.latent_maps(self.encoder, frames, logsd=logsd, chunk_mb=chunk_mb, progress=progress)
        if isinstance(out, tuple):
            mean, sd = self._finish(*out)
            return mean, cast(np.ndarray, sd)
        return self._finish(out, None)[0]


def load(checkpoint: str | Path) -> RVAENet:
    """The trained model of a checkpoint (weights only, on CPU, eval mode), for inference and notebooks:
    :meth:`~RVAENet.encode`, :meth:`~RVAENet.decode`, :meth:`~RVAENet.latent_maps`. Imports no Lightning;
    :meth:`ferrolens.rvae.model.RVAE.load_from_checkpoint` gives the training system instead.

    Raises :class:`InputError` naming the file when it is missing, unreadable
    or holds another kind of model.
    """
    path = check_checkpoint(checkpoint, MODEL_KIND, "an rVAE checkpoint written by ferrolens.rvae.train (model.ckpt)")
    return RVAENet.from_checkpoint(path, map_location="cpu").eval()
