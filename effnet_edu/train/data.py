"""ImageNet-style data for training: a folder dataset that survives bad files, the paper's minival split, the
training/evaluation transforms, and a sampler that can resume in the middle of an epoch.

Layout (torchvision's ImageFolder convention; sorted ImageNet wnids give the standard class indices):

    DATA/train/<class>/*.JPEG     DATA/val/<class>/*.JPEG
"""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from .. import images
from ..images import eval_transform  # noqa: F401  (evaluation uses the library's crop: res / (res + 32))

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A dataset folder that cannot be used (missing, no classes, no images); the message names the path."""


def scan_folder(root, classes: list[str] | None = None) -> tuple[list[tuple[str, int]], list[str], list[str]]:
    """(samples as (path, class index), class names, empty class folders). ``classes`` fixes the class order (e.g.
    val uses train's classes). Files are sorted so every run, on every machine, sees the same list."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {str(root)!r} does not exist (expected {root}/<class>/<image files>)")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root} has no class subfolders: expected {root}/<class>/<image files>")
    samples, empty = [], []
    for index, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []
        if not files:
            empty.append(str(folder))
        samples += [(str(p), index) for p in files]
    if not samples:
        raise DataError(f"{root} has class folders but no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        # An empty class keeps its index (labels must match val/ and the 1000 ImageNet classes) but can never be
        # learned: say so loudly, once, at start-up rather than hours later.
        warnings.warn(f"{len(empty)} empty class folder(s), kept as classes with no images: "
                      f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}", stacklevel=2)
    return samples, classes, empty


def minival_split(samples: list[tuple[str, int]], size: int = 25000, seed: int = 0,
                  max_fraction: float = 0.05, fallback_fraction: float = 0.02) -> tuple[list[int], list[int]]:
    """Hold out ``size`` training images as minival (Section 5.2: "25K randomly picked images"), stratified by
    class, disjoint from the rest, identical every run for a given seed. Returns (train indices, minival indices).

    Per class c with n_c images the quota is size * n_c / N, rounded by largest remainder so the total is exactly
    ``size``. When ``size`` would take more than ``max_fraction`` of the data (ImageNet: 25,000 / 1,281,167 = 2%),
    the dataset is "too small" for it and each class gives ``fallback_fraction`` of its images instead, rounded,
    at least 1 (and never its last image). ``size=0`` disables the split."""
    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(samples):
        by_class.setdefault(label, []).append(i)
    total = len(samples)
    if size <= 0:
        return list(range(total)), []
    if size > max_fraction * total:
        quota = {c: min(max(1, round(fallback_fraction * len(ix))), len(ix) - 1) for c, ix in by_class.items()}
    else:
        exact = {c: size * len(ix) / total for c, ix in by_class.items()}
        quota = {c: math.floor(q) for c, q in exact.items()}
        by_remainder = sorted(exact, key=lambda c: (-(exact[c] - quota[c]), c))
        for c in by_remainder[: size - sum(quota.values())]:
            quota[c] += 1
    held = []
    for c, ix in sorted(by_class.items()):
        rng = random.Random(f"minival-{seed}-{c}")  # per-class stream: adding a class changes no other class
        held += sorted(rng.sample(ix, quota[c]))
    held_set = set(held)
    return [i for i in range(total) if i not in held_set], sorted(held)


def augment_transform(resolution: int, augment: str = "autoaugment", randaugment_n: int = 2,
                      randaugment_m: int = 9, source: str = "ours") -> T.Compose:
    """The recipe's training transform: ``images.train_transform`` (random-resized crop: area 8%-100%, aspect
    3/4-4/3, bicubic; flip; normalise for the weights ``source``) with AutoAugment's ImageNet policy (Section 5.2)
    inserted after the flip, or RandAugment, or nothing. The policy goes before ToTensor because torchvision's
    policies work on the 0..255 image."""
    transform = images.train_transform(resolution, source)
    if augment == "autoaugment":
        transform.transforms.insert(2, T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    elif augment == "randaugment":
        transform.transforms.insert(2, T.RandAugment(randaugment_n, randaugment_m))
    elif augment != "none":
        raise ValueError(f"augment must be 'autoaugment', 'randaugment' or 'none', got {augment!r}")
    return transform


def make_demo_folder(root, classes: int = 4, per_class: int = 12, val_per_class: int = 4, size=(64, 48),
                     seed: int = 0) -> Path:
    """Write a tiny ImageNet-style folder (root/train/<wnid>/*.JPEG, root/val/...) for demos and tests: each class
    is a colour tint plus noise, so a tiny model can learn it in a few dozen steps."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            tint = np.array([(c * 97) % 256, (c * 151 + 60) % 256, (c * 41 + 120) % 256])
            for i in range(n):
                pixels = (0.7 * tint + rng.integers(0, 80, (size[1], size[0], 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{c}_{i}.JPEG", quality=90)
    return root


class FolderDataset(torch.utils.data.Dataset):
    """Images from ``samples``; item ``(epoch, index)`` (what ``ResumableSampler`` yields) or a plain ``index``.

    Augmentation randomness is seeded from (seed, epoch, index): each sample's crop is a pure function of where it
    is in training, whatever the worker, process count or resume point, which is what makes resume bit-exact and
    DDP match a single process. An unreadable file (corrupt, truncated, not an image) is replaced by the next
    readable sample and its path is returned as the third element (``""`` when the sample is fine), so the
    training loop counts and reports it instead of crashing hours in."""

    def __init__(self, samples, transform, seed: int = 0, skip_bad: bool = True):
        self.samples, self.transform, self.seed, self.skip_bad = samples, transform, seed, skip_bad

    def __len__(self):
        return len(self.samples)

    def load(self, index: int, epoch: int):
        path, label = self.samples[index]
        with Image.open(path) as im:
            image = im.convert("RGB")  # decodes fully: a truncated JPEG raises here, not later
        with torch.random.fork_rng(devices=[]):  # never disturb the global RNG (dropout masks)
            torch.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            return self.transform(image), label

    def __getitem__(self, key):
        return first_readable(self, key)


def first_readable(dataset, key) -> tuple:
    """Item ``(epoch, index)`` of a dataset with ``samples``, ``skip_bad`` and ``load(i, epoch)``: the loaded item
    plus "" or, when that file is broken and ``skip_bad`` is on, the next readable one plus the broken file's
    description (the CPU and the GPU input paths replace bad images the same way)."""
    epoch, index = key if isinstance(key, tuple) else (0, key)
    bad = ""
    for attempt in range(len(dataset.samples)):
        i = (index + attempt) % len(dataset.samples)
        try:
            return (*dataset.load(i, epoch), bad)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            if not dataset.skip_bad:
                raise DataError(f"cannot read image {dataset.samples[i][0]}: {type(exc).__name__}: {exc}") from exc
            bad = bad or f"{dataset.samples[i][0]} ({type(exc).__name__}: {exc})"
    raise DataError(f"no readable image among {len(dataset.samples)} files (first: {bad})")


class ResumableSampler(torch.utils.data.Sampler):
    """Distributed sampler with a deterministic permutation per epoch and a start offset, so a run stopped after
    k batches can resume at batch k + 1 of the same epoch. Yields (epoch, index).

    Rank r of R takes positions r, r + R, r + 2R ... of the epoch's permutation (the tail that does not fill a
    global batch is dropped), so the b-th global batch is the same set of images for any number of processes."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True):
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed, self.shuffle, self.epoch, self.start = seed, shuffle, 0, 0
        self.batches = size // batch_size  # global batches per epoch (drop_last: equal batches on every rank)
        if self.batches == 0:
            raise DataError(f"the training set has {size} images, fewer than one global batch of {batch_size}")

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch

    def __len__(self):
        return (self.batches - self.start) * self.batch_size // self.world_size

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.size)
        order = order[self.start * self.batch_size: self.batches * self.batch_size]
        return iter([(self.epoch, int(i)) for i in order[self.rank:: self.world_size]])
