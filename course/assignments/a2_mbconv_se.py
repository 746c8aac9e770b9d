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
# name: a2_mbconv_se
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
# # Assignment 2 · An MBConv block with squeeze-and-excitation, from `torch.nn` primitives
#
# *EfficientNet (Tan & Le, 2019), Section 4 and Table 1; MobileNetV2 (Sandler et al., 2018); squeeze-and-excitation
# (Hu et al., 2018). About 60 minutes.*
#
# Every layer of EfficientNet-B0 except the stem and the head is an MBConv block:
#
# `1x1 expand (x e) -> BN -> SiLU -> k x k depthwise -> BN -> SiLU -> SE -> 1x1 project -> BN -> (+ input)`
#
# You will write that block yourself from `nn.Conv2d`, `nn.BatchNorm2d` and friends, load the weights of the
# library's block into it, and show that both compute the same thing. Then you count its parameters and
# multiply-adds with formulas and check them.
#
# **Learning objectives.** After this assignment you can
# 1. build squeeze-and-excitation and the MBConv block from primitives, with the right widths, strides and
#    padding;
# 2. explain where the residual connection applies and why the projection has no activation;
# 3. derive the parameters and multiply-adds of a block from its shape.
#
# **Points.** Q1 squeeze-and-excitation 4 · Q2 MBConv 7 · Q3 parameters 3 · Q4 multiply-adds 3 ·
# Q5 written (graded by hand) 3. Autograded: 17, written: 3.
#
# The visible `grader.check` tests catch the common mistakes; hidden tests with other block shapes and random
# weights decide the grade. Use the submodule **names** given below: the tests load the library's weights into
# your modules by name.

# %%
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

import effnet_edu as ee

torch.manual_seed(0)
BN_EPS = 1e-3  # the official code's BatchNorm epsilon (TF's default)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 4

# %% [markdown]
# **Q1 (4 points).** Write `MySE(channels, squeeze_channels)`: global average pooling over H and W, a 1x1 conv
# `reduce` (channels -> squeeze_channels, **with** bias), SiLU, a 1x1 conv `expand` (back to channels, with bias),
# a sigmoid, and the input multiplied channel by channel by that gate. Input and output are (B, C, H, W).

# %% [raw]
# # BEGIN SOLUTION

# %%
class MySE(nn.Module):
    def __init__(self, channels, squeeze_channels):
        super().__init__()
        # BEGIN SOLUTION
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(scale))))
        # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_shape(MySE):
    import torch
    se = MySE(16, 4)
    assert hasattr(se, "reduce") and hasattr(se, "expand"), "name the two 1x1 convs `reduce` and `expand`"
    y = se(torch.randn(2, 16, 5, 5))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 16, 5, 5), "SE keeps the shape of its input"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_same_as_library(MySE):
    import torch
    import effnet_edu as ee
    torch.manual_seed(1)
    for channels, squeeze in ((16, 4), (96, 4), (240, 10)):
        ref = ee.SqueezeExcitation(channels, squeeze)
        for p in ref.parameters():
            torch.nn.init.normal_(p, 0.0, 0.5)
        mine = MySE(channels, squeeze)
        mine.load_state_dict(ref.state_dict())
        x = torch.randn(2, channels, 7, 7)
        with torch.no_grad():
            assert torch.allclose(mine(x), ref(x), atol=1e-5), f"SE({channels}, {squeeze}) differs from the library's"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 7

# %% [markdown]
# **Q2 (7 points).** Write `MyMBConv(in_channels, out_channels, expand_ratio, kernel_size, stride, se_ratio=0.25)`
# with these submodules (the names matter):
#
# - `expand`: `nn.Sequential(OrderedDict(conv=1x1 conv without bias, bn=BatchNorm2d(eps=BN_EPS), act=SiLU))` from
#   in_channels to `hidden = in_channels * expand_ratio`; when `expand_ratio == 1` use `nn.Identity()` instead;
# - `depthwise`: the same three parts around a k x k **depthwise** conv (`groups=hidden`), stride `stride`,
#   padding `kernel_size // 2`;
# - `se`: your `MySE(hidden, max(1, int(in_channels * se_ratio)))` (the official code sizes the squeeze from
#   the block's *input* channels);
# - `project`: `nn.Sequential(OrderedDict(conv=1x1 conv without bias, bn=BatchNorm2d))`, **no activation**;
# - the residual: add the input when `stride == 1` and `in_channels == out_channels`.
#
# Stochastic depth only acts in training; you can leave it out (the tests use `eval()` mode).

# %% [raw]
# # BEGIN SOLUTION

