"""The elastic network: one weight-shared ("once-for-all") EfficientNet whose sub-networks cover a box of scaling
points of the classroom base C0, so accuracy and CAMs can be shown for any (phi, alpha, beta, gamma) in the box
without training a model per slider position.

**Weight sharing.** The shared weights are those of the box's largest network (C0 x width 2, depth 2, 128 px).
The network for a point (w, d, r) is the one ``build()`` makes for it (Table 1 scaled: ``round_filters`` widths,
``round_repeats`` depths), and each of its tensors is the *leading slice* of the largest's tensor of the same name:
the first channels of every layer (the widths are nested because ``round_filters`` never falls as w grows), the
first blocks of every stage (Once-for-All's elastic depth keeps the first layers: Cai et al., ICLR 2020)
and any input resolution (convolutions do not care; BatchNorm's statistics do, hence recalibration below).

**Training: the sandwich rule with in-place distillation** (universally slimmable networks, Yu & Huang, ICCV 2019;
BigNAS, Yu et al., ECCV 2020). Every step trains the largest network on the labels, and the smallest network plus
two random points of the box to match the largest's (detached) predictions; the four gradients are summed into one
update.
The largest and the smallest bound every other point, and training both every step is meant to keep the whole
box trained (here the other corners stay weaker: see notebook 07); the soft targets of the largest are easier to
fit than labels for a small network. Each point sees the batch at
its own resolution (OFA's elastic resolution). The optimiser and schedule are the scaling lab's (AdamW, warmup +
cosine, label smoothing), for more epochs because four networks share one set of weights.

**BatchNorm recalibration** (as in Once-for-All and universally slimmable networks): the running
statistics of a sub-network differ from every other's, so after ``extract`` slices the weights, BatchNorm's means
and variances are recomputed as plain averages over a fixed calibration set (``CALIBRATION`` images drawn like the
training images, at the point's resolution). Nothing but the BatchNorm buffers changes.

    effnet-edu lab elastic-train            # train the shared weights (resumable; ~70 min on one core)
    effnet-edu lab eval --phi 1 --alpha 1.2 --beta 1.1 --gamma 1.15 --json
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..model import EfficientNet
from .data import CLASSES
from .families import Point, build_point
from .train import RECIPE, Recipe, dataset, lr_at, normalise, precise_bn, resize, split

# The box of scaling points the shared weights cover, as multipliers of C0 (resolution in pixels).
WIDTH = (1.0, 2.0)
DEPTH = (1.0, 2.0)
RESOLUTION = (64, 128)
LARGEST = Point("effnet", WIDTH[1], DEPTH[1], RESOLUTION[1])
SMALLEST = Point("effnet", WIDTH[0], DEPTH[0], RESOLUTION[0])
CALIBRATION = 256  # images that recalibrate BatchNorm for an extracted sub-network (measured: 512 changes the
# full-test accuracy of four points across the box by at most 0.45 points and costs a third more per new point) ...
CALIBRATION_SEED = 3  # ... drawn like the training images, with a seed of their own (train 0, val 1, test 2)


class OutsideBox(ValueError):
    """A scaling point that no trained sub-network covers."""


def box_text() -> str:
    return (f"width {WIDTH[0]:g}..{WIDTH[1]:g}, depth {DEPTH[0]:g}..{DEPTH[1]:g}, resolution "
            f"{RESOLUTION[0]}..{RESOLUTION[1]} px (multipliers of C0)")


def check_point(point: Point) -> Point:
    """``point`` if the box covers it; otherwise ``OutsideBox`` naming the box."""
    if point.family != "effnet":
        raise OutsideBox(f"the elastic network is an EfficientNet; {point.family!r} is not covered: it covers "
                         f"EfficientNet points with {box_text()}")
    inside = (WIDTH[0] <= point.width <= WIDTH[1] and DEPTH[0] <= point.depth <= DEPTH[1]
              and RESOLUTION[0] <= point.resolution <= RESOLUTION[1])
    if not inside:
        raise OutsideBox(f"no trained sub-network covers width {point.width:g}, depth {point.depth:g}, "
                         f"resolution {point.resolution} px: the elastic network covers {box_text()}")
    return point


@dataclass(frozen=True)
class ElasticRecipe:
    """How the shared weights are trained; stored next to them."""

    epochs: int = 10
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.02
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.1
    random_points: int = 2  # per step, besides the largest and the smallest (the sandwich rule)
    seed: int = 0
    data: Recipe = RECIPE  # the scaling lab's splits


ELASTIC = ElasticRecipe()
QUICK_ELASTIC = ElasticRecipe(epochs=1, data=Recipe(train_images=640, val_images=160, test_images=160, epochs=1))


def leading_slice(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The first ``shape[i]`` entries of every dimension of ``tensor`` (a view: gradients flow to the whole)."""
    if any(s > t for s, t in zip(shape, tensor.shape)):
        raise ValueError(f"a sub-network tensor of shape {tuple(shape)} does not fit in {tuple(tensor.shape)}")
    return tensor[tuple(slice(0, s) for s in shape)]


