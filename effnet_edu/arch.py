"""The EfficientNet architecture as data: Table 1's stage rows, the released family, and the expansion of any
scaling point into a per-stage and per-block description.

Nothing here builds a network: ``model.py`` builds modules from ``blocks()``, and ``accounting.py`` counts
parameters and multiply-adds from the same description, so the two can never disagree about the architecture.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .limits import check_blocks
from .scaling import (
    BASE_RESOLUTION,
    PAPER_ALPHA,
    PAPER_BETA,
    PAPER_GAMMA,
    CompoundPoint,
    ScalingError,
    check_depth,
    check_resolution,
    check_width,
    compound,
    round_filters,
    round_repeats,
)


@dataclass(frozen=True)
class StageRow:
    """One MBConv row of Table 1 (stages 2-8): the baseline that every family member scales."""

    name: str
    expand_ratio: int  # MBConv<N>: the 1x1 expansion widens the block input N times
    kernel_size: int  # depthwise kernel, 3 or 5
    stride: int  # stride of the stage's first layer; the other layers use 1
    out_channels: int
    layers: int
    se: bool = True  # squeeze-and-excitation in this stage's blocks (B0: every stage; a searched row may drop it)


# Table 1, EfficientNet-B0 (input 224x224). Stage 1 is the stem, stage 9 the head; both are below.
B0_STAGES: tuple[StageRow, ...] = (
    StageRow("stage2", expand_ratio=1, kernel_size=3, stride=1, out_channels=16, layers=1),
    StageRow("stage3", expand_ratio=6, kernel_size=3, stride=2, out_channels=24, layers=2),
    StageRow("stage4", expand_ratio=6, kernel_size=5, stride=2, out_channels=40, layers=2),
    StageRow("stage5", expand_ratio=6, kernel_size=3, stride=2, out_channels=80, layers=3),
    StageRow("stage6", expand_ratio=6, kernel_size=5, stride=1, out_channels=112, layers=3),
    StageRow("stage7", expand_ratio=6, kernel_size=5, stride=2, out_channels=192, layers=4),
    StageRow("stage8", expand_ratio=6, kernel_size=3, stride=1, out_channels=320, layers=1),
)
STEM_CHANNELS = 32  # stage 1: Conv3x3, stride 2
STEM_STRIDE = 2
HEAD_CHANNELS = 1280  # stage 9: Conv1x1, then pooling and the FC layer
SE_RATIO = 0.25  # squeeze width = block *input* channels * 0.25 (official code; not the expanded width)
DROP_PATH = 0.2  # stochastic depth: block i of N drops its residual branch with probability 0.2 * i / N


def se_channels(in_channels: int, se_ratio: float) -> int:
    """The squeeze width of a block's SE: sized from the block *input* (official code), at least 1; 0 = no SE."""
    return max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0


