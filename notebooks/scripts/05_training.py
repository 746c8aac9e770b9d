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
# # 05 · Training EfficientNet with the paper's recipe
#
# Section 5.2 of the paper gives the ImageNet recipe in one paragraph:
#
# > We train our EfficientNet models on ImageNet using similar settings as (Tan et al., 2019): RMSProp optimizer
# > with decay 0.9 and momentum 0.9; batch norm momentum 0.99; weight decay 1e-5; initial learning rate 0.256 that
# > decays by 0.97 every 2.4 epochs. We also use SiLU (Swish-1) activation, AutoAugment, and stochastic depth with
# > survival probability 0.8. [...] we linearly increase dropout ratio from 0.2 for EfficientNet-B0 to 0.5 for B7.
# > We reserve 25K randomly picked images from the training set as a minival set, and perform early stopping on
# > this minival.
#
# The official code fixes what the paragraph leaves out: warmup, epsilon *inside* the square root, the EMA of the
# weights, label smoothing. `effnet_edu.train` holds all of it in one dataclass, `TrainConfig`, whose defaults are
# the paper's values and whose every field is an option of `effnet-edu train`.
#
# **Learning objectives.** After this notebook you can
# 1. map each sentence of Section 5.2 to a field of `TrainConfig`, and name what the official code adds;
# 2. compute the learning rate at any step (warmup, then a staircase that counts from step 0);
# 3. explain why TF's RMSProp differs from `torch.optim.RMSprop` in its first steps;
# 4. run the same engine on a tiny dataset, read its loss and its held-out accuracy, and launch a full run.
#
# **Prerequisites.** Notebooks 02-03; an optimizer loop in PyTorch. **Time.** About 30 minutes (the live run takes
# under a minute on a laptop CPU), plus 30 for the exercises.

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
import math
import tempfile
from pathlib import Path

import torch

from effnet_edu.train import RMSpropTF, TrainConfig, describe, lr_at, train
from effnet_edu.train.data import make_demo_folder

torch.manual_seed(0)
torch.set_num_threads(1)

# %% [markdown]
# ## The recipe, field by field

# %% tags=["nbval-check-output"]
print(describe(TrainConfig()))

# %% [markdown]
# Next to the paper's words (the values come from the dataclass, the sentences from Section 5.2 and the official
# code):

# %% tags=["nbval-check-output"]
c = TrainConfig()
rows = [
    ("RMSProp optimizer with decay 0.9 and momentum 0.9", f"rmsprop_decay={c.rmsprop_decay}, momentum={c.momentum}"),
    ("(official code) epsilon 1e-3, inside the square root", f"eps={c.eps}"),
    ("batch norm momentum 0.99 (torch: momentum 0.01)", f"bn_momentum={c.bn_momentum}"),
    ("weight decay 1e-5 (official: L2, not on BatchNorm)", f"weight_decay={c.weight_decay}"),
    ("initial learning rate 0.256 (batch 4096)", f"lr_per_256 x 4096/256 = {c.lr_per_256 * 4096 / 256:.3f}"),
    ("decays by 0.97 every 2.4 epochs", f"decay_rate={c.decay_rate}, decay_epochs={c.decay_epochs}"),
    ("(official code) linear warmup over 5 epochs", f"warmup_epochs={c.warmup_epochs}"),
    ("stochastic depth with survival probability 0.8", f"drop_path={c.drop_path} (survival {1 - c.drop_path:.1f})"),
    ("AutoAugment", f"augment={c.augment!r}"),
    ("(official code) label smoothing 0.1", f"label_smoothing={c.label_smoothing}"),
    ("(official code) EMA 0.9999 of weights and BN statistics", f"ema_decay={c.ema_decay}"),
    ("reserve 25K images as minival, early stopping", f"minival_size={c.minival_size}"),
    ("(official code) 350 epochs", f"epochs={c.epochs:g}"),
]
for paper, ours in rows:
    print(f"{paper:<56} {ours}")

# %% [markdown]
# ## The learning rate, step by step
# The official code warms up linearly, then multiplies by 0.97 every 2.4 epochs, *counting from step 0*: after
# five warmup epochs, two decays ($\lfloor 5 / 2.4 \rfloor = 2$) have already happened, so the first step after
# warmup runs at $0.256 \cdot 0.97^2 = 0.2409$, not at the peak. ImageNet at batch 4096 with 25,000 images held
# out: 1,256,167 / 4096 = 306.7 steps per epoch, so warmup ends between steps 1533 and 1534 (5 x 306.7 = 1533.4).

