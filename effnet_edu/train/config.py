"""The whole ImageNet training recipe as ONE dataclass: every field defaults to the paper's (or the official code's)
value, and ``add_arguments`` turns every field into a command-line option, so nothing is hidden in the code.

Sources: Tan & Le 2019, Section 5.2 ("RMSProp optimizer with decay 0.9 and momentum 0.9; batch norm momentum 0.99;
weight decay 1e-5; initial learning rate 0.256 that decays by 0.97 every 2.4 epochs ... AutoAugment ... stochastic
depth with survival probability 0.8 ... We reserve 25K randomly picked images from the training set as a minival
set"), and the official TPU code for what the text leaves out (warmup, eps inside the sqrt, EMA, label smoothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import typing
from dataclasses import dataclass, fields


@dataclass
class TrainConfig:
    # --- what to train, where ---
    model: str = "b0"  # a family member b0..b7 / lite0..lite4 (sets width, depth, resolution and dropout)
    data: str = ""  # folder with train/<class>/*.JPEG and (optionally) val/<class>/*.JPEG
    output: str = "runs/effnet"  # checkpoints (last.pt, best.pt), log.csv, TensorBoard events
    width: float | None = None  # a custom scaling point instead of a family member (e.g. tiny test models)
    depth: float | None = None
    resolution: int | None = None  # None: the model's own (224 for B0)
    num_classes: int | None = None  # None: the number of class folders in train/
    dropout: float | None = None  # None: the model's own, 0.2 (B0) .. 0.5 (B7), before the FC layer
    drop_path: float = 0.2  # stochastic depth of the last block: survival probability 0.8 (Section 5.2)
    bn_momentum: float = 0.99  # "batch norm momentum 0.99" (Section 5.2), TF's convention: torch momentum 0.01
    # --- transfer learning (Section 5.3: "take ImageNet pretrained checkpoints and finetune on new datasets") ---
    init_from: str | None = None  # lite0/lite1/lite2 (offline ImageNet weights) or a weights file; a fresh classifier
    freeze_backbone: bool = False  # train the classifier only (needs --init-from); frozen BatchNorm keeps its stats
    backbone_lr_scale: float = 1.0  # backbone lr = this x the classifier's (needs --init-from), e.g. 0.1
    # --- optimisation: RMSProp with TF semantics (official code) ---
    epochs: float = 350.0  # "about 350 epochs" (official code: 350)
    batch_size: int = 4096  # GLOBAL images per optimizer step (all processes x accumulation); paper: 4096 on TPU
    lr_per_256: float = 0.016  # base lr 0.016 per 256 images: 0.256 at batch 4096, the paper's "0.256"
    warmup_epochs: float = 5.0  # linear warmup from 0 (official code)
    decay_epochs: float = 2.4  # lr x decay_rate every 2.4 epochs, staircase (Section 5.2)
    decay_rate: float = 0.97
    rmsprop_decay: float = 0.9  # TF's "decay" = rho, the squared-gradient average (Section 5.2)
    momentum: float = 0.9
    eps: float = 1e-3  # added INSIDE the square root, TF-style (torch.optim.RMSprop adds it outside)
    weight_decay: float = 1e-5  # L2 loss term on all weights except BatchNorm's (Section 5.2, official code)
    decay_biases: bool = True  # the official code decays every non-BN variable, biases of SE and FC included
    label_smoothing: float = 0.1  # official code
    ema_decay: float = 0.9999  # EMA of weights AND BN statistics; evaluation uses the EMA (official code)
    ema_warmup: bool = True  # TF's num_updates: decay = min(ema_decay, (1 + t) / (10 + t)) at step t
    # --- data ---
    augment: str = "autoaugment"  # "autoaugment" (ImageNet policy, Section 5.2), "randaugment" or "none"
    randaugment_n: int = 2
    randaugment_m: int = 9
    minival_size: int = 25000  # training images held out for model selection (Section 5.2); 0: none
    num_workers: int = 8  # data loader processes per training process
    decode_on: str = "cpu"  # "cpu": PIL in the loader workers; "gpu": nvJPEG + batched augmentation on the GPU
    skip_bad_images: bool = True  # a corrupt image is reported and replaced; False: raise at once
    seed: int = 0  # fixes the split, the data order, the augmentations and the initialisation
    # --- engine ---
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16" (autocast)
    channels_last: bool = True  # faster convolutions on CUDA tensor cores
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm across processes (the official TPU code normalises per replica)
    accumulate: int = 1  # gradient accumulation steps per optimizer step
    checkpoint_every: int = 1000  # also write last.pt every N optimizer steps (always at each epoch end)
    max_steps: int = 0  # stop after this many optimizer steps in total (0: run all epochs)
    eval_every: int = 1  # evaluate minival (and val) every N epochs
    log_every: int = 50  # log loss/lr/throughput every N steps
    resume: bool = False  # continue exactly from <output>/last.pt
    tensorboard: bool = True
    progress: bool = True  # tqdm bar on rank 0


class TrainError(Exception):
    """A run that cannot start or cannot go on: a setting out of range, an output folder in use or not writable, a
    checkpoint that does not fit, a loss that became NaN. The message is one line that says what to change (the
    command line prints it and exits with status 2)."""


# What each setting may be, as (test, its wording in the error); floats must also be finite. argparse checks an
# option as it is read (one line, exit status 2), ``check`` a whole config for library callers.
POSITIVE, AT_LEAST_0, AT_LEAST_1 = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, ">= 0"), (lambda v: v >= 1, ">= 1")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")
LIMITS = {
    "width": POSITIVE, "depth": POSITIVE, "resolution": AT_LEAST_1, "num_classes": AT_LEAST_1, "dropout": FRACTION,
    "drop_path": FRACTION, "bn_momentum": (lambda v: 0 < v < 1, "in (0, 1)"), "epochs": POSITIVE,
    "batch_size": AT_LEAST_1, "lr_per_256": POSITIVE, "warmup_epochs": AT_LEAST_0, "decay_epochs": POSITIVE,
    "decay_rate": (lambda v: 0 < v <= 1, "in (0, 1]"), "rmsprop_decay": FRACTION, "momentum": FRACTION,
    "eps": POSITIVE, "weight_decay": AT_LEAST_0, "label_smoothing": FRACTION, "ema_decay": FRACTION,
    "randaugment_n": AT_LEAST_0, "randaugment_m": (lambda v: 0 <= v <= 30, "in 0..30"),  # torchvision: 31 bins
    "minival_size": AT_LEAST_0, "num_workers": AT_LEAST_0, "seed": AT_LEAST_0, "accumulate": AT_LEAST_1,
    "checkpoint_every": AT_LEAST_0, "max_steps": AT_LEAST_0, "eval_every": AT_LEAST_1, "log_every": AT_LEAST_1,
    "backbone_lr_scale": (lambda v: 0 < v <= 1, "in (0, 1]"),  # 1: the same rate as the classifier
}
CHOICES = {"augment": ("autoaugment", "randaugment", "none"), "precision": ("auto", "fp32", "bf16", "fp16")}


def device_problem(text: str) -> str | None:
    """Why ``text`` is not a device this machine can train on (None when it is): auto, cpu, cuda, cuda:N, mps."""
    if text == "auto":
        return None
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        return f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"{text!r} needs a CUDA GPU and PyTorch sees none here; use cpu (or auto)"
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        return f"{text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return f"{text!r} needs Apple's MPS backend, which PyTorch does not find here; use cpu (or auto)"
    if device.type not in ("cpu", "cuda", "mps"):
        return f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}"
    return None


def problem(name: str, value) -> str | None:
    """Why ``value`` is not allowed for the setting ``name`` (None when it is)."""
    if value is None or isinstance(value, bool):
        return None
    if name == "device":
        return device_problem(value)
    if name == "init_from":
        from .transfer import init_problem

        return init_problem(value)
    if name in CHOICES and value not in CHOICES[name]:
        return f"expected one of {', '.join(CHOICES[name])}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if name in LIMITS and not LIMITS[name][0](value):
        return f"must be {LIMITS[name][1]}, got {value}"
    return None


def check(config: TrainConfig) -> None:
    """Raise TrainError naming the first setting out of range (the command line has checked each already)."""
    for f in fields(config):
        why = problem(f.name, getattr(config, f.name))
        if why:
            raise TrainError(f"{f.name}: {why}")
    if config.init_from is None and (config.freeze_backbone or config.backbone_lr_scale != 1):
        option = "--freeze-backbone" if config.freeze_backbone else "--backbone-lr-scale"
        from .transfer import PRETRAINED

        raise TrainError(f"{option} needs pretrained weights to keep: add --init-from ({', '.join(PRETRAINED)} or a "
                         f"weights file); from scratch, every layer has to learn")
    if config.freeze_backbone and config.backbone_lr_scale != 1:
        raise TrainError(f"--freeze-backbone trains the classifier only, so --backbone-lr-scale "
                         f"{config.backbone_lr_scale:g} would scale nothing: give one of the two")



def field_help() -> dict[str, str]:
    """Each field's trailing comment, so ``--help`` says *why* a default is what it is (one source of truth)."""
    source = inspect.getsource(TrainConfig)
    return dict(re.findall(r"^    (\w+): [^#\n]*#\s*(.*)$", source, flags=re.M))


