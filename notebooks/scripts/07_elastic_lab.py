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
# # 07 · One network for every slider: accuracy and CAMs at any (phi, alpha, beta, gamma)
#
# Notebook 06 trained 52 models to see what scaling buys, one model per point. A slider has thousands of
# positions, so here we train **one weight-shared network** whose sub-networks cover a whole box of scaling points
# of the classroom base C0 (width 1-2x, depth 1-2x, resolution 64-128 px), and cut a real network out of it for
# any slider position in about a second.
#
# **Learning objectives.** After this notebook you can
# 1. explain how one set of weights holds every network of a box (nested channels, first blocks, any resolution);
# 2. say why BatchNorm must be recalibrated for each sub-network, and show what happens when it is not;
# 3. judge how far a weight-shared estimate of accuracy can be trusted, from a table against models trained
#    from scratch;
# 4. move phi, alpha, beta and gamma and watch accuracy, localisation and the CAMs change, and run the paper's
#    Step-1 grid search in seconds.
#
# **Prerequisites.** Notebooks 03 (the compound rule) and 06 (the scaling lab). **Time.** About 30 minutes, plus
# 20 for the exercises.
#
# The shared weights were trained by `effnet-edu lab elastic-train` (about 75 minutes on one core of a 2-core
# laptop, resumable) and ship with the package; nothing here trains.

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
import json
import time

import matplotlib.pyplot as plt
import torch

from effnet_edu.lab import elastic as E
from effnet_edu.lab.families import Point
from effnet_edu.scaling import round_filters, round_repeats

torch.set_num_threads(2)
training = json.loads((E.WEIGHTS / "training.json").read_text())
validation = E.stored_validation()
print(f"the box: {E.box_text()}")
print(f"trained for {training['recipe']['epochs']} epochs ({training['steps']:,} steps of 4 sub-networks) in "
      f"{training['train_seconds'] / 60:.0f} min on {training['threads']} thread(s)")

# %% [markdown]
# ## 1 · Every network of the box inside the largest one
#
# The shared weights are those of the box's largest network: C0 at twice the width and depth, at 128 px. A
# smaller point takes, from every weight tensor, its **leading slice**:
#
# - **width:** the first channels of every layer. This works because `round_filters` never shrinks when the width
#   grows, so a narrower network's channel counts always fit inside a wider one's;
# - **depth:** the first blocks of every stage (`round_repeats` blocks of the largest's);
# - **resolution:** nothing to slice: a convolution runs at any input size. Only BatchNorm's statistics depend on
#   it (section 3).
#
# Here is one layer, the expansion convolution of stage 4's first block, at three widths:

# %% tags=["nbval-check-output"]
for width in (1.0, 1.5, 2.0):
    model = E.extract(Point("effnet", width, 1.0, 64), recalibrate=False)
    w = model.stages.stage4[0].expand.conv.weight
    print(f"width {width:g} (x0.25 of B0 = {0.25 * width:g}): input channels round_filters(24, {0.25 * width:g}) = "
          f"{round_filters(24, 0.25 * width):>2}, expansion conv weight {tuple(w.shape)}")
print("stage 4 blocks at depth 1, 1.5, 2:",
      [round_repeats(3, 0.25 * d) for d in (1.0, 1.5, 2.0)], "(B0 has 3; ceil(3 x 0.25 d))")

# %% [markdown]
# The cut is a real `effnet_edu` EfficientNet, the same class `build()` makes, so everything in the library works
# on it: the accounting of notebook 02, CAM, the command line. Its weights *are* the shared tensor's first rows:

# %% tags=["nbval-check-output"]
shared = E.shared_weights()
small = E.extract(E.SMALLEST, recalibrate=False)
name = "stages.stage4.0.expand.conv.weight"
print(f"{name}: shared {tuple(shared[name].shape)}, C0 {tuple(small.get_parameter(name).shape)}, "
      f"equal to the first 48 x 8 of it: {torch.equal(small.get_parameter(name), shared[name][:48, :8])}")
print(f"C0 cut from the shared weights has {sum(p.numel() for p in small.parameters()):,} parameters, like C0")

