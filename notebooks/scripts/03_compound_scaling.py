# ---
# jupyter:
#   jupytext:
#     formats: ipynb,scripts//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Compound scaling: from B0 to B7
#
# Section 3.3 of the paper scales depth, width and resolution *together* with one coefficient $\phi$ (Eq. 3):
#
# $$d = \alpha^\phi, \qquad w = \beta^\phi, \qquad r = \gamma^\phi, \qquad
#   \text{s.t. } \alpha \cdot \beta^2 \cdot \gamma^2 \approx 2, \quad \alpha, \beta, \gamma \ge 1.$$
#
# A regular conv layer's multiply-adds grow with $d$, $w^2$ and $r^2$, so FLOPS grow by
# $(\alpha \beta^2 \gamma^2)^\phi \approx 2^\phi$. Step 1, a small grid search at $\phi = 1$, found $\alpha = 1.2$,
# $\beta = 1.1$, $\gamma = 1.15$; step 2 fixes them and scales B0 up "with different $\phi$" to get B1-B7.
#
# **Learning objectives.** After this notebook you can
# 1. draw the five ways of scaling a network (the paper's Figure 2) from real configurations;
# 2. apply the rounding rules that turn $w$ and $d$ into whole channels and layers;
# 3. regenerate Table 2's parameters and FLOPS and check them against torchvision and the paper;
# 4. explain how the released B1-B7 relate to $\alpha^\phi, \beta^\phi, \gamma^\phi$ (loosely) and why the
#    counted FLOPS do not grow exactly as $2^\phi$.
#
# **Prerequisites.** Notebook 02 (Table 1). **Time.** About 35 minutes, plus 30 for the exercises.
# All counts come from `effnet_edu.accounting`, which counts from the architecture without building anything.

# %% [markdown]
# *On Colab or Binder?* The next cell installs `effnet-edu` only when it is missing (here and in CI it does
# nothing). `effnet-edu` is **not on PyPI**: set `EFFNET_EDU_REPO` to the GitHub address of the repository this
# notebook came from (see the README, "Colab and Binder"). Colab's preinstalled torch is kept. A notebook you have
# just downloaded is untrusted: its widgets show as text such as `VBox(...)` until you **run all cells**.

# %%
EFFNET_EDU_REPO = "https://github.com/YOUR-ACCOUNT/effnet-edu"  # placeholder: replace with the repository's address
try:
    import effnet_edu  # noqa: F401  (installed: nothing to do)
except ImportError:
    import importlib
    import subprocess
    import sys

    if "YOUR-ACCOUNT" in EFFNET_EDU_REPO:
        raise RuntimeError("effnet-edu is not installed: set EFFNET_EDU_REPO to the repository's GitHub address "
                           "(README, 'Colab and Binder'); it is not published on PyPI")
    # no version pins: keep the torch that Colab/Binder already has (torch>=2.4 is all the package needs)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet",
                           f"effnet-edu[weights,cam,train] @ git+{EFFNET_EDU_REPO}"])
    importlib.invalidate_caches()

# %%
import math

import matplotlib.pyplot as plt
import torch
import torchvision

import effnet_edu as ee
from effnet_edu.accounting import count, flops_growth, growth_table

# %% [markdown]
# ## The rule at phi = 1

# %% tags=["nbval-check-output"]
point = ee.compound(1.0)
print(f"depth {point.depth:.3f}, width {point.width:.3f}, resolution {point.resolution_exact:.1f} -> {point.resolution} px")
print(point.constraint_report())

# %% [markdown]
# ## Figure 2, from the library
# The paper's Figure 2 sketches (a) a baseline and its scaling by (b) width, (c) depth, (d) resolution and
# (e) all three. Here each panel is drawn layer by layer from `ee.stages()` of a real config: B0, and the four
# models of the paper's Table 7 (Section 6): $w = 2$, $d = 4$, $r = 2$, and the compound point
# $d = 1.4, w = 1.2, r = 1.3$.

# %%
from effnet_edu_widgets.diagrams import FIGURE2_POINTS, figure2, layer_bars

figure2();

# %% tags=["nbval-check-output"]
for title, scaling in FIGURE2_POINTS:
    c = ee.resolve(**scaling)
    print(f"{title:16s} {len(layer_bars(c)):>3} layers, widest {max(ch for ch, _ in layer_bars(c)):>5} channels, "
          f"{c.resolution} px, {count(c).macs / 1e9:.2f}B MACs")

