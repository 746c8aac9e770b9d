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
# name: a6_training_recipe
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
# # Assignment 6 · The training recipe
#
# *EfficientNet (Tan & Le, 2019), Section 5.2, and the official TPU code for what the text leaves out. About 75
# minutes.*
#
# Section 5.2: "RMSProp optimizer with decay 0.9 and momentum 0.9; batch norm momentum 0.99; weight decay 1e-5;
# initial learning rate 0.256 that decays by 0.97 every 2.4 epochs." The official code adds a linear warmup, an
# exponential moving average (EMA) of the weights that is what gets evaluated, and label smoothing 0.1. Each piece
# is a few lines; getting them exactly right is what makes a recipe reproduce. You will write each piece, check it
# against `effnet_edu.train`, and train a tiny EfficientNet with them.
#
# **Learning objectives.** After this assignment you can
# 1. write TensorFlow's RMSProp update and say how it differs from `torch.optim.RMSprop`;
# 2. compute the warmup + staircase learning rate at any step;
# 3. keep an EMA of weights with TF's warmup of the decay;
# 4. write label-smoothed cross-entropy;
# 5. run a short training and read its loss curve.
#
# **Points.** Q1 RMSProp step 4 · Q2 schedule 3 · Q3 EMA 3 · Q4 label smoothing 3 · Q5 a short run 2 ·
# Q6 written (graded by hand) 3. Autograded: 15, written: 3.
#
# Do not call `effnet_edu.train`'s optimiser, schedule or EMA in your answers: they are what the hidden tests
# compare you with.

# %%
import math

import torch
import torch.nn.functional as F

import effnet_edu as ee

torch.manual_seed(0)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 4

# %% [markdown]
# **Q1 (4 points).** Write `rmsprop_tf_step(p, g, ms, mom, lr, decay=0.9, momentum=0.9, eps=1e-3)`: one update of
# TF1's RMSProp, returning new tensors `(p, ms, mom)` (do not modify the inputs):
#
#     ms  = decay * ms + (1 - decay) * g^2
#     mom = momentum * mom + lr * g / sqrt(ms + eps)       # eps INSIDE the square root, lr INSIDE the momentum
#     p   = p - mom
#
# TF starts `ms` at **ones** and `mom` at zeros (the caller does that; see the check below).

# %% [raw]
# # BEGIN SOLUTION

# %%
def rmsprop_tf_step(p, g, ms, mom, lr, decay=0.9, momentum=0.9, eps=1e-3):
    # BEGIN SOLUTION
    ms = decay * ms + (1 - decay) * g * g
    mom = momentum * mom + lr * g / torch.sqrt(ms + eps)
    return p - mom, ms, mom
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_first_step(rmsprop_tf_step):
    import torch
    p, g = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.1])
    new_p, ms, mom = rmsprop_tf_step(p, g, torch.ones(2), torch.zeros(2), lr=0.1)
    assert torch.allclose(ms, 0.9 + 0.1 * g**2), "ms = decay * ms + (1 - decay) * g^2, starting from ones"
    assert torch.allclose(new_p, p - 0.1 * g / torch.sqrt(ms + 1e-3)), "the first step: lr * g / sqrt(ms + eps)"
    assert torch.equal(p, torch.tensor([1.0, -2.0])), "do not modify the inputs"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 3
