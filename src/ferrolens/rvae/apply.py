"""Applying a trained rVAE: :func:`encode` (``rvae_encode``: images, windows, model →
``latents.zarr``, the codes of the sampled windows and the per-pixel latent maps)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import xarray as xr

from ..config import Partial
from ..errors import InputError
from ..parallel import device_for, set_threads
from ..sections import RvaeConfig
from ..store import (
    BIAS,
    FRAME,
    LATENT,
    SAMPLE,
    UNITS,
    WX,
    WY,
    X,
    Y,
    open_store,
    provenance,
    sha256_file,
    write_store_streamed,
)
from . import quality as _quality
from .confidence import angle_confidence, store_attrs
from .config import resolve_config
from .inputs import CENTRE, _bias, _frame_values, _source_attrs, check_images
from .learn import load
from .maps import iter_latent_maps
from .model import RVAE

log = logging.getLogger(__name__)


PADDING = (
    "reflect (numpy.pad mode='reflect', mirror without repeating the edge pixel): "
    "n//2 pixels before and n - 1 - n//2 after on each axis, so every pixel has a centred window"
)


ANGLE_DOC = (
    "angle: radians, rotation of the decoded content counter-clockwise as displayed (row 0 at top); "
    "the decoder samples its template at R(angle)·p + (dx, dy) for pixel coordinates p in [-1, 1]^2. "
    "Line-like content (walls) is pi-periodic: compare angles modulo pi, circularly. "
    "dx, dy: grid units, 1 = (n - 1)/2 pixels; the content appears moved by -(dx, dy). z: dimensionless."
)


def latent_units(latent_dim: int) -> list[str]:
    """Units along the latent axis: ``rad, grid, grid, 1, 1 …``."""
    return ["rad", "grid", "grid"] + ["1"] * latent_dim


# --- rvae_encode --------------------------------------------------------------------------------
def _model_checks(model: RVAE) -> dict:
    """The model's recorded quality measurements (logged here; judged by rule rvae_quality, not here:
    a threshold re-encodes nothing)."""
    n, quality = model.window, model.quality or {}
    if quality:
        log.info("rVAE n=%d quality: %s", n, _quality.summary(quality))
    else:
        log.warning(
            "rVAE n=%d: the checkpoint records no quality checks (trained by an older ferrolens); retrain to check it",
            n,
        )
    return quality


def _window_codes(model: RVAE, wds: xr.Dataset, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-sds ``(S, 3 + L)`` float32 of a windows store's windows, ``batch`` at a time."""
    s_total = wds.sizes[SAMPLE]
    code_mean = np.empty((s_total, len(model.labels)), np.float32)
    code_logsd = np.empty_like(code_mean)
    for a in range(0, s_total, batch):
        block = np.asarray(wds["windows"][a : a + batch].values)
        code_mean[a : a + batch], code_logsd[a : a + batch] = model.encode(block)
    return code_mean, code_logsd


def _along_frame(images: xr.DataArray) -> dict[str, tuple]:
    """The coordinates along ``frame`` to carry into the latents store, bias (V) always."""
    along = {
        str(k): (FRAME, np.asarray(images[k].values), dict(images[k].attrs))
        for k, c in images.coords.items()
        if k != FRAME and c.dims == (FRAME,)
    }
    along.setdefault(BIAS, (FRAME, _bias(images), {}))
    along[BIAS][2].update(units=UNITS[BIAS], long_name="applied bias")
    return along


def _codes_dataset(
    code_mean: np.ndarray, code_logsd: np.ndarray, wds: xr.Dataset, model: RVAE, height: int, width: int, attrs: dict
) -> xr.Dataset:
    """The latents store's first part: the sampled windows' codes with their sample coordinates, the
    latent axis (labels, units) and the frame grid."""
    latent_attrs = {"long_name": "latent variable", "doc": ANGLE_DOC}
    return xr.Dataset(
        {
            "code_mean": ((SAMPLE, LATENT), code_mean, {"long_name": "posterior mean of the sampled windows"}),
            "code_logsd": (
                (SAMPLE, LATENT),
                code_logsd,
                {"long_name": "posterior log standard deviation of the sampled windows"},
            ),
        },
        coords={
            SAMPLE: wds[SAMPLE].values,
            **{
                k: (SAMPLE, wds[k].values, dict(wds[k].attrs))
                for k in ("sample_frame", "sample_y", "sample_x", "sample_bias")
            },
            LATENT: (LATENT, np.array(model.labels, dtype=object), latent_attrs),
            "latent_units": (LATENT, np.array(latent_units(model.cfg["latent_dim"]), dtype=object)),
            Y: np.arange(height),
            X: np.arange(width),
            "window": model.window,
        },
        attrs=attrs,
    )