# %% [markdown]
# ## The rounding rules
# Eq. 3 gives real numbers; a network needs whole channels and layers. The official code (followed by torchvision,
# timm and `effnet_edu.scaling`):
#
# - **channels** $c \cdot w$ go to the nearest multiple of 8 (halves round up), never below 8, and never more than
#   10% below $c \cdot w$ (if they would, one more step of 8 is added): `round_filters`;
# - **layers** go up: $\lceil L \cdot d \rceil$ (`round_repeats`), so no stage ever vanishes;
# - **resolution**: the paper gives no rule; the released models use hand-picked sizes, and `effnet_edu` rounds
#   $224 \gamma^\phi$ to the nearest pixel.

# %% tags=["nbval-check-output"]
print(f"round_filters(40, 1.1) = {ee.round_filters(40, 1.1)}   (40 x 1.1 = 44.0: halfway, rounds up to 48)")
print(f"round_filters(16, 1.2) = {ee.round_filters(16, 1.2)}   (19.2 -> 16 would lose {1 - 16 / 19.2:.0%} > 10%: the guard gives 24)")
print(f"round_filters(32, 1.2) = {ee.round_filters(32, 1.2)}   (38.4 -> 40)")
print(f"round_repeats(1, 1.1) = {ee.round_repeats(1, 1.1)}, round_repeats(3, 1.4) = {ee.round_repeats(3, 1.4)}  (ceil)")
b0, b3 = ee.stages(ee.resolve("b0")), ee.stages(ee.resolve("b3"))
print("B3 (w 1.2, d 1.4), stage by stage:")
for a, b in zip(b0, b3):
    print(f"  stage {a.stage}: {a.out_channels:>4} x 1.2 = {a.out_channels * 1.2:>6.1f} -> {b.out_channels:>4} channels;"
          f"  {a.layers} x 1.4 = {a.layers * 1.4:.1f} -> {b.layers} layers")

# %% [markdown]
# ## Table 2, regenerated
# Parameters and multiply-adds of the released B0-B7 (1000 classes). The paper's "FLOPS" are multiply-adds
# (MACs); a profiler that counts 2 FLOPs per multiply-add reports twice these. As an independent check, the
# parameter column is also counted on torchvision's implementation, built on the `meta` device (shapes only,
# no memory, no weights).

# %% tags=["nbval-check-output"]
paper = {  # Table 2 of the paper: params, FLOPS (multiply-adds)
    "b0": ("5.3M", 0.39e9), "b1": ("7.8M", 0.70e9), "b2": ("9.2M", 1.0e9), "b3": ("12M", 1.8e9),
    "b4": ("19M", 4.2e9), "b5": ("30M", 9.9e9), "b6": ("43M", 19e9), "b7": ("66M", 37e9),
}
print(f"{'model':5} {'w':>4} {'d':>4} {'res':>4} {'params':>12} {'torchvision':>12} {'paper':>6} "
      f"{'MACs (B)':>9} {'paper':>6} {'FLOPs=2xMACs (B)':>17}")
for name, (paper_params, paper_macs) in paper.items():
    r = count(name)
    with torch.device("meta"):
        tv = sum(p.numel() for p in getattr(torchvision.models, f"efficientnet_{name}")().parameters())
    c = r.config
    print(f"{name.upper():5} {c.width:>4g} {c.depth:>4g} {c.resolution:>4} {r.params:>12,} {tv:>12,} "
          f"{paper_params:>6} {r.macs / 1e9:>9.3f} {paper_macs / 1e9:>6.2f} {r.flops / 1e9:>17.3f}")

# %% [markdown]
# Parameters match torchvision exactly and the paper to its rounding, except B2: 9,109,994 is 9.11M where the
# paper prints 9.2M. The multiply-adds match the paper's FLOPS to within a few percent (the paper rounds, and
# B4/B5 were reported slightly below what the released architecture counts).
#
# ## Are B1-B7 $\alpha^\phi$, $\beta^\phi$, $\gamma^\phi$?
# Only loosely. The released coefficients are a hand-rounded schedule. Put each released member next to what the
# formula gives at the same $\phi$, and find the $\phi$ at which the formula would give the same MACs, two ways:
# "effective phi" searches the *rounded* formula networks (what `count(phi=...)` builds), "phi at 1.92^phi"
# solves $1.92^\phi = \text{MACs}/\text{MACs}_{B0}$, the unrounded law.

# %% tags=["nbval-check-output"]
def effective_phi(macs, lo=0.0, hi=8.0):
    """The phi whose formula network has these MACs (bisection; MACs grow with phi)."""
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(phi=mid).macs < macs else (lo, mid)
    return (lo + hi) / 2

