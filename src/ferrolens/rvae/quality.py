"""Has the rVAE learned? Checks that need no ground truth, and plain warnings.

* :func:`reconstruction_r2` — held-out reconstruction ``R² = 1 - SSE / SST``:
  windows decoded from their posterior means (angle, shift and z) against the
  windows, ``SST`` the sum of squares about the windows' mean value. 0 is a
  decoder that draws the average; 1 is perfect.
* :func:`rotation_check` — turn each window by known angles ``φ`` and encode
  it again: the latent angle must move by ``φ`` (modulo ``2π / m`` for
  content with ``m``-fold symmetry, ``m = 2`` for walls). Reported as the
  fraction of (window, ``φ``) pairs that follow to within ``tolerance``
  (default 15°). Both the turned and the unturned window are cut to the
  inscribed disc (outside it: the window's median, the background of a wall
  map), so that no content enters or leaves the window as it turns; turned
  windows are resampled bilinearly. The angles avoid multiples of 45°, which
  the equivariant encoder follows by construction.

:func:`assess` measures these and three more after training (R² after a blur at a wall's
scale, R² against a PCA of the same capacity, whether the held-out loss levelled off); the
measurements are stored with the model. :func:`judge` applies the thresholds (``rvae.quality`` in
the config) where the verdict is reported — rule ``rvae_quality`` writes ``quality.json``, which
the figures stamp — so that changing a threshold neither retrains nor re-encodes. The thresholds'
defaults are calibrated on models of known quality against ground truth
(``benchmarks/bench_rvae_fidelity.py --ladder``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError
from .geometry import coordinate_grid, rotate_translate

log = logging.getLogger(__name__)

#: The turns of the rotation check (degrees): twelve, 30° apart, none a multiple of 45°.
CHECK_ANGLES = tuple(11.0 + 30.0 * j for j in range(12))
#: Gaussian blur (pixels) before the blurred R²: the scale of a wall, below which pixel noise lies.
BLUR_SIGMA = 1.0


def reconstructions(model: Any, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Windows ``(N, n, n)`` decoded from their posterior means (angle, shift and z), float32."""
    w = np.asarray(windows, dtype=np.float32)
    out = np.empty_like(w)
    for a in range(0, w.shape[0], batch_size):
        m, _ = model.encode(w[a : a + batch_size], batch_size=batch_size)
        out[a : a + batch_size] = model.decode(m[:, 3:], angle=m[:, 0], shift=m[:, 1:3])
    return out


def r2_score(windows: np.ndarray, approx: np.ndarray) -> float:
    """``1 - Σ(x - x̂)² / Σ(x - x̄)²`` over all pixels, ``x̄`` the windows' mean value (NaN without spread)."""
    x = np.asarray(windows, dtype=np.float64)
    if x.size == 0:
        return float("nan")
    sst = float(((x - x.mean()) ** 2).sum())
    return 1.0 - float(((np.asarray(approx, np.float64) - x) ** 2).sum()) / sst if sst > 0 else float("nan")


def reconstruction_r2(model: Any, windows: np.ndarray, batch_size: int = 1024) -> float:
    """``1 - Σ(x - x̂)² / Σ(x - x̄)²`` over windows ``(N, n, n)``, ``x̂`` decoded from the posterior means."""
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] == 0:
        return float("nan")
    return r2_score(w, reconstructions(model, w, batch_size))


