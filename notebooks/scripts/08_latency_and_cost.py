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
# # 08 · Latency and cost: Table 4, Figures 1 and 5
#
# The paper counts cost in parameters and FLOPS (multiply-adds) and then checks that the savings are real on
# hardware: "EfficientNet-B1 runs 5.7x faster than the widely used ResNet-152" on one CPU core (Section 5.2,
# Table 4). Here we redo that measurement on this machine, find out why a network with 17x fewer multiply-adds is
# *not* 17x faster, and draw the paper's accuracy-against-cost figures beside the same curves at classroom scale.
#
# **Learning objectives.** After this notebook you can
# 1. time two networks fairly on a shared machine (batch 1, fixed threads, warm-up, interleaved runs, the median)
#    and read our Table 4 next to the paper's;
# 2. explain why FLOPS ratios and latency ratios differ: arithmetic intensity, memory traffic, depthwise
#    convolutions and squeeze-and-excitation;
# 3. draw Figures 1 and 5 (top-1 against parameters and against FLOPS) from Table 2 with exact counts, and compare
#    their shape with the scaling lab's classroom-scale curves.
#
# **Prerequisites.** Notebooks 01 (the `BlockExplorer`: multiply-adds against bytes moved), 02-03 (counting
# parameters and multiply-adds) and 06 (the scaling lab). **Time.** About 30 minutes, plus 20 for the exercises.
#
# The full latency measurement takes many minutes, so it is stored: `python benchmarks/bench_latency.py --out
# effnet_edu/data/latency.json` made it, and you can rerun it on your own machine. The live timing below is a
# few seconds.

# %% [markdown]
# *On Colab or Binder?* The next cell installs `effnet-edu` only when it is missing (here and in CI it does
# nothing). `effnet-edu` is **not on PyPI**: set `EFFNET_EDU_REPO` to the GitHub address of the repository this
# notebook came from (see the README, "Colab and Binder"). Colab's preinstalled torch is kept.

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
from collections import defaultdict

import matplotlib.pyplot as plt
import torch
import torchvision

import effnet_edu as ee
from effnet_edu import latency
from effnet_edu.lab import report
from effnet_edu.paper import COMPARISONS, EFFICIENTNETS, TABLE2, TABLE4

# %% [markdown]
# ## 1 · Table 4, as the paper gives it
# Batch 1, one core of an Intel Xeon CPU E5-2690, "average latency over 20 runs" (Section 5.2). Two pairs of
# networks with about the same top-1 accuracy:

# %% tags=["nbval-check-output"]
print(f"{'model':<17}{'top-1':>7}{'latency':>9}")
for row in TABLE4.values():
    print(f"{row.model:<17}{row.top1:>6.1f}%{row.seconds:>8.3f}s")
pairs = (("ResNet-152", "EfficientNet-B1"), ("GPipe", "EfficientNet-B7"))
for big, small in pairs:
    speed = TABLE4[big].seconds / TABLE4[small].seconds
    flops = f"{TABLE2[big].flops / TABLE2[small].flops:.1f}x the FLOPS" if TABLE2[big].flops else "no FLOPS given"
    print(f"{small} is {speed:.2f}x faster than {big} ({big}: {flops}, "
          f"{TABLE2[big].params / TABLE2[small].params:.1f}x the parameters)")

# %% [markdown]
# Already in the paper's own numbers: ResNet-152 needs **15.7x** B1's FLOPS but is only **5.7x** slower. A
# multiply-add is not a fixed amount of time. We will see why in section 3.
#
# ## 2 · Table 4 on this machine
# `benchmarks/bench_latency.py` builds our B0-B3 and torchvision's ResNet-50 and ResNet-152 with random weights
# (the values of the weights do not change the arithmetic), feeds each one image at its Table 2 resolution and
# times `model(x)` under `torch.inference_mode()`. Three rules make the comparison fair on a machine shared with
# other jobs (`effnet_edu.latency.measure`):
#
# - **fixed threads** (`torch.set_num_threads(1)`, like the paper's single core);
# - **warm-up rounds are not counted** (the first calls allocate memory and pick kernels);
# - **interleaved rounds**: round *r* runs every network once before round *r + 1* starts, so a burst of load
#   from another process slows all networks alike, and the **median** ignores the odd slow run.
#
# The stored measurement:

# %% tags=["nbval-check-output"]
stored = latency.load()
machine = stored["machine"]
print(f"measured {stored['date']}: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
      f"{stored['threads']} thread(s)")