def sub_network(point: Point, dropout: float = ELASTIC.dropout) -> torch.nn.Module:
    """A freshly built network for ``point`` (its shape only: the weights are overwritten by slices)."""
    return build_point(point, len(CLASSES), dropout)


def random_point(generator: torch.Generator) -> Point:
    """A point drawn uniformly from the box (width and depth on a 0.01 grid, resolution in whole pixels)."""
    u = torch.rand(3, generator=generator).tolist()
    width = round(WIDTH[0] + u[0] * (WIDTH[1] - WIDTH[0]), 2)
    depth = round(DEPTH[0] + u[1] * (DEPTH[1] - DEPTH[0]), 2)
    resolution = RESOLUTION[0] + min(int(u[2] * (RESOLUTION[1] - RESOLUTION[0] + 1)), RESOLUTION[1] - RESOLUTION[0])
    return Point("effnet", width, depth, resolution)


def _elastic_dir() -> Path:
    return Path(__file__).resolve().parent / "results" / "elastic"


class _Shells:
    """Built sub-networks by architecture, reused across steps (building one takes ~20 ms; a step ~1 s)."""

    def __init__(self, dropout: float, size: int = 64):
        self.dropout, self.size = dropout, size
        self.cache: OrderedDict[tuple, torch.nn.Module] = OrderedDict()

    def __call__(self, point: Point) -> torch.nn.Module:
        key = (point.width, point.depth)  # the resolution does not change the modules
        if key not in self.cache:
            with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep dropout's RNG stream
                self.cache[key] = sub_network(point, self.dropout).train().to(memory_format=torch.channels_last)
            if len(self.cache) > self.size:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        return self.cache[key]


def _soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(1).mean()


