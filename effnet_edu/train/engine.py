"""The training loop: one process or many (torchrun + DDP), exact resume, evaluation with the EMA weights.

    effnet-edu train --model b0 --data /imagenet --output runs/b0                  # one GPU (or CPU)
    torchrun --nproc_per_node 8 -m effnet_edu train --model b0 --data ... --output runs/b0   # 8 GPUs, DDP

A run is a ``Trainer`` whose named steps are ``restore`` (from last.pt), ``train_step``, ``log``,
``evaluate_and_keep_best`` and ``save``; ``fit`` strings them together. Everything a checkpoint holds is one
record, ``Run``, whose ``state_dict()`` is the checkpoint schema:

    state_dict, effnet_edu   the EMA weights and the settings that rebuild the network (``weights.save_weights``)
    model, ema, ema_updates  the trained weights and their moving average (``ema`` is ``state_dict``: stored once)
    optimizer, scaler        RMSProp slots, fp16 loss scale
    step, epoch, batch_in_epoch, best_minival_top1, bad_images, rng (every process's)   where the run is
    config, classes          the recipe and the class folders' names

Every ``checkpoint_every`` steps, at each epoch end and at the end, ``<output>/last.pt`` holds everything needed to
continue bit-exactly (the data order is a pure function of (seed, epoch), the augmentation of (seed, epoch,
index)). ``best.pt`` is the same record at the best minival top-1 (Section 5.2's early stopping).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..arch import resolve
from ..model import EfficientNet
from ..weights import WeightsError, save_weights, weights_meta
from .config import TrainConfig, TrainError, check
from .data import (
    DataError,
    FolderDataset,
    ResumableSampler,
    augment_transform,
    eval_transform,
    minival_split,
    scan_folder,
)
from .gpu_data import GpuLoader, check_decode_on, gpu_train_loader
from .optim import EMA, RMSpropTF, lr_at, param_groups
from .output import Log, OutputLock, claim_output
from .transfer import freeze_backbone, init_from, train_mode

# ----------------------------------------------------------------------------- processes and devices

def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). torchrun sets RANK/WORLD_SIZE/LOCAL_RANK (and rendezvous for multi-node)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, dev


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is again a sum over processes (every process's loss depends on x)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the batch of ALL processes, for CPU/gloo runs (torch's
    SyncBatchNorm only runs on GPUs). Two all-reduces (sum, then squared deviations) that autograd differentiates
    through, so gradients are exactly those of one BatchNorm over the global batch."""

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        n = all_reduce(count).item()
        mean = all_reduce(x.sum((0, 2, 3))) / n  # (C,)
        var = all_reduce(((x - mean[None, :, None, None]) ** 2).sum((0, 2, 3))) / n  # biased, as BN normalises
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)  # running var is unbiased, as in torch
        scale = self.weight / torch.sqrt(var + self.eps)
        return (x - mean[None, :, None, None]) * scale[None, :, None, None] + self.bias[None, :, None, None]


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_sync_bn(child, device)
    return model


def autocast(config: TrainConfig, device: torch.device):
    """(autocast context, whether fp16 needs a loss scaler) for ``config.precision``."""
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), False
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), precision == "fp16"


# ----------------------------------------------------------------------------- model and data

def build_model(config: TrainConfig, num_classes: int) -> EfficientNet:
    """The network to train: fresh, or (``--init-from``) with a pretrained backbone and a fresh classifier, its
    backbone frozen with ``--freeze-backbone``."""
    model = EfficientNet(model_config(config, num_classes))
    if config.init_from is None:
        return model
    try:
        model = init_from(model, config.init_from)
    except WeightsError as exc:
        raise TrainError(f"--init-from {config.init_from}: {' '.join(str(exc).split())}") from None
    if config.freeze_backbone:
        freeze_backbone(model)
    return model


def model_config(config: TrainConfig, num_classes: int):
    """The architecture (arch.EfficientNetConfig) that the recipe names: a family member or width/depth."""
    extra = {} if config.dropout is None else {"dropout": config.dropout}
    extra["bn_momentum"] = round(1 - config.bn_momentum, 12)  # TF keeps decay * old; torch keeps (1 - m) * old
    if config.width is not None or config.depth is not None:
        return resolve(None, width=config.width, depth=config.depth, resolution=config.resolution,
                       num_classes=num_classes, drop_path=config.drop_path, **extra)
    return resolve(config.model, resolution=config.resolution, num_classes=num_classes,
                   drop_path=config.drop_path, **extra)


