"""The three network families the scaling lab scales (Section 3.3 scales EfficientNet; Section 5.1 and Table 3
apply the same rule to MobileNets and ResNet): one small baseline each, and one function that builds any
(width, depth, resolution) point of it.

- ``effnet``: our EfficientNet, ``effnet_edu.build``, at C0 = B0 x (width 0.25, depth 0.25, 64 px).
- ``mobilenetv2``: torchvision's MobileNetV2 (``width_mult`` for width; each row's repeats ceil-scaled for depth,
  the same ``round_repeats`` rule as ours), at width 0.25, depth 0.35, 64 px.
- ``resnet``: ResNet-18's layout (He et al., 2016: four stages of two ``BasicBlock``s, 64-128-256-512 channels,
  torchvision's block) at an eighth of the width, 64 px. Table 3 scales ResNet-50; at classroom size the
  bottleneck-free ResNet-18 layout is the natural small member.

Multiply-adds: our accounting for EfficientNet (``effnet_edu.accounting.count``); ``torch.utils.flop_counter``
(halved: it counts 2 FLOPs per multiply-add) for the other two, measured once per point and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from ..scaling import round_filters, round_repeats


@dataclass(frozen=True)
class Point:
    """One network of the lab: a family and its scaling multipliers relative to that family's baseline."""

    family: str  # "effnet", "mobilenetv2", "resnet"
    width: float  # multiplier of the family's baseline width (1 = the baseline)
    depth: float
    resolution: int  # input side in pixels

    def absolute(self) -> dict:
        """The absolute (width, depth, resolution) handed to the family's builder."""
        base = BASES[self.family]
        return dict(width=round(base.width * self.width, 6), depth=round(base.depth * self.depth, 6),
                    resolution=self.resolution)


@dataclass(frozen=True)
class Base:
    width: float
    depth: float
    resolution: int


BASES = {
    "effnet": Base(0.25, 0.25, 64),  # "C0": Table 1 at a quarter of the width and depth, 64 px
    "mobilenetv2": Base(0.25, 0.35, 64),
    "resnet": Base(0.125, 1.0, 64),
}


def _effnet(width, depth, resolution, num_classes, dropout):
    from ..model import build

    # BatchNorm momentum 0.1 (PyTorch's default) instead of TF's 0.01: a few hundred steps are too few for a
    # 0.99 running average to forget its random start.
    return build(width=width, depth=depth, resolution=resolution, num_classes=num_classes, dropout=dropout,
                 drop_path=0.0, bn_momentum=0.1)


def _mobilenetv2(width, depth, resolution, num_classes, dropout):
    from torchvision.models import MobileNetV2

    # torchvision's MobileNetV2 rows (expansion t, channels c, repeats n, stride s), repeats scaled by ceil.
    rows = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
            [6, 320, 1, 1]]
    rows = [[t, c, round_repeats(n, depth), s] for t, c, n, s in rows]
    return MobileNetV2(num_classes=num_classes, width_mult=width, inverted_residual_setting=rows, dropout=dropout)


class SmallResNet(nn.Module):
    """ResNet-18's layout: conv stem + max-pool (stride 4 in all), four stages of basic blocks, GAP, FC."""

    def __init__(self, width: float, depth: float, resolution: int, num_classes: int, dropout: float):
        from torchvision.models.resnet import BasicBlock

        super().__init__()
        channels = [round_filters(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, c_in = [], channels[0]
        for i, c in enumerate(channels):
            stride = 1 if i == 0 else 2
            for b in range(round_repeats(2, depth)):
                down = None
                if b == 0 and (stride != 1 or c_in != c):
                    down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))
                layers.append(BasicBlock(c_in, c, stride if b == 0 else 1, down))
                c_in = c
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.classifier(self.dropout(self.forward_features(x).mean((2, 3))))


BUILDERS = {"effnet": _effnet, "mobilenetv2": _mobilenetv2, "resnet": SmallResNet}


def build_point(point: Point, num_classes: int, dropout: float = 0.1) -> nn.Module:
    """A freshly initialised network for ``point`` (weights depend on torch's RNG: seed it first)."""
    a = point.absolute()
    return BUILDERS[point.family](a["width"], a["depth"], point.resolution, num_classes, dropout)


@lru_cache(maxsize=None)
def macs(point: Point, num_classes: int) -> int:
    """Multiply-adds for one image at the point's resolution (the paper's FLOPS)."""
    if point.family == "effnet":
        from ..accounting import count

        a = point.absolute()
        return count(width=a["width"], depth=a["depth"], resolution=a["resolution"], num_classes=num_classes).macs
    from torch.utils.flop_counter import FlopCounterMode

    model = build_point(point, num_classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, point.resolution, point.resolution))
    return counter.get_total_flops() // 2


def params(point: Point, num_classes: int) -> int:
    if point.family == "effnet":
        from ..accounting import count

        a = point.absolute()
        return count(width=a["width"], depth=a["depth"], resolution=a["resolution"], num_classes=num_classes).params
    return sum(p.numel() for p in build_point(point, num_classes).parameters())