print(f"{'phi':>3} | {'released':>8} {'w':>4} {'d':>4} {'res':>4} {'MACs (B)':>8} | {'formula':>7} {'w':>5} {'d':>5} "
      f"{'res':>4} {'MACs (B)':>8} | {'MACs ratio':>10} {'effective phi':>13} {'phi at 1.92^phi':>15}")
b0_macs, factor = count("b0").macs, point.flops_factor
for n in range(8):
    rel, form = count(f"b{n}"), count(phi=n)
    print(f"{n:>3} | {'B' + str(n):>8} {rel.config.width:>4g} {rel.config.depth:>4g} {rel.config.resolution:>4} "
          f"{rel.macs / 1e9:>8.3f} | {'phi=' + str(n):>7} {form.config.width:>5.3f} {form.config.depth:>5.3f} "
          f"{form.config.resolution:>4} {form.macs / 1e9:>8.3f} | {rel.macs / form.macs:>10.3f} "
          f"{effective_phi(rel.macs):>13.2f} {math.log(rel.macs / b0_macs) / math.log(factor):>15.2f}")

# %% [markdown]
# The answer, in numbers: B1-B4 are much smaller than the formula at the same $\phi$ (55-70% of its MACs); B5-B7
# come close (B7 has 95% of its MACs: resolution 600 vs 596 and width 2.0 vs 1.95, but depth 3.1 vs 3.58).
#
# Read the "effective phi" column with care. With ceil rounding of layer counts, *any* $\phi > 0$ turns every
# 1-layer stage into 2 layers and B0's 16 blocks into 23, so the rounded formula jumps at $\phi = 0^+$ from B0
# to 1.48x its MACs. B1's "effective phi 0.22" is that rounding artefact, not a small step: B1 has 1.78x B0's
# MACs, which the unrounded law $1.92^\phi$ puts at $\phi = 0.88$.
#
# And B2 *is* the $\phi = 1$ architecture: the same widths and depths in every stage, at 260 instead of 258 px.

# %% tags=["nbval-check-output"]
b2, phi1 = ee.resolve("b2"), ee.resolve(phi=1)
blocks_at = {x: sum(r.layers for r in ee.stages(ee.resolve(phi=x))[1:8]) for x in (0, 0.01, 0.5, 1)}
print("MBConv blocks of the rounded formula network at phi =", blocks_at)
print(f"MACs at phi = 0.01: {count(phi=0.01).macs / count('b0').macs:.2f}x B0's")
print(f"B1 / B0 MACs: {count('b1').macs / count('b0').macs:.2f}x")
print("B2 and phi = 1: same channels and layers in every stage:",
      [(r.out_channels, r.layers) for r in ee.stages(b2)] == [(r.out_channels, r.layers) for r in ee.stages(phi1)],
      f"  resolution {b2.resolution} vs {phi1.resolution} px")

# %% [markdown]
# ## FLOPs growth against $2^\phi$
# `flops_growth` counts the formula's network at each $\phi$. "counted" is the real growth over B0, "formula" is
# $(\alpha \beta^2 \gamma^2)^\phi = 1.92^\phi$ before any rounding, and $2^\phi$ is the promise.

# %% tags=["nbval-check-output"]
points = flops_growth()
print(growth_table(points))

# %% [markdown]
# The rounding rules explain the gap: `ceil` on layer counts makes depth grow faster than $\alpha^\phi$ at small
# $\phi$ (at $\phi = 1$ every 1-layer stage becomes 2 layers), so the counted growth starts *above* $2^\phi$;
# later $1.92^\phi$ falls behind $2^\phi$ (96x instead of 128x at $\phi = 7$).

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
phis = [p.phi for p in points]
ax.semilogy(phis, [p.growth for p in points], "o-", label="counted (formula network)")
ax.semilogy(phis, [p.formula for p in points], "--", label="1.92^phi (Eq. 3)")
ax.semilogy(phis, [p.doubling for p in points], ":", label="2^phi")
ax.semilogy(range(8), [count(f"b{n}").macs / count("b0").macs for n in range(8)], "s", label="released B0-B7")
ax.set(xlabel="phi", ylabel="MACs / MACs of B0", title="FLOPs growth")
ax.legend();

# %% [markdown]
# ## The explorer
# Move $\phi$, $\alpha$, $\beta$ and $\gamma$. Every readout is counted from the architecture (no network is
# built). Switch to "released B0-B7" to snap to the released family and see it next to the formula. Try
# $\alpha < 1$: the paper's rule forbids it, and the explorer says so and keeps the last valid view.
#
# **Predict first.** With the paper's $\alpha, \beta, \gamma$, by how many times do B0's MACs grow at $\phi = 1$?
# Eq. 3 says 1.92. Write your own number below before you move the slider, then run the check.