def build_datasets(config: TrainConfig, resolution: int, source: str = "ours", scanned: dict | None = None) -> dict:
    """train / minival (held out of train) / val (if DATA/val exists) datasets and the class names. ``source``:
    the weights source whose input normalisation the images get (``weights.SOURCES``; "lite" when fine-tuning
    the Lite checkpoints, which expect (x - 127) / 128). ``scanned``: datasets built before, whose file lists are
    reused with the new normalisation (a folder of a million images is scanned once)."""
    augment = augment_transform(resolution, config.augment, config.randaugment_n, config.randaugment_m, source)
    test = eval_transform(resolution, source)
    if scanned is not None:
        out = dict(scanned)
        for name in ("train", "minival", "val"):
            if name in out:
                old = out[name]
                out[name] = FolderDataset(old.samples, augment if name == "train" else test, old.seed, old.skip_bad)
        return out
    root = Path(config.data)
    samples, classes, empty = scan_folder(root / "train")
    train_ix, minival_ix = minival_split(samples, config.minival_size, config.seed)
    out = {"classes": classes, "empty": empty,
           "train": FolderDataset([samples[i] for i in train_ix], augment, config.seed, config.skip_bad_images),
           "minival": FolderDataset([samples[i] for i in minival_ix], test, skip_bad=config.skip_bad_images)}
    if (root / "val").is_dir():
        val_only = sorted(p.name for p in (root / "val").iterdir() if p.is_dir() and p.name not in classes)
        if val_only:  # its images would silently drop out of the val accuracy: the model cannot predict them
            raise DataError(f"{root / 'val'} has {len(val_only)} class folder(s) that {root / 'train'} lacks "
                            f"({', '.join(val_only[:5])}{' ...' if len(val_only) > 5 else ''}): add them to train/ "
                            f"or remove them from val/")
        val_samples, _, _ = scan_folder(root / "val", classes)
        out["val"] = FolderDataset(val_samples, test, skip_bad=config.skip_bad_images)
    return out


def eval_loader(dataset, batch_size: int, num_workers: int, rank: int = 0, world: int = 1):
    """Each process evaluates every world-th image (no padding, so no image counts twice)."""
    subset = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp=contextlib.nullcontext(),
             channels_last: bool = False) -> dict:
    """Top-1 / top-5 accuracy in percent (summed over processes when distributed), and images skipped as bad."""
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64, device=device)  # top1 hits, top5 hits, images, bad
    for batch in loader:
        images, labels, bad = batch
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        with amp:
            logits = model(images)
        top5 = logits.float().topk(min(5, logits.shape[1]), dim=1).indices  # (B, 5)
        hits = top5 == labels[:, None]
        stats += torch.tensor([hits[:, 0].sum().item(), hits.any(1).sum().item(), len(labels),
                               sum(1 for b in bad if b)], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(stats)
    n = max(stats[2].item(), 1)
    return {"top1": 100 * stats[0].item() / n, "top5": 100 * stats[1].item() / n, "images": int(stats[2].item()),
            "bad": int(stats[3].item())}


# ----------------------------------------------------------------------------- the run's state (the checkpoint)

def rng_state() -> dict:
    np_state: tuple = np.random.get_state()  # type: ignore[assignment]  # numpy's stub says dict
    return {"python": random.getstate(), "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Run:
    """Everything that changes as a run trains and that a checkpoint must hold to continue it bit-exactly: the
    weights, their EMA, the optimizer slots, the loss scaler, where the run is, and every process's RNG state."""

    COUNTERS = ("step", "epoch", "batch_in_epoch", "best_minival_top1", "bad_images")

    def __init__(self, model: nn.Module, ema: EMA, optimizer: RMSpropTF, scaler: torch.amp.GradScaler):
        self.model, self.ema, self.optimizer, self.scaler = model, ema, optimizer, scaler
        self.step = self.epoch = self.batch_in_epoch = self.bad_images = 0  # optimizer steps; epochs done
        self.best_minival_top1 = -1.0

    def state_dict(self) -> dict:
        """The checkpoint record. Under DDP this gathers every process's RNG state: call it on every process."""
        rngs: list = [rng_state()]
        if dist.is_initialized() and dist.get_world_size() > 1:
            rngs = [None] * dist.get_world_size()
            dist.all_gather_object(rngs, rng_state())
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "ema_updates": self.ema.updates,
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": rngs,
                **{name: getattr(self, name) for name in self.COUNTERS}}

    def load_state_dict(self, state: dict, rank: int = 0) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"], state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        for name in self.COUNTERS:
            setattr(self, name, state[name])
        rngs = state["rng"]
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])  # a different process count: rank 0's


