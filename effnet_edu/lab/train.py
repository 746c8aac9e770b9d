"""The scaling lab's trainer: one recipe for every classroom model, small enough that a model trains in about a
minute on two CPU cores.

The recipe (the same for every family and every point; only the seed changes):
AdamW (lr 3e-3, weight decay 0.02, batch 64), one linear warmup epoch then cosine decay to zero, label smoothing
0.1, dropout 0.1 before the classifier, no stochastic depth and no flips (a mirror image would turn 45-degree
stripes into 135-degree ones: another class). After the last step BatchNorm's running statistics are recomputed as
plain averages over 1,024 training images ("precise BN"): short runs otherwise carry statistics of the early,
random weights. Weights are then rounded to float16, the format of the stored checkpoints, so every reported
accuracy is exactly what the stored checkpoint gives.

The paper's ImageNet recipe (RMSProp, 350 epochs, EMA, AutoAugment: ``effnet_edu.train``) is for ImageNet;
this one is tuned for minutes, not days.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import CLASSES, make_dataset
from .families import Point, build_point, macs, params

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics, as for our other models


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a run besides the point and the seed; stored next to every result."""

    train_images: int = 12000
    val_images: int = 2000
    test_images: int = 2000
    epochs: int = 3
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.02
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.1
    bn_images: int = 1024
    # data seeds: fixed, and different, for each split
    seed_train: int = 0
    seed_val: int = 1
    seed_test: int = 2


RECIPE = Recipe()
QUICK = Recipe(train_images=640, val_images=160, test_images=160, epochs=1)


def _cache_dir() -> Path:
    return Path(os.environ.get("EFFNET_EDU_CACHE", Path.home() / ".cache" / "effnet-edu")) / "lab"


@lru_cache(maxsize=8)
def split(name: str, recipe: Recipe = RECIPE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 128, 128, 3), masks bool (N, 128, 128), labels int64 (N,)) of "train", "val" or "test".

    Generated from the recipe's seed (about 2 ms an image) and cached on disk, so a second process loads it."""
    n, seed = {"train": (recipe.train_images, recipe.seed_train), "val": (recipe.val_images, recipe.seed_val),
               "test": (recipe.test_images, recipe.seed_test)}[name]
    return dataset(name, n, seed)


