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
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from .arch import MEMBER_NAMES, BlockSpec, EfficientNetConfig, blocks, conv_resolution, resolve, stages
from .arch import se_channels as arch_se_channels
from .scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, ScalingError

if TYPE_CHECKING:
    from torch import nn

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
    out_shape: tuple[int, ...]  # (C, H, W)

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
    rows: tuple[LayerCount, ...]  # one per named layer, in network order
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
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no layer {name!r} in {self.config.name}; names look like 'stem/conv', "
                       f"'stage4/block1/depthwise', 'classifier'")

    def table(self, level: str = "layer") -> str:
        """The counts as a fixed-format text table, per ``"layer"`` or per ``"stage"``."""
        if level == "layer":
            rows = [(r.name, r.params, r.macs, r.activations, _shape(r.out_shape)) for r in self.rows]
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
            out["layers"] = [r.to_dict() for r in self.rows]
        return out


# ---------------------------------------------------------------------------------------------------------------
# The arithmetic: one formula per quantity, for every row. A conv with k x k kernels, c_in -> c_out channels in
# `groups` groups, producing an h x h map has
#   weights = c_out * (c_in / groups) * k^2          (a depthwise conv has groups = c_in = c_out: k^2 * c, not
#                                                      k^2 * c^2; Section 4, MobileNetV2)
#   params  = weights + biases + BatchNorm's gamma and beta
#   MACs    = weights * h^2                           (every weight is used once per output position)
#   bytes   = 4 * (elements read + params + elements written)   (fp32; BN and the activation fused)


def _row(name: str, module: str, kind: str, stage: int, *, out_shape: tuple[int, ...], reads: int,
         weights: int = 0, other_params: int = 0, positions: int = 1) -> LayerCount:
    """One row from what the layer reads and stores; ``positions`` is how often each weight is applied."""
    activations = 1
    for n in out_shape:
        activations *= n
    params = weights + other_params
    return LayerCount(name=name, module=module, kind=kind, stage=stage, params=params, macs=weights * positions,
                      activations=activations, out_shape=out_shape,
                      bytes_moved=BYTES_PER_ELEMENT * (reads + params + activations))


def _mbconv_rows(b: BlockSpec, name: str, module: str) -> list[LayerCount]:
    """The rows of one MBConv block (Table 1): expand, depthwise, se, project. BN (2 params per channel) and the
    activation are fused into each conv row."""
    hidden, r_in, r_out = b.hidden_channels, b.in_resolution, b.out_resolution
    block_in = b.in_channels * r_in * r_in
    expanded = (hidden, r_in, r_in)
    out = (hidden, r_out, r_out)
    rows = []
    if b.expand_ratio != 1:  # MBConv1 has no expansion (Table 1, stage 2)
        rows.append(_row(f"{name}/expand", f"{module}.expand", "conv", b.stage, out_shape=expanded, reads=block_in,
                         weights=b.in_channels * hidden, other_params=2 * hidden, positions=r_in * r_in))
    rows.append(_row(f"{name}/depthwise", f"{module}.depthwise", "depthwise", b.stage, out_shape=out,
                     reads=hidden * r_in * r_in, weights=hidden * b.kernel_size**2, other_params=2 * hidden,
                     positions=r_out * r_out))
    hidden_out = hidden * r_out * r_out
    if b.se_channels:
        # Squeeze (global pool) -> 1x1 conv hidden->se (+bias) -> SiLU -> 1x1 conv se->hidden (+bias) -> sigmoid ->
        # rescale. Only the two tiny 1x1 convs on a 1x1 map count as MACs; the input is read twice (pool, rescale).
        rows.append(_row(f"{name}/se", f"{module}.se", "se", b.stage, out_shape=out, reads=2 * hidden_out,
                         weights=2 * hidden * b.se_channels, other_params=b.se_channels + hidden))
    # A residual block's add is fused into the projection: one more read of the block input.
    rows.append(_row(f"{name}/project", f"{module}.project", "conv", b.stage,
                     out_shape=(b.out_channels, r_out, r_out), reads=hidden_out + (block_in if b.residual else 0),
                     weights=hidden * b.out_channels, other_params=2 * b.out_channels, positions=r_out * r_out))
    return rows


