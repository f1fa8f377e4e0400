"""Rotated MNIST: does the rVAE's latent angle recover known rotations?

MNIST test digits (../shared/data/mnist/mnist.npz, MIT, from
facebookresearch/multiset-compression; MNIST by LeCun, Cortes & Burges) are
rotated by known angles uniform in ±60° (bilinear, ``scipy.ndimage.rotate``).

Upright first (default): handwriting has its own slant — the long axis of the
digits leans with a spread of 26° (16° for the elongated ones, mostly 1s and
7s), and a slanted 1 *is* a rotated 1, so no model can tell that slant from
the known rotation. Left in, it is unseen noise on the "true" angle: aligning
each digit by its principal axis would already score only |ρ| = 0.78. So each
digit is first turned to stand its principal axis upright, and the known
angle is then its only rotation. ``--raw`` skips that and measures against the
applied angle alone: 0.756 after 9 minutes (six latents), the principal-axis
bound above.
The windows go through the stage's own path — ``make_windows`` (each 28×28
digit is one frame and one window) and the ``RVAE`` LightningModule with the
``WindowDataModule`` — and a CPU ``Trainer`` runs under a wall-clock limit
(``max_time``, default 9 minutes, inside the 10-minute budget). Then the
digits are encoded (``RVAE.encode``) and the latent angle is compared with
the true angle: the Fisher–Lee circular correlation (up to sign and offset,
target >= 0.9), the agreement ``|mean exp(i(θ ∓ φ))|``, and the slope of θ
against φ (1 when the latent angle is the rotation in radians).

The hyper-parameters are the stage's except ``reconstruction = bce`` (binary
images, as Bepler et al.), ``lr = 1e-3`` (10× the paper's, for the time
budget), ``latent_dim = 6`` (ten digit classes and their styles are more than
the paper's two free latents for domain walls were meant for; measured on
upright digits, 9 minutes each: with two, |ρ| climbed to 0.96 by epoch 18 and
then training broke down at this learning rate, ending at 0.05; with six it
held 0.964 to the end) and, by default, Bepler et al.'s MNIST rotation prior: mean penalty on
with ``rotation_prior_sd = π/4``. Digits, unlike domain walls, have a
canonical (upright) orientation, and without the mean penalty the latent
angle is free to drift: a first run with the stage's defaults (no penalty,
0.1 rad) ended at |ρ| = 0.24 after 29 epochs (``--no-mean-penalty
--rotation-prior-sd 0.1`` reproduces it). The baseline printed beside it is
the same statistic for an untrained model (same seed); the statistic is also
printed every few epochs on 1000 digits.

Usage::

    python benchmarks/bench_rvae_mnist.py [--digits 5000] [--minutes 9] [--threads 2] [--raw]
                                          [--latent-dim 6] [--no-mean-penalty] [--rotation-prior-sd 0.785]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import xarray as xr
from scipy.ndimage import rotate

from timing import Clock

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "mnist.npz"


def principal_axis_angle(images: np.ndarray) -> np.ndarray:
    """``(N,)`` angle (radians, counter-clockwise as displayed) of each image's long axis from vertical.

    From the intensity-weighted second moments; turning the image by minus this
    angle stands its long axis upright.
    """
    y, x = np.mgrid[: images.shape[1], : images.shape[2]]
    m = images.sum((1, 2))
    cy, cx = (images * y).sum((1, 2)) / m, (images * x).sum((1, 2)) / m
    dy, dx = y - cy[:, None, None], x - cx[:, None, None]
    myy, mxx = (images * dy**2).sum((1, 2)) / m, (images * dx**2).sum((1, 2)) / m
    mxy = (images * dx * dy).sum((1, 2)) / m
    return 0.5 * np.arctan2(2 * mxy, myy - mxx)


def rotated_digits(path: Path, count: int, seed: int = 0, upright: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(count, 28, 28)`` digits in [0, 1] rotated by angles uniform in ±60° (returned, radians).

    With ``upright`` each digit is first turned to stand its long axis upright
    (:func:`principal_axis_angle`), so the known angle is its only rotation;
    otherwise the handwriting's own slant (sd 26° over all digits, 16° over
    the elongated ones) adds to the known angle unseen. ``scipy.ndimage.rotate``
    turns the array counter-clockwise as displayed (row 0 at the top) for a
    positive angle, the convention of the latent angle.
    """
    digits = np.load(path)["data"][:count].astype(np.float32) / 255.0
    angles = np.random.default_rng(seed).uniform(-np.pi / 3, np.pi / 3, count)
    turn = angles - principal_axis_angle(digits) if upright else angles
    out = np.stack([rotate(d, np.degrees(a), reshape=False, order=1) for d, a in zip(digits, turn, strict=True)])
    return np.clip(out, 0.0, 1.0).astype(np.float32), angles


