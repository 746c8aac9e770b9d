"""The training loop: one process or many (torchrun + DDP), exact resume, evaluation with the EMA weights.

    effnet-edu train --model b0 --data /imagenet --output runs/b0                  # one GPU (or CPU)
    torchrun --nproc_per_node 8 -m effnet_edu train --model b0 --data ... --output runs/b0   # 8 GPUs, DDP

Every ``checkpoint_every`` steps and at each epoch end, ``<output>/last.pt`` holds everything needed to continue
bit-exactly: weights, EMA, optimizer slots, step, RNG states of every process and the sampler position (the data
order is a pure function of (seed, epoch), the augmentation of (seed, epoch, index)). ``best.pt`` holds the EMA
weights with the best minival top-1 (Section 5.2's early stopping).
"""

from __future__ import annotations

import contextlib
import csv
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
from .config import TrainConfig
from .data import FolderDataset, ResumableSampler, eval_transform, minival_split, scan_folder, train_transform
from .gpu_data import check_decode_on, gpu_train_loader
from .optim import EMA, RMSpropTF, lr_at, param_groups


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
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), False
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), precision == "fp16"


# ----------------------------------------------------------------------------- model and data

def build_model(config: TrainConfig, num_classes: int) -> EfficientNet:
    return EfficientNet(model_config(config, num_classes))


def model_config(config: TrainConfig, num_classes: int):
    """The architecture (arch.EfficientNetConfig) that the recipe names: a family member or width/depth."""
    extra = {} if config.dropout is None else {"dropout": config.dropout}
    extra["bn_momentum"] = round(1 - config.bn_momentum, 12)  # TF keeps decay * old; torch keeps (1 - m) * old
    if config.width is not None or config.depth is not None:
        return resolve(width=config.width, depth=config.depth, resolution=config.resolution,
                       num_classes=num_classes, drop_path=config.drop_path, **extra)
    return resolve(config.model, resolution=config.resolution, num_classes=num_classes,
                   drop_path=config.drop_path, **extra)


def build_datasets(config: TrainConfig, resolution: int) -> dict:
    """train / minival (held out of train) / val (if DATA/val exists) datasets and the class names."""
    root = Path(config.data)
    samples, classes, empty = scan_folder(root / "train")
    train_ix, minival_ix = minival_split(samples, config.minival_size, config.seed)
    augment = train_transform(resolution, config.augment, randaugment_n=config.randaugment_n,
                              randaugment_m=config.randaugment_m)
    test = eval_transform(resolution)
    out = {"classes": classes, "empty": empty,
           "train": FolderDataset([samples[i] for i in train_ix], augment, config.seed, config.skip_bad_images),
           "minival": FolderDataset([samples[i] for i in minival_ix], test, skip_bad=config.skip_bad_images)}
    if (root / "val").is_dir():
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


# ----------------------------------------------------------------------------- checkpoints

def rng_state() -> dict:
    np_state = np.random.get_state()
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


def weights_meta(model: EfficientNet) -> dict:
    """The model settings ``weights.from_file`` needs to rebuild the network from a checkpoint by itself."""
    meta = {k: v for k, v in vars(model.config).items() if isinstance(v, (int, float, str, bool))}
    return {**meta, "weights_source": "ours"}


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file, then rename: a crash mid-write never leaves a half checkpoint behind."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the loop

class _Log:
    """log.csv (one row per log interval or evaluation) and TensorBoard scalars, written by rank 0."""

    COLUMNS = ["step", "epoch", "loss", "lr", "images_per_s", "data_wait", "minival_top1", "minival_top5",
               "val_top1", "val_top5", "bad_images"]

    def __init__(self, output: Path, tensorboard: bool):
        path = output / "log.csv"
        new = not path.exists()
        self.file = open(path, "a", newline="")
        self.csv = csv.DictWriter(self.file, self.COLUMNS, extrasaction="ignore")
        if new:
            self.csv.writeheader()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(output / "tensorboard"))
            except ImportError:
                pass  # tensorboard is an optional extra: pip install 'effnet-edu[train]'

    def write(self, row: dict) -> None:
        self.csv.writerow(row)
        self.file.flush()
        if self.tb:
            for key, value in row.items():
                if key not in ("step", "epoch") and value is not None:
                    self.tb.add_scalar(key, value, row["step"])

    def close(self):
        self.file.close()
        if self.tb:
            self.tb.close()