def _count(config: EfficientNetConfig) -> Report:
    """Count a resolved configuration (uncached; ``count`` caches it)."""
    specs = blocks(config)
    table = stages(config, specs)
    stem, head = table[0], table[-1]
    c, r1 = stem.out_channels, conv_resolution(stem.resolution, stem.stride)
    rows = [
        _row("stem/conv", "stem.conv", "conv", 1, out_shape=(c, r1, r1), reads=stem.in_channels * stem.resolution**2,
             weights=stem.in_channels * stem.kernel_size**2 * c, positions=r1 * r1),
        _row("stem/bn", "stem.bn", "bn", 1, out_shape=(c, r1, r1), reads=c * r1 * r1, other_params=2 * c),
    ]
    for b in specs:
        rows += _mbconv_rows(b, b.name, b.module)
    h, rh, n = head.out_channels, head.resolution, config.num_classes
    rows += [
        _row("head/conv", "head.conv", "conv", 9, out_shape=(h, rh, rh), reads=head.in_channels * rh * rh,
             weights=head.in_channels * h, positions=rh * rh),
        _row("head/bn", "head.bn", "bn", 9, out_shape=(h, rh, rh), reads=h * rh * rh, other_params=2 * h),
        # global average pooling (not counted) -> dropout -> FC layer: h * n multiply-adds, n biases
        _row("classifier", "classifier", "linear", 9, out_shape=(n,), reads=h, weights=h * n, other_params=n),
    ]

    # Per stage: Table 1's rows with their sums; out_shape is the stage's feature map (stage_features), which for
    # stage 9 is the head's, before pooling and the FC layer.
    by_stage: dict[int, list[LayerCount]] = {}
    for row in rows:
        by_stage.setdefault(row.stage, []).append(row)
    stage_rows = []
    for spec in table:
        mine = by_stage[spec.stage]
        stage_rows.append(StageCount(
            stage=spec.stage, name=spec.name, operator=spec.operator, layers=spec.layers, resolution=spec.resolution,
            params=sum(row.params for row in mine), macs=sum(row.macs for row in mine),
            activations=sum(row.activations for row in mine),
            out_shape=next(row.out_shape for row in reversed(mine) if row.kind != "linear"),
        ))
    return Report(
        config=config, rows=tuple(rows), stages=tuple(stage_rows),
        params=sum(x.params for x in stage_rows), macs=sum(x.macs for x in stage_rows),
        activations=sum(x.activations for x in stage_rows),
    )


_count_cached = lru_cache(maxsize=256)(_count)  # configs are frozen (hashable); reports are immutable


def count(model: str | EfficientNetConfig | Mapping[str, Any] | nn.Module | None = None, /, **kwargs: Any) -> Report:
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
    elif isinstance(built := getattr(model, "config", None), EfficientNetConfig):
        config = built
    else:
        raise TypeError(
            f"count() takes a model name ({MEMBER_NAMES}), an EfficientNetConfig, a dict of "
            f"resolve() arguments, or a built EfficientNet; got {type(model).__name__}"
        )
    return _count_cached(config)


# ---------------------------------------------------------------------------------------------------------------
# One block, for the BlockExplorer: why depthwise convolutions are cheap in FLOPs but not in memory traffic.


@dataclass(frozen=True, slots=True)
class BlockCount:
    """One MBConv block, sub-layer by sub-layer, with the memory traffic each sub-layer causes."""

    spec: BlockSpec  # the block as ``arch`` describes it (channels, kernel, stride, SE width, input resolution)
    rows: tuple[LayerCount, ...]  # expand (absent for MBConv1), depthwise, se (absent without SE), project

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activations(self) -> int:
        return sum(r.activations for r in self.rows)

    @property
    def bytes_moved(self) -> int:
        return sum(r.bytes_moved for r in self.rows)

    def part(self, name: str) -> LayerCount | None:
        """The sub-layer ``"expand"``, ``"depthwise"``, ``"se"`` or ``"project"`` (None when the block has none)."""
        return next((r for r in self.rows if r.name.rsplit("/", 1)[-1] == name), None)

    def table(self) -> str:
        head = f"{'part':<10} {'params':>10} {'MACs':>14} {'bytes moved':>13} {'MACs/byte':>9}  out shape"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.name.rsplit('/', 1)[-1]:<10} {r.params:>10,} {r.macs:>14,} {r.bytes_moved:>13,} "
                         f"{r.intensity:>9.2f}  {_shape(r.out_shape)}")
        lines.append("-" * len(head))
        total_intensity = self.macs / self.bytes_moved
        lines.append(f"{'total':<10} {self.params:>10,} {self.macs:>14,} {self.bytes_moved:>13,} "
                     f"{total_intensity:>9.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        b = self.spec
        return {
            "in_channels": b.in_channels, "out_channels": b.out_channels, "expand_ratio": b.expand_ratio,
            "kernel_size": b.kernel_size, "stride": b.stride, "se_channels": b.se_channels,
            "resolution": b.in_resolution, "residual": b.residual, "params": self.params, "macs": self.macs,
            "flops": self.flops, "bytes_moved": self.bytes_moved, "layers": [r.to_dict() for r in self.rows],
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
        se_channels = arch_se_channels(in_channels, se_ratio)
    elif isinstance(se_channels, bool) or not isinstance(se_channels, int) or se_channels < 0:
        raise ScalingError(f"se_channels must be a whole number >= 0 (0 = no SE), got {se_channels!r}")
    spec = BlockSpec(name="block", stage=0, in_channels=in_channels, out_channels=out_channels,
                     expand_ratio=expand_ratio, kernel_size=kernel_size, stride=stride, se_channels=se_channels,
                     drop_path=0.0, in_resolution=resolution)
    return BlockCount(spec, tuple(_mbconv_rows(spec, "block", "block")))


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