# %% tags=["nbval-check-output"]
import math

steps_per_epoch, peak = 1_256_167 / 4096, c.lr_per_256 * 4096 / 256
warmup_steps, decay_steps = c.warmup_epochs * steps_per_epoch, c.decay_epochs * steps_per_epoch
for step, what in ((0, "start"), (round(steps_per_epoch), "epoch 1"),
                   (math.ceil(warmup_steps) - 1, "last warmup step"),
                   (math.ceil(warmup_steps), "first step after warmup (2 decays done)"),
                   (math.ceil(3 * decay_steps), "third decay (epoch 7.2)"),
                   (round(100 * steps_per_epoch), "epoch 100"), (round(349 * steps_per_epoch), "epoch 349")):
    print(f"step {step:>6} (epoch {step / steps_per_epoch:7.3f})  lr {lr_at(step, steps_per_epoch, peak):.5f}  {what}")

# %%
import matplotlib.pyplot as plt

steps = range(0, round(350 * steps_per_epoch), 50)
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.plot([s / steps_per_epoch for s in steps], [lr_at(s, steps_per_epoch, peak) for s in steps])
ax.set(xlabel="epoch", ylabel="learning rate", title="warmup, then x0.97 every 2.4 epochs (batch 4096)");

# %% [markdown]
# ## Why "TF semantics" matters for RMSProp
# TF starts the squared-gradient average at **one** and adds epsilon inside the square root; `torch.optim.RMSprop`
# starts at zero. With the same hyper-parameters, the first step of PyTorch's version is about
# $1/\sqrt{1 - 0.9} = 3.2$ times the learning rate, whatever the gradient's size; TF's is about
# $\text{lr} \cdot g$. One step from $w = 0$ with $g = 0.01$ and $\text{lr} = 0.1$:

# %% tags=["nbval-check-output"]
for name, make in (("TF (ours)", lambda p: RMSpropTF([p], lr=0.1)),
                   ("torch.optim.RMSprop", lambda p: torch.optim.RMSprop([p], lr=0.1, alpha=0.9, eps=1e-3,
                                                                         momentum=0.9))):
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = make(w)
    w.grad = torch.tensor([0.01], dtype=torch.float64)
    opt.step()
    print(f"{name:<20} first update {-w.item():.6f}")

# %% [markdown]
# ## A live run on a tiny dataset
# A generated ImageNet-style folder (4 classes, 200 training images each, a colour tint per class), a tiny model
# (width 0.25, depth 0.25, 32 px) and the same engine that trains B0 on ImageNet. Only the scale changes: a larger
# learning rate per image, a one-epoch warmup, no AutoAugment, and BatchNorm statistics that follow the batches
# faster (`bn_momentum=0.9`: with 0.99 the running statistics, which evaluation uses, need hundreds of steps to
# settle, and this run has 66).
#
# **How large a held-out set?** Model selection on a handful of images is noise. The minival here is 40 images
# (10 per class, `minival_size=40`: 5% of the 800 training images, the most the split takes before it falls back
# to 2%), and the val folder has 100 more. Even so, one minival image is 2.5 points of accuracy: differences of a
# few points between epochs mean nothing. Callbacks feed the plot while the run goes; the trainer knows nothing
# about plots.
#
# **Predict first.** With 4 classes, what loss does a model that guesses uniformly have? Write it down, then
# compare with the first steps below.

# %%
from IPython.display import display

workdir = Path(tempfile.mkdtemp())
data = make_demo_folder(workdir / "data", classes=4, per_class=200, val_per_class=25)
config = TrainConfig(data=str(data), output=str(workdir / "run"), width=0.25, depth=0.25, resolution=32,
                     epochs=6, batch_size=64, lr_per_256=0.2, warmup_epochs=1, bn_momentum=0.9, augment="none",
                     num_workers=0, minival_size=40,
                     progress=False, tensorboard=False, log_every=1, checkpoint_every=0)
history = {"step": [], "loss": [], "eval_step": [], "val_top1": []}
fig, ax = plt.subplots(figsize=(7, 2.8))
handle = display(fig, display_id=True)
plt.close(fig)