def _field_type(f: dataclasses.Field, hints: dict) -> type:
    hint = hints[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint  # "float | None" -> float


def option_type(name: str, kind: type, optional: bool = False):
    """An argparse ``type=`` for the setting ``name``: parse as ``kind`` ("none" for None when ``optional``),
    then check the range, so a bad value is one line from argparse and exit status 2."""
    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        why = problem(name, value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    convert.__name__ = kind.__name__  # argparse names the type in some messages
    return convert


def add_arguments(parser: argparse.ArgumentParser, skip=()) -> None:
    """One ``--option`` per TrainConfig field (``--batch-size``, ``--lr-per-256`` ...), default = the paper's.
    Booleans take ``--flag`` / ``--no-flag``; optional fields accept ``none``; every value is range-checked."""
    hints = typing.get_type_hints(TrainConfig)
    helps = field_help()
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        kind = _field_type(f, hints)
        flag = "--" + f.name.replace("_", "-")
        text = f"{helps.get(f.name, '')} (default: {f.default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=text)
        elif f.name in CHOICES:
            parser.add_argument(flag, choices=CHOICES[f.name], default=f.default, help=text)
        else:
            parser.add_argument(flag, type=option_type(f.name, kind, optional=f.default is None), default=f.default,
                                metavar=kind.__name__.upper(), help=text)


def from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**{**values, **overrides})


def describe(config: TrainConfig) -> str:
    """The recipe as a fixed-format table (one line per field), e.g. for the notebook and the log."""
    return "\n".join(f"{f.name:<17} {getattr(config, f.name)!r}" for f in fields(config))
