"""The rotationally invariant VAE as a LightningModule.

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
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..store import latent_labels
from . import maps as _maps
from .geometry import coordinate_grid, rotate_translate
from .modules import N_POSE, Encoder, ImageDecoder, RotationEncoder, SpatialDecoder

MODEL_KIND = "rvae"  # written into every checkpoint; load() checks it
RECONSTRUCTIONS = ("gaussian", "mse", "bce")
ARCHITECTURES = ("paper", "equivariant")
SCHEDULES = ("constant", "cosine")
DECODERS = ("spatial", "image")


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


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Learning rate over its peak at optimiser step ``step`` of ``total``: linear warm-up, cosine decay."""
    w = int(round(warmup * total))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


def _as_tensor(x: Any, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x,
                           dtype=torch.float32, device=device)


class RVAE(pl.LightningModule):
    """Rotationally (and translationally) invariant VAE of ``n × n`` windows.

    Parameters (typed primitives, saved with ``save_hyperparameters``)
    ------------------------------------------------------------------
    window : window size ``n`` in pixels (>= 5).
    latent_dim : free latents ``L`` (paper: 2); the code is ``(angle, dx, dy, z1 … zL)``.
    rotation_prior_sd : prior sd of the angle (radians, default 0.1; see module doc).
    angle_mean_penalty : include ``μ²/(2σ²)`` in the angle KL (default False; module doc).
    translation : infer the shift ``(dx, dy)``; off: the decoder is never shifted,
        ``dx = dy = 0`` and their log-sd are NaN in every output.
    translation_prior_sd : prior sd of dx, dy in grid units (1 = half the window), default 0.1.
    reconstruction : ``"gaussian"``, ``"mse"`` (Gaussian with σ = 1) or ``"bce"``.
    noise_sd : σ of the ``gaussian`` reconstruction (data units, default 0.1).
    lr : Adam learning rate (default 1e-4).
    filters : channels of the encoder's convolutions (paper: 128; for ``equivariant`` those of its
        plain encoder of shift, z and the log-sds).
    units : width of the decoder's dense layers (paper: 128).
    architecture : ``"paper"`` (the paper's CNN encoder and Bepler's plain spatial decoder;
        ``fourier`` and ``decoder`` are ignored) or ``"equivariant"`` (:class:`RotationEncoder`
        and the decoder ``decoder``).
    decoder : the equivariant model's decoder: ``"spatial"`` (Bepler's, with ``fourier`` Fourier
        features) or ``"image"`` (:class:`~ferrolens.rvae.modules.ImageDecoder`: a canonical image
        read at the turned and shifted coordinates).
    rotations : rotated copies ``K`` of the equivariant encoder's angle network (a multiple of 4).
    rotation_filters : channels of each rotated copy's convolutions.
    symmetry : symmetry order ``m`` of the content for the equivariant encoder: its angle is
        read modulo ``2π / m`` (2: lines, walls).
    fourier : Fourier frequencies of the equivariant model's decoder (0: plain coordinates).
    fourier_scale : their standard deviation (cycles per grid unit).
    lr_schedule : ``"constant"`` (the paper) or ``"cosine"``: linear warm-up over the first
        ``warmup`` fraction of the steps, then cosine decay to 0 at the last step.
    warmup : fraction of the training steps of the warm-up (cosine schedule only).
    pixel_fraction : fraction of each window's pixels the decoder draws in a training step (a
        random subset per batch; the reconstruction sum is scaled up, an unbiased estimate of
        the whole window's): the spatial decoder's cost grows with ``n²``. Validation and every
        output use all pixels.
    kl_warmup : fraction of the training steps over which the weight β of the KL terms in the
        training objective rises linearly from 0 to 1 (0: β = 1 throughout). The logged losses
        are always the plain negative ELBO (β = 1).

    The defaults of the class are the paper's model (old checkpoints load as they were
    saved); the config's defaults (:data:`ferrolens.rvae.DEFAULTS`) are the workflow's.
    """

    def __init__(
        self,
        window: int,
        latent_dim: int = 2,
        rotation_prior_sd: float = 0.1,
        angle_mean_penalty: bool = False,
        translation: bool = True,
        translation_prior_sd: float = 0.1,
        reconstruction: str = "gaussian",
        noise_sd: float = 0.1,
        lr: float = 1e-4,
        filters: int = 128,
        units: int = 128,
        architecture: str = "paper",
        rotations: int = 8,
        symmetry: int = 2,
        rotation_filters: int = 16,
        fourier: int = 0,
        fourier_scale: float = 1.0,
        lr_schedule: str = "constant",
        warmup: float = 0.0,
        pixel_fraction: float = 1.0,
        decoder: str = "spatial",
        kl_warmup: float = 0.0,
    ):
        super().__init__()
        checks = {
            "window": (window, window >= 5, "an integer >= 5 (two valid 3×3 convolutions)"),
            "latent_dim": (latent_dim, latent_dim >= 1, "an integer >= 1"),
            "rotation_prior_sd": (rotation_prior_sd, rotation_prior_sd > 0, "a positive number (radians)"),
            "translation_prior_sd": (translation_prior_sd, translation_prior_sd > 0, "a positive number (grid units)"),
            "reconstruction": (reconstruction, reconstruction in RECONSTRUCTIONS, f"one of {RECONSTRUCTIONS}"),
            "noise_sd": (noise_sd, noise_sd > 0, "a positive number"),
            "lr": (lr, lr > 0, "a positive number"),
            "filters": (filters, filters >= 1, "an integer >= 1"),
            "units": (units, units >= 1, "an integer >= 1"),
            "architecture": (architecture, architecture in ARCHITECTURES, f"one of {ARCHITECTURES}"),
            "rotations": (rotations, rotations >= 4 and rotations % 4 == 0, "a multiple of 4"),
            "rotation_filters": (rotation_filters, rotation_filters >= 1, "an integer >= 1"),
            "angle_symmetry": (symmetry, symmetry >= 1, "an integer >= 1"),
            "fourier_features": (fourier, fourier >= 0, "an integer >= 0"),
            "fourier_scale": (fourier_scale, fourier_scale > 0, "a positive number"),
            "lr_schedule": (lr_schedule, lr_schedule in SCHEDULES, f"one of {SCHEDULES}"),
            "warmup": (warmup, 0 <= warmup < 1, "a fraction in [0, 1)"),
            "pixel_fraction": (pixel_fraction, 0 < pixel_fraction <= 1, "a fraction in (0, 1]"),
            "decoder": (decoder, decoder in DECODERS, f"one of {DECODERS}"),
            "kl_warmup": (kl_warmup, 0 <= kl_warmup < 1, "a fraction in [0, 1)"),
        }
        for key, (value, ok, expected) in checks.items():
            if not ok:
                raise InputError(f"rvae.{key}", f"value {value!r} is not allowed", expected)
        self.save_hyperparameters()
        if architecture == "paper":
            self.encoder = Encoder(window, N_POSE + latent_dim, filters)
            self.decoder = SpatialDecoder(latent_dim, units)
        else:
            self.encoder = RotationEncoder(window, N_POSE + latent_dim, filters, rotations, symmetry, rotation_filters)
            self.decoder = (ImageDecoder(latent_dim, window, units) if decoder == "image"
                            else SpatialDecoder(latent_dim, units, fourier, fourier_scale))
        self.register_buffer("grid", coordinate_grid(window), persistent=False)
        #: held-out checks recorded by :func:`ferrolens.rvae.train` (see :mod:`ferrolens.rvae.quality`)
        self.quality: dict[str, Any] | None = None

    # --- labels ---------------------------------------------------------------
    @property
    def window(self) -> int:
        return int(self.hparams.window)

    @property
    def labels(self) -> list[str]:
        """Latent labels ``angle, dx, dy, z1 … zL``."""
        return latent_labels(int(self.hparams.latent_dim))

    # --- generative pieces ---------------------------------------------------------
    def generate(self, code: Tensor, coords: Tensor | None = None) -> Tensor:
        """Decoder output (values, or logits for ``bce``) ``(N, P)`` for codes ``(N, 3 + L)``."""
        coords = self.grid if coords is None else coords
        shift = code[:, 1:N_POSE] if self.hparams.translation else None
        return self.decoder(rotate_translate(coords, code[:, 0], shift), code[:, N_POSE:])

    def loss(self, x: Tensor) -> LossParts:
        """Negative ELBO parts for a batch of windows ``(N, n, n)`` (one posterior sample each)."""
        hp = self.hparams
        mean, logsd = self.encoder(x)
        code = mean + torch.exp(logsd) * torch.randn_like(mean)
        target = x.reshape(x.shape[0], -1)
        fraction = float(hp.get("pixel_fraction", 1.0))
        if self.training and fraction < 1.0:
            # an unbiased estimate of the sum over all pixels from a random subset (one per batch)
            p = target.shape[1]
            keep = torch.randperm(p, device=x.device)[: max(1, int(round(fraction * p)))]
            out, target, scale = self.generate(code, self.grid[keep]), target[:, keep], p / keep.numel()
        else:
            out, scale = self.generate(code), 1.0
        if hp.reconstruction == "bce":
            rec = F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(1) * scale
        else:
            sd = hp.noise_sd if hp.reconstruction == "gaussian" else 1.0
            rec = 0.5 * ((out - target) ** 2).sum(1) / sd**2 * scale
        kl_angle = kl_normal(mean[:, 0], logsd[:, 0], hp.rotation_prior_sd, hp.angle_mean_penalty)
        if hp.translation:
            kl_shift = kl_normal(mean[:, 1:N_POSE], logsd[:, 1:N_POSE], hp.translation_prior_sd).sum(1)
        else:
            kl_shift = torch.zeros_like(kl_angle)
        kl_z = kl_normal(mean[:, N_POSE:], logsd[:, N_POSE:]).sum(1)
        return LossParts(rec.mean(), kl_angle.mean(), kl_shift.mean(), kl_z.mean())

    # --- Lightning ---------------------------------------------------------------------
    def kl_weight(self) -> float:
        """β of the KL terms at the current training step (:attr:`hparams.kl_warmup`; 1 outside training)."""
        warm = float(self.hparams.get("kl_warmup", 0.0))
        trainer = self._trainer
        if warm <= 0 or trainer is None or not self.training:
            return 1.0
        steps = warm * max(1, int(trainer.estimated_stepping_batches))
        return min(1.0, (self.global_step + 1) / steps)

    def _step(self, batch: Any, stage: str) -> LossParts:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        parts = self.loss(x)
        total = parts.total
        n = x.shape[0]
        # sync_dist: under DDP the epoch means are over every process's windows (a no-op in one process)
        self.log(f"{stage}/loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        for name, value in parts._asdict().items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return parts

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        parts = self._step(batch, "train")
        beta = self.kl_weight()
        if beta >= 1.0:
            return parts.total
        # during the KL warm-up the objective is reconstruction + β KL (the logged loss stays the ELBO)
        return parts.reconstruction + beta * (parts.kl_angle + parts.kl_shift + parts.kl_z)

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val").total

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.get("lr_schedule", "constant") == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, total=total, warmup=float(self.hparams.warmup)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ferrolens_model"] = MODEL_KIND
        if getattr(self, "quality", None) is not None:
            checkpoint["ferrolens_quality"] = self.quality

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.quality = checkpoint.get("ferrolens_quality")

    # --- public API (notebooks) -----------------------------------------------------------
    def _finish(self, mean: np.ndarray, logsd: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Unused shift latents are reported as dx = dy = 0 with NaN log-sd."""
        if not self.hparams.translation:
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
            c = N_POSE + int(self.hparams.latent_dim)
            return np.zeros((0, c), np.float32), np.zeros((0, c), np.float32)
        return self._finish(torch.cat(means).numpy(), torch.cat(logsds).numpy())

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
        if z.dim() != 2 or z.shape[1] != int(self.hparams.latent_dim):
            raise InputError("z", f"shape {tuple(z.shape)}", f"(N, {self.hparams.latent_dim}) free latents")
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
        if self.hparams.reconstruction == "bce":
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
            raise InputError("frames", f"frames are {shape[1]}×{shape[2]} pixels, smaller than the window {self.window}",
                             f"frames of at least {self.window}×{self.window} pixels")
        out = _maps.latent_maps(self.encoder, frames, logsd=logsd, chunk_mb=chunk_mb, progress=progress)
        if logsd:
            return self._finish(*out)
        return self._finish(out, None)[0]