def conv_resolution(resolution: int, stride: int) -> int:
    """The output side of a conv: ceil(r / stride), which both TF "SAME" and PyTorch's k//2 padding give."""
    return -(-resolution // stride)


@dataclass(frozen=True)
class Member:
    """A released family member (Table 2 and the official Lite release): the scaling point and its dropout."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    lite: bool = False


FAMILY: dict[str, Member] = {
    m.name: m
    for m in (
        # The official B0-B7 coefficients: a hand-rounded schedule, not (1.2^phi, 1.1^phi, 1.15^phi).
        Member("b0", width=1.0, depth=1.0, resolution=BASE_RESOLUTION, dropout=0.2),  # Table 1's baseline, 224
        Member("b1", width=1.0, depth=1.1, resolution=240, dropout=0.2),
        Member("b2", width=1.1, depth=1.2, resolution=260, dropout=0.3),
        Member("b3", width=1.2, depth=1.4, resolution=300, dropout=0.3),
        Member("b4", width=1.4, depth=1.8, resolution=380, dropout=0.4),
        Member("b5", width=1.6, depth=2.2, resolution=456, dropout=0.4),
        Member("b6", width=1.8, depth=2.6, resolution=528, dropout=0.5),
        Member("b7", width=2.0, depth=3.1, resolution=600, dropout=0.5),
        # EfficientNet-Lite: ReLU6, no SE, stem/head and the first/last stage's repeats unscaled (mobile-friendly).
        Member("lite0", width=1.0, depth=1.0, resolution=BASE_RESOLUTION, dropout=0.2, lite=True),
        Member("lite1", width=1.0, depth=1.1, resolution=240, dropout=0.2, lite=True),
        Member("lite2", width=1.1, depth=1.2, resolution=260, dropout=0.3, lite=True),
        Member("lite3", width=1.2, depth=1.4, resolution=280, dropout=0.3, lite=True),
        Member("lite4", width=1.4, depth=1.8, resolution=300, dropout=0.3, lite=True),
    )
}
# The B series in phi order: B<n> is the paper's compound-scaling step n (Table 2).
B_SERIES: tuple[str, ...] = tuple(name for name, m in FAMILY.items() if not m.lite)


def name_range(names: Iterable[str]) -> str:
    """Member names for help and error texts, runs shortened: "b0..b7, lite0..lite4"."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.rstrip("0123456789"), []).append(name)
    return ", ".join(g[0] if len(g) == 1 else f"{g[0]}, {g[1]}" if len(g) == 2 else f"{g[0]}..{g[-1]}"
                     for g in groups.values())


MEMBER_NAMES = name_range(FAMILY)  # "b0..b7, lite0..lite4"


@dataclass(frozen=True)
class EfficientNetConfig:
    """Everything needed to build one network. Build one with ``resolve()``; every field can be replaced."""

    name: str  # "b0", "lite2", "w1.2-d1.4-r300", "phi1.5"
    width: float  # channel multiplier (beta^phi for compound scaling)
    depth: float  # layer multiplier (alpha^phi)
    resolution: int  # input side in pixels (224 * gamma^phi, rounded)
    dropout: float = 0.2  # before the FC layer; the family grows it from 0.2 to 0.5
    drop_path: float = DROP_PATH  # stochastic depth rate of the last block
    num_classes: int = 1000
    lite: bool = False  # ReLU6, no SE, stem/head and first/last repeats not scaled
    bn_eps: float = 1e-3  # TF's epsilon; torchvision's B0-B4 and timm's efficientnet_* use 1e-5
    bn_momentum: float = 0.01  # TF decay 0.99 is PyTorch momentum 0.01
    same_padding: bool = False  # TF "SAME" padding (asymmetric at stride 2): needed for weights converted from TF
    compound: CompoundPoint | None = field(default=None, compare=False)  # the compound rule's point, from phi
    # The seven MBConv rows that width and depth scale: Table 1's by default; a searched network (Section 4's
    # search space, ``effnet_edu.lab.search``) replaces them with its own kernels, expansions, SE flags and layers.
    stage_rows: tuple[StageRow, ...] = B0_STAGES

    @property
    def se_ratio(self) -> float:
        return 0.0 if self.lite else SE_RATIO

    @property
    def stem_channels(self) -> int:
        return STEM_CHANNELS if self.lite else round_filters(STEM_CHANNELS, self.width)

    @property
    def head_channels(self) -> int:
        return HEAD_CHANNELS if self.lite else round_filters(HEAD_CHANNELS, self.width)

    def stage_layers(self, index: int) -> int:
        row = self.stage_rows[index]
        if self.lite and index in (0, len(self.stage_rows) - 1):  # Lite keeps the first and last stage at one layer
            return row.layers
        return round_repeats(row.layers, self.depth)


@dataclass(frozen=True)
class StageSpec:
    """One row of the scaled Table 1: what ``effnet-edu info`` prints."""

    stage: int  # 1..9, as in Table 1
    operator: str  # "Conv3x3", "MBConv6", "Conv1x1 & Pooling & FC"
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    layers: int  # Table 1's "#Layers": how many times the operator repeats
    resolution: int  # input resolution of the stage

    @property
    def name(self) -> str:
        return f"stage{self.stage}"


class BlockSpec(NamedTuple):
    """One MBConv block after scaling: the unit that both the model and the accounting iterate over.
    (An immutable NamedTuple: cheap to create, which matters when a slider recounts B7's 55 blocks per move.)"""

    name: str  # "stage4/block1" (blocks counted from 0 within their stage)
    stage: int  # Table 1 stage number, 2..8
    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel_size: int
    stride: int
    se_channels: int  # 0 = no squeeze-and-excitation
    drop_path: float  # this block's stochastic depth rate, drop_path * index / N
    in_resolution: int

    @property
    def hidden_channels(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def out_resolution(self) -> int:
        return conv_resolution(self.in_resolution, self.stride)

    @property
    def residual(self) -> bool:
        """The skip connection exists only where the shapes agree (MobileNetV2): stride 1, same channels."""
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def module(self) -> str:
        """The module path in ``model.build``'s network: "stage4/block1" -> "stages.stage4.1"."""
        stage, block = self.name.split("/")
        return f"stages.{stage}.{block.removeprefix('block')}"


def blocks(config: EfficientNetConfig) -> list[BlockSpec]:
    """Expand a configuration into its MBConv blocks, in order."""
    resolution = conv_resolution(config.resolution, STEM_STRIDE)
    in_channels = config.stem_channels
    repeats = [config.stage_layers(i) for i in range(len(config.stage_rows))]
    total = sum(repeats)
    check_blocks(total, config.name)  # an absurd depth is refused here, before a single block is listed
    specs: list[BlockSpec] = []
    for s, row in enumerate(config.stage_rows):
        out_channels = round_filters(row.out_channels, config.width)
        for b in range(repeats[s]):
            stride = row.stride if b == 0 else 1
            spec = BlockSpec(
                name=f"{row.name}/block{b}",
                stage=s + 2,
                in_channels=in_channels,
                out_channels=out_channels,
                expand_ratio=row.expand_ratio,
                kernel_size=row.kernel_size,
                stride=stride,
                se_channels=se_channels(in_channels, config.se_ratio if row.se else 0.0),
                drop_path=config.drop_path * len(specs) / total,
                in_resolution=resolution,
            )
            specs.append(spec)
            in_channels, resolution = out_channels, spec.out_resolution
    return specs


def stages(config: EfficientNetConfig, specs: list[BlockSpec] | None = None) -> list[StageSpec]:
    """The scaled Table 1: stem, the seven MBConv stages and the head, with their input resolutions.
    ``specs`` is ``blocks(config)`` when the caller has it already."""
    specs = blocks(config) if specs is None else specs
    rows = [StageSpec(stage=1, operator="Conv3x3", kernel_size=3, stride=STEM_STRIDE, in_channels=3,
                      out_channels=config.stem_channels, layers=1, resolution=config.resolution)]
    first: dict[int, BlockSpec] = {}
    repeats: dict[int, int] = {}
    for b in specs:
        first.setdefault(b.stage, b)
        repeats[b.stage] = repeats.get(b.stage, 0) + 1
    for s, row in enumerate(config.stage_rows):
        head = first[s + 2]
        rows.append(StageSpec(stage=s + 2, operator=f"MBConv{row.expand_ratio}", kernel_size=row.kernel_size,
                              stride=row.stride, in_channels=head.in_channels, out_channels=head.out_channels,
                              layers=repeats[s + 2], resolution=head.in_resolution))
    last = specs[-1]
    rows.append(StageSpec(stage=9, operator="Conv1x1 & Pooling & FC", kernel_size=1, stride=1,
                          in_channels=last.out_channels, out_channels=config.head_channels, layers=1,
                          resolution=last.out_resolution))
    return rows


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ScalingError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


# Characters people mistype for one another ("bo" for "b0", "lite" + "l" for "1"): a cheap substitution.
_LOOKALIKES = {frozenset(p) for p in ("o0", "l1", "i1", "s5", "z2")}


def _distance(a: str, b: str) -> float:
    """Edit distance (insert, delete, substitute, swap neighbours: 1 each; a lookalike substitution: 0.5)."""
    d = [[float(i + j) if i * j == 0 else 0.0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            sub = 0.0 if a[i - 1] == b[j - 1] else 0.5 if frozenset((a[i - 1], b[j - 1])) in _LOOKALIKES else 1.0
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + sub)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _normalize_name(name) -> str:
    """What people type for "b0": "B0", "efficientnet-b0", "EfficientNet_B0", "effnet b0"; "lite-0" for "lite0"."""
    key = re.sub(r"[\s_\-.]", "", str(name).lower())
    for prefix in ("efficientnet", "effnet"):
        if key.startswith(prefix) and key != prefix:
            key = key[len(prefix):]
    return key.replace("efficientnet", "")  # "tf_efficientnet_b0" -> "tfb0": close to b0, not equal


def suggest_model_names(name, limit: int = 5) -> list[str]:
    """The released names closest to ``name``: smallest edit distance, then (for "b9", "lite7") the nearest
    number. Empty when nothing is close or when too many names tie (the full list says more then)."""
    key = _normalize_name(name)
    number = re.search(r"\d+$", key)

    def score(candidate: str) -> float:
        nearness = 0.0
        theirs = re.search(r"\d+$", candidate)  # every member name ends in its number
        if number and theirs:  # b9 is closer to b7 than to b0; cap so that the digits' edit distance still dominates
            nearness = 0.1 * min(abs(int(number.group()) - int(theirs.group())), 5)
        return _distance(key, candidate) + nearness

    scores = {candidate: score(candidate) for candidate in FAMILY}
    best = min(scores, key=lambda c: scores[c])
    if _distance(key, best) > max(1.0, len(key) / 2):  # nothing alike: "resnet50"
        return []
    close = [c for c in FAMILY if scores[c] <= scores[best] + 1e-9]
    return close if len(close) <= limit else []


def check_model_name(name: str) -> Member:
    """Look up a released member by name (``MEMBER_NAMES``, any case, "efficientnet-" prefix and separators
    allowed: "EfficientNet-B0", "lite-0"); suggest close names when unknown."""
    key = _normalize_name(name)
    if key in FAMILY:
        return FAMILY[key]
    close = suggest_model_names(name)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ScalingError(f"unknown model {name!r}: choose one of {', '.join(FAMILY)}{hint}")


def _check_overrides(changes: dict) -> None:
    """The remaining EfficientNetConfig fields: wrong types or ranges fail here, not deep inside torch."""
    for key, value in changes.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "bn_eps" and not (number and math.isfinite(value) and value > 0):
            raise ScalingError(f"bn_eps must be a positive number (BatchNorm divides by sqrt(var + eps); TF uses "
                               f"1e-3, PyTorch 1e-5), got {value!r}")
        if key == "bn_momentum" and not (number and 0 < value < 1):
            raise ScalingError(f"bn_momentum must be a number in (0, 1) (PyTorch's convention: TF decay 0.99 is "
                               f"momentum 0.01), got {value!r}")
        if key in ("same_padding", "lite") and not isinstance(value, bool):
            raise ScalingError(f"{key} must be True or False, got {value!r}")
        if key == "name" and not (isinstance(value, str) and value):
            raise ScalingError(f"name must be a non-empty string, got {value!r}")
        if key == "compound" and value is not None and not hasattr(value, "flops_factor"):
            raise ScalingError(f"compound must be None or a scaling.CompoundPoint, got {value!r}")
        if key == "stage_rows":
            _check_stage_rows(value)


def _check_stage_rows(rows) -> None:
    """Custom MBConv rows (a searched network): seven of them, as Table 1's stages 2-8, each a sane StageRow."""
    if not (isinstance(rows, tuple) and len(rows) == len(B0_STAGES) and all(isinstance(r, StageRow) for r in rows)):
        raise ScalingError(f"stage_rows must be a tuple of {len(B0_STAGES)} StageRow (Table 1's stages 2-8), "
                           f"got {rows!r}")
    for r in rows:
        whole = all(isinstance(v, int) and not isinstance(v, bool)
                    for v in (r.expand_ratio, r.kernel_size, r.stride, r.out_channels, r.layers))
        if not (whole and r.expand_ratio >= 1 and r.kernel_size >= 1 and r.kernel_size % 2 == 1
                and r.stride in (1, 2) and r.out_channels >= 1 and r.layers >= 1 and isinstance(r.se, bool)):
            raise ScalingError(f"{r.name}: a stage row needs expand_ratio >= 1, an odd kernel_size, stride 1 or 2, "
                               f"out_channels >= 1, layers >= 1 (whole numbers) and se True/False, got {r!r}")
    if len({r.name for r in rows}) != len(rows):
        raise ScalingError(f"stage_rows need distinct names (they name the model's stages), got "
                           f"{[r.name for r in rows]}")


def resolve(
    model: str | None = None,
    *,
    width: float | None = None,
    depth: float | None = None,
    resolution: int | None = None,
    phi: float | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    gamma: float | None = None,
    num_classes: int = 1000,
    dropout: float | None = None,
    drop_path: float = DROP_PATH,
    **overrides: Any,
) -> EfficientNetConfig:
    """One entry point for any scaling point.

    - a released member: ``resolve("b3")`` or ``resolve("lite1")``;
    - explicit multipliers: ``resolve(width=1.2, depth=1.4, resolution=300)`` (missing ones default to B0's);
    - the compound rule: ``resolve(phi=1.5)`` or ``resolve(phi=1, alpha=1.2, beta=1.1, gamma=1.15)``.

    ``overrides`` are any other ``EfficientNetConfig`` fields (``bn_eps``, ``same_padding``, ...).
    """
    multipliers = width is not None or depth is not None
    compound_args = any(v is not None for v in (phi, alpha, beta, gamma))
    if sum((model is not None, multipliers, compound_args)) > 1:
        raise ScalingError(
            "give one kind of scaling point: a model name, or width/depth/resolution, or phi/alpha/beta/gamma "
            "(a resolution may accompany a model name or phi to override it)"
        )
    if model is not None:
        member = check_model_name(model)
        config = EfficientNetConfig(
            name=member.name, width=member.width, depth=member.depth, resolution=member.resolution,
            dropout=member.dropout, lite=member.lite,
        )
    elif compound_args:
        if phi is None:
            raise ScalingError("the compound rule needs phi (alpha, beta and gamma default to 1.2, 1.1, 1.15)")
        point = compound(
            phi,
            PAPER_ALPHA if alpha is None else alpha,
            PAPER_BETA if beta is None else beta,
            PAPER_GAMMA if gamma is None else gamma,
        )
        config = EfficientNetConfig(
            name=f"phi{point.phi:g}", width=point.width, depth=point.depth, resolution=point.resolution,
            compound=point,
        )
    else:
        config = EfficientNetConfig(
            name="custom", width=1.0 if width is None else width, depth=1.0 if depth is None else depth,
            resolution=BASE_RESOLUTION,
        )
    check_width(config.width)
    check_depth(config.depth)
    if resolution is not None:
        config = replace(config, resolution=check_resolution(resolution))
    if model is None and not compound_args:
        config = replace(config, name=f"w{config.width:g}-d{config.depth:g}-r{config.resolution}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ScalingError(f"num_classes must be a positive whole number, got {num_classes!r}")
    changes = dict(num_classes=num_classes, drop_path=_check_fraction("drop_path", drop_path), **overrides)
    if dropout is not None:
        changes["dropout"] = _check_fraction("dropout", dropout)
    unknown = set(changes) - set(EfficientNetConfig.__dataclass_fields__)
    if unknown:
        raise ScalingError(f"unknown setting(s) {', '.join(sorted(unknown))}; allowed: "
                           f"{', '.join(EfficientNetConfig.__dataclass_fields__)}")
    _check_overrides(changes)
    config = replace(config, **changes)
    check_resolution(config.resolution)
    return config
