"""Transfer learning at classroom scale: the paper's Section 5.3 claim (Tables 5 and 6, Figure 6: ImageNet
checkpoints fine-tuned on other datasets beat networks trained there) in miniature, on the lab's dataset.

The same network, EfficientNet-Lite0 at 64 px with a 16-class classifier, is trained three ways on 10, 50 and 200
training images per class, always for the same number of optimizer steps:

- ``imagenet``: the official Lite0 ImageNet weights (``train.transfer.init_from``), every layer fine-tuned, the
  backbone at a tenth of the classifier's learning rate (``--backbone-lr-scale 0.1``);
- ``frozen``: the same weights, only the classifier trained (``--freeze-backbone``: a linear probe on ImageNet
  features, BatchNorm frozen with ImageNet's statistics);
- ``scratch``: the same architecture from its random initialisation, the lab's learning rate everywhere.

Everything else is the lab's (``lab.train``): the splits (``split``, ``resized``), AdamW, warmup then cosine
decay, label smoothing 0.1, no augmentation, precise BatchNorm statistics after training (not for ``frozen``,
whose statistics are part of what is frozen), test accuracy on the 2,000-image test split (``accuracy``).
The number of steps is fixed, not the number of epochs: every run gets the same compute, and the small training
sets are seen many times (100 steps of 32 = 20 epochs of 160 images).

    effnet-edu lab transfer                      # all 9 runs (about 9 CPU minutes on one core), resumable
    effnet-edu lab transfer --quick --out /tmp/t # a reduced version in about a minute

Each finished run is a file ``<out>/transfer_runs/<key>.json`` (written atomically), so a killed reproduction
continues where it stopped; ``<out>/transfer.json`` collects them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..model import build
from ..train.optim import param_groups
from ..train.transfer import freeze_backbone, init_from, train_mode
from ..weights import SOURCES, source_settings
from .data import CLASSES
from .store import RESULTS
from .train import MEAN, QUICK, RECIPE, STD, Recipe, accuracy, lr_at, normalise, precise_bn, resized, split

# Tan & Le 2019, Table 6: the transfer datasets (training images, test images, classes).
TABLE6 = {
    "CIFAR-10": (50_000, 10_000, 10), "CIFAR-100": (50_000, 10_000, 100), "Birdsnap": (47_386, 2_443, 500),
    "Stanford Cars": (8_144, 8_041, 196), "Flowers": (2_040, 6_149, 102), "FGVC Aircraft": (6_667, 3_333, 100),
    "Oxford-IIIT Pets": (3_680, 3_369, 37), "Food-101": (75_750, 25_250, 101),
}
# Tan & Le 2019, Table 5: top-1 accuracy (%) after fine-tuning ImageNet checkpoints, and parameters (millions;
# None where the paper gives none). Per dataset: the best publicly available model, the EfficientNet the paper
# compares with it, the state of the art of the time (GPipe, DAT), and the EfficientNet compared with that.
# Section 5.3: EfficientNets are better than the public models "with 4.7x average (up to 21x) parameter reduction"
# and beat the state of the art "in 5 out of 8 datasets" (ties included) "using 9.6x fewer parameters".
TABLE5 = {  # dataset: ((public model, top-1, params), (ours, ...), (state of the art, ...), (ours, ...))
    "CIFAR-10": (("NASNet-A", 98.0, 85), ("B0", 98.1, 4), ("GPipe", 99.0, 556), ("B7", 98.9, 64)),
    "CIFAR-100": (("NASNet-A", 87.5, 85), ("B0", 88.1, 4), ("GPipe", 91.3, 556), ("B7", 91.7, 64)),
    "Birdsnap": (("Inception-v4", 81.8, 41), ("B5", 82.0, 28), ("GPipe", 83.6, 556), ("B7", 84.3, 64)),
    "Stanford Cars": (("Inception-v4", 93.4, 41), ("B3", 93.6, 10), ("DAT", 94.8, None), ("B7", 94.7, None)),
    "Flowers": (("Inception-v4", 98.5, 41), ("B5", 98.5, 28), ("DAT", 97.7, None), ("B7", 98.8, None)),
    "FGVC Aircraft": (("Inception-v4", 90.9, 41), ("B5", 91.1, 28), ("DAT", 92.9, None), ("B7", 92.9, None)),
    "Oxford-IIIT Pets": (("ResNet-152", 94.5, 58), ("B4", 94.8, 17), ("GPipe", 95.9, 556), ("B6", 95.4, 41)),
    "Food-101": (("Inception-v4", 90.8, 41), ("B4", 91.5, 17), ("GPipe", 93.0, 556), ("B7", 93.0, 64)),
}

INITS = ("imagenet", "frozen", "scratch")  # how a run's network starts (see the module's docstring)
FILE = "transfer.json"
RUNS = "transfer_runs"


@dataclass(frozen=True)
class TransferRecipe:
    """Everything that decides the experiment besides the run (init, images per class, seed); stored with it."""

    model: str = "lite0"  # the only released weights that load offline (with lite1, lite2)
    resolution: int = 64  # the lab's C0 resolution: Lite0 costs 31M multiply-adds an image there
    steps: int = 100  # optimizer steps per run, whatever the training set's size
    batch: int = 32
    lr: float = 3e-3  # AdamW peak (the lab's); the classifier's, and the scratch network's everywhere
    backbone_lr_scale: float = 0.1  # "imagenet": the pretrained layers move 10x slower than the fresh classifier
    weight_decay: float = 0.02
    warmup: float = 0.1  # fraction of the steps with a linear warmup, then cosine decay to zero
    label_smoothing: float = 0.1
    dropout: float = 0.1  # before the classifier (the lab's)
    bn_images: int = 1024  # precise BatchNorm statistics from up to this many training images
    per_class: tuple[int, ...] = (10, 50, 200)  # training images per class (the train split has 750)
    inits: tuple[str, ...] = INITS
    seeds: tuple[int, ...] = (0,)


TRANSFER = TransferRecipe()
# The quick version runs on the lab's QUICK splits (640 training, 160 test images).
QUICK_TRANSFER = replace(TRANSFER, steps=20, batch=16, per_class=(5, 40), bn_images=128)


@dataclass(frozen=True)
class TransferRun:
    init: str  # "imagenet", "frozen" or "scratch"
    per_class: int
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.init}-n{self.per_class}-s{self.seed}"


def plan(recipe: TransferRecipe = TRANSFER) -> list[TransferRun]:
    """Every run of the experiment, the smallest training sets first (a stopped reproduction has whole points
    of the curve), and at each size the cheapest first (frozen runs skip the backbone's backward pass)."""
    for init in recipe.inits:
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    return [TransferRun(init, n, seed) for n in sorted(recipe.per_class) for seed in recipe.seeds
            for init in sorted(recipe.inits, key=INITS.index)]


def subset(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of every class (the split is shuffled, so "first" is random
    and balanced); each smaller subset is part of every larger one."""
    counts = torch.bincount(labels, minlength=len(CLASSES))
    if per_class > int(counts.min()):
        raise ValueError(f"{per_class} images per class asked, but the split has only {int(counts.min())} of its "
                         f"smallest class")
    rank = torch.zeros_like(labels)
    for c in range(len(CLASSES)):
        where = (labels == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    return (rank < per_class).nonzero().flatten()


class SourceInput(nn.Module):
    """The lab's input (``normalise``: ImageNet mean and std) re-normalised for weights that expect another one
    (the Lite checkpoints: (x - 127) / 128 on 0..255 pixels), so the lab's ``accuracy`` and ``precise_bn`` can
    drive the network unchanged. The scratch network gets the same input, so the three inits differ only in
    their starting weights."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, net: nn.Module, source: str):
        super().__init__()
        self.net, s = net, SOURCES[source]
        # x_lab = (p - MEAN) / STD; the network wants (p - s.mean) / s.std, with p the 0..1 pixel
        scale = torch.tensor(STD) / torch.tensor(s.std)
        shift = (torch.tensor(MEAN) - torch.tensor(s.mean)) / torch.tensor(s.std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.scale + self.shift)


def build_network(init: str, recipe: TransferRecipe = TRANSFER, seed: int = 0) -> SourceInput:
    """The run's network: Lite0 at the recipe's resolution with a fresh 16-class classifier (seeded), its backbone
    pretrained (``imagenet``, ``frozen``: frozen) or random (``scratch``)."""
    torch.manual_seed(seed)
    net = build(recipe.model, resolution=recipe.resolution, num_classes=len(CLASSES), dropout=recipe.dropout,
                drop_path=0.0, **source_settings("lite"))  # the lab trains without stochastic depth
    if init in ("imagenet", "frozen"):
        net = init_from(net, recipe.model)
    if init == "frozen":
        freeze_backbone(net)
    return SourceInput(net, "lite")


def train_run(run: TransferRun, recipe: TransferRecipe = TRANSFER, data: Recipe = RECIPE,
              progress=None) -> tuple[SourceInput, dict]:
    """Train one run; return the network (eval mode) and its entry (test accuracy, seconds, final loss)."""
    model = build_network(run.init, recipe, run.seed)
    images, labels = resized("train", recipe.resolution, data), split("train", data)[2]
    index = subset(labels, run.per_class)
    images, labels = images[index], labels[index]
    scale = recipe.backbone_lr_scale if run.init == "imagenet" else 1.0
    groups = param_groups(model.net, recipe.weight_decay, decay_biases=False, backbone_lr_scale=scale)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr)
    schedule = replace(data, lr=recipe.lr, warmup_epochs=recipe.warmup)  # lab.lr_at: warmup, then cosine
    generator = torch.Generator().manual_seed(run.seed)
    order, at, losses = torch.randperm(len(images), generator=generator), 0, []
    start, cpu = time.perf_counter(), time.process_time()
    train_mode(model.net)  # a frozen backbone stays in evaluation mode
    for step in range(recipe.steps):
        if at + recipe.batch > len(order):  # a new epoch (small sets are seen many times over)
            order, at = torch.randperm(len(images), generator=generator), 0
        idx = order[at:at + recipe.batch]
        at += recipe.batch
        lr = lr_at(step, recipe.steps, recipe.steps, schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        loss = F.cross_entropy(model(normalise(images[idx])), labels[idx], label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 20 == 0 or step + 1 == recipe.steps:
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"{run.key}: the loss became {losses[-1]} at step {step + 1}")
            if progress is not None:
                progress(step + 1, recipe.steps, losses[-1])
    if run.init != "frozen":  # short runs carry BatchNorm statistics of early weights: recompute them
        precise_bn(model, images[:recipe.bn_images])
    seconds = time.perf_counter() - start
    model.eval()
    test = accuracy(model, resized("test", recipe.resolution, data), split("test", data)[2])
    # CPU seconds (training and testing) measure the cost on a shared machine; wall seconds depend on the load.
    entry = {"name": run.key, **asdict(run), "train_images": len(index), "steps": recipe.steps,
             "epochs": round(recipe.steps * recipe.batch / len(index), 2), "accuracy": test,
             "train_seconds": round(seconds, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
             "threads": torch.get_num_threads(), "final_loss": losses[-1]}
    return model, entry


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def reproduce(out: Path = RESULTS, quick: bool = False, progress=print, recipe: TransferRecipe | None = None,
              data: Recipe | None = None) -> dict:
    """Train every run of ``plan()`` not yet in ``out/transfer_runs/`` and write ``out/transfer.json``.
    ``recipe``/``data`` replace the (quick) defaults (tests use a tiny one)."""
    recipe = recipe or (QUICK_TRANSFER if quick else TRANSFER)
    data = data or (QUICK if quick else RECIPE)
    runs_dir = Path(out) / RUNS
    runs_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name in ("train", "test"):  # generate (or load) the splits once, before timing any run
        split(name, data)
    entries: list[dict] = []
    runs = plan(recipe)
    for i, run in enumerate(runs):
        path = runs_dir / f"{run.key}.json"
        if path.is_file():
            entry = json.loads(path.read_text())
        else:
            _, entry = train_run(run, recipe, data)
            _write_atomic(path, json.dumps(entry, indent=1) + "\n")
            # transfer.json after every new run: a stopped reproduction leaves the finished part readable
            partial = _collect(entries + [entry], recipe, data, time.perf_counter() - start, i + 1 == len(runs))
            _write_atomic(Path(out) / FILE, json.dumps(partial, indent=1) + "\n")
        entries.append(entry)
        if progress is not None:
            progress(f"[{i + 1}/{len(runs)}] {run.key}: test accuracy {entry['accuracy']:.3f} "
                     f"({entry['cpu_seconds']:.0f} CPU s)")
    try:  # a rerun that trained nothing keeps the file as it was (its wall time and date)
        stored = json.loads((Path(out) / FILE).read_text())
        if stored.get("runs") == entries and stored.get("complete"):
            return stored
    except (OSError, ValueError):
        pass
    results = _collect(entries, recipe, data, time.perf_counter() - start, complete=True)
    _write_atomic(Path(out) / FILE, json.dumps(results, indent=1) + "\n")
    return results


def _collect(entries: list[dict], recipe: TransferRecipe, data: Recipe, wall: float, complete: bool) -> dict:
    return {
        "description": "Transfer learning at classroom scale: EfficientNet-Lite0 (64 px) fine-tuned from its "
                       "ImageNet weights, as a linear probe on them, and from scratch, on the scaling lab's "
                       "dataset (Section 5.3, Tables 5-6 in miniature); see effnet_edu/lab/transfer.py",
        "complete": complete,
        "recipe": asdict(recipe),
        "data": {"train_split": data.train_images, "test_images": data.test_images, "seed_train": data.seed_train,
                 "seed_test": data.seed_test},
        "environment": {"torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                        "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")},
        "cpu_seconds": round(sum(e["cpu_seconds"] for e in entries), 1),
        "wall_seconds": round(wall, 1),
        "runs": entries,
    }


def results(folder: Path = RESULTS) -> dict:
    """The stored ``transfer.json`` (recipe, environment, one entry per run)."""
    path = Path(folder) / FILE
    if not path.is_file():
        raise FileNotFoundError(f"no transfer results in {folder}: run `effnet-edu lab transfer` to make them")
    return json.loads(path.read_text())


def curves(data: dict | None = None) -> dict[str, list[tuple[int, float]]]:
    """Test accuracy against training images per class, one curve per init: {init: [(per_class, accuracy)]}
    (the mean over seeds)."""
    data = results() if data is None else data
    out: dict[str, dict[int, list[float]]] = {}
    for e in data["runs"]:
        out.setdefault(e["init"], {}).setdefault(e["per_class"], []).append(e["accuracy"])
    return {init: sorted((n, sum(a) / len(a)) for n, a in points.items()) for init, points in out.items()}
