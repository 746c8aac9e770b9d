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
# name: a3_counting
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
# # Assignment 3 · Counting parameters and FLOPS
#
# *EfficientNet (Tan & Le, 2019), Table 1, Table 2 and Section 3.3. About 75 minutes.*
#
# Table 2 says B0 has 5.3M parameters and 0.39B FLOPS, and Section 3.3 promises that compound scaling with
# alpha * beta^2 * gamma^2 ~ 2 doubles the FLOPS for each unit of phi. You will count both yourself, stage by
# stage, check the promise, and meet the reason why the cheapest layer in FLOPS can be the slowest one.
#
# **Convention.** Like the paper, we count **multiply-adds** (MACs) and call them FLOPS; profilers such as
# `torch.utils.flop_counter` count FLOPs = 2 x MACs. Biases, BatchNorm, activations, pooling and residual adds are
# not counted.
#
# **Learning objectives.** After this assignment you can
# 1. count the parameters and multiply-adds of a convolution, grouped or not, from its shape;
# 2. total them stage by stage for B0 and compare with Table 2;
# 3. measure how FLOPS grow with phi and say why it is not exactly 2^phi;
# 4. explain why a depthwise convolution is cheap in FLOPS but expensive in memory traffic.
#
# **Points.** Q1 one conv 3 · Q2 B0 parameters per stage 4 · Q3 B0 MACs per stage 4 · Q4 growth with phi 3 ·
# Q5 depthwise arithmetic intensity 3 · Q6 written (graded by hand) 3. Autograded: 17, written: 3.
#
# You may use `ee.blocks(ee.resolve("b0"))` to read the architecture (channels, strides, resolutions of each
# block), but **not** `ee.count` or `effnet_edu.accounting` until Q4 says so: counting is the point.

# %%
import math

import effnet_edu as ee

B0 = ee.resolve("b0")
for b in ee.blocks(B0)[:4]:
    print(b)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Q1 (3 points).** Write `conv_params(in_channels, out_channels, kernel_size, groups=1, bias=False)` and
# `conv_macs(in_channels, out_channels, kernel_size, out_resolution, groups=1)` for a square k x k convolution
# producing an `out_resolution` x `out_resolution` map (one image). Each of the c_out filters sees c_in / groups
# input channels.

# %% [raw]
# # BEGIN SOLUTION

