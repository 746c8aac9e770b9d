"""The EfficientNet network (Tan & Le, 2019) in one file: MBConv with squeeze-and-excitation, the stem, the seven
MBConv stages of Table 1, and the head. The architecture itself (channels, repeats, strides) is data in
``arch.py``; this file only turns that description into modules.

    x (B, 3, R, R) -> stem -> stage2 ... stage8 -> head -> pool -> dropout -> classifier -> logits (B, classes)
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from .arch import BlockSpec, EfficientNetConfig, blocks, resolve
from .limits import check_size, size_limits


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding: output = ceil(input / stride), padding the extra pixel at the
    bottom/right. At stride 1 with an odd kernel this equals symmetric k//2 padding; at stride 2 it differs,
    and weights converted from TF (the Lite checkpoints, timm's tf_*) only reproduce their outputs with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):  # W first, as F.pad
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv_bn(config: EfficientNetConfig, in_channels, out_channels, kernel_size=1, stride=1, groups=1, act=True):
    """Conv -> BatchNorm -> activation (none for the projection: a linear bottleneck, MobileNetV2 Section 3.2)."""
    conv: nn.Conv2d
    if config.same_padding and stride > 1:
        conv = Conv2dSame(in_channels, out_channels, kernel_size, stride, groups=groups, bias=False)
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
    layers = [("conv", conv), ("bn", nn.BatchNorm2d(out_channels, eps=config.bn_eps, momentum=config.bn_momentum))]
    if act:
        layers.append(("act", nn.ReLU6(inplace=True) if config.lite else nn.SiLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): global pooling -> 1x1 reduce -> SiLU -> 1x1 expand -> sigmoid,
    then rescale each channel. EfficientNet sizes the squeeze from the *block input* (0.25 x in_channels)."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1): the "squeeze"
        scale = self.expand(F.silu(self.reduce(scale)))  # the "excitation", a tiny bottleneck MLP
        return x * torch.sigmoid(scale)  # (B, C, H, W)


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2) with SE, as in Table 1's MBConv1/MBConv6 rows:
    1x1 expand (skipped when the expansion ratio is 1) -> kxk depthwise -> SE -> 1x1 project -> (+ input)."""

    def __init__(self, spec: BlockSpec, config: EfficientNetConfig):
        super().__init__()
        self.spec = spec
        hidden = spec.hidden_channels
        self.expand = conv_bn(config, spec.in_channels, hidden) if spec.expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn(config, hidden, hidden, spec.kernel_size, spec.stride, groups=hidden)
        self.se = SqueezeExcitation(hidden, spec.se_channels) if spec.se_channels else nn.Identity()
        self.project = conv_bn(config, hidden, spec.out_channels, act=False)
        self.drop_path = spec.drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))  # (B, out, H/stride, W/stride)
        if self.spec.residual:
            # Stochastic depth (Huang et al., 2016): during training drop the whole residual branch per sample
            # with probability drop_path and rescale survivors by 1/(1 - p); identity at evaluation.
            out = x + stochastic_depth(out, self.drop_path, "row", self.training)
        return out


class EfficientNet(nn.Module):
    """An EfficientNet for any scaling point; build one with ``build()``.

    Named parts: ``stem`` (Table 1 stage 1), ``stages.stage2`` .. ``stages.stage8``, ``head`` (stage 9's 1x1
    conv, whose output is the last feature map that class activation maps use), ``classifier`` (the FC layer).
    """

    weights_source: str = "ours"  # where the weights came from (weights.load_weights sets it): the input normalisation

    def __init__(self, config: EfficientNetConfig):
        # Every path from user numbers to a network (build, weights files, the command line, the widgets) comes
        # through here: refuse an absurd size by arithmetic before a single tensor is allocated (limits.py).
        check_size(config)
        super().__init__()
        self.config = config
        specs = blocks(config)
        self.stem = conv_bn(config, 3, config.stem_channels, kernel_size=3, stride=2)
        self.stages = nn.Sequential(OrderedDict(
            (row.name, nn.Sequential(*(MBConv(b, config) for b in specs if b.stage == s + 2)))
            for s, row in enumerate(config.stage_rows)
        ))
        self.head = conv_bn(config, specs[-1].out_channels, config.head_channels)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.head_channels, config.num_classes)
        self._init_weights()

    def _init_weights(self):
        # The official initialisers: normal(0, sqrt(2 / fan_out)) for convs, with fan_out = k * k * out / groups
        # (TF's depthwise kernel has one output per channel, so fan_out = k * k there; PyTorch's kaiming_normal_
        # ignores groups and would make depthwise weights sqrt(C) times too small); uniform(+-1/sqrt(classes))
        # for the FC layer.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                fan_out = kh * kw * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        """The layer whose output is the last feature map (B, head_channels, R/32, R/32): CAM's default target."""
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling: (B, head_channels, ceil(R/32), ceil(R/32))."""
        return self.head(self.stages(self.stem(x)))

    def stage_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output, keyed by Table 1's names ("stage1" = stem ... "stage9" = head)."""
        out = {"stage1": self.stem(x)}
        x = out["stage1"]
        for name, stage in self.stages.named_children():
            x = out[name] = stage(x)
        out["stage9"] = self.head(x)
        return out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean((2, 3))  # (B, C): global average pooling
        return self.classifier(self.dropout(pooled))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(model: str | None = None, *, max_params=None, max_activations=None, max_blocks=None,
          **kwargs) -> EfficientNet:
    """Build any EfficientNet: ``build("b0")``, ``build("lite2", num_classes=10)``,
    ``build(width=1.2, depth=1.4, resolution=300)``, ``build(phi=2, alpha=1.2, beta=1.1, gamma=1.15)``.

    Keyword arguments are those of ``arch.resolve`` (num_classes, dropout, drop_path, bn_eps, same_padding, ...).
    A network beyond the size limits (``limits.py``: 2e9 parameters, 2e9 activations per image, 10,000 blocks)
    raises ``SizeError`` before anything is allocated; ``max_params``, ``max_activations`` and ``max_blocks``
    raise them for this call. For pretrained weights see ``effnet_edu.weights``."""
    with size_limits(params=max_params, activations=max_activations, blocks=max_blocks):
        return EfficientNet(resolve(model, **kwargs))
