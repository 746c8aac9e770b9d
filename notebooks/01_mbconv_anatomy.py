# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Anatomy of an MBConv block
#
# EfficientNet-B0 (Table 1 of Tan & Le, 2019) is a stack of 16 *mobile inverted bottleneck* blocks (MBConv,
# from MobileNetV2) with squeeze-and-excitation (SE). One block does:
#
# `1x1 expand (x6) -> BN -> SiLU -> kxk depthwise -> BN -> SiLU -> SE -> 1x1 project -> BN -> (+ input)`
#
# In this notebook we take one real block of B0 apart: its shapes, where its parameters are, what SE does, and
# how stochastic depth behaves in training and evaluation. Everything comes from the library `effnet_edu`.

# %%
import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee

torch.manual_seed(0)
torch.set_num_threads(1)  # small tensors: one thread is fast and keeps the numbers reproducible
config = ee.resolve("b0")
config.name, config.resolution

# %% [markdown]
# ## One block, described as data
# `ee.blocks(config)` expands Table 1 into its 16 blocks. We pick the second block of stage 4 (`MBConv6, k5x5`):
# stride 1 and equal in/out channels, so it has a residual connection.

# %% tags=["nbval-check-output"]
spec = next(b for b in ee.blocks(config) if b.name == "stage4/block1")
print(spec)
print(f"hidden (expanded) channels = {spec.in_channels} x {spec.expand_ratio} = {spec.hidden_channels}")
print(f"residual: {spec.residual}   output resolution: {spec.out_resolution}")

# %% [markdown]
# ## The module
# `ee.MBConv(spec, config)` turns the description into layers. Note the SE layer's squeeze width: 10 channels,
# a quarter of the block's *input* (40), not of the expanded 240 (the official code's rule).

# %% tags=["nbval-check-output"]
block = ee.MBConv(spec, config)
block

# %% [markdown]
# ## Shapes through the block
# A batch of 2 feature maps, as stage 4 sees them at 28x28. Expansion widens 40 -> 240 channels, the depthwise
# convolution keeps 240 (one 5x5 filter per channel), SE keeps the shape, projection narrows back to 40.

# %% tags=["nbval-check-output"]
x = torch.randn(2, spec.in_channels, spec.in_resolution, spec.in_resolution)  # (B, C, H, W)
block.eval()
with torch.no_grad():
    h = x
    print(f"{'input':10s} {tuple(h.shape)}")
    for name in ("expand", "depthwise", "se", "project"):
        h = getattr(block, name)(h)
        print(f"{name:10s} {tuple(h.shape)}")
    print(f"{'block(x)':10s} {tuple(block(x).shape)}")

# %% [markdown]
# ## Where the parameters are
# Counted from the module, then by hand: a 1x1 conv has `C_in * C_out` weights, a depthwise kxk conv
# `C * k * k`, BatchNorm 2 per channel (scale, shift), SE two small 1x1 convs with bias.

# %% tags=["nbval-check-output"]
def numel(module):
    return sum(p.numel() for p in module.parameters())

c_in, hid, c_out, k, se = spec.in_channels, spec.hidden_channels, spec.out_channels, spec.kernel_size, spec.se_channels
by_hand = {
    "expand": c_in * hid + 2 * hid,
    "depthwise": hid * k * k + 2 * hid,
    "se": (hid * se + se) + (se * hid + hid),
    "project": hid * c_out + 2 * c_out,
}
for name, expected in by_hand.items():
    print(f"{name:10s} {numel(getattr(block, name)):7,d}  (by hand {expected:7,d})")
print(f"{'total':10s} {numel(block):7,d}  (by hand {sum(by_hand.values()):7,d})")

# %% [markdown]
# The depthwise 5x5 conv has 6,480 parameters. A *regular* 5x5 conv from 240 to 240 channels would have
# 240 x 240 x 25 = 1,440,000, over 200 times more: that is why MBConv can afford a wide hidden layer.
#
# ## Multiply-adds, counted by PyTorch
# `torch.utils.flop_counter` counts 2 FLOPs per multiply-add; the paper's "FLOPS" are multiply-adds, so we halve.

# %% tags=["nbval-check-output"]
with FlopCounterMode(display=False) as counter, torch.no_grad():
    block(x[:1])
