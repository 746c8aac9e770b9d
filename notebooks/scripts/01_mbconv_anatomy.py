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
# # 01 · Anatomy of an MBConv block
#
# EfficientNet-B0 (Table 1 of Tan & Le, 2019) is a stack of 16 *mobile inverted bottleneck* blocks (MBConv,
# from MobileNetV2, Sandler et al. 2018) with squeeze-and-excitation (SE, Hu et al. 2018). One block with input
# $x$ computes
#
# $$y = x + \mathrm{BN}\big(W_{\text{project}} \ast \mathrm{SE}\big(\mathrm{SiLU}(\mathrm{BN}(W_{\text{dw}} \circledast
#   \mathrm{SiLU}(\mathrm{BN}(W_{\text{expand}} \ast x))))\big)\big)$$
#
# where $\ast$ is a $1 \times 1$ convolution, $\circledast$ a $k \times k$ depthwise convolution, and the "$x +$" is
# there only when the block keeps its stride and channel count.
#
# **Learning objectives.** After this notebook you can
# 1. name the four sub-layers of an MBConv block and give their output shapes for a real B0 block;
# 2. count a block's parameters and multiply-adds by hand and check them against PyTorch;
# 3. explain what squeeze-and-excitation computes, and how stochastic depth differs in training and evaluation;
# 4. explain why a depthwise convolution is cheap in multiply-adds but not in memory traffic.
#
# **Prerequisites.** Convolutions (channels, kernel, stride), BatchNorm, PyTorch modules and tensors.
# **Time.** About 30 minutes, plus 30 for the exercises.

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
# The same block drawn from that description (`effnet_edu_widgets.diagrams.mbconv_diagram(spec)`: the box widths
# follow the channel counts, so the *inverted* bottleneck shows: narrow, wide, wide, narrow).

# %%
import matplotlib.pyplot as plt

from effnet_edu_widgets.diagrams import mbconv_diagram

mbconv_diagram(spec);

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
# Counted from the module, then by hand: a 1x1 conv has $C_{in} \cdot C_{out}$ weights, a depthwise $k \times k$
# conv $C \cdot k^2$, BatchNorm 2 per channel (scale, shift), SE two small 1x1 convs with bias.

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
# slowest part. The reason is its **arithmetic intensity** (multiply-adds per byte moved): a 1x1 conv does
# $C_{in}$ multiply-adds per output value (40 or 240 here), a depthwise conv only $k^2 = 25$, so it spends its time
# waiting for memory rather than computing. The `BlockExplorer` at the end of this notebook counts both.
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
# In training, each *sample* drops the block's residual branch with probability $p$ (here we raise B0's 0.05 to
# 0.5 to see it) and the surviving branches are scaled by $1/(1-p)$ so the expected output is unchanged.
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
# Over many training passes the drop rate approaches $p$: a quick Monte Carlo check.

# %% tags=["nbval-check-output"]
block.train()
with torch.no_grad():
    xs = torch.randn(400, spec.in_channels, 4, 4)
    outs = block(xs)
rate = sum(torch.equal(outs[i], xs[i]) for i in range(len(xs))) / len(xs)
print(f"drop rate over 400 samples: {rate:.2f} (p = {block.drop_path})")
block.drop_path = spec.drop_path

# %% [markdown]
# ## Explore: multiply-adds against bytes moved
# Change the block's channels, expansion, kernel, stride, SE ratio and input resolution. The table counts
# parameters, multiply-adds and bytes moved (fp32 activations read and written, plus weights) per sub-layer;
# "MACs/byte" is the arithmetic intensity: low means the layer waits on memory, not on arithmetic.
#
# **Predict first.** At the default block (B0's `stage4/block1`, 40 channels, 28x28, 5x5 kernel), which sub-layer
# moves the **most bytes**: `"expand"`, `"depthwise"`, `"se"` or `"project"`? Write it below *before* you look at
# the table, then run the check after the explorer.

# %%
my_prediction = None  # e.g. "depthwise"

# %%
from effnet_edu_widgets import BlockExplorer

