"""The scaling lab's experiments: which models are trained, and why. Every model is a ``Point`` (a family and its
width, depth, resolution relative to the family's baseline) plus a seed; one point can serve several experiments
(C0 is the start of every curve) and is trained once.

- ``c0``: the classroom baseline, three seeds (the noise level).
- ``fig3`` (Figure 3, Section 3.2): C0 scaled in one dimension only, four points each, up to ~4x the MACs.
- ``fig4`` (Figure 4): width scaling at (d, r) = (1, 1), (2, 1), (1, 1.3), (2, 1.3).
- ``grid`` (Section 3.3, step 1): phi = 1, (alpha, beta, gamma) on a 0.05 grid with alpha * beta^2 * gamma^2
  within ``GRID_TOLERANCE`` of 2; a stated subset (``grid_points``) is trained.
- ``step2`` (Section 3.3, step 2): the best grid point (by *validation* accuracy) applied at phi = 2 and 3.
- ``fig8`` (Figure 8 / Table 3's pattern): compound scaling with the paper's (1.2, 1.1, 1.15) at phi = 1 against
  depth-only, width-only and resolution-only models with the same MACs (within 5%), three seeds each.
- ``table3``: the same comparison for a small MobileNetV2 and a small ResNet (one seed).
- ``table7`` (Figure 7 / Table 7, Section 6): the phi = 1 models of ``fig8`` (seed 0) scored by where their class
  activation maps fall; needs no extra training.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from ..scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, round_resolution
from .data import CLASSES
from .families import BASES, Point, macs

MATCH_TOLERANCE = 0.05  # matched-FLOPs pairs differ by at most 5% in multiply-adds ...
# ... except where no single-dimension point comes that close, and the nearest is used: MobileNetV2's width_mult
# rounds channels to multiples of 8, so its MACs jump from -9.5% to +7.5% of the compound point's between width 1.48
# and 1.49; the ResNet's blocks per stage are whole numbers (ceil(2 d): 5 blocks -7.6%, 6 blocks +10.8%), and its
# stride-32 stages make its MACs jump between 96 px (-16.3%) and 97 px (+9.9%).
UNMATCHED = {("mobilenetv2", "width"), ("resnet", "depth"), ("resnet", "resolution")}
GRID_STEP = 0.05
GRID_TOLERANCE = 0.1  # |alpha * beta^2 * gamma^2 - 2| <= 0.1, i.e. within 5% of the budget


@dataclass(frozen=True)
class Run:
    """One model to train: a point, a seed, and the experiments it belongs to."""

    point: Point
    seed: int
    experiments: tuple[str, ...]

    @property
    def key(self) -> str:
        """A file name for the model: ``effnet-w1.5-d2-r83-s0``."""
        p = self.point
        return f"{p.family}-w{p.width:g}-d{p.depth:g}-r{p.resolution}-s{self.seed}"


def scaled(family: str, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0) -> Point:
    """A point of ``family`` scaled by multipliers of its baseline (resolution as a multiplier too)."""
    base = BASES[family]
    return Point(family, round(width, 4), round(depth, 4), round_resolution(base.resolution * resolution))


def compound_point(family: str, phi: float, alpha=PAPER_ALPHA, beta=PAPER_BETA, gamma=PAPER_GAMMA) -> Point:
    """Eq. 3 applied to a family's baseline: d = alpha^phi, w = beta^phi, r = gamma^phi."""
    return scaled(family, beta**phi, alpha**phi, gamma**phi)


def match_macs(target: Point, dimension: str) -> Point:
    """The point that scales only ``dimension`` of the family's baseline and whose MACs are closest to
    ``target``'s: width and depth on a 0.01 grid, resolution pixel by pixel. MACs never fall as one multiplier
    grows, so a binary search finds the first candidate at or above the target; it or its predecessor wins."""
    family, n = target.family, len(CLASSES)
    goal, base = macs(target, n), BASES[family]
    if dimension == "resolution":
        candidates = [Point(family, 1.0, 1.0, r) for r in range(base.resolution, 4 * base.resolution)]
    else:
        candidates = [Point(family, **{"width": 1.0, "depth": 1.0, dimension: k / 100}, resolution=base.resolution)
                      for k in range(100, 801)]
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if macs(candidates[mid], n) >= goal:
            hi = mid
        else:
            lo = mid + 1
    near = candidates[max(lo - 1, 0):lo + 1]
    return min(near, key=lambda p: abs(macs(p, n) - goal))


