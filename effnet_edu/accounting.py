"""Parameters, multiply-adds and activation sizes of any EfficientNet, counted from the architecture alone.

nanoGPT's ``transformer_sizing.ipynb`` turned into a library: every named layer gets a row, the rows add up to
the network, and the tests check the totals against PyTorch's own count (``sum(p.numel())`` and
``torch.utils.flop_counter``). Nothing is built and nothing runs, so counting B7 takes well under a millisecond.

The convention, stated up front:

- **We count multiply-adds (MACs), which is what the paper calls FLOPS** (Table 2: B0 has 0.39B "FLOPS").
  A multiply-add is one multiplication plus one addition, so **FLOPs = 2 x MACs**: that is what
  ``torch.utils.flop_counter`` and most profilers report. ``Report.macs`` is the paper's number,
  ``Report.flops`` is twice it.
- MACs are those of the convolutions and the fully connected layer (the weights' multiply-adds, biases
  excluded), i.e. exactly what the paper and the flop counter count. **Not counted:** BatchNorm (foldable into
  the conv at inference), the activations (SiLU/ReLU6), the squeeze-and-excitation's global pooling, sigmoid
  and channel-wise rescaling multiply, the residual adds, and the final global pooling. They are all
  element-wise: cheap in arithmetic, not free in memory traffic (see ``bytes_moved``).
- Parameters are trainable parameters (conv and FC weights, SE and FC biases, BatchNorm's gamma and beta);
  BatchNorm's running mean and variance are buffers, not parameters, as in ``model.parameters()``.
- Activations are the elements of each row's output tensor for one image (batch 1); ``activation_bytes``
  multiplies by 4 (fp32). Rows inside an MBConv block count conv + BatchNorm + activation as one fused layer
  (one output tensor, as any inference engine runs it); the stem and head list their BatchNorm as its own row
  to show that BatchNorm has parameters but no multiply-adds.

Row names follow Table 1 (Section 4, stage 1 = stem, stages 2-8 = MBConv, stage 9 = head) and ``arch.blocks``:
``stem/conv``, ``stem/bn``, ``stage4/block1/expand``, ``stage4/block1/depthwise``, ``stage4/block1/se``,
``stage4/block1/project``, ``head/conv``, ``head/bn``, ``classifier``. Each row also names the module of
``model.build`` it describes (``stages.stage4.1.expand``), so a test can check every row against the real network.

    >>> from effnet_edu.accounting import count
    >>> r = count("b0")
    >>> r.params, round(r.macs / 1e9, 3)       # Table 2: 5.3M parameters, 0.39B FLOPS (multiply-adds)
    (5288548, 0.386)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from .arch import B0_STAGES, EfficientNetConfig, blocks, resolve
from .scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, ScalingError

BYTES_PER_ELEMENT = 4  # fp32; halve everything for fp16/bf16


class LayerCount(NamedTuple):
    """One row of the table: a named layer, what it stores, computes and produces (batch 1).

    A NamedTuple rather than a frozen dataclass: just as immutable, and five times cheaper to create, which
    matters when a slider recounts B7's ~230 rows on every move."""

    name: str  # "stage4/block1/depthwise"
    module: str  # the matching module of ``build()``: "stages.stage4.1.depthwise"
    kind: str  # "conv", "depthwise", "se", "bn", "linear"
    stage: int  # Table 1 stage, 1..9
    params: int
    macs: int  # multiply-adds of the conv/FC weights (the paper's FLOPS)
    activations: int  # elements of the output tensor
    out_shape: tuple[int, ...]  # (C, H, W) of the output, (features,) for the classifier
    bytes_moved: int  # fp32 reads of input and weights + writes of output (BN/activation fused into the conv)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activation_bytes(self) -> int:
        return BYTES_PER_ELEMENT * self.activations

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, multiply-adds per byte moved: low values are memory-bound on real hardware."""
        return self.macs / self.bytes_moved if self.bytes_moved else 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "module": self.module, "kind": self.kind, "stage": self.stage,
            "params": self.params, "macs": self.macs, "flops": self.flops, "activations": self.activations,
            "activation_bytes": self.activation_bytes, "out_shape": list(self.out_shape),
            "bytes_moved": self.bytes_moved,
        }


@dataclass(frozen=True, slots=True)
class StageCount:
    """One row of the scaled Table 1 with its totals. ``out_shape`` is the stage's feature map, as
    ``EfficientNet.stage_features`` returns it (for stage 9: the head conv's output, before pooling and FC)."""

    stage: int  # 1..9
    name: str  # "stage1" .. "stage9"
    operator: str  # "Conv3x3", "MBConv6", "Conv1x1 & Pooling & FC"
    layers: int  # Table 1's "#Layers"
    resolution: int  # input resolution of the stage (Table 1's "Resolution" column)
    params: int
    macs: int
    activations: int  # sum over the stage's rows
    out_shape: tuple[int, int, int]

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "name": self.name, "operator": self.operator, "layers": self.layers,
            "resolution": self.resolution, "params": self.params, "macs": self.macs, "flops": self.flops,
            "activations": self.activations, "out_shape": list(self.out_shape),
        }


