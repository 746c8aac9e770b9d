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
# # 02 · The EfficientNet-B0 baseline
#
# Compound scaling (notebook 03) only works from a good baseline. B0 came out of a neural architecture search in
# MnasNet's search space (Tan et al., 2019) that maximised
#
# $$\mathrm{ACC}(m) \times \left[\frac{\mathrm{FLOPS}(m)}{T}\right]^{w}, \qquad T = 400\text{M}, \quad w = -0.07$$
#
# (Section 4): accuracy, gently penalised for FLOPS above the target. Its architecture is Table 1 of the paper.
# Here we regenerate Table 1 from the library's data, compare it with the paper row by row, and check the
# parameter and multiply-add counts against the paper and against torchvision.
#
# **Learning objectives.** After this notebook you can
# 1. read Table 1 (stages, operators, resolutions, channels, layers) and expand it into B0's 16 blocks;
# 2. say where B0's parameters and multiply-adds are, stage by stage, and why they are in different places;
# 3. check a count against an independent implementation (torchvision) and the paper;
# 4. say what separates EfficientNet-Lite0 from B0 although their Table 1 is the same.
#
# **Prerequisites.** Notebook 01 (one MBConv block). **Time.** About 25 minutes, plus 30 for the exercises.

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
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee

torch.manual_seed(0)
torch.set_num_threads(2)
config = ee.resolve("b0")
config

# %% [markdown]
# ## Table 1, regenerated
# `ee.stages(config)` gives the nine rows: the stem (stage 1), seven MBConv stages, and the head (stage 9).
# "resolution" is the stage's *input* resolution, as in the paper.

# %% tags=["nbval-check-output"]
rows = ee.stages(config)
print(f"{'stage':>5}  {'operator':24s} {'resolution':>10}  {'channels':>8}  {'layers':>6}  {'stride':>6}")
for r in rows:
    op = f"{r.operator}, k{r.kernel_size}x{r.kernel_size}" if r.operator.startswith("MBConv") else r.operator
    print(f"{r.stage:>5}  {op:24s} {r.resolution:>4}x{r.resolution:<5}  {r.out_channels:>8}  {r.layers:>6}  {r.stride:>6}")

# %% [markdown]
# ## Compared with the paper
# The paper's Table 1, typed in from the paper (operator, input resolution, output channels, layers). The paper's
# table has **no stride column**: the stride of a stage's first layer shows only in the next row's input
# resolution (224 -> 112 after the stem, ...), and the official code's block definitions (and torchvision's
# `efficientnet.py`) state it. Our "stride" column above comes from those.

# %% tags=["nbval-check-output"]
paper_table1 = [
    (1, "Conv3x3", 224, 32, 1),
    (2, "MBConv1, k3x3", 112, 16, 1),
    (3, "MBConv6, k3x3", 112, 24, 2),
    (4, "MBConv6, k5x5", 56, 40, 2),
    (5, "MBConv6, k3x3", 28, 80, 3),
    (6, "MBConv6, k5x5", 14, 112, 3),
    (7, "MBConv6, k5x5", 14, 192, 4),
    (8, "MBConv6, k3x3", 7, 320, 1),
    (9, "Conv1x1 & Pooling & FC", 7, 1280, 1),
]
for (stage, op, res, channels, layers), r in zip(paper_table1, rows):
    ours = f"{r.operator}, k{r.kernel_size}x{r.kernel_size}" if r.operator.startswith("MBConv") else r.operator
    match = (ours, r.resolution, r.out_channels, r.layers) == (op, res, channels, layers)
    print(f"stage {stage}: {op:24s} {res:>3}px {channels:>5} ch x{layers}  {'matches' if match else 'DIFFERS'}")

# %% [markdown]
# ## The 16 blocks
# Table 1's "layers" column expands into 16 MBConv blocks. Only the first block of a stage changes stride or
# channels; the others have a residual connection. The stochastic depth rate of block $i$ of $N = 16$ is
# $0.2 \cdot i / N$: it grows linearly from 0 for the first block to $0.2 \cdot 15/16 = 0.1875$ for the last
# (the official code's rule; the paper states only "survival probability 0.8").

# %% tags=["nbval-check-output"]
print(f"{'block':15s} {'in':>4} {'out':>4} {'hidden':>6} {'k':>2} {'s':>2} {'SE':>3} {'res':>4} {'residual':>8} {'drop':>6}")
for b in ee.blocks(config):
    print(f"{b.name:15s} {b.in_channels:>4} {b.out_channels:>4} {b.hidden_channels:>6} {b.kernel_size:>2} {b.stride:>2} "
          f"{b.se_channels:>3} {b.in_resolution:>4} {str(b.residual):>8} {b.drop_path:>6.4f}")

# %% [markdown]
# ## Build it and count
# The paper says 5.3M parameters. torchvision's independent implementation gives us an exact oracle.

# %% tags=["nbval-check-output"]
model = ee.build("b0").eval()
ours = sum(p.numel() for p in model.parameters())
reference = sum(p.numel() for p in torchvision.models.efficientnet_b0(weights=None).parameters())
print(f"effnet_edu B0:  {ours:,} parameters")
print(f"torchvision B0: {reference:,} parameters   equal: {ours == reference}")
print(f"paper:          5.3M")