print(f"batch 1, median of {stored['runs']} interleaved runs after {stored['warmup']} warm-up rounds; "
      f"shared machine: nice {stored['nice']}, load average {stored['load_average'][0]} -> "
      f"{stored['load_average'][1]} on {machine['cores']} cores")
cases = {(c["source"], c["member"], c["variant"]): c for c in stored["cases"]}
networks = [("ours", m) for m in ("b0", "b1", "b2", "b3")] + [("torchvision", r) for r in ("resnet50", "resnet152")]
variants = tuple(v for v in ("eager", "channels_last", "compile") if any(c["variant"] == v for c in stored["cases"]))
print(f"\n{'network':<11}{'res':>5}{'params':>12}{'MACs (B)':>10}" + "".join(f"{v + ' ms':>18}" for v in variants))
for source, name in networks:
    c = cases[(source, name, "eager")]
    timings = "".join(f"{cases[(source, name, v)]['median_ms']:>18.1f}" if (source, name, v) in cases else f"{'-':>18}"
                      for v in variants)
    print(f"{name:<11}{c['resolution']:>5}{c['params']:>12,}{c['macs'] / 1e9:>10.3f}{timings}")
for name, error in stored["compile_failed"].items():
    print(f"torch.compile failed for {name}: {error}")

# %% [markdown]
# The load average says how busy the machine was: with more runnable processes than cores, each timing is
# slower than on an idle machine, but the interleaving spreads that over every network, so the **ratios** are
# what to compare, not the milliseconds. Our Table 4:

# %% tags=["nbval-check-output"]
b1_macs, r152_macs = cases[("ours", "b1", "eager")]["macs"], cases[("torchvision", "resnet152", "eager")]["macs"]
paper_speed = TABLE4["ResNet-152"].seconds / TABLE4["EfficientNet-B1"].seconds
paper_flops = TABLE2["ResNet-152"].flops / TABLE2["EfficientNet-B1"].flops
print(f"ResNet-152 / B1 multiply-adds: {r152_macs / b1_macs:.1f}x here (exact counts), {paper_flops:.1f}x in Table 2")
print(f"B1 faster than ResNet-152:     {paper_speed:.2f}x in the paper (Table 4: 5.7x)")
for variant in variants:
    pair = cases.get(("ours", "b1", variant)), cases.get(("torchvision", "resnet152", variant))
    if all(pair):
        print(f"  {variant:<28}{pair[1]['median_ms'] / pair[0]['median_ms']:.2f}x here")
for source, name in networks:
    c = cases[(source, name, "eager")]
    print(f"{name:<10} eager: {c['median_ms'] / (c['macs'] / 1e9):7.1f} ms per billion multiply-adds")

# %% [markdown]
# Two things to read off. First, in the stored run B1 is about 4.4x faster than ResNet-152 (4.8x with
# `channels_last`): the same size as the paper's 5.7x, not the same number. The CPU differs, the library differs
# (the paper's code was TensorFlow, 2019), and the machine was shared. Second, the last lines: **a multiply-add
# of B1 took about four times as long as a multiply-add of ResNet-152** (791 against 206 ms per billion). That is
# the story of this notebook, and section 3 explains it.
#
# `channels_last` stores images as (N, H, W, C) instead of (N, C, H, W), the layout oneDNN's CPU convolutions
# prefer. Here it saved 5-14% on our networks and up to 8% on the ResNets. Whether it helps depends on the
# machine: measure on yours.
#
# `torch.compile` fuses BatchNorm, the activations and SE's element-wise work into the surrounding kernels, so
# the wide tensors make fewer trips through memory. Compiling takes minutes per network on this 2-core machine,
# so the Table 4 pair was compiled and timed in a second run of the same benchmark (`--members b1 --compile b1
# resnet152`), eager again beside it:

# %% tags=["nbval-check-output"]
compiled = latency.load(latency.STORED_COMPILE)
runs = {(c["member"], c["variant"]): c["median_ms"] for c in compiled["cases"]}
print(f"measured {compiled['date']}, {compiled['threads']} thread(s), median of {compiled['runs']} interleaved runs, "
      f"load average {compiled['load_average'][0]} -> {compiled['load_average'][1]}")