def scores(theta: np.ndarray, phi: np.ndarray) -> dict:
    from ferrolens.rvae import circular_agreement, circular_correlation

    rho = circular_correlation(theta, phi)
    sign = 1.0 if rho >= 0 else -1.0
    slope = float(np.polyfit(phi, sign * theta, 1)[0])
    return {
        "circular_correlation": rho,
        "abs_circular_correlation": abs(rho),
        "agreement": circular_agreement(theta, phi),
        "slope": slope,
    }


class _Watch(pl.Callback):
    """Print the statistic on a subset every few epochs (is training still improving it?)."""

    def __init__(self, images: np.ndarray, angles: np.ndarray, every: int):
        self.images, self.angles, self.every, self.t0 = images, angles, every, time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every == 0:
            s = scores(pl_module.encode(self.images)[0][:, 0], self.angles)
            print(
                f"  epoch {trainer.current_epoch + 1:3d} ({time.perf_counter() - self.t0:4.0f} s): "
                f"|rho| {s['abs_circular_correlation']:.3f}, agreement {s['agreement']:.3f}, slope {s['slope']:.2f}",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digits", type=int, default=5000)
    p.add_argument("--minutes", type=float, default=9.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mnist", type=Path, default=MNIST)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mean-penalty", action="store_true", help="the stage's default angle KL (width only)")
    p.add_argument("--rotation-prior-sd", type=float, default=np.pi / 4)
    p.add_argument("--latent-dim", type=int, default=6, help="free latents (the stage's default is the paper's 2)")
    p.add_argument("--every", type=int, default=3, help="print the statistic every this many epochs")
    p.add_argument(
        "--raw",
        action="store_true",
        help="keep each digit's own handwriting slant (not stood upright before the known rotation)",
    )
    args = p.parse_args()
    if args.minutes > 10:
        p.error("the benchmark's budget is 10 minutes of CPU training")

    from ferrolens.rvae import RVAE, make_windows
    from ferrolens.rvae.data import WindowDataModule

    torch.set_num_threads(args.threads)
    images, angles = rotated_digits(args.mnist.resolve(), args.digits, args.seed, upright=not args.raw)
    with tempfile.TemporaryDirectory(prefix="bench_rvae_mnist_") as d:
        da = xr.DataArray(images, dims=("frame", "y", "x"), name="mnist_rotated")
        make_windows(da, str(Path(d) / "windows.zarr"), 28, {"count": args.digits, "min_std": 0.0}, seed=args.seed)
        pl.seed_everything(args.seed, verbose=False)
        # the paper's model at a constant rate, every pixel drawn (RVAE's defaults before issue 27)
        model = RVAE(
            28,
            architecture="paper",
            lr_schedule="constant",
            translation_prior_sd=0.1,
            decoder_pixels=0,
            latent_dim=args.latent_dim,
            reconstruction="bce",
            lr=args.lr,
            angle_mean_penalty=not args.no_mean_penalty,
            rotation_prior_sd=args.rotation_prior_sd,
        )
        before = scores(model.encode(images)[0][:, 0], angles)
        dm = WindowDataModule(
            str(Path(d) / "windows.zarr"), batch_size=args.batch, val_fraction=0.0, seed=args.seed, window=28
        )
        dm.setup()
        limit = time.strftime("%H:%M:%S", time.gmtime(args.minutes * 60))
        trainer = pl.Trainer(
            max_time=f"00:{limit}",
            max_epochs=10_000,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            callbacks=[_Watch(images[:1000], angles[:1000], args.every)],
        )
        clock = Clock(args.threads)
        with clock("training") as block:
            trainer.fit(model, datamodule=dm)
        seconds = block.wall

    mean, _ = model.encode(images)
    after = scores(mean[:, 0], angles)
    seen = trainer.global_step * args.batch
    print(
        f"[mnist] {args.digits} {'raw' if args.raw else 'upright'} digits rotated uniformly in ±60°, "
        f"CPU training {seconds / 60:.1f} min "
        f"({trainer.global_step} steps, {seen / args.digits:.1f} epochs, {args.threads} threads; {clock.tag(block)})"
    )
    print(f"        untrained: |circular corr| {before['abs_circular_correlation']:.3f}")
    print(
        f"        trained:   |circular corr| {after['abs_circular_correlation']:.3f} (target >= 0.9), "
        f"agreement {after['agreement']:.3f}, slope {after['slope']:.2f} "
        f"(sign {np.sign(after['circular_correlation']):+.0f})"
    )
    print(
        json.dumps(
            {
                "digits": args.digits,
                "upright": not args.raw,
                "train_s": seconds,
                "steps": trainer.global_step,
                "latent_dim": args.latent_dim,
                "angle_mean_penalty": not args.no_mean_penalty,
                "rotation_prior_sd": args.rotation_prior_sd,
                "before": before,
                "after": after,
                "timing": clock.record(),
            }
        )
    )
    sys.exit(clock.exit_code())


if __name__ == "__main__":
    main()