# %% [markdown]
# ## 2 · Training one network for all: the sandwich rule
#
# Each training step runs four networks on the same batch and sums their gradients into the shared weights:
#
# - the **largest**, on the labels (label-smoothed cross-entropy);
# - the **smallest** and **two random points** of the box, each at its own resolution, trained to match the
#   largest's predictions (*in-place distillation*).
#
# The largest and the smallest bound every other point, so training both at every step keeps the whole box
# trained (the "sandwich rule" of slimmable networks, Yu & Huang 2019, used by BigNAS, Yu et al. 2020). The soft
# targets of the largest network are easier for a small network to follow than the labels. Once-for-All (Cai et
# al., 2020) reaches the same goal another way, by shrinking progressively from the largest network.
#
# Since the distillation losses measure agreement with the largest network, not correctness, they are
# not comparable with the largest's loss:

# %%
log = training["log"]
steps = [r["step"] for r in log]
fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
for key, label in (("largest", "largest (labels)"), ("smallest", "smallest (distilled)"),
                   ("random", "two random points (distilled)")):
    ax.plot(steps, [r[key] for r in log], label=label, lw=1)
ax.set(xlabel="step", ylabel="loss", title="the four losses of every step (logged every 20 steps)")
ax.legend(fontsize=8)
plt.tight_layout();

# %% [markdown]
# ## 3 · BatchNorm must be recalibrated
#
# A BatchNorm layer normalises with the mean and variance it saw in training. A narrower, shallower or
# lower-resolution sub-network produces different statistics at every layer, so no single stored set fits all of
# them. `extract` therefore recomputes them for each sub-network from a fixed calibration set (256 generated
# images, never the test images), as Once-for-All does. The weights stay untouched.
#
# **Predict first.** C0 cut out of the shared weights, but normalised with the *largest* network's statistics
# (sliced like the weights): how much of its accuracy is left? Write down a number before you run the next cell.

# %%
my_prediction = None  # your guess, test accuracy in percent (chance is 6.25%)

# %% tags=["nbval-check-output"]
point = E.SMALLEST
recalibrated = E.evaluate(point)["accuracy"]
largest_stats = E.extract(E.LARGEST).state_dict()
naive = E.extract(point, recalibrate=False)
naive.load_state_dict({k: E.leading_slice(largest_stats[k], v.shape) if "running" in k else v
                       for k, v in naive.state_dict().items()})
test_images, _, test_labels = E.split_at("test", point.resolution, E.LIVE_TEST)
with torch.no_grad():
    naive_accuracy = 100 * float((naive(E.normalise(test_images)).argmax(1) == test_labels).float().mean())
print(f"C0 with the largest network's BatchNorm statistics: {naive_accuracy:.1f}%")
print(f"C0 with its own, recalibrated statistics:          {recalibrated:.1f}%   (first {E.LIVE_TEST} test images)")
if my_prediction is not None:
    print(f"your prediction: {my_prediction}%")

# %% [markdown]
# ## 4 · Can the shared weights be trusted? Validation against training from scratch
#
# Notebook 06's models were trained from scratch, one per point. For every one of them inside the box, here is
# its test accuracy next to the sub-network cut from the shared weights (full 2,000-image test split;
# scratch accuracies averaged over seeds where there are several). Our goals: a mean |difference| of at most 3
# points and a rank correlation (Kendall's tau) of at least 0.7.

# %% tags=["nbval-check-output"]
print(f"{'width':>6}{'depth':>7}{'px':>5}{'MACs':>12}{'seeds':>7}{'scratch':>9}{'elastic':>9}{'diff':>7}")
for r in validation["rows"]:
    print(f"{r['width']:>6g}{r['depth']:>7g}{r['resolution']:>5}{r['macs']:>12,}{r['scratch_seeds']:>7}"
          f"{r['scratch']:>9.1f}{r['elastic']:>9.1f}{r['difference']:>+7.1f}")
print(f"\n{len(validation['rows'])} points: mean |difference| {validation['mean_abs_difference']:.1f} points "
      f"(goal <= 3), worst {validation['worst_abs_difference']:.1f}; Kendall tau {validation['kendall_tau']:.2f} "
      f"(goal >= 0.7)")

# %%
rows = validation["rows"]
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
left.plot([r["scratch"] for r in rows], [r["elastic"] for r in rows], "o")
left.plot([0, 100], [0, 100], "k--", lw=0.8)
left.set(xlabel="trained from scratch: test accuracy (%)", ylabel="cut from the shared weights (%)",
         xlim=(0, 100), ylim=(0, 100), title="one point per scratch-trained model in the box")