def on_step(state):
    history["step"].append(state["step"])
    history["loss"].append(state["loss"])


def on_eval(metrics):
    history["eval_step"].append(metrics["step"])
    history["val_top1"].append(metrics["val_top1"])
    ax.clear()
    loss = history["loss"]
    smooth = [sum(loss[max(0, i - 7): i + 1]) / len(loss[max(0, i - 7): i + 1]) for i in range(len(loss))]
    ax.plot(history["step"], loss, alpha=0.3, color="C0")
    ax.plot(history["step"], smooth, color="C0", label="training loss (mean of 8 steps)")
    ax.plot(history["eval_step"], [v / 100 for v in history["val_top1"]], "o-", label="val top-1 (EMA), /100")
    ax.set(xlabel="step", ylim=(0, None))
    ax.legend(loc="upper right")
    handle.update(fig)


result = train(config, callbacks={"on_step": on_step, "on_eval": on_eval})

# %% [markdown]
# The accuracies of such a short run swing from epoch to epoch (RMSProp with momentum at batch 64 is jumpy: the
# recipe was made for batch 4096), which is exactly why the paper keeps the *best* minival checkpoint and
# evaluates the EMA weights. The numbers below can differ by a few points on another CPU (floating-point sums in
# another order grow apart over 66 steps); the loss falling does not.

# %%
print(f"steps {result['step']}: best minival top-1 {result['best_minival_top1']:.0f}%, "
      f"final minival {result['minival_top1']:.0f}%, final val {result['val_top1']:.0f}%")

# %% tags=["nbval-check-output"]
first, last = sum(history["loss"][:8]) / 8, sum(history["loss"][-8:]) / 8
print(f"{len(history['loss'])} steps; the loss fell over the run: {last < first}")

# %% [markdown]
# The first losses are well *above* $\ln 4 = 1.386$, the loss of a uniform guess. That is the initialisation, not
# a bug: the official code (and torchvision) draws the FC weights from $U(-1/\sqrt{K}, 1/\sqrt{K})$ for $K$ classes.
# With $K = 1000$ the logits start tiny and the loss starts at $\ln 1000$; with $K = 4$ the same rule gives weights
# up to 0.5, logits spread over several units, and a confident random guess costs more than $\ln 4$.

# %% tags=["nbval-check-output"]
from effnet_edu import build
from effnet_edu_widgets.checks import check_initial_loss

check_initial_loss(None)  # your prediction for a uniform guess over 4 classes
print(f"first training loss above ln 4: {history['loss'][0] > math.log(4)}")
torch.manual_seed(0)
probe = torch.randn(16, 3, 32, 32)
for classes in (4, 1000):
    with torch.no_grad():
        logits = build(width=0.25, depth=0.25, resolution=32, num_classes=classes).train()(probe)
    print(f"{classes:>4} classes at initialisation: logit std {logits.std():.1f}, "
          f"loss {torch.nn.functional.cross_entropy(logits, torch.zeros(16, dtype=torch.long)):.1f} "
          f"(ln {classes} = {math.log(classes):.1f})")

# %% [markdown]
# The output folder holds `last.pt` (everything needed to resume exactly: weights, EMA, optimizer slots, RNG
# states, the position in the epoch), `best.pt` (the EMA weights with the best minival top-1, the paper's early
# stopping) and `log.csv` (TensorBoard events too, when `tensorboard=True`).

# %% tags=["nbval-check-output"]
checkpoint = torch.load(workdir / "run" / "last.pt", weights_only=True)
print(sorted(checkpoint))
print(sorted(p.name for p in (workdir / "run").iterdir()))