def train_elastic(out: Path, recipe: ElasticRecipe = ELASTIC, progress=None, threads: int | None = None,
                  save_every: int = 25) -> dict:
    """Train the shared weights; write ``out/weights.pt`` (float16) and ``out/training.json``. Resumable: the
    state (weights, optimiser, step, random generator) is saved atomically every ``save_every`` steps to
    ``out/resume.pt`` and a restarted call continues from it; the finished run deletes it.

    ``progress(step, total, losses)`` is called after every step (a progress bar)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    images = split("train", recipe.data)[0].permute(0, 3, 1, 2)  # (N, 3, 128, 128) uint8: the native size
    labels = split("train", recipe.data)[2]
    torch.manual_seed(recipe.seed)
    largest = sub_network(LARGEST, recipe.dropout).train().to(memory_format=torch.channels_last)
    shared = dict(largest.named_parameters())
    decay = [p for p in largest.parameters() if p.dim() > 1]  # no weight decay on BatchNorm and biases
    rest = [p for p in largest.parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)
    steps_per_epoch = len(images) // recipe.batch
    total = recipe.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(recipe.seed)
    step, seconds, log = 0, 0.0, []
    resume = out / "resume.pt"
    if resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=False)
        if state["recipe"] != asdict(recipe):
            raise ValueError(f"{resume} was written by another recipe; delete it to start again")
        largest.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])  # dropout's masks
        step, seconds, log = state["step"], state["seconds"], state["log"]
    shells = _Shells(recipe.dropout)
    start = time.perf_counter() - seconds
    order = None
    while step < total:
        epoch, i = divmod(step, steps_per_epoch)
        if order is None or i == 0:
            # one permutation per epoch from a generator seeded by the epoch: a resumed run sees the same order
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(recipe.seed * 1000 + epoch))
        idx = order[i * recipe.batch:(i + 1) * recipe.batch]
        batch, target = images[idx], labels[idx]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, steps_per_epoch, recipe)  # type: ignore[arg-type]
        optimizer.zero_grad(set_to_none=True)
        # the largest learns from the labels ...
        x = normalise(resize(batch, LARGEST.resolution)).contiguous(memory_format=torch.channels_last)
        logits = largest(x)
        loss = F.cross_entropy(logits, target, label_smoothing=recipe.label_smoothing)
        loss.backward()
        teacher = logits.detach().softmax(1)
        losses = [loss.item()]
        # ... the smallest and random points learn from the largest (in-place distillation)
        for point in [SMALLEST] + [random_point(generator) for _ in range(recipe.random_points)]:
            shell = shells(point)
            params = {n: leading_slice(shared[n], p.shape) for n, p in shell.named_parameters()}
            x = normalise(resize(batch, point.resolution)).contiguous(memory_format=torch.channels_last)
            sub_loss = _soft_cross_entropy(functional_call(shell, params, (x,)), teacher)
            sub_loss.backward()
            losses.append(sub_loss.item())
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(f"the elastic network's loss became {losses} at step {step}")
        optimizer.step()
        step += 1
        if step % 20 == 0 or step == total:
            log.append({"step": step, "largest": round(losses[0], 4), "smallest": round(losses[1], 4),
                        "random": round(sum(losses[2:]) / max(1, len(losses) - 2), 4)})
        if progress is not None:
            progress(step, total, losses)
        if step % save_every == 0 and step < total:
            seconds = time.perf_counter() - start
            _save_atomic(resume, {"recipe": asdict(recipe), "model": largest.state_dict(),
                                  "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                                  "torch_rng": torch.get_rng_state(),
                                  "step": step, "seconds": seconds, "log": log})
    seconds = time.perf_counter() - start
    weights = {n: p.detach().half() for n, p in largest.named_parameters()}  # BatchNorm buffers: recalibrated
    _save_atomic(out / "weights.pt", {"recipe": asdict(recipe), "weights": weights})
    info = {"recipe": asdict(recipe), "steps": total, "train_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "cpus": os.cpu_count(), "log": log}
    _save_atomic(out / "training.json", info, as_json=True)
    resume.unlink(missing_ok=True)
    return info


def _save_atomic(path: Path, obj, as_json: bool = False) -> None:
    """All or nothing (``weights.atomic_file``): a kill mid-write leaves the previous file."""
    from ..weights import atomic_file

    with atomic_file(path, "w" if as_json else "wb") as file:
        if as_json:
            file.write(json.dumps(obj, indent=1) + "\n")
        else:
            torch.save(obj, file)


# ------------------------------------------------------------------------------------------ extracting sub-networks
WEIGHTS = Path(os.environ.get("EFFNET_EDU_ELASTIC") or _elastic_dir())  # a folder with weights.pt
LIVE_TEST = 500  # test images the explorer scores live: a standard error of about 2 points at 70% accuracy
_weights_cache: dict = {}
_models: OrderedDict = OrderedDict()  # recalibrated sub-networks, least recently used first
_results: OrderedDict = OrderedDict()


def shared_weights(folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The trained shared weights (float32), read once per folder."""
    path = Path(folder or WEIGHTS) / "weights.pt"
    key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
    if key[1] is None:
        raise FileNotFoundError(f"no elastic network in {path.parent}: train one with `effnet-edu lab elastic-train`")
    if key not in _weights_cache:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        _weights_cache.clear()
        _weights_cache[key] = {n: w.float() for n, w in blob["weights"].items()}
    return _weights_cache[key]


def architecture(point: Point) -> tuple:
    """What decides a sub-network's modules: every block's channels and the head's (points with equal
    ``architecture`` and resolution are the same network, e.g. widths that round to the same channels)."""
    from ..arch import blocks, resolve

    a = point.absolute()
    config = resolve(width=a["width"], depth=a["depth"], num_classes=len(CLASSES))
    return tuple((b.stage, b.in_channels, b.out_channels, b.hidden_channels, b.se_channels)
                 for b in blocks(config)) + (config.stem_channels, config.head_channels)


@lru_cache(maxsize=4)
def calibration_images(resolution: int) -> torch.Tensor:
    """The fixed calibration set at ``resolution``, (CALIBRATION, 3, r, r) uint8 (generated once, ~1 s)."""
    return resize(dataset("calibration", CALIBRATION, CALIBRATION_SEED)[0].permute(0, 3, 1, 2), resolution)


def slice_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Copy the leading slice of every shared tensor into ``model``'s parameter of the same name."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(leading_slice(weights[name], p.shape))
    return model