def _table(rows: list[tuple], total: tuple) -> str:
    """Fixed-format text (same widths every time, so notebooks can check their output)."""
    head = f"{'layer':<34} {'params':>12} {'MACs':>15} {'activations':>12}  out shape"
    lines = [head, "-" * len(head)]
    for row in rows + [None, total]:
        if row is None:
            lines.append("-" * len(head))
            continue
        name, params, macs, acts, shape = row
        lines.append(f"{name:<34} {params:>12,} {macs:>15,} {acts:>12,}  {shape}")
    return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


@dataclass(frozen=True, slots=True)
class Report:
    """The count of one network: totals, per layer and per Table 1 stage."""

    config: EfficientNetConfig
    layers: tuple[LayerCount, ...]
    stages: tuple[StageCount, ...]
    params: int
    macs: int  # the paper's FLOPS
    activations: int  # elements of all rows' outputs, batch 1

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs (what torch.utils.flop_counter reports)."""
        return 2 * self.macs

    @property
    def activation_bytes(self) -> int:
        return BYTES_PER_ELEMENT * self.activations

    def layer(self, name: str) -> LayerCount:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no layer {name!r} in {self.config.name}; names look like 'stem/conv', "
                       f"'stage4/block1/depthwise', 'classifier'")

    def table(self, level: str = "layer") -> str:
        """The counts as a fixed-format text table, per ``"layer"`` or per ``"stage"``."""
        if level == "layer":
            rows = [(r.name, r.params, r.macs, r.activations, _shape(r.out_shape)) for r in self.layers]
        elif level == "stage":
            rows = [(f"{s.name} {s.operator} x{s.layers}", s.params, s.macs, s.activations, _shape(s.out_shape))
                    for s in self.stages]
        else:
            raise ValueError(f"level must be 'layer' or 'stage', got {level!r}")
        total = (f"total ({self.config.name}, {self.config.resolution}px)", self.params, self.macs,
                 self.activations, "")
        return _table(rows, total) + f"\nFLOPs (2 x MACs): {self.flops:,}; activations at fp32: " \
                                     f"{self.activation_bytes / 2**20:,.1f} MiB"

    def to_dict(self, layers: bool = True) -> dict:
        c = self.config
        out = {
            "model": c.name, "width": c.width, "depth": c.depth, "resolution": c.resolution,
            "num_classes": c.num_classes, "lite": c.lite,
            "params": self.params, "macs": self.macs, "flops": self.flops,
            "activations": self.activations, "activation_bytes": self.activation_bytes,
            "stages": [s.to_dict() for s in self.stages],
        }
        if layers:
            out["layers"] = [r.to_dict() for r in self.layers]
        return out


# ---------------------------------------------------------------------------------------------------------------
# The arithmetic. One conv with k x k kernels, c_in -> c_out channels in `groups` groups, producing an h x h map:
#   params = c_out * (c_in / groups) * k^2          (+ c_out with a bias)
#   MACs   = params_without_bias * h^2              (every weight is used once per output position)
# A depthwise conv has groups = c_in = c_out: k^2 * c weights instead of k^2 * c^2 (Section 4; MobileNetV2).


def _mbconv_rows(prefix: str, module: str, stage: int, c_in: int, c_out: int, expand_ratio: int, k: int,
                 stride: int, se: int, r_in: int) -> list[LayerCount]:
    """The rows of one MBConv block (Table 1): expand, depthwise, se, project. BN (2 params per channel) and the
    activation are fused into each conv row."""
    hidden = c_in * expand_ratio
    r_out = -(-r_in // stride)  # ceil(r / stride): both "SAME" and k//2 padding
    a_in, a_hid, a_out = r_in * r_in, r_out * r_out, r_out * r_out
    rows = []
    if expand_ratio != 1:  # MBConv1 has no expansion (Table 1, stage 2)
        w = c_in * hidden
        act = hidden * a_in
        rows.append(LayerCount(f"{prefix}/expand", f"{module}.expand", "conv", stage, w + 2 * hidden, w * a_in, act,
                               (hidden, r_in, r_in), BYTES_PER_ELEMENT * (c_in * a_in + w + 2 * hidden + act)))
    w = hidden * k * k
    act = hidden * a_hid
    rows.append(LayerCount(f"{prefix}/depthwise", f"{module}.depthwise", "depthwise", stage, w + 2 * hidden,
                           w * a_hid, act, (hidden, r_out, r_out),
                           BYTES_PER_ELEMENT * (hidden * a_in + w + 2 * hidden + act)))
    if se:
        # Squeeze (global pool) -> 1x1 conv hidden->se (+bias) -> SiLU -> 1x1 conv se->hidden (+bias) -> sigmoid ->
        # rescale. Only the two tiny 1x1 convs on a 1x1 map count as MACs; the input is read twice (pool, rescale).
        w = 2 * hidden * se
        rows.append(LayerCount(f"{prefix}/se", f"{module}.se", "se", stage, w + se + hidden, w, act,
                               (hidden, r_out, r_out), BYTES_PER_ELEMENT * (2 * act + w + se + hidden + act)))
    w = hidden * c_out
    out = c_out * a_out
    residual = stride == 1 and c_in == c_out  # the add is fused into the projection: one more read of the input
    rows.append(LayerCount(f"{prefix}/project", f"{module}.project", "conv", stage, w + 2 * c_out, w * a_out, out,
                           (c_out, r_out, r_out),
                           BYTES_PER_ELEMENT * (act + w + 2 * c_out + out + (c_in * a_in if residual else 0))))
    return rows


def _count(config: EfficientNetConfig) -> Report:
    """Count a resolved configuration (uncached; ``count`` caches it)."""
    r = config.resolution
    c = config.stem_channels
    r1 = -(-r // 2)
    a = c * r1 * r1
    w = 3 * 9 * c  # stage 1: Conv3x3, stride 2, 3 -> c channels, no bias
    rows = [
        LayerCount("stem/conv", "stem.conv", "conv", 1, w, w * r1 * r1, a, (c, r1, r1),
                   BYTES_PER_ELEMENT * (3 * r * r + w + a)),
        LayerCount("stem/bn", "stem.bn", "bn", 1, 2 * c, 0, a, (c, r1, r1), BYTES_PER_ELEMENT * (2 * a + 2 * c)),
    ]
    specs = blocks(config)
    per_stage: dict[int, int] = {}  # stage -> index of the latest block within it
    for b in specs:
        i = per_stage[b.stage] = per_stage.get(b.stage, -1) + 1
        stage_name = B0_STAGES[b.stage - 2].name
        rows += _mbconv_rows(f"{stage_name}/block{i}", f"stages.{stage_name}.{i}", b.stage, b.in_channels,
                             b.out_channels, b.expand_ratio, b.kernel_size, b.stride, b.se_channels, b.in_resolution)
    last = specs[-1]
    c_in, h, rh = last.out_channels, config.head_channels, last.out_resolution
    a = h * rh * rh
    w = c_in * h
    n = config.num_classes
    rows += [
        LayerCount("head/conv", "head.conv", "conv", 9, w, w * rh * rh, a, (h, rh, rh),
                   BYTES_PER_ELEMENT * (c_in * rh * rh + w + a)),
        LayerCount("head/bn", "head.bn", "bn", 9, 2 * h, 0, a, (h, rh, rh), BYTES_PER_ELEMENT * (2 * a + 2 * h)),
        # global average pooling (not counted) -> dropout -> FC layer: h * n multiply-adds, n biases
        LayerCount("classifier", "classifier", "linear", 9, h * n + n, h * n, n, (n,),
                   BYTES_PER_ELEMENT * (h + h * n + n + n)),
    ]

    # Per stage: Table 1's rows with their sums; out_shape is the stage's feature map (stage_features).
    sums: dict[int, list] = {}  # stage -> [params, MACs, activations, out_shape of its last feature map]
    for row in rows:
        s = sums.get(row.stage)
        if s is None:
            s = sums[row.stage] = [0, 0, 0, None]
        s[0] += row.params
        s[1] += row.macs
        s[2] += row.activations
        if row.kind != "linear":  # stage 9's feature map is the head's, before pooling and the FC layer
            s[3] = row.out_shape
    first = {}  # stage -> its first block
    for b in specs:
        first.setdefault(b.stage, b)
    stage_rows = []
    for stage, (params, macs, acts, shape) in sums.items():  # dicts keep insertion order: stage 1 .. 9
        if stage == 1:
            operator, layers, res = "Conv3x3", 1, r
        elif stage == 9:
            operator, layers, res = "Conv1x1 & Pooling & FC", 1, rh
        else:
            operator, layers, res = (f"MBConv{B0_STAGES[stage - 2].expand_ratio}", per_stage[stage] + 1,
                                     first[stage].in_resolution)
        stage_rows.append(StageCount(stage, f"stage{stage}", operator, layers, res, params, macs, acts, shape))
    return Report(
        config=config, layers=tuple(rows), stages=tuple(stage_rows),
        params=sum(x.params for x in stage_rows), macs=sum(x.macs for x in stage_rows),
        activations=sum(x.activations for x in stage_rows),
    )


_count_cached = lru_cache(maxsize=256)(_count)  # configs are frozen (hashable); reports are immutable


def count(model: str | EfficientNetConfig | Mapping | object | None = None, /, **kwargs) -> Report:
    """Count parameters, multiply-adds and activations of any EfficientNet without building it.

    ``model`` is anything ``build`` understands, or a config, or a built model:

    - ``count("b3")``, ``count("lite0", num_classes=10)``, ``count("b7", resolution=300)``;
    - ``count(width=1.2, depth=1.4, resolution=300)``, ``count(phi=2)`` (the compound rule, Section 3.3);
    - ``count(config)`` for an ``EfficientNetConfig``, ``count({"phi": 1.5})``, ``count(model)`` for an
      ``EfficientNet`` (its ``.config`` is counted; the weights are never looked at).

    Results are cached per configuration, so re-counting in a slider callback costs microseconds.
    """
    if isinstance(model, EfficientNetConfig):
        if kwargs:
            raise TypeError("count(config) takes no keyword arguments; use dataclasses.replace(config, ...)")
        config = model
    elif isinstance(model, Mapping):
        config = resolve(**{**model, **kwargs})
    elif model is None or isinstance(model, str):
        config = resolve(model, **kwargs)
    elif isinstance(getattr(model, "config", None), EfficientNetConfig):
        config = model.config
    else:
        raise TypeError(
            f"count() takes a model name ('b0'..'b7', 'lite0'..'lite4'), an EfficientNetConfig, a dict of "
            f"resolve() arguments, or a built EfficientNet; got {type(model).__name__}"
        )
    return _count_cached(config)


# ---------------------------------------------------------------------------------------------------------------
# One block, for the BlockExplorer: why depthwise convolutions are cheap in FLOPs but not in memory traffic.


@dataclass(frozen=True, slots=True)
class BlockCount:
    """One MBConv block, sub-layer by sub-layer, with the memory traffic each sub-layer causes."""

    in_channels: int
    out_channels: int
    expand_ratio: int
    kernel_size: int
    stride: int
    se_channels: int
    resolution: int  # input resolution
    layers: tuple[LayerCount, ...]  # expand (absent for MBConv1), depthwise, se (absent without SE), project

    @property
    def hidden_channels(self) -> int:
        return self.in_channels * self.expand_ratio

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activations(self) -> int:
        return sum(r.activations for r in self.layers)

    @property
    def bytes_moved(self) -> int:
        return sum(r.bytes_moved for r in self.layers)

    def part(self, name: str) -> LayerCount | None:
        """The sub-layer ``"expand"``, ``"depthwise"``, ``"se"`` or ``"project"`` (None when the block has none)."""
        return next((r for r in self.layers if r.name.rsplit("/", 1)[-1] == name), None)

    def table(self) -> str:
        head = f"{'part':<10} {'params':>10} {'MACs':>14} {'bytes moved':>13} {'MACs/byte':>9}  out shape"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(f"{r.name.rsplit('/', 1)[-1]:<10} {r.params:>10,} {r.macs:>14,} {r.bytes_moved:>13,} "
                         f"{r.intensity:>9.2f}  {_shape(r.out_shape)}")
        lines.append("-" * len(head))
        total_intensity = self.macs / self.bytes_moved
        lines.append(f"{'total':<10} {self.params:>10,} {self.macs:>14,} {self.bytes_moved:>13,} "
                     f"{total_intensity:>9.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels, "expand_ratio": self.expand_ratio,
            "kernel_size": self.kernel_size, "stride": self.stride, "se_channels": self.se_channels,
            "resolution": self.resolution, "residual": self.residual, "params": self.params, "macs": self.macs,
            "flops": self.flops, "bytes_moved": self.bytes_moved, "layers": [r.to_dict() for r in self.layers],
        }


def _positive_int(name: str, value, allowed: Iterable[int] | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScalingError(f"{name} must be a positive whole number, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ScalingError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value}")
    return value


def block_count(in_channels: int, out_channels: int, expand_ratio: int = 6, kernel_size: int = 3, stride: int = 1,
                *, se_channels: int | None = None, se_ratio: float = 0.25, resolution: int = 56) -> BlockCount:
    """Count one MBConv block (Table 1's operator) at a given input resolution.

    The SE squeeze width is ``se_channels`` if given, else ``max(1, int(in_channels * se_ratio))`` (the official
    code sizes it from the block *input*); ``se_ratio=0`` or ``se_channels=0`` means no SE (EfficientNet-Lite).

    ``bytes_moved`` (fp32) of each sub-layer = its input read + its weights read + its output written, with
    BatchNorm and the activation fused into the conv (as inference engines do; eager PyTorch runs them as
    separate kernels and moves each tensor two more times). SE reads its input twice (pool, rescale); a residual
    block's add is fused into the projection (one more read of the block input). Compare ``intensity``
    (MACs per byte): the depthwise conv does k^2 multiply-adds per output element where a 1x1 conv does c_in,
    so it is the cheapest part in MACs and often the slowest on a GPU.
    """
    _positive_int("in_channels", in_channels)
    _positive_int("out_channels", out_channels)
    _positive_int("expand_ratio", expand_ratio)
    _positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ScalingError(f"kernel_size must be odd (EfficientNet uses 3 and 5), got {kernel_size}")
    _positive_int("stride", stride, (1, 2))
    _positive_int("resolution", resolution)
    if se_channels is None:
        if isinstance(se_ratio, bool) or not isinstance(se_ratio, (int, float)) or not 0 <= se_ratio <= 1:
            raise ScalingError(f"se_ratio must be a number in [0, 1], got {se_ratio!r}")
        se_channels = max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0
    elif isinstance(se_channels, bool) or not isinstance(se_channels, int) or se_channels < 0:
        raise ScalingError(f"se_channels must be a whole number >= 0 (0 = no SE), got {se_channels!r}")
    rows = _mbconv_rows("block", "block", 0, in_channels, out_channels, expand_ratio, kernel_size, stride,
                        se_channels, resolution)
    return BlockCount(in_channels, out_channels, expand_ratio, kernel_size, stride, se_channels, resolution,
                      tuple(rows))


# ---------------------------------------------------------------------------------------------------------------
# Compound scaling's FLOPs promise (Section 3.3): FLOPs grow by (alpha * beta^2 * gamma^2)^phi ~ 2^phi.


@dataclass(frozen=True, slots=True)
class GrowthPoint:
    """The real MACs of the network at one phi next to the two idealised growth laws."""

    phi: float
    depth: float
    width: float
    resolution: int
    macs: int
    growth: float  # macs / macs at phi = 0 (B0 at 224), counted exactly
    formula: float  # (alpha * beta^2 * gamma^2)^phi: the paper's Eq. 3 before any rounding
    doubling: float  # 2^phi: what the constraint alpha * beta^2 * gamma^2 ~ 2 aims for


def flops_growth(phi_values: Iterable[float] = (0, 1, 2, 3, 4, 5, 6, 7), alpha: float = PAPER_ALPHA,
                 beta: float = PAPER_BETA, gamma: float = PAPER_GAMMA) -> list[GrowthPoint]:
    """Counted FLOPs growth of the compound rule against (alpha beta^2 gamma^2)^phi and 2^phi.

    They differ because the network is discrete: channels round to multiples of 8 (``round_filters``), layers
    round up (``round_repeats``: ceil makes depth grow faster than alpha^phi at small phi), the resolution
    rounds to whole pixels, and the SE and FC layers do not scale as d * w^2 * r^2 (Section 3.3 argues from
    "a regular convolution op"). The paper's footnote there says it: "FLOPS may differ from theoretical value
    due to rounding"; and even the formula is only ~2^phi, since 1.2 * 1.1^2 * 1.15^2 = 1.92.
    """
    base = _count_cached(resolve(phi=0.0, alpha=alpha, beta=beta, gamma=gamma)).macs
    factor = alpha * beta**2 * gamma**2
    points = []
    for phi in phi_values:
        config = resolve(phi=phi, alpha=alpha, beta=beta, gamma=gamma)
        macs = _count_cached(config).macs
        points.append(GrowthPoint(phi=float(phi), depth=config.depth, width=config.width,
                                  resolution=config.resolution, macs=macs, growth=macs / base,
                                  formula=factor**phi, doubling=2.0**phi))
    return points


def growth_table(points: Iterable[GrowthPoint]) -> str:
    """``flops_growth`` as a fixed-format text table."""
    head = f"{'phi':>5} {'depth':>7} {'width':>7} {'res':>5} {'MACs':>16} {'counted':>9} {'formula':>9} {'2^phi':>9}"
    lines = [head, "-" * len(head)]
    for p in points:
        lines.append(f"{p.phi:>5g} {p.depth:>7.3f} {p.width:>7.3f} {p.resolution:>5} {p.macs:>16,} "
                     f"{p.growth:>8.3f}x {p.formula:>8.3f}x {p.doubling:>8.3f}x")
    return "\n".join(lines)
