"""Applying a trained rVAE: :func:`encode` (``rvae_encode``: images, windows, model →
``latents.zarr``, the codes of the sampled windows and the per-pixel latent maps)."""

from __future__ import annotations

import json
import logging
import math
from typing import cast

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
from .maps import iter_latent_maps
from .net import RVAENet, load

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
def _model_checks(model: RVAENet) -> dict:
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


def _window_codes(model: RVAENet, wds: xr.Dataset, index: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-sds ``(len(index), 3 + L)`` float32 of the windows store's samples
    ``index`` (sorted), encoded one by one, ``batch`` at a time."""
    code_mean = np.empty((len(index), len(model.labels)), np.float32)
    code_logsd = np.empty_like(code_mean)
    for a in range(0, len(index), batch):
        block = np.asarray(wds["windows"][index[a : a + batch]].values)
        code_mean[a : a + batch], code_logsd[a : a + batch] = model.encode(block)
    return code_mean, code_logsd


class _CodesFromMaps:
    """The sampled windows' codes read from the per-pixel maps, frame batch by frame batch.

    The map at ``(frame, y, x)`` is the code of the window centred there (:mod:`.maps`), so a sampled
    window costs nothing more once its frame is mapped (encoding the 10,000 windows of the demo one by
    one at ``n = 24`` took longer than mapping its 40 frames). A sample is read from the maps only
    where its stored window equals, to the bit, the window of the mapped images at its frame and centre;
    the others (a windows store cut from other images) are encoded one by one in :meth:`finish`.
    """

    def __init__(self, wds: xr.Dataset, frames: np.ndarray, n: int, n_latent: int):
        self.wds, self.n = wds, n
        where = {v: i for i, v in enumerate(np.asarray(frames).tolist())}
        self.frame = np.array([where.get(v, -1) for v in wds["sample_frame"].values.tolist()], np.int64)
        self.y, self.x = wds["sample_y"].values.astype(np.int64), wds["sample_x"].values.astype(np.int64)
        self.mean = np.full((len(self.frame), n_latent), np.nan, np.float32)
        self.logsd = np.full_like(self.mean, np.nan)
        self.found = np.zeros(len(self.frame), bool)

    def take(self, a: int, images: np.ndarray, mean: np.ndarray, logsd: np.ndarray) -> None:
        """Read the codes of the samples in frames ``a … a + len(images) - 1`` from their maps
        (``images`` ``(F, H, W)`` float32 as mapped; ``mean``, ``logsd`` ``(F, H, W, 3 + L)``)."""
        sel = np.flatnonzero((self.frame >= a) & (self.frame < a + len(images)))
        if not len(sel):
            return
        f, y0, x0 = self.frame[sel] - a, self.y[sel] - self.n // 2, self.x[sel] - self.n // 2
        inside = (y0 >= 0) & (x0 >= 0) & (y0 + self.n <= images.shape[1]) & (x0 + self.n <= images.shape[2])
        sel, f, y0, x0 = sel[inside], f[inside], y0[inside], x0[inside]
        cut = np.lib.stride_tricks.sliding_window_view(images, (self.n, self.n), axis=(1, 2))[f, y0, x0]
        same = (np.asarray(self.wds["windows"][sel].values, np.float32) == cut).all(axis=(1, 2))
        sel, f, yc, xc = sel[same], f[same], y0[same] + self.n // 2, x0[same] + self.n // 2
        self.mean[sel], self.logsd[sel], self.found[sel] = mean[f, yc, xc], logsd[f, yc, xc], True

    def finish(self, model: RVAENet, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """All codes ``(S, 3 + L)``: those not read from the maps encoded one by one."""
        rest = np.flatnonzero(~self.found)
        if len(rest):
            self.mean[rest], self.logsd[rest] = _window_codes(model, self.wds, rest, batch)
        log.info(
            "codes of %d sampled windows read from the maps, %d encoded one by one (their window is not the "
            "mapped images' at their frame and centre)",
            int(self.found.sum()),
            len(rest),
        )
        return self.mean, self.logsd


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
    code_mean: np.ndarray, code_logsd: np.ndarray, wds: xr.Dataset, model: RVAENet, height: int, width: int, attrs: dict
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
    n_frames, height, width = (int(v) for v in images.shape)
    frames = _frame_values(images)
    codes = _CodesFromMaps(wds, frames, n, len(labels))  # (a) the sampled windows' codes, read from (b)
    s_total = len(codes.mean)
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
    head = _codes_dataset(codes.mean, codes.logsd, wds, model, height, width, attrs)  # placeholders until finish
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
        # log-sd maps always (the sampled windows' log-sds are read from them; ~10 % more time), stored if asked
        for a, b, m, s in iter_latent_maps(
            model.encoder, images, logsd=True, chunk_mb=float(c["maps_chunk_mb"]), device=device, progress=True
        ):
            m, s = model._finish(m, s)
            img = np.asarray(images[a:b].values, np.float32)
            codes.take(a, img, m, cast(np.ndarray, s))
            data = {"mean": ((FRAME, Y, X, LATENT), m, map_attrs["mean"])}
            if logsd:
                data["logsd"] = ((FRAME, Y, X, LATENT), s, map_attrs["logsd"])
            conf = angle_confidence(img, n, rule["min_contrast"])
            data["angle_confidence"] = ((FRAME, Y, X), conf, conf_attrs)
            coords = {FRAME: frames[a:b], **{k: (FRAME, v[1][a:b], v[2]) for k, v in along_frame.items()}}
            part = xr.Dataset(data, coords=coords, attrs=attrs)
            yield head.merge(part, combine_attrs="override") if a == 0 else part

    encoding: dict[str, dict[str, tuple[int, ...]]] = {k: {"chunks": chunks} for k in variables}
    encoding["angle_confidence"] = {"chunks": chunks[:3]}

    def finish() -> xr.Dataset:
        mean, sd = codes.finish(model, batch)
        return xr.Dataset(
            {
                "code_mean": head["code_mean"].variable.copy(data=mean),
                "code_logsd": head["code_logsd"].variable.copy(data=sd),
            }
        )

    write_store_streamed(parts(), out, encoding=encoding, finish=finish)
    log.info("wrote latents of %d windows and %d frames (n=%d) to %s", s_total, n_frames, n, out)