def extract(point: Point, folder: Path | None = None, recalibrate: bool = True) -> EfficientNet:
    """The sub-network at ``point`` as a standard ``effnet_edu`` EfficientNet (the class ``build()`` makes),
    holding slices of the shared weights, with BatchNorm recalibrated on the fixed calibration set; eval mode.

    Recalibrated networks are cached by architecture and resolution (16 most recent): a revisited point costs
    nothing, and the returned model is shared with the cache (copy it with ``copy.deepcopy`` before changing it).
    ``recalibrate=False`` returns a new, uncached network with BatchNorm's initial statistics (mean 0, variance 1).
    Raises ``OutsideBox`` for a point that the trained box does not cover."""
    check_point(point)
    weights = shared_weights(folder)
    key = (id(weights), architecture(point), point.resolution)
    if recalibrate and key in _models:
        _models.move_to_end(key)
        return _models[key]
    with torch.random.fork_rng(devices=[]):  # building draws initial weights; leave the caller's RNG alone
        model = cast(EfficientNet, slice_into(sub_network(point), weights))
    # channels_last and batches of 32: ~1.5x faster on CPU than the default layout with big batches (measured)
    model = model.to(memory_format=torch.channels_last)
    if recalibrate:
        precise_bn(model, calibration_images(point.resolution), batch=32)
    model.eval()
    setattr(model, "point", point)  # noqa: B010 -- what the model was extracted for
    if recalibrate:
        _models[key] = model
        if len(_models) > 16:
            _models.popitem(last=False)
    return model


@lru_cache(maxsize=8)
def split_at(split_name: str, resolution: int, n: int | None = None) -> tuple[torch.Tensor, ...]:
    """The first ``n`` (None: all) images of a split at ``resolution`` (B, 3, r, r) uint8, their masks and labels."""
    images, masks, labels = split(split_name, RECIPE)
    n = len(images) if n is None else n
    return resize(images[:n].permute(0, 3, 1, 2), resolution), masks[:n], labels[:n]


@torch.no_grad()
def evaluate(point: Point, test_images: int | None = LIVE_TEST, folder: Path | None = None,
             split_name: str = "test") -> dict:
    """The sub-network at ``point`` on the first ``test_images`` test images (None: all 2,000; ``split_name="val"``
    for the validation split, which model selection uses): params, MACs,
    top-1 accuracy (percent) and the localisation of its class activation maps (Table 7's scores: pointing game,
    energy on the object, IoU, percent), from one forward pass. Cached like ``extract``."""
    from ..cam import classic_cam, mean_localisation
    from .data import SIZE
    from .families import macs, params

    model = extract(point, folder)
    key = (id(shared_weights(folder)), architecture(point), point.resolution, test_images, split_name)
    if key in _results:
        return _results[key]
    images, masks, labels = split_at(split_name, point.resolution, test_images)
    correct, scores = 0, {"pointing": 0.0, "energy": 0.0, "iou": 0.0}
    for i in range(0, len(images), 32):
        features = model.forward_features(normalise(images[i:i + 32]))
        correct += int((model.forward_head(features).argmax(1) == labels[i:i + 32]).sum())
        maps, _ = classic_cam(features, model.classifier, labels[i:i + 32].tolist(), (SIZE, SIZE))
        for k, v in mean_localisation(maps, masks[i:i + 32]).items():
            scores[k] += v * len(maps)
    n, num_classes = len(images), len(CLASSES)
    result = {"width": point.width, "depth": point.depth, "resolution": point.resolution,
              "params": params(point, num_classes), "macs": macs(point, num_classes),
              "accuracy": round(100 * correct / n, 2), "test_images": n,
              **{k: round(100 * v / n, 2) for k, v in scores.items()}}
    _results[key] = result
    if len(_results) > 256:
        _results.popitem(last=False)
    return result


@torch.no_grad()
def class_maps(point: Point, images: torch.Tensor, folder: Path | None = None) -> dict:
    """Predictions and classic CAMs of the predicted classes for (B, 3, 128, 128) uint8 lab images: ``probs``
    (B, 16), ``classes`` (B,), ``maps`` (B, 128, 128) in [0, 1] at the native size (so masks overlay them), and
    ``grid`` (the feature map's side: ceil(r / 32))."""
    from ..cam import classic_cam
    from .data import SIZE

    model = extract(point, folder)
    features = model.forward_features(normalise(resize(images, point.resolution)))
    probs = model.forward_head(features).softmax(1)
    classes = probs.argmax(1)
    maps, raw = classic_cam(features, model.classifier, classes.tolist(), (SIZE, SIZE))
    return {"probs": probs, "classes": classes, "maps": maps, "grid": raw.shape[-1]}