flops = counter.get_flop_counts()
for name in ("expand", "depthwise", "se", "project"):
    macs = sum(flops.get(f"MBConv.{name}", {}).values()) // 2
    print(f"{name:10s} {macs:12,d} multiply-adds")
print(f"{'block':10s} {counter.get_total_flops() // 2:12,d} multiply-adds at {spec.in_resolution}x{spec.in_resolution}")

# %% [markdown]
# The depthwise conv does fewer multiply-adds than either 1x1 conv, yet on real hardware it is often the
# slowest part: it reads and writes the whole 240-channel tensor while doing only 25 multiply-adds per value.
# The `BlockExplorer` at the end of this notebook shows that trade-off (FLOPs versus bytes moved).
#
# ## Squeeze-and-excitation
# SE pools each channel to one number, passes the 240 numbers through a 240 -> 10 -> 240 bottleneck and
# rescales every channel by a sigmoid gate in (0, 1).

# %% tags=["nbval-check-output"]
with torch.no_grad():
    hidden = block.depthwise(block.expand(x))  # (B, 240, 28, 28)
    gate = torch.sigmoid(block.se.expand(torch.nn.functional.silu(block.se.reduce(hidden.mean((2, 3), keepdim=True)))))
    print("gate shape:", tuple(gate.shape), " all in (0, 1):", bool(((gate > 0) & (gate < 1)).all()))
    print("SE output == hidden * gate:", torch.allclose(block.se(hidden), hidden * gate))

# %% [markdown]
# ## Stochastic depth: training versus evaluation
# In training, each *sample* drops the block's residual branch with probability `p` (here we raise B0's 0.05 to
# 0.5 to see it) and the surviving branches are scaled by `1 / (1 - p)` so the expected output is unchanged.
# In evaluation the branch is always kept, unscaled. A dropped sample's output is exactly its input.

# %% tags=["nbval-check-output"]
block.drop_path = 0.5
xb = torch.randn(8, spec.in_channels, 8, 8)  # 8 samples, small maps are enough here
block.train()
with torch.no_grad():
    branch = block.project(block.se(block.depthwise(block.expand(xb))))  # the residual branch alone
    out = block(xb)
dropped = [torch.equal(out[i], xb[i]) for i in range(len(xb))]
kept_ok = all(torch.allclose(out[i], xb[i] + branch[i] / 0.5, atol=1e-5) for i in range(len(xb)) if not dropped[i])
print(f"train: dropped {sum(dropped)} of 8 samples; kept samples equal x + branch / (1 - p): {kept_ok}")

block.eval()
with torch.no_grad():
    branch = block.project(block.se(block.depthwise(block.expand(xb))))
    same = torch.equal(block(xb), block(xb))
    print("eval: output == x + branch:", torch.allclose(block(xb), xb + branch), "  deterministic:", same)

# %% [markdown]
# Over many training passes the drop rate approaches `p`: a quick Monte Carlo check.

# %% tags=["nbval-check-output"]
block.train()
with torch.no_grad():
    xs = torch.randn(400, spec.in_channels, 4, 4)
    outs = block(xs)
rate = sum(torch.equal(outs[i], xs[i]) for i in range(len(xs))) / len(xs)
print(f"drop rate over 400 samples: {rate:.2f} (p = {block.drop_path})")
block.drop_path = spec.drop_path

# %% [markdown]
# ## Explore: why depthwise convolutions are cheap in FLOPs but not in memory traffic
# Change the block's channels, expansion, kernel, stride, SE ratio and input resolution. The table counts
# parameters, multiply-adds and bytes moved (fp32 activations read and written, plus weights) per sub-layer;
# "MACs/byte" is the arithmetic intensity: low means the layer waits on memory, not on arithmetic.

# %%
from effnet_edu_widgets import BlockExplorer

BlockExplorer()

# %% [markdown]
# ## Exercises
# 1. Which block of B0 has the most parameters? Use `ee.blocks(config)` and `ee.MBConv` to find it, and
#    explain why with the formulas above.
# 2. Set the expansion ratio to 1 (stage 2's `MBConv1`). Which layer disappears, and how does the
#    parameter count change?
# 3. In the explorer, double the kernel from 3 to 5 (or 7). How do the depthwise conv's MACs and bytes change?
#    And the whole block's?
# 4. Why does stochastic depth only apply when the block has a residual connection?
# 5. With `p = 0.5`, what is the expected value of a kept sample's scaled branch, and why does the
#    rescaling make training and evaluation consistent?
