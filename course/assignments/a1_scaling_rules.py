# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: a1_scaling_rules
# init_cell: true
# check_all_cell: false
# export_cell: false
# solutions_pdf: false
# strip_solutions_from_all_cells: true
# tests:
#   files: false
#   ok_format: false
# generate:
#   pdf: false
#   show_stdout: true

# %% [markdown]
# # Assignment 1 · The scaling rules
#
# *EfficientNet (Tan & Le, 2019), Sections 3.2-3.3 and Table 1. About 45 minutes.*
#
# Every EfficientNet B1-B7 is EfficientNet-B0 with three multipliers applied: **width** (channels), **depth**
# (layers per stage) and **resolution** (input pixels). Multipliers are real numbers, networks are not: a stage
# cannot have 20.8 layers or 38.4 channels. This assignment is about the small rounding rules that turn the
# paper's formulas into real networks, and about predicting what they do before checking it.
#
# **Learning objectives.** After this assignment you can
# 1. scale a channel count the way the official code does, including the "never more than 10% down" guard;
# 2. scale a stage's layer count and explain why it rounds up;
# 3. apply the compound rule d = alpha^phi, w = beta^phi, r = gamma^phi (Eq. 3) and round the resolution;
# 4. predict B3's stage widths and depths by hand, then check your prediction;
# 5. explain in words why the rounding makes real FLOPs differ from the formula.
#
# **Points.** Q1 round_filters 5 · Q2 round_repeats 2 · Q3 compound rule 4 · Q4 B3's widths 3 ·
# Q5 B3's depths 2 · Q6 written (graded by hand) 4. Autograded: 16, written: 4.
#
# Run the `grader.check(...)` cell after each answer: it runs the *visible* tests, which catch the common
# mistakes. More tests, hidden from you, decide the grade: make your functions right for every input, not just
# for the visible examples. You may use `math`, but not `effnet_edu`'s own rounding functions.

# %%
import math

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 5

# %% [markdown]
# **Q1 (5 points).** Write `round_filters(channels, width, divisor=8)`. The official code scales a channel count
# `channels * width`, rounds it to the **nearest** multiple of `divisor` (halves go up), never returns less than
# `divisor`, and, if that rounding went down by more than 10% of `channels * width`, adds one more `divisor`.
# Hardware likes multiples of 8; the 10% guard stops a narrow layer from losing too much of its capacity.
#
# Examples: `round_filters(32, 1.0) == 32`, `round_filters(40, 1.1) == 48` (44 is a tie: it goes up).

# %% [raw]
# # BEGIN SOLUTION

# %%
def round_filters(channels, width, divisor=8):
    # BEGIN SOLUTION
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)
    # END SOLUTION


round_filters(40, 1.1)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_examples(round_filters):
    assert round_filters(32, 1.0) == 32, "round_filters(32, 1.0) should leave 32 alone"
    assert round_filters(40, 1.1) == 48, "40 * 1.1 = 44 is halfway between 40 and 48: halves go up"
    assert isinstance(round_filters(24, 1.2), int), "return an int (a channel count)"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q1_grid(round_filters):
    import effnet_edu as ee
    for channels in (16, 24, 32, 40, 80, 112, 192, 320, 1280):
        for width in (0.5, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 3.1):
            want = ee.round_filters(channels, width)
            assert round_filters(channels, width) == want, f"round_filters({channels}, {width}) should be {want}"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q1_guard_and_divisor(round_filters):
    import effnet_edu as ee
    # Narrow layers and small multipliers are where the 10% guard and the floor of `divisor` matter.
    for channels, width, divisor in ((16, 0.7, 8), (11, 1.0, 8), (24, 0.5, 8), (8, 0.25, 8), (3, 1.0, 8),
                                     (48, 0.65, 16), (100, 0.33, 4), (20, 1.0, 16)):
        want = ee.round_filters(channels, width, divisor)
        got = round_filters(channels, width, divisor)
        assert got == want, f"round_filters({channels}, {width}, divisor={divisor}) should be {want}, got {got}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Q2 (2 points).** Write `round_repeats(layers, depth)`: the number of layers of a stage that had `layers`
# layers in B0, scaled by `depth`. The official code rounds **up**, so no stage ever vanishes.

# %% [raw]
# # BEGIN SOLUTION

# %%
def round_repeats(layers, depth):
    return int(math.ceil(layers * depth))  # SOLUTION


round_repeats(3, 1.4)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_example(round_repeats):
    assert round_repeats(3, 1.4) == 5, "3 * 1.4 = 4.2 layers: a fraction of a layer still needs a whole one"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 1
