"""The optimiser side of the recipe: RMSProp with TensorFlow's semantics, the warmup + staircase learning-rate
schedule, weight decay that skips BatchNorm, and the exponential moving average (EMA) used for evaluation."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp exactly as TF1's ``tf.train.RMSPropOptimizer`` (which the paper used), per parameter p, gradient g:

        g   = g + weight_decay * p                      # L2 term wd/2 * sum(p^2) of the official loss
        ms  = decay * ms + (1 - decay) * g^2            # ms starts at ONE, not zero
        mom = momentum * mom + lr * g / sqrt(ms + eps)  # eps INSIDE the sqrt; lr inside the momentum buffer
        p   = p - mom

    It differs from ``torch.optim.RMSprop`` (ms starts at 0, eps outside the sqrt, lr applied after the momentum):
    with eps = 1e-3 and ms = 1 the first steps are small instead of huge, which is why TF recipes don't port as is.
    """

    def __init__(self, params, lr=0.016, decay=0.9, momentum=0.9, eps=1e-3, weight_decay=0.0):
        if lr < 0 or not 0 <= decay < 1 or not 0 <= momentum < 1 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"RMSpropTF needs lr >= 0, 0 <= decay < 1, 0 <= momentum < 1, eps > 0, "
                             f"weight_decay >= 0; got lr={lr}, decay={decay}, momentum={momentum}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p]["square_avg"] = torch.ones_like(p)  # TF initialises the "ms" slot with ones
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            # The same arithmetic as the formulas above, on all of the group's tensors at once: torch's _foreach
            # ops launch one fused kernel per few dozen tensors on CUDA instead of six per parameter (B0 has 213
            # parameters: ~1,300 tiny launches per step otherwise). Same operations in the same order, so the
            # result is bit-identical to a per-parameter loop.
            grads = [p.grad for p in params]
            ms = [self.state[p]["square_avg"] for p in params]
            mom = [self.state[p]["momentum_buffer"] for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_mul_(ms, group["decay"])
            torch._foreach_addcmul_(ms, grads, grads, value=1 - group["decay"])
            denom = torch._foreach_add(ms, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_mul_(mom, group["momentum"])
            torch._foreach_addcdiv_(mom, grads, denom, value=group["lr"])
            torch._foreach_sub_(params, mom)
        return loss


def lr_at(step: int, steps_per_epoch: float, peak_lr: float, warmup_epochs: float = 5.0,
          decay_epochs: float = 2.4, decay_rate: float = 0.97) -> float:
    """Learning rate at optimizer step ``step`` (0-based), as the official code computes it:
    linear warmup ``peak * step / warmup_steps``, then ``peak * rate ** floor(step / decay_steps)`` (staircase).
    The staircase counts from step 0, not from the end of warmup: after 5 warmup epochs two 2.4-epoch decays have
    already happened, so training continues at peak * 0.97^2."""
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return peak_lr * decay_rate ** math.floor(step / (decay_epochs * steps_per_epoch))


def param_groups(model: nn.Module, weight_decay: float, decay_biases: bool = True,
                 backbone_lr_scale: float = 1.0) -> list[dict]:
    """Two groups: weights that get the L2 term, and BatchNorm parameters that don't (the official code filters
    variables named 'batch_normalization'). Biases (SE convs, FC) are decayed like the official code unless
    ``decay_biases`` is False (the common modern choice; it makes no measurable difference at wd = 1e-5).

    Parameters that need no gradient (a frozen backbone, ``transfer.freeze_backbone``) are left out: they are
    neither updated nor decayed. With ``backbone_lr_scale`` != 1 (fine-tuning pretrained weights more gently than
    the fresh classifier) each group is split in two, backbone and classifier. Every group carries ``lr_scale``:
    the trainer sets ``lr = schedule(step) * lr_scale``."""
    if not 0 < backbone_lr_scale <= 1:
        raise ValueError(f"backbone_lr_scale must be in (0, 1], got {backbone_lr_scale}")
    split = backbone_lr_scale != 1.0
    classifier = _classifier_ids(model) if split else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}  # (decayed, in the classifier) -> parameters
    for module in model.modules():
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            skip = is_bn or (name == "bias" and not decay_biases)
            groups.setdefault((not skip, id(p) in classifier), []).append(p)
    out = []
    for decayed in (True, False):
        for in_classifier in ((False, True) if split else (False,)):
            params = groups.get((decayed, in_classifier), [])
            if split and not params:
                continue
            out.append({"params": params, "weight_decay": weight_decay if decayed else 0.0,
                        "lr_scale": 1.0 if in_classifier or not split else backbone_lr_scale})
    return out


def _classifier_ids(model: nn.Module) -> set[int]:
    from .transfer import classifier_parameters  # the one definition of "the classifier"

    return {id(p) for p in classifier_parameters(model)}


class EMA:
    """Exponential moving average of a model's weights AND its BatchNorm running statistics, held in a frozen copy
    of the model (``ema.module``) that is used for evaluation:

        ema = d * ema + (1 - d) * value,   d = min(decay, (1 + t) / (10 + t)) with warmup (TF's num_updates)

    Integer buffers (BN's num_batches_tracked) are copied. Why not ``torch.optim.swa_utils.AveragedModel``: its
    state dict wraps keys in ``module.`` and adds ``n_averaged``; this one saves as a plain model state dict, which
    ``effnet-edu eval`` and ``weights.load_checkpoint`` read directly."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def current_decay(self) -> float:
        t = self.updates
        return min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        floats: list[list[torch.Tensor]] = [[], []]  # (ema tensors, model tensors)
        ints: list[list[torch.Tensor]] = [[], []]
        for ema_v, v in zip(self.module.state_dict().values(), model.state_dict().values()):
            pair = floats if ema_v.is_floating_point() else ints
            pair[0].append(ema_v)
            pair[1].append(v.detach().to(ema_v.dtype))
        # One fused lerp over all weights and BN statistics (hundreds of tensors) rather than one kernel each;
        # lerp_ computes ema + (1 - d) * (v - ema) either way.
        if floats[0]:
            torch._foreach_lerp_(floats[0], floats[1], 1 - d)
        if ints[0]:
            torch._foreach_copy_(ints[0], ints[1])  # BN's num_batches_tracked
        self.updates += 1

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict, updates: int) -> None:
        self.module.load_state_dict(state_dict)
        self.updates = updates