def grid(step: float = GRID_STEP, tolerance: float = GRID_TOLERANCE, top: float = 2.0):
    """Every (alpha, beta, gamma) on the grid with alpha, beta, gamma >= 1 and |alpha beta^2 gamma^2 - 2| <= tol."""
    values = [round(1 + step * i, 4) for i in range(int(round((top - 1) / step)) + 1)]
    return [(a, b, g) for a, b, g in itertools.product(values, repeat=3) if abs(a * b * b * g * g - 2) <= tolerance]


def grid_points() -> list[tuple[float, float, float]]:
    """The trained subset of ``grid()``: for beta in {1.0, 1.1, 1.2} and alpha in {1.0, 1.2, 1.4, 2.0}, the grid
    point closest to the constraint (gamma follows). It spans the corners (all depth, all resolution, as much
    width as the budget allows) and contains the paper's (1.2, 1.1, 1.15). Training all 108 grid points would
    cost about 200 C0 trainings; these 10 cost about 20."""
    on_grid = grid()
    chosen = []
    for beta in (1.0, 1.1, 1.2):
        for alpha in (1.0, 1.2, 1.4, 2.0):
            row = [p for p in on_grid if p[0] == alpha and p[1] == beta]
            if row:
                chosen.append(min(row, key=lambda p: abs(p[0] * p[1] ** 2 * p[2] ** 2 - 2)))
    return chosen


def plan(step2_coefficients: tuple[float, float, float] | None = None) -> list[Run]:
    """Every run of the lab, in the order the runner trains them; points shared by experiments appear once.

    ``step2`` needs the grid's winner: pass it once the grid is trained (the runner does)."""
    wanted: dict[tuple[Point, int], list[str]] = {}

    def add(point: Point, experiment: str, seeds=(0,)):
        for seed in seeds:
            wanted.setdefault((point, seed), []).append(experiment)

    add(scaled("effnet"), "c0", seeds=(0, 1, 2))
    for w in (1.25, 1.5, 2.0, 2.5):
        add(scaled("effnet", width=w), "fig3")
    for d in (2.0, 3.0, 4.0, 6.0):
        add(scaled("effnet", depth=d), "fig3")
    for r in (1.25, 1.5, 1.75, 2.0):
        add(scaled("effnet", resolution=r), "fig3")
    for d, r in ((1, 1), (2, 1), (1, 1.3), (2, 1.3)):
        for w in (1.0, 2.0):
            add(scaled("effnet", width=w, depth=d, resolution=r), "fig4")
    for family, seeds in (("effnet", (0, 1, 2)), ("mobilenetv2", (0,)), ("resnet", (0,))):
        experiment = "fig8" if family == "effnet" else "table3"
        compound = compound_point(family, 1.0)
        add(scaled(family), experiment, seeds=seeds)
        add(compound, experiment, seeds=seeds)
        for dimension in ("depth", "width", "resolution"):
            add(match_macs(compound, dimension), experiment, seeds=seeds)
    for alpha, beta, gamma in grid_points():
        add(compound_point("effnet", 1.0, alpha, beta, gamma), "grid")
    if step2_coefficients is not None:
        for phi in (1.0, 2.0, 3.0):
            add(compound_point("effnet", phi, *step2_coefficients), "step2")
    return [Run(point, seed, tuple(exps)) for (point, seed), exps in wanted.items()]


def relative_cost(run: Run) -> float:
    return macs(run.point, len(CLASSES)) / macs(scaled(run.point.family), len(CLASSES))


def describe() -> str:
    runs = plan()
    total = sum(relative_cost(r) for r in runs)
    return f"{len(runs)} runs, {total:.0f} baseline-equivalents of multiply-adds"


if __name__ == "__main__":
    for r in plan():
        print(f"{r.key:<32} {macs(r.point, len(CLASSES)) / 1e6:7.2f}M  {relative_cost(r):5.2f}x  "
              f"{','.join(r.experiments)}")
    print(describe())
    print(len(grid()), "grid points;", grid_points())
    print(math.prod((1.2, 1.1**2, 1.15**2)))
