"""The optimiser step and the EMA update run as torch._foreach ops (a few fused kernels on CUDA instead of
hundreds of tiny ones); they must compute exactly what the per-parameter formulas compute, bit for bit."""

import copy

import torch
from torch import nn

from effnet_edu import build
from effnet_edu.train import EMA, RMSpropTF, param_groups


def rmsprop_tf_loop(params_and_grads, state, lr, decay=0.9, momentum=0.9, eps=1e-3, weight_decay=0.0):
    """The docstring's formulas, one parameter at a time, as the step was written before it used _foreach ops."""
    for p, g in params_and_grads:
        g = g.add(p, alpha=weight_decay) if weight_decay else g  # as the loop version before foreach
        ms, mom = state.setdefault(id(p), (torch.ones_like(p), torch.zeros_like(p)))
        ms.mul_(decay).addcmul_(g, g, value=1 - decay)
        mom.mul_(momentum).addcdiv_(g, (ms + eps).sqrt(), value=lr)
        p.sub_(mom)


def test_foreach_rmsprop_is_bit_identical_to_the_per_parameter_formulas():
    torch.manual_seed(0)
    model = build(width=0.25, depth=0.25, resolution=32, num_classes=5)
    oracle = copy.deepcopy(model)
    opt = RMSpropTF(param_groups(model, 1e-2), lr=0.05)
    decayed = {id(p) for p in param_groups(oracle, 1e-2)[0]["params"]}
    state = {}
    for step in range(3):
        grads = [torch.randn_like(p) for p in model.parameters()]
        grads[step].zero_()  # a zero gradient ...
        for (p, q, g) in zip(model.parameters(), oracle.parameters(), grads):
            p.grad = g.clone()
        model.classifier.bias.grad = None  # ... and a parameter without one (skipped, as torch's optimisers do)
        opt.step()
        with torch.no_grad():
            for q, g in zip(oracle.parameters(), grads):
                if q is oracle.classifier.bias:
                    continue
                rmsprop_tf_loop([(q, g)], state, 0.05, weight_decay=1e-2 if id(q) in decayed else 0.0)
    for (name, p), q in zip(model.named_parameters(), oracle.parameters()):
        assert torch.equal(p, q), name


def test_foreach_ema_is_bit_identical_to_lerp_per_tensor():
    # The oracle is a per-tensor lerp (the update before it was fused): bit-equality shows that no tensor is
    # skipped, BN statistics are averaged too and integer buffers copied.
    torch.manual_seed(0)
    model = build(width=0.25, depth=0.25, resolution=32, num_classes=5)
    ema = EMA(model, decay=0.99)
    reference = copy.deepcopy(model.state_dict())
    for t in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3, 32, 32))  # BN statistics and num_batches_tracked move
        d = min(0.99, (1 + t) / (10 + t))
        for key, v in model.state_dict().items():
            if v.is_floating_point():
                reference[key] = reference[key].lerp(v, 1 - d)  # as the per-tensor update before _foreach
            else:
                reference[key] = v.clone()
        ema.update(model)
    for key, v in ema.state_dict().items():
        assert torch.equal(v, reference[key]), key
    assert ema.state_dict()["stem.bn.num_batches_tracked"].item() == 3