def _call(callbacks, event: str, state: dict) -> None:
    fns = (callbacks or {}).get(event, [])
    for fn in fns if isinstance(fns, (list, tuple)) else [fns]:
        fn(state)


def train(config: TrainConfig, callbacks: dict | None = None) -> dict:
    """Train with ``config``; returns the final metrics. ``callbacks`` maps "on_step" / "on_eval" /
    "on_epoch_end" to a function (or list) called on rank 0 with a dict of the current numbers (step, epoch,
    loss, lr, minival_top1 ...), so a notebook can plot live without the trainer knowing about plots."""
    rank, world, device = setup_distributed(config.device)
    output = Path(config.output)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
    if config.batch_size % (world * config.accumulate):
        raise ValueError(f"batch_size {config.batch_size} (global) must divide by processes x accumulate = "
                         f"{world} x {config.accumulate}")
    micro = config.batch_size // (world * config.accumulate)  # images per process per forward pass

    torch.manual_seed(config.seed)  # same initial weights on every process (DDP also broadcasts them)
    random.seed(config.seed)
    np.random.seed(config.seed)
    resolution = model_config(config, 1).resolution  # the model's own unless --resolution is given
    data = build_datasets(config, resolution)
    num_classes = config.num_classes or len(data["classes"])
    torch.manual_seed(config.seed)
    model = build_model(config, num_classes)
    if config.sync_bn and world > 1:
        model = convert_sync_bn(model, device)
    model.to(device)
    channels_last = config.channels_last and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ema = EMA(model, config.ema_decay, config.ema_warmup)

    peak_lr = config.lr_per_256 * config.batch_size / 256  # linear scaling: 0.256 at batch 4096
    optimizer = RMSpropTF(param_groups(model, config.weight_decay, config.decay_biases), lr=0.0,
                          decay=config.rmsprop_decay, momentum=config.momentum, eps=config.eps)
    amp, fp16 = autocast(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)

    sampler = ResumableSampler(len(data["train"]), config.batch_size, rank, world, config.seed)
    if check_decode_on(config.decode_on) == "gpu":  # same samples, seeds and augmentation; decoded on the device
        loader = gpu_train_loader(data["train"], sampler, micro, device, config.num_workers)
    else:
        loader = torch.utils.data.DataLoader(
            data["train"], batch_size=micro, sampler=sampler, num_workers=config.num_workers,
            pin_memory=device.type == "cuda", generator=torch.Generator(),  # own generator: global RNG untouched
            persistent_workers=False, prefetch_factor=4 if config.num_workers else None)
    eval_batch = max(micro, 1)
    loaders = {name: eval_loader(data[name], eval_batch, config.num_workers, rank, world)
               for name in ("minival", "val") if name in data and len(data[name])}

    steps_per_epoch = sampler.batches
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    step, epoch, batch_in_epoch, best, bad_total = 0, 0, 0, -1.0, 0
    last_path, best_path = output / "last.pt", output / "best.pt"
    if config.resume:
        if not last_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"], ckpt["ema_updates"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        best, bad_total = ckpt["best_minival_top1"], ckpt["bad_images"]
        states = ckpt["rng"]
        set_rng_state(states[rank] if rank < len(states) else states[0])

    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    run_model = torch.compile(ddp_model) if config.compile else ddp_model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    log = _Log(output, config.tensorboard) if rank == 0 else None

    def checkpoint():
        states = [None] * world
        if world > 1:
            dist.all_gather_object(states, rng_state())
        else:
            states = [rng_state()]
        if rank == 0:
            save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "ema_updates": ema.updates,
                         "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                         "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_minival_top1": best,
                         "bad_images": bad_total, "rng": states, "config": asdict(config),
                         "classes": data["classes"], "effnet_edu": weights_meta(model)}, last_path)

    bar = None
    if rank == 0 and config.progress:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
        except ImportError:
            print("no progress bar: pip install 'effnet-edu[train]' (tqdm); log.csv has every number")
    metrics: dict = {}
    window = {"loss": 0.0, "steps": 0, "wait": 0.0, "start": time.perf_counter()}
    while step < total_steps:
        sampler.set_epoch(epoch, batch_in_epoch)
        model.train()
        batches = iter(loader)
        while batch_in_epoch < steps_per_epoch and step < total_steps:
            lr = lr_at(step, steps_per_epoch, peak_lr, config.warmup_epochs, config.decay_epochs, config.decay_rate)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)  # stays on the GPU: no sync per step
            for micro_step in range(config.accumulate):
                t0 = time.perf_counter()
                images, labels, bad = next(batches)
                window["wait"] += time.perf_counter() - t0
                bad_here = [b for b in bad if b]
                if bad_here:
                    bad_total += len(bad_here)
                    with open(output / f"bad_images.rank{rank}.txt", "a") as f:
                        f.writelines(b + "\n" for b in bad_here)
                images = images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels = labels.to(device, non_blocking=True)
                sync = micro_step == config.accumulate - 1 or world == 1
                with (contextlib.nullcontext() if sync else ddp_model.no_sync()), amp:
                    loss = criterion(run_model(images).float(), labels) / config.accumulate
                scaler.scale(loss).backward()
                loss_sum += loss.detach()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            ema.update(model)
            step += 1
            batch_in_epoch += 1
            window["loss"] += loss_sum
            window["steps"] += 1
            state = {"step": step, "epoch": epoch + batch_in_epoch / steps_per_epoch, "lr": lr}
            if bar:
                bar.update(1)
            if step % config.log_every == 0:  # reading the loss waits for the GPU: only every log_every steps
                mean_loss = window["loss"].item() / window["steps"]
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"loss became {mean_loss} by step {step}; lower --lr-per-256")
                if rank == 0:
                    elapsed = time.perf_counter() - window["start"]
                    log.write({**state, "loss": mean_loss, "bad_images": bad_total,
                               "images_per_s": window["steps"] * config.batch_size / elapsed,
                               "data_wait": window["wait"] / elapsed})
                    if bar:
                        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.4g}")
                window = {"loss": 0.0, "steps": 0, "wait": 0.0, "start": time.perf_counter()}
            if rank == 0 and callbacks and "on_step" in callbacks:
                _call(callbacks, "on_step", {**state, "loss": loss_sum.item()})
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint()
            if config.max_steps and step >= config.max_steps:
                break
        finished = step >= total_steps
        end_of_epoch = batch_in_epoch >= steps_per_epoch
        if end_of_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
        if (end_of_epoch and epoch % config.eval_every == 0) or finished:
            metrics = {"step": step, "epoch": epoch + batch_in_epoch / steps_per_epoch}
            for name, eval_data in loaders.items():  # evaluated with the EMA weights, as the official code
                result = evaluate(ema.module, eval_data, device, amp, channels_last)
                metrics[f"{name}_top1"], metrics[f"{name}_top5"] = result["top1"], result["top5"]
            if "minival_top1" in metrics and metrics["minival_top1"] > best:
                best = metrics["minival_top1"]
                if rank == 0:  # early stopping on minival (Section 5.2): keep the best EMA weights
                    save_atomic({"ema": ema.state_dict(), "model": model.state_dict(), "step": step,
                                 "minival_top1": best, "config": asdict(config), "classes": data["classes"],
                                 "effnet_edu": weights_meta(model)}, best_path)
            if rank == 0:
                log.write({**metrics, "bad_images": bad_total})
                _call(callbacks, "on_eval", metrics)
        if end_of_epoch:
            if rank == 0:
                _call(callbacks, "on_epoch_end", {"step": step, "epoch": epoch, **metrics})
            checkpoint()
        if config.max_steps and step >= config.max_steps:
            checkpoint()
            break
    if bar:
        bar.close()
    if log:
        log.close()
    if bad_total and rank == 0:
        print(f"skipped {bad_total} unreadable image(s); see {output}/bad_images.rank*.txt")
    return {"step": step, "epoch": epoch, "best_minival_top1": best, "bad_images": bad_total,
            "empty_classes": data["empty"], **metrics}
