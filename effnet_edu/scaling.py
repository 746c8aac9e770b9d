"""Scaling rules of EfficientNet (Tan & Le, 2019, Section 3): pure functions, no torch.

Three small rules turn the B0 baseline into any family member:

- ``round_filters``: width scaling of a channel count (rounded to a multiple of 8, as the official code does);
- ``round_repeats``: depth scaling of a stage's layer count (ceil);
- ``compound``: the compound rule of Section 3.3, phi -> (depth, width, resolution) = (alpha^phi, beta^phi, gamma^phi).

Every function checks its inputs and raises ``ScalingError`` (a ``ValueError``) that says what was wrong and what
is allowed, so a slider or a command line can show the message as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASE_RESOLUTION = 224  # B0's input resolution (Table 1)
MIN_RESOLUTION = 32  # five stride-2 stages divide the input by 32: anything smaller collapses to 1x1 early
PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15  # grid search at phi = 1 (Section 3.3, step 1)
FLOPS_BUDGET = 2.0  # alpha * beta^2 * gamma^2 ~ 2: each unit of phi doubles the FLOPs
FLOPS_TOLERANCE = 0.1  # how close alpha * beta^2 * gamma^2 must be to the budget to count as "~2"


class ScalingError(ValueError):
    """A scaling point that cannot be built; the message says what was wrong and what is allowed."""


def _check_number(name: str, value, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScalingError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ScalingError(f"{name} must be a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ScalingError(f"{name} must be {relation} {minimum:g}, got {value:g}")
    return value


def _check_finite(what: str, value: float) -> None:
    """Floats stop at ~1.8e308: a product past that is inf, and int(inf) would raise OverflowError."""
    if not math.isfinite(value):
        raise ScalingError(f"{what} overflows (more than 1.8e308): use a smaller value")


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width``: nearest multiple of ``divisor``, never below ``divisor``, and never
    more than 10% below ``channels * width`` (the official code's rule; hardware likes multiples of 8)."""
    scaled = channels * width
    _check_finite(f"{channels} channels x width {width:g}", scaled)
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # rounding down lost more than 10%: go up one step instead
        rounded += divisor
    return int(rounded)


def round_repeats(layers: int, depth: float) -> int:
    """Scale a stage's number of layers by ``depth``, rounding up so that no stage ever vanishes."""
    _check_finite(f"{layers} layers x depth {depth:g}", layers * depth)
    return int(math.ceil(layers * depth))


def round_resolution(resolution: float) -> int:
    """The rule for a compound-scaled resolution: nearest integer (halves round up).

    The paper gives r = gamma^phi and no rounding rule; the released B1-B7 use hand-picked sizes (240, 260, ...),
    so nearest-integer is our documented choice: it keeps r^2 (and so FLOPs) closest to the formula."""
    _check_finite("the resolution", resolution)
    return int(math.floor(resolution + 0.5))


def check_width(width) -> float:
    """Width multipliers must be positive and large enough that the narrowest stage keeps a channel."""
    width = _check_number("width", width, minimum=0.0, strict=True)
    narrowest = 16  # stage 2 of Table 1
    if narrowest * width < 1:
        raise ScalingError(
            f"width {width:g} rounds to nothing: the narrowest stage ({narrowest} channels) would get "
            f"{narrowest * width:.3g} channels before rounding; use width >= {1 / narrowest:g}"
        )
    _check_finite(f"width {width:g} (x 1280 head channels)", 1280 * width + 8)
    return width


def check_depth(depth) -> float:
    depth = _check_number("depth", depth, minimum=0.0, strict=True)
    _check_finite(f"depth {depth:g} (x 4 layers of the deepest stage)", 4 * depth + 1)
    return depth


def check_resolution(resolution) -> int:
    if isinstance(resolution, float) and resolution.is_integer():
        resolution = int(resolution)
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ScalingError(
            f"resolution must be a whole number of pixels, got {resolution!r}; "
            f"use round_resolution() for a computed value"
        )
    if resolution < MIN_RESOLUTION:
        raise ScalingError(
            f"resolution {resolution} is too small: the network halves it five times (stem and stages 3, 4, 5, 7), "
            f"so it must be at least {MIN_RESOLUTION}"
        )
    return resolution


@dataclass(frozen=True)
class CompoundPoint:
    """The result of the compound rule for one phi: multipliers, the rounded resolution and the FLOPs budget."""

    phi: float
    alpha: float
    beta: float
    gamma: float
    depth: float  # d = alpha^phi
    width: float  # w = beta^phi
    resolution_exact: float  # 224 * gamma^phi before rounding
    resolution: int  # round_resolution(resolution_exact)

    @property
    def flops_factor(self) -> float:
        """alpha * beta^2 * gamma^2: the FLOPs multiplier per unit of phi (the paper wants ~2)."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def flops_growth(self) -> float:
        """(alpha * beta^2 * gamma^2)^phi: how much the formula says FLOPs grow at this phi (before rounding)."""
        return self.flops_factor**self.phi

    def constraint_report(self, tolerance: float = FLOPS_TOLERANCE) -> str:
        factor = self.flops_factor
        status = "meets" if abs(factor - FLOPS_BUDGET) <= tolerance else "misses"
        return (
            f"alpha * beta^2 * gamma^2 = {self.alpha:g} * {self.beta:g}^2 * {self.gamma:g}^2 = {factor:.4f} "
            f"({status} the constraint ~{FLOPS_BUDGET:g} within {tolerance:g}); "
            f"FLOPs grow by {factor:.4f}^{self.phi:g} "
            f"= {self.flops_growth:.3f}x"
        )


def compound(phi, alpha=PAPER_ALPHA, beta=PAPER_BETA, gamma=PAPER_GAMMA) -> CompoundPoint:
    """The compound scaling rule (Section 3.3, Eq. 3): depth = alpha^phi, width = beta^phi, resolution = gamma^phi.

    alpha, beta, gamma >= 1 (the paper's constraint: scaling never shrinks a dimension); phi >= 0."""
    phi = _check_number("phi", phi, minimum=0.0)
    alpha = _check_number("alpha", alpha, minimum=1.0)
    beta = _check_number("beta", beta, minimum=1.0)
    gamma = _check_number("gamma", gamma, minimum=1.0)
    try:  # float ** raises OverflowError past 1.8e308 (phi 5000: 1.2^5000 ~ 1e396)
        depth, width, resolution_exact = alpha**phi, beta**phi, BASE_RESOLUTION * gamma**phi
    except OverflowError:
        raise ScalingError(f"phi {phi:g} overflows: alpha^phi, beta^phi or gamma^phi is more than 1.8e308 "
                           f"(with alpha {alpha:g}, beta {beta:g}, gamma {gamma:g}); use a smaller phi") from None
    return CompoundPoint(
        phi=phi, alpha=alpha, beta=beta, gamma=gamma,
        depth=depth, width=width,
        resolution_exact=resolution_exact, resolution=round_resolution(resolution_exact),
    )