for name in ("b1", "resnet152"):
    print(f"{name:<10} eager {runs[(name, 'eager')]:7.1f} ms   compiled {runs[(name, 'compile')]:7.1f} ms   "
          f"compile speed-up {runs[(name, 'eager')] / runs[(name, 'compile')]:.2f}x")
for variant in ("eager", "compile"):
    print(f"B1 faster than ResNet-152, {variant:<8}{runs[('resnet152', variant)] / runs[('b1', variant)]:6.2f}x"
          f"   (paper: {paper_speed:.2f}x)")

# %% [markdown]
# Compiling made B1 about 1.6x faster and ResNet-152 only about 3% faster, so compiled, B1's lead over
# ResNet-152 grows beyond the paper's 5.7x. Fusion removes memory traffic, not multiply-adds, and B1 is the
# network that was waiting on memory. Section 3 measures that traffic.
#
# Our EfficientNets against torchvision's and timm's at the same member, timed in the same interleaved rounds
# (ratio = their time / ours; 1.00 means equally fast, above 1 ours is faster):

# %% tags=["nbval-check-output"]
for member in ("b0", "b1", "b2", "b3"):
    ours = cases[("ours", member, "eager")]["median_ms"]
    print(f"{member.upper()}: " + ",  ".join(f"{lib} {cases[(lib, member, 'eager')]['median_ms'] / ours:.3f}"
                                            for lib in ("torchvision", "timm") if (lib, member, "eager") in cases))

# %% [markdown]
# The three implementations run the same operations (same convolutions, same SE), so they should be within the
# noise of each other. They are: the eight ratios lie between 0.93 and 1.09, and their geometric mean is 1.01. On a
# shared machine a few percent either way is the machine, not the code.
#
# ## 3 · Why 17x fewer multiply-adds is not 17x faster
# A convolution's time is set by whichever is slower: doing its multiply-adds, or moving its bytes (input read,
# weights read, output written) between memory and the cores. Its **arithmetic intensity**, multiply-adds per
# byte moved, says which: a layer with few multiply-adds per byte waits for memory. Notebook 01's
# `BlockExplorer` shows this for one MBConv block; `latency.traffic` counts it for whole networks, layer by layer,
# as eager PyTorch runs them (BatchNorm and the activation each read and write the whole tensor again):

# %% tags=["nbval-check-output"]
with torch.device("meta"):  # shapes only: nothing is computed or allocated
    b1_model, r152_model = ee.build("b1"), torchvision.models.resnet152()
traffic = {"B1": latency.traffic(b1_model, 240), "ResNet-152": latency.traffic(r152_model, 224)}
totals = {}
for net, rows in traffic.items():
    macs, moved = sum(r.macs for r in rows), sum(r.bytes_moved for r in rows)
    totals[net] = (macs, moved)
    print(f"{net}: {macs / 1e9:.3f}B multiply-adds, {moved / 1e6:.0f} MB moved, "
          f"{macs / moved:.1f} multiply-adds per byte")
    kinds = defaultdict(lambda: [0, 0])
    for r in rows:
        kinds[r.kind][0] += r.macs
        kinds[r.kind][1] += r.bytes_moved
    for kind, (m, b) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        print(f"   {kind:<11} {m / macs:6.1%} of the multiply-adds  {b / moved:6.1%} of the bytes  "
              f"{m / b:6.2f} per byte")
print(f"ResNet-152 / B1: {totals['ResNet-152'][0] / totals['B1'][0]:.1f}x the multiply-adds, "
      f"{totals['ResNet-152'][1] / totals['B1'][1]:.2f}x the bytes")

# %% [markdown]
# Read the two lists side by side:
#
# - **Depthwise convolutions** compute each output value from $k \times k$ inputs of *one* channel: $k^2$
#   multiply-adds per output, where a dense $3 \times 3$ conv does $9 C_{in}$. They are about 9% of B1's
#   multiply-adds but 12% of its bytes, at around 1.5 multiply-adds per byte: memory-bound on any CPU.
# - **The expanded tensors are large.** MBConv6 widens each block's input six times; BatchNorm and SiLU then read
#   and write that wide tensor: half of B1's bytes, for no multiply-adds at all.
# - **Squeeze-and-excitation** does almost no arithmetic, yet reads the expanded tensor twice (the global mean,
#   then the per-channel rescale) and writes it once: about 15% of B1's bytes for 0% of its multiply-adds.
# - **ResNet-152** spends its multiply-adds in dense $3 \times 3$ and $1 \times 1$ convs with hundreds of channels:
#   15 multiply-adds per byte overall, seven times B1's.
#
# So ResNet-152 does 16.8x the multiply-adds but moves only about 2.3x the bytes. A CPU core can do tens of
# billions of multiply-adds per second, but it moves far fewer bytes per second between memory and its caches.
# A layer with 1-2 multiply-adds per byte waits for memory, and one with 15-40 keeps the arithmetic units busy.
# B1's time is therefore mostly traffic and ResNet-152's mostly arithmetic. The measured speed-up (4.4x) lands
# between the two ratios, and so does the paper's 5.7x. This is also why the paper searched for FLOPS (Section 4: "we optimize FLOPS rather than
# latency since we are not targeting any specific hardware device"), and why MnasNet, its predecessor, measured
# latency on the target phone instead.