BlockExplorer()

# %% tags=["nbval-check-output"]
from effnet_edu_widgets.checks import check_bytes_prediction

_ = check_bytes_prediction(my_prediction)

# %% [markdown]
# The bigger memory story is SE, not the depthwise conv: squeezing reads the whole 240-channel tensor, and
# rescaling reads it again and writes it, for almost no arithmetic. That is why EfficientNet-Lite drops SE for
# mobile accelerators (the Lite release's own reason). EfficientNetV2 (Tan & Le, ICML 2021) went further: in the
# early stages it fuses the 1x1 expansion and the depthwise conv into one regular 3x3 conv (Fused-MBConv), which
# accelerators run faster despite its larger multiply-add count.

# %% [markdown]
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended. Each has a check you can run or a model
# answer to open.
#
# 1. ★★ Which block of B0 has the most parameters? Use `ee.blocks(config)` and the formulas above, and explain why.
#    Check: `check_most_params_block("stageS/blockB")`.
# 2. ★ Set the expansion ratio to 1 (stage 2's `MBConv1`). Which layer disappears, and how does the parameter
#    count change?
# 3. ★ In the explorer, change the kernel from 3 to 5. By how many times do the depthwise conv's MACs grow?
#    Check: `check_depthwise_kernel_ratio(your_ratio)`. What happens to its bytes moved, and why so little?
# 4. ★★ Why does stochastic depth only apply when the block has a residual connection?
# 5. ★★ With $p = 0.5$, what is the expected value of a kept sample's scaled branch, and why does the rescaling
#    make training and evaluation consistent?

# %%
from effnet_edu_widgets.checks import check_depthwise_kernel_ratio, check_most_params_block

check_most_params_block(None)  # your answer, e.g. "stage5/block0"
check_depthwise_kernel_ratio(None);  # your ratio, e.g. 1.5

# %% [markdown]
# <details><summary>Model answers (2, 4, 5)</summary>
#
# **2.** The 1x1 expansion disappears (the depthwise conv works on the block input directly). For a 40-channel
# block that removes $40 \cdot 240 + 2 \cdot 240$ parameters, and every later layer works on 40 instead of 240
# channels, so the block shrinks about six times.
#
# **4.** Dropping the branch leaves $y = x$: the block becomes the identity. Without a skip connection there is
# no identity path to fall back on; dropping the branch would output zeros (or a tensor of the wrong shape when
# the stride or the channels change).
#
# **5.** A kept sample's branch is scaled by $1/(1-p) = 2$ and kept with probability $1 - p$, so
# $\mathbb{E}[\text{scaled branch}] = (1-p) \cdot \frac{f(x)}{1-p} = f(x)$, exactly what evaluation adds. Without
# the rescaling, evaluation would see branches $1/(1-p)$ times stronger than training did on average.
# </details>
#
# ## Summary
# - An MBConv block expands ($1 \times 1$, $\times 6$), filters each channel ($k \times k$ depthwise), gates the
#   channels (SE, squeeze width a quarter of the block *input*), projects back ($1 \times 1$, no activation) and
#   adds the input when shapes allow.
# - Parameters and multiply-adds sit in the $1 \times 1$ convolutions; the depthwise conv is cheap in both, but
#   has low arithmetic intensity, and SE moves about 40% of the block's bytes for almost no arithmetic.
# - Stochastic depth drops a residual branch per sample in training and rescales the survivors, so evaluation
#   (always keep, never rescale) sees the same expectation.
#
# Next: notebook 02 stacks 16 of these blocks into B0.
#
# References: Sandler et al., MobileNetV2 (the MBConv block), CVPR 2018,
# [arXiv:1801.04381](https://arxiv.org/abs/1801.04381); Hu et al., Squeeze-and-Excitation Networks, CVPR 2018,
# [arXiv:1709.01507](https://arxiv.org/abs/1709.01507); Huang et al., Deep Networks with Stochastic Depth,
# ECCV 2016, [arXiv:1603.09382](https://arxiv.org/abs/1603.09382).
