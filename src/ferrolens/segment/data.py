"""The segmentation LightningDataModule: random augmented patches from labelled
frames, validation on held-out labelled frames (or a held-out strip)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence, Sized
from typing import cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import InputError
from ..sections import SegmentAugmentConfig, SegmentTrainConfig
from ..training import EpochSampler
from .augment import augment_pair

_MAX_INDEXED = 200_000  # labelled pixels kept per class and source for centred sampling
MIN_PATCH = 16  # smallest training patch edge (pixels) worth training a U-Net on
log = logging.getLogger(__name__)


class PatchDataset(Dataset):
    """Random ``patch × patch`` crops of the training regions, augmented.

    Item ``k`` is drawn with ``numpy.random.default_rng([seed, k])``. With
    probability ``rare_class_fraction`` the patch is placed over a labelled
    pixel of a class drawn uniformly among the classes present, so that a
    rare class (contaminant) keeps appearing; otherwise uniformly. Items:
    image ``(1, P, P)`` float32, label ``(P, P)`` int64 (−1 unlabelled).
    """

    def __init__(
        self,
        sources: Sequence[tuple[np.ndarray, np.ndarray]],
        patch: int,
        n_classes: int,
        augment: SegmentAugmentConfig,
        seed: int,
        rare_class_fraction: float,
        length: int,
    ) -> None:
        self.sources = list(sources)
        self.patch = patch
        self.augment = augment
        self.seed = int(seed)
        self.rare = float(rare_class_fraction)
        self.length = int(length)
        area = np.array([(im.shape[0] - patch + 1) * (im.shape[1] - patch + 1) for im, _ in self.sources], float)
        self.source_p = area / area.sum()
        index_rng = np.random.default_rng([self.seed, 1 << 20])
        self.by_class: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}
        for c in range(n_classes):
            per_source = []
            for _, lab in self.sources:
                flat = np.flatnonzero(lab.ravel() == c)
                if flat.size > _MAX_INDEXED:
                    flat = np.sort(index_rng.choice(flat, _MAX_INDEXED, replace=False))
                per_source.append(flat)
            cum = np.cumsum([f.size for f in per_source])
            if cum[-1] > 0:
                self.by_class[c] = (per_source, cum)
        self.classes = sorted(self.by_class)

    def __len__(self) -> int:
        return self.length

    def origin(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(source, y0, x0) of a patch."""
        p = self.patch
        if self.classes and rng.random() < self.rare:
            per_source, cum = self.by_class[self.classes[int(rng.integers(len(self.classes)))]]
            j = int(rng.integers(cum[-1]))
            s = int(np.searchsorted(cum, j, side="right"))
            flat = per_source[s][j - (cum[s - 1] if s else 0)]
            h, w = self.sources[s][1].shape
            py, px = divmod(int(flat), w)
            y0 = int(np.clip(py - rng.integers(p), 0, h - p))
            x0 = int(np.clip(px - rng.integers(p), 0, w - p))
            return s, y0, x0
        s = int(rng.choice(len(self.sources), p=self.source_p))
        h, w = self.sources[s][1].shape
        return s, int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))

    def __getitem__(self, k: int):
        rng = np.random.default_rng([self.seed, int(k)])
        s, y0, x0 = self.origin(rng)
        im, lab = self.sources[s]
        p = self.patch
        image, label = augment_pair(im[y0 : y0 + p, x0 : x0 + p], lab[y0 : y0 + p, x0 : x0 + p], rng, self.augment)
        return torch.from_numpy(image)[None], torch.from_numpy(label)