# %% [markdown]
# ## The full run
# One GPU (`--batch-size` is the *global* batch; the learning rate follows it, 0.016 per 256 images):
#
# ```bash
# effnet-edu train --model b0 --data /data/imagenet --output runs/b0 --batch-size 1024 --num-workers 16
# effnet-edu train --model b0 --data /data/imagenet --output runs/b0 --resume     # after an interruption
# effnet-edu eval --weights runs/b0/best.pt --data /data/imagenet                  # top-1 / top-5 on val
# ```
#
# Eight GPUs on one machine (DDP, one process per GPU; several machines: `--nnodes N --rdzv-endpoint HOST:PORT`).
# Each process needs enough loader workers to decode what its GPU trains on (the cost cell below counts them):
#
# ```bash
# torchrun --standalone --nproc_per_node 8 -m effnet_edu train --model b0 --data /data/imagenet \
#     --output runs/b0 --batch-size 4096 --sync-bn --num-workers 28
# ```
#
# ## What it costs
# Measured with `benchmarks/bench_train.py --device cuda` on one NVIDIA H200 with 16 cores (2026-11-27; numbers
# and commands in `benchmarks/README.md`): our B0 trains at **5,121 img/s** eager and **5,905 img/s** with
# torch.compile (forward + backward + RMSProp, bf16, channels_last, batch 256, synthetic data; timm's B0 on the
# same GPU with the same optimizer: 5,086 img/s). Real JPEGs must also be decoded and augmented: with AutoAugment,
# 16 loader workers fed **3,000 img/s** end to end (~188 img/s per worker), so the CPU side, not the GPU, sets the
# pace unless each GPU gets ~28 cores. 350 epochs of the 1,256,167 training images left after the minival split:

# %% tags=["nbval-check-output"]
images = 350 * 1_256_167
step_rate, compiled_rate = 5121, 5905  # img/s of one GPU on synthetic data (eager, torch.compile)
per_worker = 3000 / 16  # img/s one loader worker decodes + augments (CPU path, end to end)
print(f"loader workers to keep one GPU fed: {math.ceil(step_rate / per_worker)} (eager), "
      f"{math.ceil(compiled_rate / per_worker)} (compiled)")
for gpus, workers in ((1, 16), (8, 8), (8, 28)):
    rate = gpus * min(step_rate, workers * per_worker)  # the slower of GPU and loader sets the pace
    print(f"{gpus} GPU(s) x {workers:>2} workers: {rate:7,.0f} img/s -> {images / rate / 3600:5.1f} h")
print(f"GPU-bound floor, 8 GPUs, torch.compile: {images / (8 * compiled_rate) / 3600:5.1f} h")

# %% [markdown]
# ## Exercises
# Difficulty: ★ quick, ★★ needs a few lines of code, ★★★ open-ended. Model answers are collapsed below.
#
# 1. ★ Train the tiny model with `augment="autoaugment"`. Why does the loss fall more slowly in a few dozen steps?
# 2. ★★ Set `ema_warmup=False` and look at the val accuracy of the short run. What does `ema_decay=0.9999` mean
#    after 50 steps?
# 3. ★★ Kill a run halfway (interrupt the cell) and run it again with `resume=True`: compare `last.pt` with an
#    uninterrupted run's (`tests/test_train_engine.py` does this and finds them bit-identical).
#
# <details><summary>Model answers</summary>
#
# **1.** AutoAugment makes every training image harder (colour, geometry and contrast changes), so the training
# loss, measured on augmented images, falls more slowly; its benefit (less overfitting) shows only over long runs
# on real data. Here the class is the colour tint, which colour operations partly destroy.
#
# **2.** An EMA with decay $\beta$ averages over roughly the last $1/(1-\beta)$ steps: 10,000 steps for 0.9999.
# After 50 steps the EMA weights are still $0.9999^{50} \approx 99.5\%$ the random initial weights, so the EMA
# model is near chance. The official code's warmup uses $\min(\beta, (1 + t)/(10 + t))$ so that early EMAs follow
# the weights.
#
# **3.** Identical bytes: `last.pt` stores the weights, EMA, optimizer slots, RNG states and the position in the
# epoch, and the sampler replays the same order, so a resumed run is the same computation.
# </details>
#
# ## Summary
# - `TrainConfig` holds Section 5.2's recipe and what the official code adds (warmup, epsilon inside the square
#   root, EMA, label smoothing, 350 epochs); every field is an option of `effnet-edu train`.
# - The learning rate warms up over 5 epochs, then steps by 0.97 every 2.4 epochs counted from step 0 (the
#   first post-warmup step already runs at $0.97^2$ of the peak).
# - A held-out set decides model selection; with 40 images one image is 2.5 points, so small differences are noise.
# - For ImageNet: how to prepare the folders, what a full run should reach (B0: 77.1% top-1, 93.3% top-5, the
#   paper's Table 2) and what it costs are in the repository's `docs/imagenet.md`.