# %% [markdown]
# ### A live timing (a few seconds)
# B0 against ResNet-50 with the same harness: one thread, one warm-up round, three interleaved runs. Your numbers
# will differ from anyone else's (and from run to run on a busy machine), which is why this cell's output is not
# checked.

# %% tags=["nbval-ignore-output"]
torch.set_num_threads(1)
live = {"B0": latency.forward(ee.build("b0"), torch.randn(1, 3, 224, 224)),
        "ResNet-50": latency.forward(torchvision.models.resnet50(weights=None), torch.randn(1, 3, 224, 224))}
ms = latency.medians_ms(latency.measure(live, runs=3, warmup=1))
print(", ".join(f"{name} {value:.0f} ms" for name, value in ms.items()),
      f"-> B0 is {ms['ResNet-50'] / ms['B0']:.1f}x faster with "
      f"{cases[('torchvision', 'resnet50', 'eager')]['macs'] / ee.count('b0').macs:.1f}x fewer multiply-adds")

# %% [markdown]
# ## 4 · Figures 1 and 5: accuracy against parameters and against FLOPS
# Table 2's ImageNet top-1 for B0-B7 and the comparison models (`effnet_edu.paper`, copied from Tan & Le 2019,
# Table 2, with the paper's rounding), and our exact counts for B0-B7 from `effnet_edu.accounting`:

# %% tags=["nbval-check-output"]
print(f"{'model':<17}{'top-1':>7}{'params (paper)':>16}{'exact':>12}{'FLOPS (paper)':>15}{'exact MACs':>13}")
exact = {row.member: ee.count(row.member) for row in EFFICIENTNETS}
for row in EFFICIENTNETS:
    r = exact[row.member]
    print(f"{row.model:<17}{row.top1:>6.1f}%{row.params / 1e6:>15.1f}M{r.params / 1e6:>11.2f}M"
          f"{row.flops / 1e9:>14.2f}B{r.macs / 1e9:>12.3f}B")