# %%
def conv_params(in_channels, out_channels, kernel_size, groups=1, bias=False):
    return out_channels * (in_channels // groups) * kernel_size**2 + (out_channels if bias else 0)  # SOLUTION


def conv_macs(in_channels, out_channels, kernel_size, out_resolution, groups=1):
    return out_channels * (in_channels // groups) * kernel_size**2 * out_resolution**2  # SOLUTION


conv_params(32, 32, 3, groups=32), conv_macs(32, 32, 3, 112, groups=32)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_stem(conv_params, conv_macs):
    assert conv_params(3, 32, 3) == 864, "B0's stem: 32 filters of 3 x 3 x 3"
    assert conv_macs(3, 32, 3, 112) == 864 * 112 * 112, "each weight is used once per output position"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q1_against_torch(conv_params, conv_macs):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    for c_in, c_out, k, s, groups, bias, r in ((3, 32, 3, 2, 1, False, 224), (96, 96, 3, 2, 96, False, 112),
                                               (240, 40, 1, 1, 1, False, 28), (10, 240, 1, 1, 1, True, 1),
                                               (64, 128, 5, 1, 4, True, 9)):
        conv = torch.nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=bias)
        want = sum(p.numel() for p in conv.parameters())
        assert conv_params(c_in, c_out, k, groups, bias) == want, f"parameters of conv {c_in}->{c_out} k{k} g{groups}"
        x = torch.zeros(1, c_in, r, r)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = conv(x)
        got = conv_macs(c_in, c_out, k, out.shape[-1], groups)
        assert got == counter.get_total_flops() // 2, f"MACs of conv {c_in}->{c_out} k{k} g{groups} at {r}px"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## B0, stage by stage
#
# An MBConv block is: optional 1x1 expand (c_in -> hidden = c_in * e, skipped when e = 1), k x k depthwise at
# stride s, squeeze-and-excitation (1x1 hidden -> se = max(1, int(c_in / 4)) with bias, 1x1 se -> hidden with
# bias, both on a 1x1 map), 1x1 project (hidden -> c_out). Every conv except SE's is followed by a BatchNorm with
# 2 parameters per channel. Stage 1 is the stem (3x3 conv, stride 2, 3 -> 32, + BN); stage 9 the head (1x1 conv
# 320 -> 1280 + BN, then pooling and the 1280 -> 1000 fully connected layer with bias).

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# **Q2 (4 points).** Set `b0_params` to a list of nine numbers: the parameters of stages 1-9 of B0 (stage 9
# includes the head conv, its BN and the classifier). Their sum should be Table 2's 5.3M.

# %% [raw]
# # BEGIN SOLUTION

# %%
b0_params = None  # your nine numbers
# BEGIN SOLUTION
def block_params(b):
    hidden = b.in_channels * b.expand_ratio
    total = conv_params(b.in_channels, hidden, 1) + 2 * hidden if b.expand_ratio != 1 else 0
    total += conv_params(hidden, hidden, b.kernel_size, groups=hidden) + 2 * hidden
    total += conv_params(hidden, b.se_channels, 1, bias=True) + conv_params(b.se_channels, hidden, 1, bias=True)
    return total + conv_params(hidden, b.out_channels, 1) + 2 * b.out_channels


b0_params = [conv_params(3, 32, 3) + 2 * 32]
for stage in range(2, 9):
    b0_params.append(sum(block_params(b) for b in ee.blocks(B0) if b.stage == stage))
b0_params.append(conv_params(320, 1280, 1) + 2 * 1280 + 1280 * 1000 + 1000)
# END SOLUTION
print(b0_params, sum(b0_params) if isinstance(b0_params, list) else None)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_shape(b0_params):
    assert isinstance(b0_params, (list, tuple)) and len(b0_params) == 9, "nine numbers, stages 1-9"
    assert b0_params[0] == 3 * 32 * 9 + 64, "stage 1: the stem conv and its BatchNorm"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q2_values(b0_params):
    import effnet_edu as ee
    model = ee.build("b0")
    parts = [model.stem] + list(model.stages) + [[model.head, model.classifier]]
    for i, part in enumerate(parts):
        mods = part if isinstance(part, list) else [part]
        want = sum(p.numel() for m in mods for p in m.parameters())
        assert b0_params[i] == want, f"stage {i + 1}: {b0_params[i]:,} instead of {want:,}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 4

# %% [markdown]
# **Q3 (4 points).** Set `b0_macs` to the nine stage totals of multiply-adds at 224 x 224 (stage 9: head conv and
# classifier). Their sum should be Table 2's 0.39B FLOPS. Which stage costs the most?

# %% [raw]
# # BEGIN SOLUTION

# %%
b0_macs = None  # your nine numbers
# BEGIN SOLUTION
def block_macs(b):
    hidden, r_in, r_out = b.in_channels * b.expand_ratio, b.in_resolution, b.out_resolution
    total = conv_macs(b.in_channels, hidden, 1, r_in) if b.expand_ratio != 1 else 0
    total += conv_macs(hidden, hidden, b.kernel_size, r_out, groups=hidden)
    total += conv_macs(hidden, b.se_channels, 1, 1) + conv_macs(b.se_channels, hidden, 1, 1)
    return total + conv_macs(hidden, b.out_channels, 1, r_out)


b0_macs = [conv_macs(3, 32, 3, 112)]
for stage in range(2, 9):
    b0_macs.append(sum(block_macs(b) for b in ee.blocks(B0) if b.stage == stage))
b0_macs.append(conv_macs(320, 1280, 1, 7) + 1280 * 1000)
# END SOLUTION
print(b0_macs, sum(b0_macs) if isinstance(b0_macs, list) else None)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_shape(b0_macs):
    assert isinstance(b0_macs, (list, tuple)) and len(b0_macs) == 9, "nine numbers, stages 1-9"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q3_values(b0_macs):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    import effnet_edu as ee
    model = ee.build("b0").eval()
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        feats = model.stage_features(x)
    inputs = [x, feats["stage1"]] + [feats[f"stage{i}"] for i in range(2, 9)]
    parts = [model.stem] + list(model.stages) + [lambda t: model.forward_head(model.head(t))]
    for i, (part, inp) in enumerate(zip(parts, inputs)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            part(inp)
        want = counter.get_total_flops() // 2
        assert b0_macs[i] == want, f"stage {i + 1}: {b0_macs[i]:,} multiply-adds instead of {want:,}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# **Q4 (3 points).** Now you may use `ee.count(phi=phi)` (the library's count, which you have just reproduced for
# B0). Set `growth` to the list of counted MACs at phi = 0, 1, ..., 6 (compound rule, alpha, beta, gamma = 1.2,
# 1.1, 1.15) divided by the MACs at phi = 0, and `first_above` to the smallest phi in that list where the counted
# growth exceeds 2^phi.

# %% [raw]
# # BEGIN SOLUTION

# %%
growth, first_above = None, None
# BEGIN SOLUTION
base = ee.count(phi=0).macs
growth = [ee.count(phi=phi).macs / base for phi in range(7)]
first_above = next((phi for phi, g in enumerate(growth) if g > 2**phi), None)
# END SOLUTION
for phi, g in enumerate(growth if isinstance(growth, list) else []):
    print(f"phi={phi}: counted {g:7.2f}x   2^phi = {2**phi:3d}x   (1.2*1.1^2*1.15^2)^phi = {1.92027**phi:7.2f}x")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_shape(growth):
    assert isinstance(growth, (list, tuple)) and len(growth) == 7, "seven ratios, phi = 0..6"
    assert abs(growth[0] - 1) < 1e-12, "growth at phi = 0 is 1 by definition"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q4_values(growth, first_above):
    from effnet_edu.accounting import flops_growth
    want = [p.growth for p in flops_growth(range(7))]
    assert all(abs(g - w) < 1e-9 for g, w in zip(growth, want)), "counted growth per phi"
    assert first_above == next((p for p, g in enumerate(want) if g > 2**p), None), "first phi above 2^phi"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 3

# %% [markdown]
# **Q5 (3 points).** Memory traffic. For one image in fp32 (4 bytes per number), say a layer moves
# `4 * (input elements + weights + 2 * output channels + output elements)` bytes: it reads its input, its
# weights and its BatchNorm's two vectors, and writes its output (BN and activation fused into the conv).
# For B0's `stage4` block 1 (40 -> 240 -> 240 -> 40 channels, 5x5 depthwise, 28 x 28 everywhere) compute the
# **arithmetic intensity** (MACs per byte moved) of the 1x1 expand conv and of the depthwise conv, as
# `intensity_expand` and `intensity_depthwise`.

# %% [raw]
# # BEGIN SOLUTION

# %%
intensity_expand, intensity_depthwise = None, None
# BEGIN SOLUTION
r = 28
expand_bytes = 4 * (40 * r * r + conv_params(40, 240, 1) + 2 * 240 + 240 * r * r)
depthwise_bytes = 4 * (240 * r * r + conv_params(240, 240, 5, groups=240) + 2 * 240 + 240 * r * r)
intensity_expand = conv_macs(40, 240, 1, r) / expand_bytes
intensity_depthwise = conv_macs(240, 240, 5, r, groups=240) / depthwise_bytes
# END SOLUTION
intensity_expand, intensity_depthwise

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q5_order(intensity_expand, intensity_depthwise):
    assert 0 < intensity_depthwise < intensity_expand, "which of the two does more work per byte?"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q5_values(intensity_expand, intensity_depthwise):
    from effnet_edu.accounting import block_count
    block = block_count(40, 40, expand_ratio=6, kernel_size=5, stride=1, resolution=28)
    assert abs(intensity_expand - block.part("expand").intensity) < 1e-9, "intensity of the 1x1 expand conv"
    assert abs(intensity_depthwise - block.part("depthwise").intensity) < 1e-9, "intensity of the depthwise conv"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q6
# manual: true
# points: 3

# %% [markdown]
# **Q6 (3 points, written).** Using your numbers from Q3 and Q5: the depthwise convolutions are a small share of
# B0's FLOPS. Why can they still take a large share of the *time* on a GPU? Four sentences at most, with at
# least one number.

# %% [raw]
# # BEGIN SOLUTION

# %% [markdown]
# **Rubric (3 points).**
# - 1 point: a depthwise conv does only k^2 multiply-adds per output element (25 here) where a 1x1 conv does c_in
#   (40 for the expand, 240 for the project), so it has far fewer MACs for the same tensor sizes.
# - 1 point: it still reads and writes a full hidden-size tensor (240 x 28 x 28 in, the same out), so its bytes
#   moved are about the same as the 1x1 conv's: its intensity is a few MACs per byte (Q5: about 3 vs about 9-10).
# - 1 point: below the GPU's ratio of compute to memory bandwidth (tens of FLOPs per byte), a layer is
#   memory-bound: its time is set by bytes, not FLOPS, so FLOPS underestimate its cost (and it maps poorly onto
#   tensor cores). Any correct roofline argument earns the point.

# %% [raw]
# # END SOLUTION

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Before you hand in
# Restart the kernel and run all cells; every `grader.check` should pass. Hand in this `.ipynb`, keeping its name.