# %%
my_prediction = None  # e.g. 1.92

# %%
from effnet_edu_widgets import ScalingExplorer

explorer = ScalingExplorer(phi=1.0)
explorer

# %% tags=["nbval-check-output"]
from effnet_edu_widgets.checks import check_scaling_prediction

_ = check_scaling_prediction(my_prediction)

# %% [markdown]
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended.
#
# 1. ★★ Keep $\alpha \beta^2 \gamma^2 \approx 2$ but put all the budget into resolution ($\alpha = \beta = 1$,
#    $\gamma = \sqrt{2}$). How do params and MACs at $\phi = 3$ compare with the paper's coefficients? Which
#    dimension drives the parameter count?
# 2. ★★★ Find coefficients whose counted MACs at $\phi = 7$ are closest to $2^7$ times B0's. Why can't they match
#    at every $\phi$ at once?
# 3. ★ Which released member is furthest below the formula, by the MACs ratio? Check:
#    `check_furthest_member("bN")`.
# 4. ★★ The activation memory readout grows faster than the parameters. Why does resolution matter more for
#    activations than for parameters?
# 5. ★ Table 2 compares B7 (66M parameters) with GPipe (556M parameters; the table gives GPipe no FLOPS). How
#    many times B7's exact parameter count is GPipe's? Check: `check_gpipe_ratio(ratio)`.

# %%
from effnet_edu_widgets.checks import check_furthest_member, check_gpipe_ratio

check_furthest_member(None)
check_gpipe_ratio(None);

# %% [markdown]
# <details><summary>Model answers (1, 2, 4)</summary>
#
# **1.** Run `count(phi=3, alpha=1, beta=1, gamma=2**0.5)`: the parameters stay exactly B0's (5.3M; resolution
# adds no weights) while the MACs grow about $2^3$-fold like the paper's point, whose parameters grow with
# $w^2$ and $d$. Width (squared) drives the parameter count, depth linearly, resolution not at all.
#
# **2.** Search a grid of $(\alpha, \beta, \gamma)$ with `flops_growth([7], alpha, beta, gamma)`. The rounding
# makes the counted growth a step function of $\phi$ (ceil on layers, multiples of 8 on channels) that starts
# above $2^\phi$ at small $\phi$ (notebook cell above) and follows $(\alpha\beta^2\gamma^2)^\phi$ later; a single
# smooth exponential cannot follow a step function everywhere.
#
# **4.** Activation memory is a sum of $C \times H \times W$ over layers: it grows with $r^2$ (and $w$, $d$). The
# weights of a conv are $C_{in} \times C_{out} \times k^2$, independent of $H \times W$.
# </details>
#
# ## What came after
# - **MnasNet** (Tan et al., CVPR 2019) is the search that B0's search space and objective come from (Section 4).
# - **EfficientNetV2** (Tan & Le, ICML 2021) adds training speed to the search and scales non-uniformly: it caps
#   the resolution, adds layers mostly to later stages, and trains with progressive resizing (small images
#   and weak regularisation early, larger and stronger later).
# - **RegNet** (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020) studies whole *design spaces*
#   rather than one searched network, finds that good networks' widths grow roughly linearly from stage to stage,
#   and reports that under comparable training settings and FLOPS its models beat EfficientNet while running up
#   to 5x faster on GPUs.
#
# References: Tan & Le, EfficientNet, ICML 2019, [arXiv:1905.11946](https://arxiv.org/abs/1905.11946); Tan et al.,
# MnasNet, CVPR 2019, [arXiv:1807.11626](https://arxiv.org/abs/1807.11626); Tan & Le, EfficientNetV2, ICML 2021,
# [arXiv:2104.00298](https://arxiv.org/abs/2104.00298); Radosavovic et al., Designing Network Design Spaces,
# CVPR 2020, [arXiv:2003.13678](https://arxiv.org/abs/2003.13678).
#
# ## Summary
# - Compound scaling grows depth, width and resolution together: $d = \alpha^\phi$, $w = \beta^\phi$,
#   $r = \gamma^\phi$ with $\alpha\beta^2\gamma^2 \approx 2$; the paper's point gives $1.92^\phi$.
# - Channels round to multiples of 8 (with a 10% guard) and layers round up; these rules, not Eq. 3 alone, decide
#   the real networks and their FLOPS (2.57x at $\phi = 1$ instead of 1.92x).
# - The released B1-B7 are a hand-rounded schedule: B2 is the $\phi = 1$ network, B1 sits between B0 and it, and
#   B5-B7 come close to the formula.