@lru_cache(maxsize=8)
def dataset(name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``make_dataset(n, seed)`` as tensors, cached on disk under ``name``."""
    path = _cache_dir() / f"{name}-n{n}-s{seed}-v3.npz"
    try:
        with np.load(path) as z:
            arrays = z["images"], z["masks"], z["labels"]
    except (OSError, KeyError, ValueError):
        arrays = make_dataset(n, seed)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, images=arrays[0], masks=arrays[1], labels=arrays[2])
            tmp.replace(path)
        except OSError:
            pass  # a read-only home: regenerate next time
    images, masks, labels = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    return images, masks, labels


@lru_cache(maxsize=4)
def resized(name: str, resolution: int, recipe: Recipe = RECIPE) -> torch.Tensor:
    """A split's images at the model's resolution, (N, 3, r, r) uint8 (antialiased bilinear, computed once)."""
    images = split(name, recipe)[0]
    out = torch.empty(len(images), 3, resolution, resolution, dtype=torch.uint8)
    for i in range(0, len(images), 500):
        out[i:i + 500] = resize(images[i:i + 500].permute(0, 3, 1, 2), resolution)
    return out


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(B, 3, 128, 128) uint8 -> (B, 3, r, r) uint8: antialiased bilinear, rounded (per image, so a batch gives
    exactly what ``resized`` gives for the whole split)."""
    if resolution == images.shape[-1]:
        return images
    out = torch.empty(len(images), 3, resolution, resolution, dtype=torch.uint8)
    for i in range(0, len(images), 64):  # in chunks: the float copy of a chunk stays in cache (2x faster)
        x = F.interpolate(images[i:i + 64].float(), size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False)
        out[i:i + 64] = x.round().clamp(0, 255).to(torch.uint8)
    return out


def normalise(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, r, r) uint8 -> float, normalised with ImageNet's mean and std."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std


def lr_at(step: int, total: int, steps_per_epoch: int, recipe: Recipe) -> float:
    warmup = max(1, int(recipe.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def precise_bn(model: torch.nn.Module, images: torch.Tensor, batch: int = 128) -> None:
    """Recompute every BatchNorm's running mean/variance as the plain average over ``images`` (B, 3, r, r) uint8.
    Only BatchNorm runs in training mode, so dropout stays off."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches seen
        bn.train()
    for i in range(0, len(images), batch):
        model(normalise(images[i:i + batch]))
    for bn, momentum in zip(norms, saved):
        bn.momentum = momentum
    model.eval()


def to_half(model: torch.nn.Module) -> dict:
    """Round the weights to float16 (the stored format) in place; return the float16 state dict to store."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return state


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 250) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on uint8 images at its resolution."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += int((model(normalise(images[i:i + batch])).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(images)


def fit(build, resolution: int, seed: int = 0, recipe: Recipe = RECIPE, progress=None,
        what: object = "model") -> tuple[torch.nn.Module, dict]:
    """The recipe's training loop for any network: seed torch, ``build()`` it, train it on the lab's training split
    at ``resolution``, recompute BatchNorm (precise BN) and round the weights to float16. Returns the model (eval
    mode) and {"train_seconds", "threads", "final_loss"}. ``train_model`` (a lab point) and the baseline search
    (``search.py``: a searched network) both train through here, so one recipe means one loop.

    ``progress(step, total, loss)`` is called every 20 steps (a progress bar, a plot); ``what`` names the network
    in errors."""
    images, labels = resized("train", resolution, recipe), split("train", recipe)[2]
    torch.manual_seed(seed)
    model = build()
    decay = [p for p in model.parameters() if p.dim() > 1]  # no weight decay on BatchNorm and biases
    rest = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)
    steps_per_epoch = len(images) // recipe.batch
    total = recipe.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    step, losses = 0, []
    for _epoch in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * recipe.batch:(i + 1) * recipe.batch]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, steps_per_epoch, recipe)
            loss = F.cross_entropy(model(normalise(images[idx])), labels[idx], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == total:
                losses.append(float(loss.detach()))
                if not math.isfinite(losses[-1]):
                    raise FloatingPointError(f"{what}: the loss became {losses[-1]} at step {step}")
                if progress is not None:
                    progress(step, total, losses[-1])
    precise_bn(model, images[:recipe.bn_images])
    seconds = time.perf_counter() - start
    to_half(model)
    return model, {"train_seconds": round(seconds, 1), "threads": torch.get_num_threads(), "final_loss": losses[-1]}


def train_model(point: Point, seed: int = 0, recipe: Recipe = RECIPE, progress=None) -> tuple[torch.nn.Module, dict]:
    """Train one model from scratch with the lab's recipe; return it (eval mode, float16-rounded weights) and
    its result entry: the point, params, MACs, seed, validation and test accuracy, training seconds.

    ``progress(step, total, loss)`` is called every 20 steps (a progress bar, a plot)."""
    num_classes = len(CLASSES)
    model, stats = fit(lambda: build_point(point, num_classes, recipe.dropout), point.resolution, seed, recipe,
                       progress, what=point)
    entry = {
        **asdict(point), **{f"abs_{k}": v for k, v in point.absolute().items() if k != "resolution"},
        "params": params(point, num_classes), "macs": macs(point, num_classes), "seed": seed,
        "val_accuracy": accuracy(model, resized("val", point.resolution, recipe), split("val", recipe)[2]),
        "accuracy": accuracy(model, resized("test", point.resolution, recipe), split("test", recipe)[2]),
        **stats,
    }
    return model, entry