def encode(
    images: xr.DataArray, windows: str, checkpoint: str, out: str, cfg: Partial[RvaeConfig], threads: int
) -> None:
    """Encode the sampled windows and every pixel of every frame → ``latents.zarr``.

    The store holds (``L`` = latent_dim, labels ``angle, dx, dy, z1 … zL``,
    ``latent_units`` ``rad, grid, grid, 1 …``):

    * ``code_mean(sample, latent)``, ``code_logsd(sample, latent)``: the windows
      of ``windows`` with ``sample_frame``, ``sample_y``, ``sample_x``,
      ``sample_bias`` as in the windows store;
    * ``mean(frame, y, x, latent)`` (and ``logsd`` when ``cfg["maps_logsd"]``):
      the code of the window centred on each pixel, reflect padding (attrs
      ``padding``, ``origin``), computed fully convolutionally and streamed to
      disk in frame batches (memory bounded by ``cfg["maps_chunk_mb"]``), with
      a progress bar over frames; ``bias`` (and ``time``) along ``frame``;
    * ``angle_confidence(frame, y, x)`` in [0, 1]: where the angle is
      determined (:mod:`ferrolens.rvae.confidence`, ``cfg["angle_confidence"]``;
      the rule and thresholds in its attrs), from the same input windows.

    Log-sd of dx, dy is NaN and their mean 0 for a model without translation.
    The store is written beside ``out`` and renamed into place when complete.
    """
    c = resolve_config(cfg)
    set_threads(threads)
    model = load(checkpoint)
    n = model.window
    check_images(images, n)
    wds = open_store(windows, "windows")
    if (wds.sizes.get(WY), wds.sizes.get(WX)) != (n, n):
        raise InputError(
            windows,
            f"windows are {wds.sizes.get(WY)}×{wds.sizes.get(WX)} pixels",
            f"{n}×{n} windows to match the model {checkpoint}",
        )
    device = device_for(str(c["accelerator"]), "config rvae.accelerator")
    model.to(device)
    labels = model.labels
    batch = max(1, int(c["encode_batch"]))
    quality = _model_checks(model)
    code_mean, code_logsd = _window_codes(model, wds, batch)  # (a) the sampled windows' codes
    s_total = len(code_mean)
    n_frames, height, width = (int(v) for v in images.shape)
    frames = _frame_values(images)
    along_frame = _along_frame(images)
    attrs = provenance(
        "latents",
        c,
        window=n,
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_file(checkpoint),
        windows=str(windows),
        padding=PADDING,
        origin=CENTRE,
        latent_doc=ANGLE_DOC,
        hyper_parameters=json.dumps(dict(model.hparams), sort_keys=True),
        **_source_attrs(images),
        quality=json.dumps(quality, sort_keys=True),
        quality_r2=float(quality.get("r2", np.nan)),
        quality_angle_follow=float(quality.get("angle_follow", np.nan)),
        angle_period=2 * math.pi / model.cfg["angle_symmetry"],
    )
    head = _codes_dataset(code_mean, code_logsd, wds, model, height, width, attrs)
    map_attrs = {
        "mean": {"long_name": "posterior mean of the window centred on each pixel"},
        "logsd": {"long_name": "posterior log standard deviation of the window centred on each pixel"},
    }
    chunks = (1, min(height, 1024), min(width, 1024), len(labels))

    logsd = bool(c["maps_logsd"])
    variables = ["mean", "logsd"] if logsd else ["mean"]
    rule = c["angle_confidence"]
    conf_attrs = store_attrs(n, rule["min_contrast"], rule["min_coherence"])

    def parts():
        """The codes with the first frame batch, then one batch of maps after another."""
        for a, b, m, s in iter_latent_maps(
            model.encoder, images, logsd=logsd, chunk_mb=float(c["maps_chunk_mb"]), device=device, progress=True
        ):
            m, s = model._finish(m, s)
            data = {"mean": ((FRAME, Y, X, LATENT), m, map_attrs["mean"])}
            if logsd:
                data["logsd"] = ((FRAME, Y, X, LATENT), s, map_attrs["logsd"])
            conf = angle_confidence(np.asarray(images[a:b].values, np.float32), n, rule["min_contrast"])
            data["angle_confidence"] = ((FRAME, Y, X), conf, conf_attrs)
            coords = {FRAME: frames[a:b], **{k: (FRAME, v[1][a:b], v[2]) for k, v in along_frame.items()}}
            part = xr.Dataset(data, coords=coords, attrs=attrs)
            yield head.merge(part, combine_attrs="override") if a == 0 else part

    encoding: dict[str, dict[str, tuple[int, ...]]] = {k: {"chunks": chunks} for k in variables}
    encoding["angle_confidence"] = {"chunks": chunks[:3]}
    write_store_streamed(parts(), out, encoding=encoding)
    log.info("wrote latents of %d windows and %d frames (n=%d) to %s", s_total, n_frames, n, out)
