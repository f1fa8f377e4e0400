"""Write the real-shaped fixtures of the end-to-end tests (tests/test_own_movie.py).

Each is a movie in a microscopist's format, as it would come off an instrument
or out of a lab's export script, made from the demo generator so that it is
small and its truth is known:

- ``tiff/``: ``movie.tif``, a 16-bit multi-page TIFF (16 frames of 96², pixel
  size 0.5 nm in its resolution tags); ``bias.csv`` (frame,bias,time) for the
  triangular sweep; ``label_000.png`` and ``label_008.png``, 8-bit class maps
  (0 background, 1 wall, 2 contaminant) of frames 0 and 8.
- ``png_frames/``: ``frames/frame_1.png`` … ``frame_12.png`` (8-bit; natural
  order, so frame_10 comes after frame_9), a time series with no bias;
  ``labels/label_1.png``, ``labels/label_7.png``, class maps of frames 0 and 6.

Run from the repository root: ``python .test/make_fixtures.py`` (deterministic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ferrolens.synthetic import make_demo

HERE = Path(__file__).resolve().parent


def tiff_movie(out: Path) -> None:
    ds = make_demo(n_frames=16, size=96, seed=5, needles_per_family=5, n_contaminants=2)
    out.mkdir(parents=True, exist_ok=True)
    counts = np.clip(ds.image.values * 40000, 0, 65535).astype(np.uint16)
    # 0.5 nm pixels: 2e7 pixels per cm (ResolutionUnit 3 = cm)
    tifffile.imwrite(
        out / "movie.tif", counts, resolution=(2e7, 2e7), resolutionunit=3, metadata=None, photometric="minisblack"
    )
    with open(out / "bias.csv", "w") as fh:
        fh.write("frame,bias,time\n")
        for f, (b, t) in enumerate(zip(ds.bias.values, ds.time.values, strict=True)):
            fh.write(f"{f},{b:.4f},{t:.3f}\n")
    for f in (0, 8):
        Image.fromarray(ds.class_map.values[f].astype(np.uint8)).save(out / f"label_{f:03d}.png")


def png_frames(out: Path) -> None:
    ds = make_demo(n_frames=12, size=80, seed=6, needles_per_family=4, n_contaminants=2)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    img = ds.image.values
    lo, hi = np.percentile(img, [0.5, 99.5])
    grey = np.clip((img - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    for f in range(len(grey)):
        Image.fromarray(grey[f]).save(out / "frames" / f"frame_{f + 1}.png")
    for f in (0, 6):
        Image.fromarray(ds.class_map.values[f].astype(np.uint8)).save(out / "labels" / f"label_{f + 1}.png")


if __name__ == "__main__":
    tiff_movie(HERE / "tiff")
    png_frames(HERE / "png_frames")