def blurred(windows: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Each window ``(N, n, n)`` smoothed by a Gaussian of ``sigma`` pixels (edges: nearest)."""
    return ndimage.gaussian_filter(np.asarray(windows, np.float32), (0, sigma, sigma), mode="nearest")


def pca_r2(windows: np.ndarray, components: int) -> float:
    """R² (as :func:`r2_score`) of the windows' best description by ``components`` numbers each:
    their mean plus the top principal components, fitted on these windows themselves (in-sample,
    so the baseline is, if anything, favoured)."""
    x = np.asarray(windows, np.float64).reshape(len(windows), -1)
    if x.shape[0] == 0:
        return float("nan")
    mu = x.mean(0)
    u, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
    k = min(components, len(sv))
    return r2_score(x, mu + (u[:, :k] * sv[:k]) @ vt[:k])


def loss_tail(val_loss: Any) -> tuple[float, int]:
    """How much of its improvement the held-out loss still made at the end of training.

    ``(L[e - k] - L[e]) / (L[0] - L[e])`` over the per-epoch held-out losses ``L[0] … L[e]``
    with ``k = max(1, ⌊(e + 1) / 4⌋)``: the share of the whole run's improvement gained in its
    last quarter. Near 0: levelled off; 1 or more: still falling as fast as ever (also when the
    run had only two epochs); NaN with fewer than two epochs (nothing to tell). Returns it and
    the number of epochs.
    """
    v = np.asarray([float(a) for a in val_loss if np.isfinite(float(a))], np.float64)
    if len(v) < 2:
        return float("nan"), len(v)
    k = max(1, len(v) // 4)
    total = v[0] - v[-1]
    tail = v[-1 - k] - v[-1]
    return (float(tail / total) if total > 0 else float("inf") if tail > 0 else 0.0), len(v)


def scrambled(model: Any, seed: int = 12345) -> Any:
    """A negative control for the gate: ``model`` (changed in place, returned) with the angle network of
    its equivariant encoder re-initialised at random. The angle still follows turns (by construction)
    but no longer reads the content's orientation, so the decoder draws walls at the wrong angles."""
    if not hasattr(model.encoder, "head") or not hasattr(model.encoder, "rotations"):
        raise InputError(
            "model",
            f"architecture {model.hparams.get('architecture')!r}",
            "an equivariant rVAE (its angle network is scrambled)",
        )
    with torch.random.fork_rng():  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        for layer in (model.encoder.conv1, model.encoder.conv2, model.encoder.conv3, model.encoder.head):
            layer.reset_parameters()
    return model


def turned(windows: np.ndarray, angle: float) -> np.ndarray:
    """Windows ``(N, n, n)`` turned counter-clockwise as displayed by ``angle`` (radians), cut to a disc.

    Pixels outside the inscribed disc take each window's median; inside,
    bilinear resampling about the window's centre (``angle = 0`` is exact).
    ``angle = π/2`` is ``np.rot90`` of the disc-cut window.
    """
    w = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    n = w.shape[-1]
    grid = coordinate_grid(n)
    disc = (grid.pow(2).sum(-1) <= 1.0 + 1e-6).reshape(n, n)
    fill = w.reshape(w.shape[0], -1).median(dim=1).values[:, None, None]
    if angle == 0.0:
        out = w
    else:
        # the decoder's convention: sampling the content at R(angle)·p turns it counter-clockwise by angle
        src = rotate_translate(grid, float(angle))[0].reshape(1, n, n, 2).expand(w.shape[0], n, n, 2)
        out = F.grid_sample(w.unsqueeze(1), src, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
    return torch.where(disc, out, fill).numpy()


def rotation_check(
    model: Any,
    windows: np.ndarray,
    symmetry: int = 2,
    tolerance_deg: float = 15.0,
    angles_deg: tuple[float, ...] = CHECK_ANGLES,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Does the latent angle follow known turns of the input?

    Returns ``follow`` (fraction of (window, turn) pairs whose angle moved by
    the turn to within ``tolerance_deg``, modulo ``360° / symmetry``) and
    ``median_error_deg`` (median of the absolute misses, degrees).
    """
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] == 0:
        return {"follow": float("nan"), "median_error_deg": float("nan")}
    period = 2 * math.pi / symmetry
    base = model.encode(turned(w, 0.0), batch_size=batch_size)[0][:, 0].astype(np.float64)
    errors = []
    for deg in angles_deg:
        phi = math.radians(deg)
        got = model.encode(turned(w, phi), batch_size=batch_size)[0][:, 0].astype(np.float64)
        miss = (got - base - phi + period / 2) % period - period / 2
        errors.append(np.abs(miss))
    err = np.degrees(np.concatenate(errors))
    return {"follow": float(np.mean(err < tolerance_deg)), "median_error_deg": float(np.median(err))}


def assess(
    model: Any, windows: np.ndarray, symmetry: int, max_windows: int = 512, seed: int = 0, val_loss: Any = None
) -> dict[str, Any]:
    """Every measurement of the gate on (up to ``max_windows`` of, seeded) held-out windows ``(N, n, n)``.

    ``r2`` held-out reconstruction R²; ``r2_blur`` the same after a Gaussian blur of
    :data:`BLUR_SIGMA` px of both windows and reconstructions (pixel noise no model should draw is
    gone); ``r2_pca`` what a PCA with as many numbers per window as the code (``3 + L``) reaches
    on the same windows, and ``r2_gain = r2 - r2_pca``; ``angle_follow`` and
    ``angle_median_error_deg`` the rotation check; ``loss_tail`` and ``epochs`` from the per-epoch
    held-out losses ``val_loss`` (:func:`loss_tail`; NaN when not given). Thresholds are not
    applied here: :func:`judge` does that where the verdict is reported.
    """
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] > max_windows:
        w = w[np.sort(np.random.default_rng(seed).permutation(w.shape[0])[:max_windows])]
    rot = rotation_check(model, w, symmetry)
    rec = reconstructions(model, w) if len(w) else w
    code = 3 + int(model.hparams["latent_dim"])
    r2, r2_pca = r2_score(w, rec), pca_r2(w, code)
    tail, epochs = loss_tail([] if val_loss is None else val_loss)
    return {
        "r2": r2,
        "r2_blur": r2_score(blurred(w), blurred(rec)),
        "r2_pca": r2_pca,
        "r2_gain": r2 - r2_pca,
        "angle_follow": rot["follow"],
        "angle_median_error_deg": rot["median_error_deg"],
        "loss_tail": tail,
        "epochs": epochs,
        "windows": int(w.shape[0]),
        "window": int(model.window),
        "angle_symmetry": int(symmetry),
        "angle_tolerance_deg": 15.0,
        "angle_turns_deg": list(CHECK_ANGLES),
        "blur_sigma_px": BLUR_SIGMA,
        "pca_components": code,
    }


#: The gate's checks: measurement, config key of its threshold (``rvae.quality``), which way passes,
#: what a failure means and what to do about it. ``{n}`` is the window size.
GATE = {
    "r2": (
        "min_r2",
        1,
        "reconstruction",
        "held-out R² = {value:.3f} < {threshold:.3g}",
        "train longer (rvae.epochs for n={n}) or use a smaller window",
    ),
    "r2_blur": (
        "min_r2_blur",
        1,
        "reconstruction",
        "held-out R² after a {blur:g}-px blur = {value:.3f} < {threshold:.3g}",
        "train longer (rvae.epochs for n={n}) or use a smaller window",
    ),
    "r2_gain": (
        "min_r2_gain",
        1,
        "reconstruction",
        "held-out R² {r2:.3f} is {value:+.3f} against a {k}-component PCA (threshold {threshold:+.3g})",
        "train longer (rvae.epochs for n={n}) or use a smaller window",
    ),
    "angle_follow": (
        "min_angle_follow",
        1,
        "orientation",
        "the latent angle follows {pct:.0f}% of known turns of held-out windows within 15° (< {tpct:.0f}%)",
        "train longer (rvae.epochs for n={n}); the angle maps are not orientations",
    ),
    "loss_tail": (
        "max_loss_tail",
        -1,
        "not converged",
        "the held-out loss still fell by {value:.2f} of its whole improvement in the last quarter of "
        "{epochs} epochs (> {threshold:.3g})",
        "train longer: raise rvae.epochs for n={n}",
    ),
}


def threshold_for(value: Any, window: int, key: str) -> float | None:
    """A threshold of ``rvae.quality`` for window size ``window``: a number, a mapping per window size,
    or None (the check is off)."""
    if isinstance(value, Mapping):
        if int(window) not in value and str(window) not in value:
            return None  # no threshold for this size: not checked
        value = value.get(int(window), value.get(str(window)))
    return None if value is None else float(value)


def failures(quality: dict[str, Any], thresholds: Mapping[str, Any], what: str = "rVAE") -> list[tuple[str, str]]:
    """``(kind, warning)`` of every failed check (empty when the model passes).

    ``thresholds`` is the ``rvae.quality`` section (keys of :data:`GATE`; a number, a mapping
    window size → number, or None = off). A measurement that is missing or NaN fails its check
    (e.g. ``loss_tail`` of a one-epoch run: whether it levelled off cannot be told). Each warning
    names what failed (reconstruction, orientation, not converged), the numbers, and what to do.
    """
    n = int(quality.get("window", 0))
    out = []
    for check, (key, sign, kind, text, advice) in GATE.items():
        t = threshold_for(thresholds.get(key), n, key)
        if t is None:
            continue
        v = float(quality.get(check, float("nan")))
        if np.isfinite(v) and (v >= t if sign > 0 else v <= t):
            continue
        detail = (
            text.format(
                value=v,
                threshold=t,
                n=n,
                blur=quality.get("blur_sigma_px", BLUR_SIGMA),
                r2=float(quality.get("r2", float("nan"))),
                k=quality.get("pca_components", "?"),
                pct=100 * v,
                tpct=100 * t,
                epochs=quality.get("epochs", "?"),
            )
            if np.isfinite(v)
            else f"{check} was not measured (NaN: e.g. a run of {quality.get('epochs', '?')} epoch(s))"
        )
        out.append((kind, f"{what}: {kind.upper()} check failed: {detail} (rvae.quality.{key}); {advice.format(n=n)}"))
    return out


def judge(quality: dict[str, Any], thresholds: Mapping[str, Any], what: str = "rVAE") -> list[str]:
    """Plain warnings, one per failed check (empty when the model passes); see :func:`failures`."""
    return [w for _, w in failures(quality, thresholds, what)]


def verdict(quality: dict[str, Any], thresholds: dict[str, Any], what: str = "rVAE") -> dict[str, Any]:
    """The measurements, the thresholds that applied and the verdict: ``passed``, ``failed`` (the kinds
    of check that failed) and ``quality_warning`` (the warnings joined by " | ", "" when passed)."""
    failed = failures(quality, thresholds, what)
    warnings_ = [w for _, w in failed]
    return {
        "measurements": dict(quality),
        "thresholds": _plain_thresholds(thresholds),
        "passed": not warnings_,
        "failed": sorted({k for k, _ in failed}),
        "quality_warning": " | ".join(warnings_),
    }


def _plain_thresholds(thresholds: dict[str, Any]) -> dict[str, Any]:
    """The thresholds of every check (plain numbers, dicts keyed by window size, or None), for JSON."""

    def plain(v):
        return {str(k): float(x) for k, x in v.items()} if isinstance(v, Mapping) else v

    return {key: plain(thresholds.get(key)) for key, *_ in GATE.values()}


def summary(quality: dict[str, Any]) -> str:
    """One line: the held-out measurements."""
    g = quality.get
    return (
        f"held-out R² {g('r2', float('nan')):.3f} (after a {g('blur_sigma_px', BLUR_SIGMA):g}-px blur "
        f"{g('r2_blur', float('nan')):.3f}; "
        f"a {g('pca_components', '?')}-component PCA {g('r2_pca', float('nan')):.3f}); "
        f"latent angle follows {100 * g('angle_follow', float('nan')):.0f}% of known turns within "
        f"{g('angle_tolerance_deg', 15.0):.0f}° (median miss {g('angle_median_error_deg', float('nan')):.1f}°); "
        f"held-out loss tail {g('loss_tail', float('nan')):.3f} over {g('epochs', '?')} epochs "
        f"({g('windows', 0)} windows)"
    )


def warn(log: logging.Logger, quality: dict[str, Any], thresholds: dict[str, Any], what: str = "rVAE") -> list[str]:
    """Log the summary, then each warning at WARNING level; returns the warnings."""
    log.info("%s quality: %s", what, summary(quality))
    msgs = judge(quality, thresholds, what)
    for m in msgs:
        log.warning("%s", m)
    return msgs


def report(checkpoint: str, out: str, thresholds: dict[str, Any]) -> dict[str, Any]:
    """Rule ``rvae_quality``: the verdict on a trained rVAE → ``quality.json``.

    Reads the measurements :func:`assess` stored in ``checkpoint`` (``model.ckpt``; weights not
    loaded), applies ``thresholds`` (the ``rvae.quality`` section) and writes :func:`verdict`'s
    record (``measurements``, ``thresholds``, ``passed``, ``failed``, ``quality_warning``) as JSON;
    the warnings go to the log. A checkpoint without measurements (an older ferrolens) fails with
    a warning that says to retrain. Returns the record.
    """
    import json
    from pathlib import Path

    from ..store import check_checkpoint, write_file_atomic

    path = check_checkpoint(checkpoint, "rvae", "an rVAE checkpoint written by ferrolens.rvae.train (model.ckpt)")
    quality = torch.load(path, map_location="cpu", weights_only=True).get("ferrolens_quality") or {}
    what = f"rVAE n={quality.get('window', '?')}"
    if quality:
        log.info("%s quality: %s", what, summary(quality))
        record = verdict(quality, thresholds, what)
    else:
        text = (
            f"{what}: {checkpoint} records no quality measurements (trained by an older ferrolens); retrain to check it"
        )
        record = {
            "measurements": {},
            "thresholds": _plain_thresholds(thresholds),
            "passed": False,
            "failed": ["unmeasured"],
            "quality_warning": text,
        }
    for text in filter(None, record["quality_warning"].split(" | ")):
        log.warning("%s", text)
    write_file_atomic(Path(out), lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1, default=float)))
    return record