for row in COMPARISONS:
    flops = f"{row.flops / 1e9:>14.1f}B" if row.flops else f"{'-':>15}"
    print(f"{row.model:<17}{row.top1:>6.1f}%{row.params / 1e6:>15.0f}M{'':>12}{flops}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
for ax, key, label in ((axes[0], "params", "parameters (millions)"),
                       (axes[1], "macs", "FLOPS = multiply-adds (billions)")):
    scale = 1e6 if key == "params" else 1e9
    xs = [getattr(exact[row.member], key) / scale for row in EFFICIENTNETS]
    ax.plot(xs, [row.top1 for row in EFFICIENTNETS], "o-", color="crimson", label="EfficientNet B0-B7 (exact counts)")
    for x, row in zip(xs, EFFICIENTNETS):
        ax.annotate(row.model[-2:], (x, row.top1), textcoords="offset points", xytext=(-14, 4), fontsize=8)
    for row in COMPARISONS:
        value = row.params if key == "params" else row.flops
        if value:
            ax.plot(value / scale, row.top1, "s", color="gray")
            ax.annotate(row.model, (value / scale, row.top1), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(label + ", log scale")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right" if key == "params" else "upper left", fontsize=8)
axes[0].set_title("Figure 1: top-1 against parameters")
axes[1].set_title("Figure 5: top-1 against FLOPS")
plt.tight_layout();

# %% [markdown]
# The shape to remember: on a log axis of cost, accuracy rises and **flattens**. Two ways to put a number on it:
# the points of top-1 bought by each step's doubling of FLOPS, and the average per doubling since B0 (which is
# less sensitive to one noisy point, and is what we can compare with the classroom curves below):

# %% tags=["nbval-check-output"]
def per_doubling(points):
    """For consecutive (label, cost, accuracy) points: accuracy gained per doubling of cost, step by step and on
    average since the first point."""
    first = points[0]
    return [(b[0], (b[2] - a[2]) / math.log2(b[1] / a[1]), (b[2] - first[2]) / math.log2(b[1] / first[1]))
            for a, b in zip(points, points[1:])]


imagenet = [(row.member.upper(), exact[row.member].macs, row.top1) for row in EFFICIENTNETS]
print("ImageNet, B0-B7 (Table 2 top-1, our exact MACs): points of top-1 per doubling of FLOPS")
print(f"  {'up to':<10}" + "".join(f"{label:>7}" for label, _, _ in per_doubling(imagenet)))
print(f"  {'this step':<10}" + "".join(f"{step:>7.2f}" for _, step, _ in per_doubling(imagenet)))
print(f"  {'since B0':<10}" + "".join(f"{since:>7.2f}" for _, _, since in per_doubling(imagenet)))

# %% [markdown]
# ## 5 · The same plot at classroom scale
# Notebook 06 trained 52 small models on the scaling lab's 16-class dataset. Plot their test accuracy against
# parameters and multiply-adds in the same way: C0 scaled by one dimension (Figure 3's curves) and by the compound
# rule (step 2: the grid's best coefficients at phi = 1, 2, 3; the paper's (1.2, 1.1, 1.15) at phi = 1, three
# seeds).

# %% tags=["nbval-check-output"]
curves = dict(report.figure3())
c0 = curves["width"][0]  # every curve starts at C0 (three seeds, merged)
curves["compound (step 2)"] = [c0] + report.by_point(report.step2())  # phi = 0 (C0), 1, 2, 3
paper_point = report.comparison("effnet")["compound"]
for name, curve in curves.items():
    print(f"{name}:")
    print("  " + "  ".join(f"{e['params'] / 1e3:.0f}k/{e['macs'] / 1e6:.2f}M {100 * e['accuracy']:.1f}%"
                           for e in curve))
print(f"compound (1.2, 1.1, 1.15), phi=1: {paper_point['params'] / 1e3:.0f}k/{paper_point['macs'] / 1e6:.2f}M "
      f"{100 * paper_point['accuracy']:.1f}% +- {100 * paper_point['std']:.1f} ({paper_point['seeds']} seeds)")
print("\npoints of test accuracy per doubling of multiply-adds, on average since C0, at each point of the curve:")
for name, curve in curves.items():
    steps = per_doubling([(f"{e['macs'] / 1e6:.1f}M", e["macs"], 100 * e["accuracy"]) for e in curve])
    print(f"  {name:<18}" + "  ".join(f"{label}: {since:+.1f}" for label, _, since in steps))

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), sharey=True)
for ax, key, label in ((axes[0], "params", "parameters (thousands)"), (axes[1], "macs", "multiply-adds (millions)")):
    scale = 1e3 if key == "params" else 1e6
    for name, curve in curves.items():
        style = dict(color="crimson", marker="s", lw=2) if name.startswith("compound") else dict(marker="o", alpha=0.7)
        ax.plot([e[key] / scale for e in curve], [100 * e["accuracy"] for e in curve], label=name, **style)
    ax.errorbar([paper_point[key] / scale], [100 * paper_point["accuracy"]], yerr=[100 * paper_point["std"]],
                marker="*", ms=12, color="black", capsize=3, label="compound (1.2, 1.1, 1.15), phi=1")
    ax.set_xscale("log")
    ax.set_xlabel(label + ", log scale")
    ax.grid(alpha=0.3, which="both")
axes[0].set_ylabel("test accuracy (%)")
axes[0].set_title("classroom Figure 1: accuracy against parameters")
axes[1].set_title("classroom Figure 5: accuracy against multiply-adds")
axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
plt.tight_layout();