# ------------------------------------------------------------------------ validation against independent training
def scratch_points(entries: list[dict]) -> list[dict]:
    """The scaling lab's from-scratch EfficientNet points inside the box, seeds averaged: point, accuracy (test,
    percent), val accuracy, seeds, names."""
    by_point: dict[Point, list[dict]] = {}
    for e in entries:
        if e["family"] != "effnet":  # Table 3's MobileNetV2 and ResNet share the multipliers, not the network
            continue
        point = Point("effnet", float(e["width"]), float(e["depth"]), int(e["resolution"]))
        try:
            check_point(point)
        except OutsideBox:
            continue
        by_point.setdefault(point, []).append(e)
    rows = []
    for point, group in sorted(by_point.items(), key=lambda kv: (kv[0].width, kv[0].depth, kv[0].resolution)):
        rows.append({"point": point, "seeds": len(group), "names": [e["name"] for e in group],
                     "accuracy": 100 * sum(e["accuracy"] for e in group) / len(group),
                     "val_accuracy": 100 * sum(e["val_accuracy"] for e in group) / len(group)})
    return rows


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two rankings (scipy's implementation)."""
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def validate(entries: list[dict] | None = None, folder: Path | None = None, progress=None) -> dict:
    """Every from-scratch point of the scaling lab inside the box, its extracted sub-network's accuracy on the full
    test split next to it: rows, mean and worst |difference| (points), and Kendall's tau of the two rankings."""
    if entries is None:
        from .store import entries as stored

        entries = stored()
    rows = []
    for k, row in enumerate(scratch_points(entries)):
        point = row["point"]
        elastic = evaluate(point, test_images=None, folder=folder)
        rows.append({"width": point.width, "depth": point.depth, "resolution": point.resolution,
                     "macs": elastic["macs"], "params": elastic["params"], "scratch_seeds": row["seeds"],
                     "scratch": round(row["accuracy"], 2), "elastic": elastic["accuracy"],
                     "difference": round(elastic["accuracy"] - row["accuracy"], 2),
                     "elastic_pointing": elastic["pointing"]})
        if progress is not None:
            progress(k + 1, rows[-1])
    differences = [abs(r["difference"]) for r in rows]
    return {"rows": rows, "mean_abs_difference": round(sum(differences) / len(differences), 2),
            "worst_abs_difference": round(max(differences), 2),
            "kendall_tau": round(kendall_tau([r["scratch"] for r in rows], [r["elastic"] for r in rows]), 3),
            "test_images": 2000}


def grid_search(entries: list[dict] | None = None, folder: Path | None = None, images: int = LIVE_TEST) -> dict:
    """Step 1 of Section 3.3 on the elastic network: the scaling lab's trained grid points at phi = 1, each
    sub-network scored on the first ``images`` *validation* images (the test split stays unseen), ranked against
    the from-scratch grid's validation accuracy. Seconds instead of the ~40 minutes of training the grid."""
    from .experiments import compound_point, grid_points

    if entries is None:
        from .store import entries as stored

        entries = stored()
    scratch = {(e["width"], e["depth"], e["resolution"]): e for e in entries if "grid" in e["experiments"]}
    rows = []
    for alpha, beta, gamma in grid_points():
        point = compound_point("effnet", 1.0, alpha, beta, gamma)
        e = scratch.get((point.width, point.depth, point.resolution))
        rows.append({"alpha": alpha, "beta": beta, "gamma": gamma, "width": point.width, "depth": point.depth,
                     "resolution": point.resolution,
                     "elastic": evaluate(point, images, folder, split_name="val")["accuracy"],
                     "scratch": round(100 * e["val_accuracy"], 2) if e else None})
    paired = [r for r in rows if r["scratch"] is not None]
    tau = kendall_tau([r["scratch"] for r in paired], [r["elastic"] for r in paired]) if len(paired) > 1 else None
    best = max(rows, key=lambda r: r["elastic"])
    return {"rows": rows, "kendall_tau": None if tau is None else round(tau, 3),
            "best": (best["alpha"], best["beta"], best["gamma"]), "val_images": images}


def write_validation(folder: Path) -> dict:
    """Validate the weights in ``folder`` against the stored from-scratch models and write ``validation.json``
    (the table, and Step 1's grid search on the elastic network)."""
    summary = validate(folder=folder)
    summary["grid_search"] = grid_search(folder=folder)
    _save_atomic(Path(folder) / "validation.json", summary, as_json=True)
    return summary


def stored_validation(folder: Path | None = None) -> dict:
    """The ``validation.json`` written with the stored weights (what the notebook shows)."""
    path = Path(folder or WEIGHTS) / "validation.json"
    if not path.is_file():
        raise FileNotFoundError(f"no validation in {path.parent}: run `effnet-edu lab elastic-train`")
    return json.loads(path.read_text())