# ----------------------------------------------------------------------------- the loop

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Trainer:
    """One run of the recipe. ``__init__`` checks the settings and the data and builds everything without writing
    a byte; ``fit`` claims the output folder, then ``restore``s (with --resume) and repeats ``train_step``,
    ``log``, ``evaluate_and_keep_best`` and ``save``. ``callbacks`` maps "on_step" / "on_eval" / "on_epoch_end"
    to a function (or list) called on rank 0 with a dict of the current numbers (step, epoch, loss, lr,
    minival_top1 ...), so a notebook can plot live without the trainer knowing about plots."""

    def __init__(self, config: TrainConfig, callbacks: dict | None = None):
        check(config)
        self.config, self.callbacks = config, callbacks or {}
        self.rank, self.world, self.device = setup_distributed(config.device)
        c, device = config, self.device
        if c.batch_size % (self.world * c.accumulate):
            raise TrainError(f"--batch-size {c.batch_size} (global) must divide by processes x accumulate = "
                             f"{self.world} x {c.accumulate}")
        micro = c.batch_size // (self.world * c.accumulate)  # images per process per forward pass

        torch.manual_seed(c.seed)  # same initial weights on every process (DDP also broadcasts them)
        random.seed(c.seed)
        np.random.seed(c.seed)
        resolution = model_config(c, 1).resolution  # the model's own unless --resolution is given
        data = build_datasets(c, resolution)
        self.classes, self.empty = data["classes"], data["empty"]
        if c.num_classes is not None and c.num_classes < len(self.classes):
            raise TrainError(f"--num-classes {c.num_classes} is fewer than the {len(self.classes)} class folders "
                             f"in {Path(c.data) / 'train'}")
        if len(data["train"]) < c.batch_size:  # small data: say what to pass instead of training on nothing
            unit = self.world * c.accumulate
            fit = unit * 2 ** max(0, int(math.log2(max(1, len(data["train"]) // (4 * unit)))))
            raise TrainError(f"the training set has {len(data['train'])} images (after the minival split), fewer "
                             f"than one global batch of {c.batch_size}: pass a smaller --batch-size, e.g. "
                             f"--batch-size {fit} (4 or more steps per epoch)")
        torch.manual_seed(c.seed)
        model: nn.Module = build_model(c, c.num_classes or len(self.classes))
        source = getattr(model, "weights_source", "ours")
        if source != "ours":  # pretrained weights expect their own input normalisation (Lite: (x - 127) / 128)
            data = build_datasets(c, resolution, source, scanned=data)
        if c.sync_bn and self.world > 1:
            model = convert_sync_bn(model, device)
        model.to(device)
        self.channels_last = c.channels_last and device.type == "cuda"
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.amp, fp16 = autocast(c, device)
        optimizer = RMSpropTF(param_groups(model, c.weight_decay, c.decay_biases, c.backbone_lr_scale), lr=0.0,
                              decay=c.rmsprop_decay, momentum=c.momentum, eps=c.eps)
        self.run = Run(model, EMA(model, c.ema_decay, c.ema_warmup), optimizer,
                       torch.amp.GradScaler(device.type, enabled=fp16))
        self.peak_lr = c.lr_per_256 * c.batch_size / 256  # linear scaling: 0.256 at batch 4096

        self.sampler = ResumableSampler(len(data["train"]), c.batch_size, self.rank, self.world, c.seed)
        self.loader: torch.utils.data.DataLoader | GpuLoader
        if check_decode_on(c.decode_on) == "gpu":  # same samples, seeds and augmentation; decoded on the device
            self.loader = gpu_train_loader(data["train"], self.sampler, micro, device, c.num_workers)
        else:
            self.loader = torch.utils.data.DataLoader(
                data["train"], batch_size=micro, sampler=self.sampler, num_workers=c.num_workers,
                pin_memory=device.type == "cuda", generator=torch.Generator(),  # own generator: global RNG untouched
                prefetch_factor=4 if c.num_workers else None)
        self.eval_loaders = {name: eval_loader(data[name], micro, c.num_workers, self.rank, self.world)
                             for name in ("minival", "val") if name in data and len(data[name])}
        self.steps_per_epoch = self.sampler.batches
        self.last_step = max(1, round(c.epochs * self.steps_per_epoch))
        if c.max_steps:
            self.last_step = min(self.last_step, c.max_steps)

        self.ddp_model: nn.Module = model
        if self.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.run_model = torch.compile(self.ddp_model) if c.compile else self.ddp_model
        self.criterion = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        self.output = Path(c.output)
        self.lock = OutputLock(self.output / "run.lock")
        self.log_file: Log | None = None
        self.bar = None
        # NaN/inf guard: a flag OR-ed on the device every step (no sync), read only at log and save points.
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.checked_step: int | None = None
        self.saved_step: int | None = None
        self.metrics: dict = {}
        self.window = self.new_window()

    # --------------------------------------------------------------- helpers shared by the steps
    def on_rank0(self, fn) -> None:
        """Run ``fn`` on rank 0 only; a TrainError there stops every process (the others would wait forever)."""
        error = None
        if self.rank == 0:
            try:
                fn()
            except TrainError as exc:
                error = str(exc)
        if self.world > 1:
            box = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error:
            raise TrainError(error)

    def call(self, event: str, state: dict) -> None:
        fns = self.callbacks.get(event, []) if self.rank == 0 else []
        for fn in fns if isinstance(fns, (list, tuple)) else [fns]:
            fn(state)

    def new_window(self) -> dict:
        return {"loss": torch.zeros((), device=self.device), "steps": 0, "wait": 0.0, "start": time.perf_counter()}

    def check_finite(self, weights: bool = False) -> None:
        """Stop when a loss since the start (the device flag) or, before a save, a weight is NaN/inf. The flags
        are all-reduced, so every process stops at the same point instead of one raising and the others
        hanging in the next collective."""
        weights_bad = torch.zeros_like(self.nonfinite)
        if weights:
            tensors = [t for m in (self.run.model, self.run.ema.module) for t in m.state_dict().values()
                       if t.is_floating_point()]
            weights_bad = ~torch.stack([t.isfinite().all() for t in tensors]).all()
        flags = torch.stack([self.nonfinite, weights_bad]).float()
        if self.world > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        loss_bad, weights_bad = flags.tolist()
        if loss_bad or weights_bad:
            what = "training loss" if loss_bad else "weights"
            since = f"finite at step {self.checked_step}" if self.checked_step else "never checked finite"
            kept = f"last.pt holds step {self.saved_step}" if self.saved_step else "no checkpoint was written"
            fix = f"lower --lr-per-256 (now {self.config.lr_per_256:g})" + (
                " or train in --precision fp32" if self.config.precision == "fp16" else "")
            raise TrainError(f"the {what} became NaN or infinite by step {self.run.step} ({since}); stopped, "
                             f"{kept}: {fix}")
        self.checked_step = self.run.step

    # --------------------------------------------------------------- the named steps
    def restore(self) -> None:
        """Continue from last.pt exactly where it was written. A truncated file, a pickle that wants to run code
        (refused by weights_only loading, nothing executed) or another network's checkpoint is one clear error."""
        path = self.output / "last.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainError(f"--resume: {path} is not a readable checkpoint ({_first_line(exc)})") from None
        if not isinstance(state, dict) or "optimizer" not in state:
            raise TrainError(f"--resume: {path} is not a checkpoint written by effnet-edu train (no optimizer state)")
        theirs, ours = state.get("effnet_edu") or {}, weights_meta(self.run.model)  # type: ignore[arg-type]
        differ = [f"{k} {theirs.get(k)!r} (this run: {ours[k]!r})" for k in ours
                  if k != "name" and theirs.get(k) != ours[k]]  # the name follows from the other settings
        if differ:
            raise TrainError(f"--resume: {path} holds a different network ({', '.join(differ)}): resume with the "
                             f"same model settings, or train into a new --output")
        try:
            self.run.load_state_dict(state, self.rank)
        except KeyError as exc:
            raise TrainError(f"--resume: {path} is not a checkpoint written by effnet-edu train (no {exc})") from None
        except (ValueError, RuntimeError, TypeError) as exc:
            raise TrainError(f"--resume: {path} does not fit this run ({_first_line(exc)})") from None
        self.checked_step = self.saved_step = self.run.step

    def train_step(self, batches) -> tuple[torch.Tensor, float]:
        """One optimizer step over ``accumulate`` micro-batches; returns the step's loss (still on the device)."""
        c, run = self.config, self.run
        lr = lr_at(run.step, self.steps_per_epoch, self.peak_lr, c.warmup_epochs, c.decay_epochs, c.decay_rate)
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # --backbone-lr-scale: the backbone's groups go slower
        loss_sum = torch.zeros((), device=self.device)  # stays on the device: no sync per step
        for micro_step in range(c.accumulate):
            t0 = time.perf_counter()
            images, labels, bad = next(batches)
            self.window["wait"] += time.perf_counter() - t0
            self.note_bad_images(bad)
            images = images.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(self.device, non_blocking=True)
            sync = micro_step == c.accumulate - 1 or self.world == 1  # DDP all-reduces on the last one only
            with (contextlib.nullcontext() if sync else self.ddp_model.no_sync()), self.amp:  # type: ignore[operator]
                loss = self.criterion(self.run_model(images).float(), labels) / c.accumulate
            run.scaler.scale(loss).backward()
            loss_sum += loss.detach()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        run.ema.update(run.model)
        run.step += 1
        run.batch_in_epoch += 1
        self.nonfinite |= ~loss_sum.isfinite()
        self.window["loss"] += loss_sum
        self.window["steps"] += 1
        return loss_sum, lr

    def note_bad_images(self, bad) -> None:
        bad_here = [b for b in bad if b]
        if bad_here:
            self.run.bad_images += len(bad_here)
            with open(self.output / f"bad_images.rank{self.rank}.txt", "a") as file:
                file.writelines(b + "\n" for b in bad_here)

    def log(self, lr: float) -> dict:
        """The mean loss since the last log, the learning rate and the throughput. Reading the loss waits for
        the device, which is why this runs every ``log_every`` steps (and at the last), not every step."""
        self.check_finite()
        w, elapsed = self.window, time.perf_counter() - self.window["start"]
        mean_loss = w["loss"].item() / w["steps"]
        self.window = self.new_window()
        if self.bar:
            self.bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.4g}")
        return {"loss": mean_loss, "lr": lr, "images_per_s": w["steps"] * self.config.batch_size / elapsed,
                "data_wait": w["wait"] / elapsed}

    def evaluate_and_keep_best(self) -> bool:
        """Top-1/top-5 of the EMA weights (as the official code) on minival and val; True when minival improved
        (Section 5.2's early stopping keeps those weights as best.pt)."""
        self.check_finite()  # no point evaluating NaN weights
        run = self.run
        self.metrics = {"step": run.step, "epoch": run.epoch + run.batch_in_epoch / self.steps_per_epoch}
        for name, loader in self.eval_loaders.items():
            result = evaluate(run.ema.module, loader, self.device, self.amp, self.channels_last)
            self.metrics[f"{name}_top1"], self.metrics[f"{name}_top5"] = result["top1"], result["top5"]
        improved = self.metrics.get("minival_top1", -math.inf) > run.best_minival_top1
        if improved:
            run.best_minival_top1 = self.metrics["minival_top1"]
        return improved

    def save(self, best: bool = False) -> None:
        """last.pt (and best.pt when minival improved) through ``weights.save_weights``: atomic, never NaN weights.
        The EMA weights are the file's ``state_dict``, so ``eval``/``predict``/``from_file`` read it directly."""
        self.check_finite(weights=True)
        record = {**self.run.state_dict(), "config": asdict(self.config), "classes": self.classes}
        paths = [self.output / "last.pt"] + ([self.output / "best.pt"] if best else [])

        def write():
            for path in paths:
                try:
                    save_weights(self.run.ema.module, path, record)
                except OSError as exc:
                    kept = f"step {self.saved_step} is kept" if self.saved_step else "no checkpoint was written"
                    raise TrainError(f"cannot write {path}: {exc.strerror or exc} ({kept})") from None

        self.on_rank0(write)
        self.saved_step = self.run.step

    # --------------------------------------------------------------- the loop
    def fit(self) -> dict:
        c, run = self.config, self.run
        try:
            self.on_rank0(lambda: claim_output(self.output, self.lock, c.resume))
            if c.resume:
                self.restore()
            if self.rank == 0:
                self.log_file = Log(self.output, c.tensorboard, run.step if c.resume else None)
                if c.progress:
                    try:
                        from tqdm.auto import tqdm
                        self.bar = tqdm(total=self.last_step, initial=run.step, desc="train", unit="step",
                                        dynamic_ncols=True)
                    except ImportError:
                        print("no progress bar: pip install 'effnet-edu[train]' (tqdm); log.csv has every number")
            while run.step < self.last_step:
                self.sampler.set_epoch(run.epoch, run.batch_in_epoch)
                train_mode(run.model)  # model.train(), but a frozen backbone keeps its BatchNorm statistics
                batches = iter(self.loader)
                for _ in range(run.batch_in_epoch, self.steps_per_epoch):  # the rest of this epoch
                    self.iteration(batches)
                    if run.step >= self.last_step:
                        break
        finally:
            if self.bar:
                self.bar.close()
            if self.log_file:
                self.log_file.close()
            self.lock.release()
        if run.bad_images and self.rank == 0:
            print(f"skipped {run.bad_images} unreadable image(s); see {self.output}/bad_images.rank*.txt")
        return {"step": run.step, "epoch": run.epoch, "best_minival_top1": run.best_minival_top1,
                "bad_images": run.bad_images, "empty_classes": self.empty, **self.metrics}

    def iteration(self, batches) -> None:
        """One optimizer step and whatever falls due after it: log, evaluate, save."""
        c, run = self.config, self.run
        loss, lr = self.train_step(batches)
        final, end_of_epoch = run.step >= self.last_step, run.batch_in_epoch >= self.steps_per_epoch
        epoch = run.epoch + run.batch_in_epoch / self.steps_per_epoch
        evaluating = (end_of_epoch and (run.epoch + 1) % c.eval_every == 0) or final
        # The loss is logged wherever accuracies are, so no row of log.csv lacks it (and always at the last step).
        row = {"step": run.step, "epoch": epoch, **self.log(lr)} if run.step % c.log_every == 0 or evaluating else {}
        if self.bar:
            self.bar.update(1)
        if self.rank == 0 and "on_step" in self.callbacks:
            self.call("on_step", {"step": run.step, "epoch": epoch, "lr": lr, "loss": loss.item()})
        if end_of_epoch:
            run.epoch, run.batch_in_epoch = run.epoch + 1, 0
        improved = evaluating and self.evaluate_and_keep_best()
        if evaluating:
            row.update(self.metrics)
        if row and self.log_file:
            self.log_file.write({**row, "bad_images": run.bad_images})
        if evaluating:
            self.call("on_eval", self.metrics)
        if end_of_epoch:
            self.call("on_epoch_end", {"step": run.step, "epoch": run.epoch, **self.metrics})
        if end_of_epoch or final or (c.checkpoint_every and run.step % c.checkpoint_every == 0):
            self.save(best=improved)


def train(config: TrainConfig, callbacks: dict | None = None) -> dict:
    """Train with ``config``; returns the final metrics (see ``Trainer`` for ``callbacks``)."""
    return Trainer(config, callbacks).fit()
