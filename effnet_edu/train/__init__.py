"""Training EfficientNet on ImageNet with the paper's recipe (Section 5.2 and the official code).

``config`` (the recipe as one dataclass), ``data`` (folder dataset, minival split, transforms, resumable sampler),
``optim`` (TF-style RMSProp, warmup + staircase schedule, EMA), ``output`` (the output folder's lock, log.csv),
``engine`` (one run as named steps: restore, train step, log, evaluate and keep the best, save; one process or DDP).
Needs the ``train`` extra for the progress bar and TensorBoard: ``pip install 'effnet-edu[train]'``.
"""

from .config import TrainConfig, TrainError, add_arguments, describe, from_args
from .data import (
                   DataError,
                   FolderDataset,
                   ResumableSampler,
                   augment_transform,
                   eval_transform,
                   minival_split,
                   scan_folder,
)
from .engine import build_model, evaluate, train
from .optim import EMA, RMSpropTF, lr_at, param_groups

__all__ = ["DataError", "EMA", "FolderDataset", "RMSpropTF", "ResumableSampler", "TrainConfig", "TrainError",
           "add_arguments", "augment_transform", "build_model", "describe", "eval_transform", "evaluate", "from_args",
           "lr_at", "minival_split", "param_groups", "scan_folder", "train"]