right.plot([r["macs"] / 1e6 for r in rows], [r["scratch"] for r in rows], "s", color="0.5", label="from scratch")
right.plot([r["macs"] / 1e6 for r in rows], [r["elastic"] for r in rows], "o", mfc="none", label="elastic")
right.set(xscale="log", xlabel="MACs (millions)", ylabel="test accuracy (%)", title="accuracy against MACs")
right.legend()
plt.tight_layout();

# %% [markdown]
# **How to read this.** Both goals are missed by far: 24 of the 27 sub-networks are 9-46 points *better* than the
# model trained from scratch at their point, and the two rankings are unrelated (tau near 0). The scratch models are
# a poor yardstick here. They were trained for 3 epochs (notebook 06), too few for the deeper ones to train at all
# (depth 2 at 64 px: 38.8% from scratch, 83.8% cut from the shared weights), and C0's three seeds span 18 points.
# The shared weights saw 10 epochs, and every sub-network learned from the largest network's predictions, which is
# what in-place distillation is for. So a sub-network's accuracy estimates what a well-trained network of that
# shape reaches, not what the lab's short recipe reaches, and the validation this section was meant to give is
# not there.
#
# Two weaknesses of the shared weights show as well:
# - the accuracies are flat (75-94%) across a box whose MACs vary six-fold, so they rank points poorly;
# - corners other than the smallest and the largest are the weakest. Along C0's resolution edge (width 1, depth 1)
#   accuracy even *falls* with resolution, from 87.8% at 64 px to 77.7% at 128 px, where training from scratch
#   rises from 55% to 86%; width 2 at 64 px scores 75.4%. The sandwich rule trains only the two extreme corners at
#   every step, and uniformly drawn random points rarely come near the others. Drawing the corners more often, or
#   Once-for-All's progressive shrinking, are the next things to try (exercise 4).
#
# Localisation follows the grid, as in notebook 06: the pointing game is 1-9% at 64 px (a 2x2 map) and 22-57% from
# 70 px up (3x3 and 4x4 maps).
#
# ## 5 · The live explorer
#
# **Predict first.** At phi = 2 with the paper's alpha = 1.2, beta = 1.1, gamma = 1.15 the sub-network sees
# 64 x 1.15^2 = 85 px. On how many cells per side does its CAM live (the last feature map is the input divided by
# 32, rounded up)? And at phi = 0?

# %%
my_cells_phi2, my_cells_phi0 = None, None  # write your answers here

# %% tags=["nbval-check-output"]
from effnet_edu_widgets.elastic import lab_state

for phi in (0, 2):
    r = lab_state(phi).point.resolution
    print(f"phi = {phi}: {r} px -> a {-(-r // 32)}x{-(-r // 32)} feature map"
          + ("" if my_cells_phi2 is None else f" (you said {my_cells_phi0 if phi == 0 else my_cells_phi2})"))

# %% [markdown]
# Now move the sliders (run all cells first if you see `VBox(...)` instead of sliders: a freshly opened notebook
# is untrusted). Each new point cuts a sub-network, recalibrates it, scores it on the first 500 test images
# (a standard error of about 2 points: differences smaller than that are noise) and draws the CAMs of the
# predicted classes with each object outlined in white; a red label is a wrong prediction. Tick the lock to hold
# alpha * beta^2 * gamma^2 at the budget: beta then follows alpha and gamma, the design space of the paper's
# Step-1 search. Points outside the box still show their parameters and MACs.

# %%
from effnet_edu_widgets import ElasticExplorer

explorer = ElasticExplorer(phi=1.0)
explorer

# %% [markdown]
# The same four test images at phi = 0, 2 and 3 (paper coefficients): the CAM's grid refines with the resolution
# (2x2, 3x3, 4x4 cells), and with it the chance that the map's maximum lands on the object.

# %%
from IPython.display import Image, display

from effnet_edu_widgets.elastic import cam_strip

for phi in (0, 2, 3):
    s = lab_state(phi)
    strip, shown = cam_strip(s.point, range(4), scale=1)
    result = E.evaluate(s.point)
    print(f"phi = {phi}: w {s.point.width:g}, d {s.point.depth:g}, {s.point.resolution} px; accuracy "
          f"{result['accuracy']:.1f}%, pointing game {result['pointing']:.1f}% (first {E.LIVE_TEST} test images)")
    display(Image(strip))