# %% [markdown]
# ## Shapes, stage by stage
# A 224x224 image is halved five times (stem, stages 3, 4, 5, 7): the last feature map is 7x7 with 1280 channels.

# %% tags=["nbval-check-output"]
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    features = model.stage_features(x)
for name, f in features.items():
    print(f"{name}: {tuple(f.shape)}")
with torch.no_grad():
    print("logits:", tuple(model(x).shape))

# %% [markdown]
# ## Multiply-adds
# The paper's "0.39B FLOPS" are multiply-adds of the convolutions and the FC layer. `FlopCounterMode` counts
# 2 FLOPs per multiply-add, so we halve its count.

# %% tags=["nbval-check-output"]
with FlopCounterMode(display=False) as counter, torch.no_grad():
    model(x)
macs = counter.get_total_flops() // 2
print(f"B0 at 224x224: {macs:,} multiply-adds = {macs / 1e9:.3f}B (paper: 0.39B)")
print(f"               {2 * macs / 1e9:.3f} GFLOPs if one multiply-add counts as 2 FLOPs")

# %% [markdown]
# ## Where the cost is, stage by stage
# Parameters pile up at the end (wide channels), multiply-adds at the start (large resolutions).

# %% tags=["nbval-check-output"]
per_stage = counter.get_flop_counts()
parts = {"stage1": model.stem, **dict(model.stages.named_children()), "stage9": model.head}
paths = {"stage1": "EfficientNet.stem", "stage9": "EfficientNet.head"}
print(f"{'stage':7s} {'params':>10} {'MACs':>13}")
for name, module in parts.items():
    path = paths.get(name, f"EfficientNet.stages.{name}")
    stage_macs = sum(per_stage.get(path, {}).values()) // 2
    print(f"{name:7s} {sum(p.numel() for p in module.parameters()):>10,} {stage_macs:>13,}")
fc_macs = sum(per_stage.get("EfficientNet.classifier", {}).values()) // 2
print(f"{'FC':7s} {sum(p.numel() for p in model.classifier.parameters()):>10,} {fc_macs:>13,}")

# %% [markdown]
# ## The same counts without building anything
# `effnet_edu.accounting.count` derives parameters and multiply-adds from the architecture data alone (it is what
# the explorers use). It must agree with the built network and with PyTorch's counter, stage by stage.

# %% tags=["nbval-check-output"]
from effnet_edu.accounting import count

report = count("b0")
print(report.table("stage"))
print("params equal:", report.params == ours, "  MACs equal:", report.macs == macs)

# %% [markdown]
# ## What the table does not show: EfficientNet-Lite0
# Lite0, the official mobile variant (not in the paper), has exactly B0's Table 1. What differs is inside the
# blocks: the activation and squeeze-and-excitation.

# %% tags=["nbval-check-output"]
lite0 = ee.resolve("lite0")
print("same Table 1:", [(r.out_channels, r.layers, r.stride) for r in ee.stages(lite0)]
      == [(r.out_channels, r.layers, r.stride) for r in ee.stages(config)])
for c in (config, lite0):
    r = count(c)
    print(f"{c.name:6s} activation {'relu6' if c.lite else 'silu':5s}  SE ratio {c.se_ratio:.2f}  params {r.params:>9,}  MACs {r.macs:>11,}")

# %% [markdown]
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended. Run the check cell with your answers, or open
# the model answer.
#
# 1. ★ Which stage holds the most parameters, and which the most multiply-adds? Explain both with channels and
#    resolution. Check: `check_stage_costs("stageP", "stageM")`.
# 2. ★ Change B0 to 256x256 input (`ee.resolve("b0", resolution=256)`): which rows of Table 1 change, and which
#    columns? Check: `check_rows_changed([stage numbers])`.
# 3. ★★ The head (stage 9) is a 1x1 conv from 320 to 1280 channels at 7x7. What fraction of B0's parameters are
#    in the head plus the classifier? Is that a lot? Check: `check_head_share(fraction)`.
# 4. ★★ Lite0 has B0's table but uses ReLU6 and no SE (cell above). Why would a mobile accelerator care?

# %%
from effnet_edu_widgets.checks import check_head_share, check_rows_changed, check_stage_costs

check_stage_costs(None, None)
check_rows_changed(None)
check_head_share(None);

# %% [markdown]
# <details><summary>Model answer (4)</summary>
#
# Integer (8-bit) inference on phones and edge TPUs needs bounded activations: ReLU6 clips to [0, 6], which
# quantises well, while SiLU is unbounded and costlier to evaluate. SE needs a global pooling and a per-channel
# multiply in the middle of every block, which some mobile accelerators support poorly and which moves the whole
# tensor through memory again (notebook 01). The Lite release removes both, and pays for it in accuracy.
# </details>
#
# ## Summary
# - Table 1 is nine rows: a stem, seven MBConv stages and a head; the 16 blocks follow from the "layers" column,
#   and only the first block of a stage changes stride or channels.
# - B0 has 5,288,548 parameters (torchvision: the same; paper: 5.3M) and 0.386B multiply-adds (paper: 0.39B
#   "FLOPS", which are multiply-adds).
# - Parameters pile up where channels are wide (the last stages and the head); multiply-adds where the maps are
#   large (the early stages).
# - Lite0 shares the table; the differences (ReLU6, no SE) are inside the blocks.
#
# Next: notebook 03 scales this baseline up.