""" # END TEST CONFIG
def test_q1_against_library(rmsprop_tf_step):
    import torch
    from effnet_edu.train import RMSpropTF
    g = torch.Generator().manual_seed(1)
    for lr, decay, momentum, eps in ((0.016, 0.9, 0.9, 1e-3), (0.1, 0.5, 0.0, 1e-8), (0.003, 0.99, 0.95, 0.1)):
        w = torch.nn.Parameter(torch.randn(5, generator=g))
        opt = RMSpropTF([w], lr=lr, decay=decay, momentum=momentum, eps=eps)
        p, ms, mom = w.detach().clone(), torch.ones(5), torch.zeros(5)
        for _ in range(6):
            grad = torch.randn(5, generator=g)
            w.grad = grad.clone()
            opt.step()
            p, ms, mom = rmsprop_tf_step(p, grad, ms, mom, lr, decay, momentum, eps)
        assert torch.allclose(p, w.detach(), atol=1e-6), f"six steps with lr={lr}, decay={decay}, momentum={momentum}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# **Q2 (3 points).** Write `lr_at(step, steps_per_epoch, peak_lr, warmup_epochs=5, decay_epochs=2.4,
# decay_rate=0.97)`: during the first `warmup_epochs * steps_per_epoch` steps rise linearly from 0
# (`peak_lr * step / warmup_steps`); afterwards `peak_lr * decay_rate ** floor(step / decay_steps)` with
# `decay_steps = decay_epochs * steps_per_epoch` (a staircase counted from step 0, as in the official code).

# %% [raw]
# # BEGIN SOLUTION

# %%
def lr_at(step, steps_per_epoch, peak_lr, warmup_epochs=5, decay_epochs=2.4, decay_rate=0.97):
    # BEGIN SOLUTION
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return peak_lr * decay_rate ** math.floor(step / (decay_epochs * steps_per_epoch))
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_warmup(lr_at):
    assert lr_at(0, 100, 0.256) == 0, "warmup starts from 0"
    assert abs(lr_at(250, 100, 0.256) - 0.128) < 1e-12, "halfway through 5 warmup epochs: half the peak"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q2_against_library(lr_at):
    from effnet_edu.train import lr_at as reference
    for steps_per_epoch in (100, 312.5, 7):
        for step in list(range(0, 3000, 37)) + [499, 500, 501, 719, 720, 721]:
            want = reference(step, steps_per_epoch, 0.256)
            assert abs(lr_at(step, steps_per_epoch, 0.256) - want) < 1e-12, f"step {step}, {steps_per_epoch}/epoch"
    assert abs(lr_at(90, 10, 1.0, 2, 3, 0.5) - reference(90, 10, 1.0, 2, 3, 0.5)) < 1e-12, "other settings"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# **Q3 (3 points).** Write `ema_update(ema_state, model_state, updates, decay=0.9999)`: given two state dicts
# (name -> tensor) and the number of updates done so far `t`, return a new dict where every floating-point tensor
# is `d * ema + (1 - d) * value` with TF's warmup `d = min(decay, (1 + t) / (10 + t))`, and every other tensor
# (BatchNorm's integer counter) is copied from the model. BatchNorm's running statistics are averaged too: they
# are floating-point buffers in the state dict.

# %% [raw]
# # BEGIN SOLUTION

# %%
def ema_update(ema_state, model_state, updates, decay=0.9999):
    # BEGIN SOLUTION
    d = min(decay, (1 + updates) / (10 + updates))
    return {k: d * v + (1 - d) * model_state[k] if v.is_floating_point() else model_state[k].clone()
            for k, v in ema_state.items()}
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_first_update(ema_update):
    import torch
    new = ema_update({"w": torch.zeros(2)}, {"w": torch.ones(2)}, 0)
    assert torch.allclose(new["w"], torch.full((2,), 0.9)), "at t = 0 the decay is (1 + 0) / (10 + 0) = 0.1"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_against_library(ema_update):
    import torch
    import effnet_edu as ee
    from effnet_edu.train import EMA
    torch.manual_seed(3)
    model = ee.build(width=0.25, depth=0.25, resolution=32, num_classes=3)
    for decay in (0.9999, 0.5):
        ema = EMA(model, decay)
        mine = {k: v.clone() for k, v in model.state_dict().items()}
        for t in range(5):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.1)
            model.train()(torch.randn(4, 3, 32, 32))  # moves BatchNorm's running statistics
            ema.update(model)
            mine = ema_update(mine, model.state_dict(), t, decay)
        for k, v in ema.state_dict().items():
            assert torch.allclose(mine[k].to(v.dtype), v, atol=1e-5), f"{k} after 5 updates with decay {decay}"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# **Q4 (3 points).** Write `smoothed_cross_entropy(logits, target, smoothing=0.1)`: cross-entropy against the
# smoothed target `(1 - smoothing) * one_hot + smoothing / num_classes` (every class, the true one included),
# averaged over the batch. Use `log_softmax`. (`effnet_edu.train` uses `nn.CrossEntropyLoss(label_smoothing=0.1)`,
# which is what the hidden tests compare with.)

# %% [raw]
# # BEGIN SOLUTION

# %%
def smoothed_cross_entropy(logits, target, smoothing=0.1):
    # BEGIN SOLUTION
    logp = F.log_softmax(logits, dim=1)
    n = logits.shape[1]
    soft = torch.full_like(logp, smoothing / n)
    soft.scatter_(1, target[:, None], 1 - smoothing + smoothing / n)
    return -(soft * logp).sum(1).mean()
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_no_smoothing(smoothed_cross_entropy):
    import torch
    import torch.nn.functional as F
    logits, target = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(smoothed_cross_entropy(logits, target, 0.0), F.cross_entropy(logits, target)), \
        "without smoothing it is the plain cross-entropy"

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q4_against_torch(smoothed_cross_entropy):
    import torch
    from effnet_edu.train import TrainConfig
    g = torch.Generator().manual_seed(5)
    for smoothing in (TrainConfig().label_smoothing, 0.3):
        for n in (3, 1000):
            logits, target = torch.randn(8, n, generator=g) * 3, torch.randint(0, n, (8,), generator=g)
            want = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, target)
            got = smoothed_cross_entropy(logits, target, smoothing)
            assert torch.allclose(got, want, atol=1e-5), f"smoothing {smoothing}, {n} classes"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## A short run
#
# Put the pieces together on a tiny EfficientNet (width 0.25, depth 0.25, 32 px) and a generated 4-class
# problem (each class is a colour tint plus noise), for 60 steps of batch 32, with peak learning rate 0.05,
# one warmup "epoch" of 10 steps and a decay every 10 steps. `train_tiny` below is given; it calls your functions.

# %%
def make_batch(n, generator):
    labels = torch.randint(0, 4, (n,), generator=generator)
    tints = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])[labels]  # (n, 3)
    images = 0.5 * tints[:, :, None, None] + torch.randn(n, 3, 32, 32, generator=generator)
    return images, labels


def train_tiny(steps=60, batch=32, peak_lr=0.05, seed=0):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ee.build(width=0.25, depth=0.25, resolution=32, num_classes=4, dropout=0.0, drop_path=0.0)
    params = [p for p in model.parameters()]
    ms = [torch.ones_like(p) for p in params]
    mom = [torch.zeros_like(p) for p in params]
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for step in range(steps):
        images, labels = make_batch(batch, generator)
        loss = smoothed_cross_entropy(model(images), labels)
        model.zero_grad()
        loss.backward()
        lr = lr_at(step, 10, peak_lr, warmup_epochs=1, decay_epochs=1, decay_rate=0.97)
        with torch.no_grad():
            for i, p in enumerate(params):
                new_p, ms[i], mom[i] = rmsprop_tf_step(p, p.grad, ms[i], mom[i], lr)
                p.copy_(new_p)
        ema = ema_update(ema, model.state_dict(), step, decay=0.99)
        losses.append(float(loss))
    return losses

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# **Q5 (2 points).** Run `train_tiny()` and set `losses` to what it returns; plot the loss curve (a line per step
# and, if you like, a running mean). The loss should fall clearly below its starting value (about ln 4 = 1.39).

# %% [raw]
# # BEGIN SOLUTION

# %%
losses = None
# BEGIN SOLUTION
losses = train_tiny()
import matplotlib.pyplot as plt

plt.figure(figsize=(5, 3))
plt.plot(losses, label="loss per step")
plt.xlabel("step")
plt.ylabel("label-smoothed cross-entropy")
plt.legend();
# END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q5_learns(losses):
    import math
    assert isinstance(losses, (list, tuple)) and len(losses) == 60, "the 60 losses of train_tiny()"
    assert all(math.isfinite(l) for l in losses), "the loss diverged"
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, f"the loss did not fall: {first:.3f} -> {last:.3f}"

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
# **Q6 (3 points, written).** (a) `torch.optim.RMSprop` starts the squared-gradient average at 0 and adds eps
# outside the square root. With eps = 1e-3, what would the very first step size be for a parameter whose gradient
# is 1e-4, in TF's version and in PyTorch's (lr = 0.016, no momentum yet)? What does that say about porting the
# recipe? (b) Why evaluate the EMA weights rather than the last ones, and why does TF warm up the EMA's decay?

# %% [raw]
# # BEGIN SOLUTION

# %% [markdown]
# **Rubric (3 points).**
# - (a) 1 point: TF: ms = 0.9 + 0.1 * 1e-8 ~ 0.9, step = 0.016 * 1e-4 / sqrt(0.9 + 0.001) ~ 1.7e-6 (tiny).
#   PyTorch: ms = 0.1 * 1e-8 = 1e-9, step = 0.016 * 1e-4 / (sqrt(1e-9) + 1e-3) ~ 1.6e-3, about 1000 x larger.
# - (a) 1 point: the same hyper-parameters mean very different optimisers; a TF recipe needs TF's RMSProp (or
#   retuned eps / warmup) to reproduce, which is why the official code's details matter.
# - (b) 1 point: the EMA averages out the noise of the last steps of a high learning rate (a cheap
#   Polyak average), usually giving better and more stable validation accuracy; the warmup
#   min(decay, (1+t)/(10+t)) lets the average forget the random initial weights quickly instead of being
#   dominated by them for ~1/(1-0.9999) = 10,000 steps. Both halves needed for the point.

# %% [raw]
# # END SOLUTION

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Before you hand in
# Restart the kernel and run all cells; every `grader.check` should pass. Hand in this `.ipynb`, keeping its name.