class RegionDataset(Dataset):
    """Whole held-out regions: image ``(1, H, W)`` float32, label ``(H, W)`` int64.

    Index ``len + i`` is region ``i`` with every label ``-1`` (unlabelled): the
    padding of :class:`ShardedEvalSampler`, which counts for
    nothing in the loss and the confusion counts.
    """

    def __init__(self, sources: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        n = len(self.sources)
        im, lab = self.sources[i - n if n <= i < 2 * n else i]
        label = torch.from_numpy(np.ascontiguousarray(lab, np.int64))
        if i >= n:
            label = torch.full_like(label, -1)
        return torch.from_numpy(np.ascontiguousarray(im, np.float32))[None], label


class ShardedEvalSampler(DistributedSampler):
    """Held-out regions of one process of a DDP run: ``rank, rank + W, …`` of ``n``, none twice.

    Lightning's own sampler pads short shards by repeating regions, which would
    count them twice in the confusion counts summed over processes. Here a
    short shard is padded with ``n + i`` instead (``i`` a region it holds),
    which :class:`RegionDataset` answers with that region unlabelled: it counts
    for nothing. All shards have the same length, so every process runs the
    same number of validation steps and reaches the same collectives. Being a
    ``DistributedSampler``, Lightning leaves it in place.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.n = len(cast(Sized, dataset))
        self.num_samples = math.ceil(self.n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        mine = list(range(self.rank, self.n, self.num_replicas))
        held = mine or list(range(self.n))  # fewer regions than processes: pad with any region
        return iter(mine + [self.n + held[i % len(held)] for i in range(self.num_samples - len(mine))])

    def __len__(self) -> int:
        return self.num_samples


def auto_class_weights(counts: np.ndarray) -> list[float]:
    """Cross-entropy weights from label counts: ``w_c ∝ f_c^(−½)``, scaled so the
    frequency-weighted mean is 1 (a damped inverse frequency: the patch sampler
    already over-represents rare classes). A class with no pixel gets the largest weight."""
    counts = np.asarray(counts, dtype=np.float64)
    f = counts / counts.sum()
    w = np.where(f > 0, 1.0 / np.sqrt(np.where(f > 0, f, 1.0)), 0.0)
    w = w / (f * w).sum()
    w[f == 0] = w.max()
    return [float(v) for v in w]


HOLDOUT_SIDES = ("bottom", "right", "top", "left")


def describe_regions(regions: Sequence[dict]) -> str:
    """'frame 0 rows 72–95 (bottom), frame 8 columns 72–95 (right)'"""
    parts = []
    for r in regions:
        rows = r["side"] in ("bottom", "top")
        a, b = r["y"] if rows else r["x"]
        parts.append(f"frame {r['frame']} {'rows' if rows else 'columns'} {a}–{b - 1} ({r['side']})")
    return ", ".join(parts)


def describe_split(split: dict) -> str:
    """One sentence on what was held out to measure the held-out loss and IoU."""
    if split["holdout"] == "regions":
        return f"held out for validation: a strip of each labelled frame — {describe_regions(split['regions'])}"
    return (
        f"held out for validation: whole labelled frames {split['val_frames']} "
        f"(trained on frames {split['train_frames']})"
    )


class SegmentationData(pl.LightningDataModule):
    """Training patches and validation regions from a few labelled frames.

    Parameters
    ----------
    images : ``(n, H, W)`` float32 normalised frames that carry labels.
    labels : ``(n, H, W)`` int class indices, −1 = unlabelled.
    frames : ``(n,)`` movie frame index of each.
    n_classes : classes of the model; label values must be < n_classes.
    train_cfg, augment_cfg : the ``segment.train`` and ``segment.augment`` sections.
    seed : seed of patch positions and augmentation.
    where : name of the labels file, for error messages.

    The split is made (and bad input rejected) on construction. By default
    (``holdout: regions``) every labelled frame holds out a strip of
    ``val_fraction`` of its height (or width) at one edge — bottom, right, top,
    left in turn over the labelled frames — and trains on the rest, so that two
    or three labelled frames all train the model. ``holdout: frames`` holds out
    a ``val_fraction`` of the labelled frames, evenly spread (one labelled
    frame: a strip); frames listed in ``val_frames`` are held out whole.
    ``split`` records it: ``holdout``, ``train_frames``, ``val_frames`` and the
    held-out ``regions`` (frame, side, y and x ranges); :func:`describe_split`
    says it in words.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        frames: Sequence[int],
        n_classes: int,
        train_cfg: SegmentTrainConfig,
        augment_cfg: SegmentAugmentConfig,
        seed: int = 0,
        where: str = "labels",
    ) -> None:
        super().__init__()
        self.cfg, self.augment, self.seed, self.n_classes = train_cfg, augment_cfg, int(seed), n_classes
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels).astype(np.int64)
        frames = [int(f) for f in frames]
        bad = (labels < -1) | (labels >= n_classes)
        if bad.any():
            raise InputError(
                where,
                f"label values {sorted(np.unique(labels[bad]).tolist())[:10]} outside the {n_classes} classes",
                f"class indices 0…{n_classes - 1} or −1 (unlabelled)",
            )
        labelled = [i for i in range(len(frames)) if (labels[i] >= 0).any()]
        if not labelled:
            raise InputError(
                where, "no labelled pixel in any frame (all −1 or no frames)", "at least one frame with labelled pixels"
            )
        self.train_sources, self.val_sources, self.split = self._split(images, labels, frames, labelled, where)
        counts = np.zeros(n_classes, np.int64)
        for _, lab in self.train_sources + self.val_sources:
            counts += np.bincount(lab[lab >= 0], minlength=n_classes)
        if (counts > 0).sum() < 2:
            only = int(np.flatnonzero(counts)[0])
            raise InputError(
                where, f"all labelled pixels are class {only}", "at least two classes among the labelled pixels"
            )
        self.train_counts = np.zeros(n_classes, np.int64)
        for _, lab in self.train_sources:
            self.train_counts += np.bincount(lab[lab >= 0], minlength=n_classes)
        for c in np.flatnonzero(self.train_counts == 0):
            warnings.warn(
                f"{where}: class {c} has no labelled pixel in the training part; the model cannot learn it",
                stacklevel=2,
            )
        p = self.patch_size = self._fit_patch(int(train_cfg["patch_size"]))
        n = int(train_cfg["steps_per_epoch"]) * int(train_cfg["batch_size"])
        self.train_set = PatchDataset(
            self.train_sources, p, n_classes, augment_cfg, self.seed, train_cfg["rare_class_fraction"], n
        )
        self.val_set = RegionDataset(self.val_sources)
        # indices unique over epochs: each patch is drawn from its index (see PatchDataset)
        self.sampler = EpochSampler(n)

    def _fit_patch(self, p: int) -> int:
        """The training patch edge: ``patch_size``, or, when a training region is smaller (small
        frames, a held-out strip), the largest multiple of 8 that fits, said in the log. A region
        under MIN_PATCH pixels is too small to train a U-Net on."""
        (im, _), f = min(
            zip(self.train_sources, self.split["train_frames"], strict=False), key=lambda s: min(s[0][0].shape)
        )
        fit = min(im.shape)
        if p <= fit:
            return p
        if fit < MIN_PATCH:
            raise InputError(
                "config segment.train.patch_size",
                f"patch size {p} is larger than the training region {im.shape[0]}×{im.shape[1]} of frame {f}",
                f"training regions of at least {MIN_PATCH}×{MIN_PATCH} pixels "
                "(larger frames, or a smaller segment.train.val_fraction)",
            )
        new = fit - fit % 8
        log.warning(
            "config segment.train.patch_size = %d is larger than the training region %d×%d of frame %d: "
            "training on %d×%d patches instead",
            p,
            im.shape[0],
            im.shape[1],
            f,
            new,
            new,
        )
        return new

    def _split(self, images, labels, frames, labelled, where):
        vf, frac = self.cfg["val_frames"], float(self.cfg["val_fraction"])
        labelled_frames = [frames[i] for i in labelled]
        if vf is not None:
            missing = sorted(set(vf) - set(labelled_frames))
            if missing or not vf:
                raise InputError(
                    "config segment.train.val_frames",
                    f"frames {missing or vf} are not labelled",
                    f"a non-empty subset of the labelled frames {labelled_frames}",
                )
            val = [i for i in labelled if frames[i] in set(vf)]
            train = [i for i in labelled if frames[i] not in set(vf)]
            if not train:
                raise InputError(
                    "config segment.train.val_frames",
                    f"{vf} holds out every labelled frame",
                    "at least one labelled frame left for training",
                )
        elif self.cfg["holdout"] == "frames" and len(labelled) >= 2:
            n_val = min(max(1, round(frac * len(labelled))), len(labelled) - 1)
            pos = set(((np.arange(n_val) + 0.5) * len(labelled) / n_val).astype(int).tolist())
            val = [labelled[j] for j in sorted(pos)]
            train = [i for i in labelled if i not in val]
        else:
            return self._split_regions(images, labels, frames, labelled, frac, where)
        split = {
            "holdout": "frames",
            "train_frames": [frames[i] for i in train],
            "val_frames": [frames[i] for i in val],
            "regions": [],
        }
        return ([(images[i], labels[i]) for i in train], [(images[i], labels[i]) for i in val], split)

    def _split_regions(self, images, labels, frames, labelled, frac, where):
        """Every labelled frame trains on most of itself and holds out a strip at one edge, a
        different edge for each frame in turn (bottom, right, top, left), so that a few labelled
        frames all train the model and the held-out pixels come from each of them."""
        h, w = images.shape[1:]
        train, val, regions = [], [], []
        for k, i in enumerate(labelled):
            side = HOLDOUT_SIDES[k % len(HOLDOUT_SIDES)]
            axis = 0 if side in ("bottom", "top") else 1
            size = (h, w)[axis]
            cut = max(1, round(frac * size))
            held = slice(size - cut, size) if side in ("bottom", "right") else slice(0, cut)
            kept = slice(0, size - cut) if side in ("bottom", "right") else slice(cut, size)
            sl_val = (held, slice(None)) if axis == 0 else (slice(None), held)
            sl_train = (kept, slice(None)) if axis == 0 else (slice(None), kept)
            train.append((images[i][sl_train], labels[i][sl_train]))
            val.append((images[i][sl_val], labels[i][sl_val]))
            ys, xs = (held, slice(0, w)) if axis == 0 else (slice(0, h), held)
            regions.append({"frame": frames[i], "side": side, "y": [ys.start, ys.stop], "x": [xs.start, xs.stop]})
        for parts, name in ((train, "training"), (val, "held-out")):
            if not any((lab >= 0).any() for _, lab in parts):
                raise InputError(
                    where,
                    f"no labelled pixel in the {name} part of the labelled frames "
                    f"{[frames[i] for i in labelled]} (held out: {describe_regions(regions)})",
                    "labels that reach the frame edges, or segment.train.val_fraction changed",
                )
        split = {
            "holdout": "regions",
            "train_frames": [frames[i] for i in labelled],
            "val_frames": [frames[i] for i in labelled],
            "regions": regions,
        }
        return train, val, split

    def class_weights(self) -> list[float]:
        """Weights per ``train.class_weights``: ``auto`` (from training label
        frequencies), ``none`` (uniform) or the list given."""
        cw = self.cfg["class_weights"]
        if cw == "auto":
            return auto_class_weights(self.train_counts)
        if cw == "none":
            return [1.0] * self.n_classes
        if len(cw) != self.n_classes:
            raise InputError(
                "config segment.train.class_weights",
                f"{len(cw)} weights {cw}",
                f"one weight per class ({self.n_classes})",
            )
        return [float(w) for w in cw]

    def train_dataloader(self) -> DataLoader:
        nw = int(self.cfg["num_workers"])
        return DataLoader(
            self.train_set,
            batch_size=int(self.cfg["batch_size"]),
            sampler=self.sampler,
            num_workers=nw,
            persistent_workers=nw > 0,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            # each process validates its own regions, none twice (IoU counts are summed over processes)
            sampler = ShardedEvalSampler(self.val_set, trainer.world_size, trainer.global_rank)
            return DataLoader(self.val_set, batch_size=1, sampler=sampler)
        return DataLoader(self.val_set, batch_size=1, shuffle=False)