# %%
class MyMBConv(nn.Module):
    def __init__(self, in_channels, out_channels, expand_ratio, kernel_size, stride, se_ratio=0.25):
        super().__init__()
        # BEGIN SOLUTION
        hidden = in_channels * expand_ratio

        def conv_bn(c_in, c_out, k=1, s=1, groups=1, act=True):
            layers = [("conv", nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False)),
                      ("bn", nn.BatchNorm2d(c_out, eps=BN_EPS))]
            if act:
                layers.append(("act", nn.SiLU()))
            return nn.Sequential(OrderedDict(layers))

        self.expand = conv_bn(in_channels, hidden) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel_size, stride, groups=hidden)
        self.se = MySE(hidden, max(1, int(in_channels * se_ratio)))
        self.project = conv_bn(hidden, out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.residual else out
        # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [markdown]
# Load the weights of a real B0 block into yours and compare (B0's `stage4`, block 1: 40 -> 40 channels,
# MBConv6, 5x5, stride 1, so it has a residual):

# %%
reference = ee.build("b0").stages.stage4[1].eval()
mine = MyMBConv(40, 40, expand_ratio=6, kernel_size=5, stride=1)
try:
    mine.load_state_dict(reference.state_dict())
    x = torch.randn(1, 40, 28, 28)
    with torch.no_grad():
        print("largest difference:", float((mine.eval()(x) - reference(x)).abs().max()))
except Exception as exc:  # an unfinished block: the message says what is missing
    print("not loadable yet:", type(exc).__name__, str(exc)[:200])

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_loads_b0_block(MyMBConv):
    import torch
    import effnet_edu as ee
    ref = ee.build("b0").stages.stage4[1].eval()
    mine = MyMBConv(40, 40, expand_ratio=6, kernel_size=5, stride=1)
    mine.load_state_dict(ref.state_dict())  # fails when a submodule is missing, misnamed or has the wrong shape
    x = torch.randn(1, 40, 28, 28)
    with torch.no_grad():
        assert mine.eval()(x).shape == ref(x).shape, "the block's output shape"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 6
""" # END TEST CONFIG
def test_q2_same_outputs(MyMBConv):
    import torch
    import effnet_edu as ee
    torch.manual_seed(2)
    config = ee.resolve("b0")
    shapes = ((32, 16, 1, 3, 1, 56), (16, 24, 6, 3, 2, 56), (40, 40, 6, 5, 1, 14), (80, 112, 6, 5, 1, 7),
              (24, 24, 6, 3, 1, 9))
    for c_in, c_out, e, k, s, r in shapes:
        spec = ee.BlockSpec(name="test", stage=0, in_channels=c_in, out_channels=c_out, expand_ratio=e,
                            kernel_size=k, stride=s, se_channels=max(1, int(c_in * 0.25)), drop_path=0.0,
                            in_resolution=r)
        ref = ee.MBConv(spec, config)
        for m in ref.modules():  # non-trivial BatchNorm, so a missing or swapped BN shows
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        ref.eval()
        mine = MyMBConv(c_in, c_out, e, k, s)
        mine.load_state_dict(ref.state_dict())
        mine.eval()
        x = torch.randn(2, c_in, r, r)
        with torch.no_grad():
            want, got = ref(x), mine(x)
        assert got.shape == want.shape, f"MBConv({c_in}->{c_out}, e{e}, k{k}, s{s}): shape {tuple(got.shape)}"
        assert torch.allclose(got, want, atol=1e-4), f"MBConv({c_in}->{c_out}, e{e}, k{k}, s{s}) differs"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# **Q3 (3 points).** Write `mbconv_params(in_channels, out_channels, expand_ratio, kernel_size, se_ratio=0.25)`:
# the number of trainable parameters of your block, **by formula** (do not build the block). A conv with
# k x k kernels from c_in to c_out channels in g groups has c_out * (c_in / g) * k^2 weights; BatchNorm has 2
# per channel (its running mean and variance are buffers, not parameters); SE's convs have biases.

# %% [raw]
# # BEGIN SOLUTION

# %%
def mbconv_params(in_channels, out_channels, expand_ratio, kernel_size, se_ratio=0.25):
    # BEGIN SOLUTION
    hidden = in_channels * expand_ratio
    se = max(1, int(in_channels * se_ratio))
    expand = in_channels * hidden + 2 * hidden if expand_ratio != 1 else 0
    depthwise = hidden * kernel_size**2 + 2 * hidden
    squeeze = hidden * se + se + se * hidden + hidden
    project = hidden * out_channels + 2 * out_channels
    return expand + depthwise + squeeze + project
    # END SOLUTION


mbconv_params(40, 40, 6, 5)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_b0_block(mbconv_params):
    import effnet_edu as ee
    ref = ee.build("b0").stages.stage4[1]
    want = sum(p.numel() for p in ref.parameters())
    assert mbconv_params(40, 40, 6, 5) == want, f"B0's stage4 block 1 has {want:,} parameters"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_formula(mbconv_params):
    from effnet_edu.accounting import block_count
    for c_in, c_out, e, k in ((32, 16, 1, 3), (16, 24, 6, 3), (80, 112, 6, 5), (192, 320, 6, 3), (24, 40, 4, 5)):
        want = block_count(c_in, c_out, e, k).params
        assert mbconv_params(c_in, c_out, e, k) == want, f"parameters of MBConv{e} {c_in}->{c_out} k{k}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# **Q4 (3 points).** Write `mbconv_macs(in_channels, out_channels, expand_ratio, kernel_size, stride, resolution,
# se_ratio=0.25)`: the multiply-adds of the block's convolutions for one image of `resolution` x `resolution`
# pixels (each weight is used once per *output* position; the depthwise conv and everything after it run at
# `ceil(resolution / stride)`; SE's two 1x1 convs run on a 1x1 map; biases, BatchNorm, activations, pooling and
# the residual add are not counted, as in the paper's FLOPS).

# %% [raw]
# # BEGIN SOLUTION

# %%
def mbconv_macs(in_channels, out_channels, expand_ratio, kernel_size, stride, resolution, se_ratio=0.25):
    # BEGIN SOLUTION
    hidden = in_channels * expand_ratio
    se = max(1, int(in_channels * se_ratio))
    out_res = -(-resolution // stride)
    expand = in_channels * hidden * resolution**2 if expand_ratio != 1 else 0
    depthwise = hidden * kernel_size**2 * out_res**2
    squeeze = 2 * hidden * se
    project = hidden * out_channels * out_res**2
    return expand + depthwise + squeeze + project
    # END SOLUTION


mbconv_macs(40, 40, 6, 5, 1, 28)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_type(mbconv_macs):
    assert isinstance(mbconv_macs(40, 40, 6, 5, 1, 28), int), "return a whole number of multiply-adds"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q4_against_flop_counter(mbconv_macs):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    import effnet_edu as ee
    config = ee.resolve("b0")
    for c_in, c_out, e, k, s, r in ((32, 16, 1, 3, 1, 112), (16, 24, 6, 3, 2, 112), (40, 80, 6, 3, 2, 27),
                                    (112, 112, 6, 5, 1, 14)):
        spec = ee.BlockSpec(name="t", stage=0, in_channels=c_in, out_channels=c_out, expand_ratio=e,
                            kernel_size=k, stride=s, se_channels=max(1, int(c_in * 0.25)), drop_path=0.0,
                            in_resolution=r)
        block = ee.MBConv(spec, config).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            block(torch.zeros(1, c_in, r, r))
        want = counter.get_total_flops() // 2  # the counter reports FLOPs = 2 x multiply-adds
        got = mbconv_macs(c_in, c_out, e, k, s, r)
        assert got == want, f"MBConv{e} {c_in}->{c_out} k{k} s{s} at {r}px: {got:,} instead of {want:,}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# manual: true
# points: 3

# %% [markdown]
# **Q5 (3 points, written).** MobileNetV2 calls the projection a *linear bottleneck*: it has no activation. Remove
# the SiLU you would be tempted to put after `project` and argue, in at most four sentences, why an activation
# there would hurt. Then say why the residual connection exists only when `stride == 1` and
# `in_channels == out_channels`.

# %% [raw]
# # BEGIN SOLUTION

# %% [markdown]
# **Rubric (3 points).**
# - 1 point: the projection maps into a low-dimensional space (few channels); a non-linearity such as ReLU/SiLU
#   there destroys information that cannot be recovered (MobileNetV2, Section 3.2: "linear bottlenecks").
# - 1 point: the block's output is added to the input (and feeds the next block's expansion, which has its own
#   activation), so a linear output keeps the residual stream unclipped; any correct statement of this earns it.
# - 1 point: the residual is an element-wise add, which needs equal shapes: a stride of 2 halves H and W and a
#   change of channels changes C, so the shapes differ (the official code has no projection shortcut).

# %% [raw]
# # END SOLUTION

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Before you hand in
# Restart the kernel and run all cells; every `grader.check` should pass. Hand in this `.ipynb`, keeping its name.