""" # END TEST CONFIG
def test_q2_grid(round_repeats):
    import effnet_edu as ee
    for layers in (1, 2, 3, 4):
        for depth in (0.1, 0.5, 1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1):
            want = ee.round_repeats(layers, depth)
            assert round_repeats(layers, depth) == want, f"round_repeats({layers}, {depth}) should be {want}"
            assert isinstance(round_repeats(layers, depth), int), "return an int"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 4

# %% [markdown]
# **Q3 (4 points).** Write `compound(phi, alpha=1.2, beta=1.1, gamma=1.15)` returning the tuple
# `(depth, width, resolution)` of the compound rule (Section 3.3, Eq. 3): depth = alpha^phi, width = beta^phi,
# and resolution = 224 * gamma^phi rounded to the **nearest whole pixel** (halves go up). The paper gives no
# rounding rule for the resolution; nearest keeps r^2, and so the FLOPs, closest to the formula.
#
# Example: `compound(1.0)` gives `(1.2, 1.1, 258)` (224 * 1.15 = 257.6).

# %% [raw]
# # BEGIN SOLUTION

# %%
def compound(phi, alpha=1.2, beta=1.1, gamma=1.15):
    # BEGIN SOLUTION
    depth = alpha**phi
    width = beta**phi
    resolution = int(math.floor(224 * gamma**phi + 0.5))
    return depth, width, resolution
    # END SOLUTION


compound(1.0)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_example(compound):
    depth, width, resolution = compound(1.0)
    assert abs(depth - 1.2) < 1e-9 and abs(width - 1.1) < 1e-9, "at phi = 1 depth is alpha and width is beta"
    assert resolution == 258, "224 * 1.15 = 257.6 rounds to 258"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q3_grid(compound):
    import math
    import effnet_edu as ee
    for phi in (0, 0.5, 1, 1.5, 2, 3, 4.5, 7):
        for alpha, beta, gamma in ((1.2, 1.1, 1.15), (1.4, 1.2, 1.0), (1.0, 1.05, 1.3), (1.1, 1.15, 1.15)):
            want = ee.compound(phi, alpha, beta, gamma)
            depth, width, resolution = compound(phi, alpha, beta, gamma)
            assert math.isclose(depth, want.depth, rel_tol=1e-9), f"depth at phi={phi}, alpha={alpha}"
            assert math.isclose(width, want.width, rel_tol=1e-9), f"width at phi={phi}, beta={beta}"
            assert resolution == want.resolution, (f"resolution at phi={phi}, gamma={gamma}: "
                                                   f"{resolution} instead of {want.resolution}")

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Predict, then check: EfficientNet-B3
#
# B3 is released with width 1.2, depth 1.4 and resolution 300 (a hand-rounded table, not 1.1^3 and 1.2^3). B0's
# Table 1 has the stem (32 channels), seven MBConv stages with output channels 16, 24, 40, 80, 112, 192, 320 and
# layers 1, 2, 2, 3, 3, 4, 1, and the head (1280 channels). **Before you run any code**, write down on paper
# what you expect B3's widths and depths to be. Then compute them with your functions.

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# **Q4 (3 points).** Set `b3_widths` to the list of B3's nine output channel counts: stem, stages 2-8, head.

# %% [raw]
# # BEGIN SOLUTION

# %%
B0_WIDTHS = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
b3_widths = [round_filters(c, 1.2) for c in B0_WIDTHS]  # SOLUTION
b3_widths

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_shape(b3_widths):
    assert isinstance(b3_widths, (list, tuple)) and len(b3_widths) == 9, "nine numbers: stem, stages 2-8, head"
    assert all(c % 8 == 0 for c in b3_widths), "every width is a multiple of 8"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q4_values(b3_widths):
    import effnet_edu as ee
    want = [s.out_channels for s in ee.stages(ee.resolve("b3"))]
    assert list(b3_widths) == want, f"B3's widths are {want}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# **Q5 (2 points).** Set `b3_layers` to the list of B3's layer counts for the seven MBConv stages (2-8), and
# `b3_blocks` to their total.

# %% [raw]
# # BEGIN SOLUTION

# %%
B0_LAYERS = [1, 2, 2, 3, 3, 4, 1]
b3_layers = [round_repeats(n, 1.4) for n in B0_LAYERS]  # SOLUTION
b3_blocks = sum(b3_layers)  # SOLUTION
b3_layers, b3_blocks

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q5_values(b3_layers, b3_blocks):
    import effnet_edu as ee
    stages = ee.stages(ee.resolve("b3"))[1:8]
    assert list(b3_layers) == [s.layers for s in stages], "layers per stage of B3"
    assert b3_blocks == len(ee.blocks(ee.resolve("b3"))), "B3's number of MBConv blocks"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q6
# manual: true
# points: 4

# %% [markdown]
# **Q6 (4 points, written).** The compound rule promises that FLOPs grow by (alpha * beta^2 * gamma^2)^phi, about
# 2^phi. Name **two** reasons why the real multiply-adds of a network built with your functions differ from that
# formula, and say for each whether it makes the network larger or smaller than the formula at phi = 1. Use
# numbers from this assignment (for example a width or a layer count you computed). Five sentences at most.

# %% [raw]
# # BEGIN SOLUTION

# %% [markdown]
# **Rubric (4 points).** 1 point per valid reason (at most 2), 1 point per correct direction with a number from
# the assignment (at most 2). Valid reasons:
# - `round_repeats` rounds layers *up*: 3 layers x 1.2 = 3.6 -> 4 (and 1 x 1.2 -> 2 at phi = 1), so depth grows
#   faster than alpha^phi: larger.
# - `round_filters` rounds channels to multiples of 8 (with the 10% guard): 16 x 1.1 = 17.6 -> 16, smaller;
#   40 x 1.1 = 44 -> 48, larger. Either direction earns the point if the example is right.
# - the resolution rounds to whole pixels (257.6 -> 258): slightly larger.
# - the SE layers and the FC layer do not scale as d * w^2 * r^2 (Section 3.3 argues from a regular
#   convolution): the classifier does not grow with resolution at all: smaller.
# - 1.2 * 1.1^2 * 1.15^2 = 1.92, not 2: the formula itself is only about 2^phi.
# No point for "rounding" without saying which rule or without a number.

# %% [raw]
# # END SOLUTION

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Before you hand in
# Run the whole notebook from the top (Kernel -> Restart and run all) and check that every `grader.check` above
# says it passed. Then hand in this `.ipynb` file, keeping its name.