# %% [markdown]
# **What carries over, and what does not.**
#
# - **Cost axes disagree.** Resolution scaling adds no parameters at all: on the parameters axis the resolution
#   curve is a vertical line at C0's 129k, while on the multiply-adds axis it spreads out. The paper's Figures 1
#   and 5 rank networks differently for the same reason (B3 has 7x fewer parameters than ResNeXt-101 but 18x
#   fewer FLOPS), and section 3 added a third axis, latency, that ranks them differently again.
# - **The rising, flattening shape** is clear on ImageNet: B0->B1 buys 2.4 points per doubling of FLOPS and
#   B6->B7 0.3, and the average since B0 falls from 2.4 to 1.1. At classroom scale only part of it shows. The
#   resolution curve rises by about 15 points per doubling and has *not* started to flatten within 4x the
#   multiply-adds (this dataset's stripes need pixels). The width curve gains 1-5 points per doubling, within
#   the seed noise. The depth curve falls, because our short recipe cannot train deep networks (notebook 06,
#   section 9). Compound step 2 is noisy, with one seed per point.
# - **Noise.** One ImageNet number is the mean of 50,000 images of a long, tuned training run; one classroom
#   number is one seed of a three-epoch run, and C0's three seeds span almost 20 points. Steps of a few points
#   per doubling at classroom scale are not evidence of a shape either way.
#
# So the paper's plots *measure* what a network costs and buys in the same way at both scales, but the ranking
# of the scaling methods is a property of the data and of the training budget, not of the plot.

# %% [markdown]
# ## Summary
# - Table 4 redone: on this CPU, with one thread and interleaved, warmed-up runs, B1 was 4.4x faster than
#   ResNet-152 (4.8x with `channels_last`, 6.8x with both compiled). The paper measured 5.7x. All of these are far
#   below the 16.8x ratio of multiply-adds.
# - Latency follows bytes as much as multiply-adds; fusing element-wise work (`torch.compile`) helps B1 far more
#   than ResNet-152. Depthwise convolutions, the wide expanded tensors that
#   BatchNorm and SiLU read and write, and squeeze-and-excitation move many bytes for few multiply-adds
#   (1-2 per byte), while ResNet-152's dense convs do 15 per byte.
# - Figures 1 and 5 plot the same accuracies against two costs that rank networks differently; the accuracy
#   gained per doubling of cost falls as networks grow, clearly on ImageNet and only partly at classroom scale.
#
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended. Checks print one line; a model answer is
# collapsed below.
#
# 1. ★ How many times B1's multiply-adds does ResNet-152 need (one image, at their resolutions)? Use
#    `ee.count("b1").macs` and `latency.traffic` (or `torch.utils.flop_counter`, halved) for the ResNet.
# 2. ★★ How many times B1's bytes does ResNet-152 move, as eager PyTorch runs them? Is the measured speed-up of
#    section 2 closer to this ratio or to the multiply-add ratio?
# 3. ★ From Table 2, how many points of top-1 does one doubling of FLOPS buy from B6 to B7 (use the paper's
#    FLOPS: 19B and 37B)?
# 4. ★★★ Time B0 and ResNet-50 on your own machine with 1, 2 and 4 threads (`torch.set_num_threads`) and with
#    `channels_last`, using `latency.measure`. Does the speed-up of B0 grow or shrink with more threads? Why?

# %%
from effnet_edu_widgets.checks import check_bytes_ratio, check_gain_per_doubling, check_macs_ratio

my_macs_ratio = None  # exercise 1: your number, e.g. 12.3
my_bytes_ratio = None  # exercise 2
my_gain = None  # exercise 3: points of top-1 per doubling
_ = check_macs_ratio(my_macs_ratio)
_ = check_bytes_ratio(my_bytes_ratio)
_ = check_gain_per_doubling(my_gain)

# %% [markdown]
# <details><summary>Model answers</summary>
#
# 1. 11.51B / 0.687B = **16.8x** (Table 2's rounded numbers give 11 / 0.70 = 15.7x).
# 2. About **2.3x**: 768 MB against 333 MB. The measured speed-up (section 2) lies between 2.3x and 16.8x: B1
#    waits on memory much more than ResNet-152, which mostly waits on arithmetic.
# 3. (84.3 - 84.0) / log2(37 / 19) = 0.3 / 0.96 = **0.31 points** per doubling, against about 2.4 from B0 to B1.
# 4. More threads usually help ResNet-50 more than B0: its big dense convs split into large, independent chunks
#    of arithmetic, while B0's many small, memory-bound layers (and the per-layer overhead of launching work on
#    each thread) scale worse, so B0's speed-up over ResNet-50 usually *shrinks* with more threads.
#    `channels_last` helps where oneDNN's convolutions prefer that layout; on some CPUs it makes depthwise convs
#    slower. Measure rather than assume: this is the paper's reason to report latency next to FLOPS.
# </details>