# %% [markdown]
# ## 6 · Step 1 of Section 3.3, live
#
# The paper fixes phi = 1 and searches alpha, beta, gamma under alpha * beta^2 * gamma^2 ~ 2 by training each
# candidate. The scaling lab trained ten such candidates from scratch (notebook 06, about 40 minutes). Cut from
# the shared weights, the same ten take seconds. Both are scored on the *validation* split: the test split never
# chooses anything.

# %%
start = time.perf_counter()
search = E.grid_search()
seconds = time.perf_counter() - start
print(f"{'alpha':>6}{'beta':>6}{'gamma':>7}{'w':>7}{'d':>6}{'px':>5}{'elastic':>9}{'scratch':>9}")
for r in search["rows"]:
    print(f"{r['alpha']:>6g}{r['beta']:>6g}{r['gamma']:>7g}{r['width']:>7g}{r['depth']:>6g}{r['resolution']:>5}"
          f"{r['elastic']:>9.1f}{r['scratch']:>9.1f}")
print(f"\nin {seconds:.0f} s; elastic winner (alpha, beta, gamma) = {search['best']}; Kendall tau against the "
      f"scratch ranking {search['kendall_tau']:.2f}")

# %% [markdown]
# The stored run of the same search (it is part of the validation) for comparison:

# %% tags=["nbval-check-output"]
stored = validation["grid_search"]
print(f"stored: winner {tuple(stored['best'])}, Kendall tau against the scratch grid {stored['kendall_tau']:.2f} "
      f"on the first {stored['val_images']} validation images")

# %% [markdown]
# ## Summary
#
# - One set of weights can hold every network of a box of scaling points: narrower networks use the first
#   channels, shallower ones the first blocks of each stage, and any resolution runs through the same convolutions.
# - A cut network needs its own BatchNorm statistics; recalibrating on a few hundred images is enough, and without
#   it a sub-network can lose most of its accuracy.
# - Trained with the sandwich rule, the shared weights give an accuracy estimate for any point in about a second.
# - Validated against the lab's 3-epoch scratch models, the estimates miss both goals (section 4): they measure a
#   well-trained network of each shape, not the lab's short recipe, and they are flat and weak at the box's corners.
# - With that caveat, the paper's Step-1 grid search runs live, in seconds.
#
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended. Model answers are collapsed below.
#
# 1. ★  Which point of the box has the most MACs per parameter, and why? Use `lab_state(phi, alpha, beta, gamma)`
#    (it counts without running anything) and check with `check_elastic_macs_per_param` below.
# 2. ★★ With the lock on at budget 2, move alpha from 1 to 2 at phi = 1. Where is accuracy highest? Is the
#    difference to the paper's (1.2, 1.1, 1.15) larger than the 2-point standard error of the live score?
# 3. ★★ Recalibrate C0 on only 32 images instead of 256 (`E.precise_bn(model, E.calibration_images(64)[:32])` on
#    `model = E.extract(E.SMALLEST, recalibrate=False)`) and score it as section 3 scores the naive model. How
#    much does it lose?
# 4. ★★★ Section 4 found the corners (C0 at 128 px, width 2 at 64 px) weaker than their neighbours. Measure it:
#    score the eight corners of the box with `E.evaluate`, then say how you would change `random_point` so that
#    training reaches them more often, and what that would cost the points in the middle.

# %%
from effnet_edu_widgets.checks import check_elastic_macs_per_param

my_answer = None  # "smallest", "largest", "widest at 64 px", "deepest at 64 px" or "C0 at 128 px"
check_elastic_macs_per_param(my_answer);

# %% [markdown]
# <details><summary>Model answer to exercise 1</summary>
#
# Resolution adds multiply-adds without adding a single parameter (the same weights run at every position), so
# MACs per parameter grow with r^2 and are highest at 128 px. Width multiplies both MACs and parameters by about
# w^2; depth adds blocks whose parameters and MACs both grow. So "C0 at 128 px" (width 1, depth 1, 128 px) has
# the most MACs per parameter in the box.
# </details>
#
# <details><summary>Model answer to exercise 3</summary>
#
# With 32 images, the running variance of the deepest layers is estimated from one batch and is noisy; expect
# a loss of a few points, more for the larger sub-networks. The paper's released models need no recalibration
# because each is trained alone; recalibration is the price of sharing weights.
# </details>
