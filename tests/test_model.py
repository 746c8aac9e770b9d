"""Our network against the exact parameter counts (``reference.py``) and the reference implementations' outputs."""

import pytest
import torch
import torchvision

from effnet_edu import FAMILY, build, from_timm, from_torchvision, resolve
from effnet_edu.weights import export_state_dict, load_checkpoint, lite_checkpoint, load_weights

from reference import PARAMS

@pytest.mark.parametrize("name", FAMILY)  # a new member needs its exact count in reference.py
def test_parameter_counts_match_reference(name):
    with torch.device("meta"):  # shapes only: counting B7's parameters needs no memory and no initialisation
        model = build(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]




def test_features_and_stages():
    model = build("b0").eval()
    x = torch.randn(1, 3, 224, 224)
    feats = model.stage_features(x)
    assert list(feats) == [f"stage{i}" for i in range(1, 10)]
    # Table 1: output of each stage = input resolution of the next
    assert [f.shape[-1] for f in feats.values()] == [112, 112, 56, 28, 14, 14, 7, 7, 7]
    assert [f.shape[1] for f in feats.values()] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert torch.equal(model.forward_features(x), feats["stage9"])
    assert model.cam_layer is model.head


def test_stochastic_depth_is_per_sample_and_off_in_eval():
    model = build("b0", drop_path=0.5)
    block = model.stages.stage3[1]  # residual block with drop rate 0.5 * 2/16
    assert block.spec.residual and block.drop_path == pytest.approx(0.5 * 2 / 16)
    block.drop_path = 0.5
    x = torch.randn(64, 24, 8, 8)
    block.eval()
    with torch.no_grad():
        branch = block.project(block.se(block.depthwise(block.expand(x))))
        assert torch.allclose(block(x), x + branch)
        block.train()
        torch.manual_seed(0)
        y = block.project(block.se(block.depthwise(block.expand(x))))  # BN in train mode: recompute per call
        torch.manual_seed(0)
        out = block(x)
    delta = (out - x).flatten(1)
    dropped = delta.abs().amax(1) == 0
    assert 10 < dropped.sum() < 54  # some samples dropped, some kept, per sample
    kept = ~dropped
    assert torch.allclose(delta[kept], y.flatten(1)[kept] * 2, atol=1e-5)  # survivors scaled by 1/(1-p)


def _compare(reference, ours, resolution, batch=2):
    torch.manual_seed(1)
    x = torch.randn(batch, 3, resolution, resolution)
    with torch.no_grad():
        return (reference.eval()(x) - ours.eval()(x)).abs().max().item()


# B0 at its native 224; the bigger members at small inputs (the conversion does not depend on resolution).
@pytest.mark.parametrize("name, resolution", [("b0", 224), ("b1", 64), ("b2", 64)] + [
    pytest.param(name, 64, marks=pytest.mark.slow) for name in ("b3", "b4", "b5", "b6", "b7")])
def test_torchvision_equivalence(name, resolution, randomize):
    torch.manual_seed(0)
    reference = randomize(getattr(torchvision.models, f"efficientnet_{name}")())
    ours = from_torchvision(reference, name)
    assert _compare(reference, ours, resolution) <= 1e-4


@pytest.mark.parametrize("arch", ["tf_efficientnet_b0", "efficientnet_b0"])
def test_timm_equivalence(arch, randomize):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = randomize(timm.create_model(arch))
    ours = from_timm(reference, "b0")
    assert ours.config.same_padding == arch.startswith("tf_")
    # odd input size: TF "SAME" padding differs from symmetric padding there, so a wrong choice would show
    assert _compare(reference, ours, 225) <= 1e-4
    assert _compare(reference, ours, 224) <= 1e-4


def test_lite_checkpoint_matches_timm_tf_lite0():
    timm = pytest.importorskip("timm")
    ours = load_weights(build("lite0", bn_eps=1e-3, same_padding=True), load_checkpoint(lite_checkpoint("lite0")))
    reference = timm.create_model("tf_efficientnet_lite0")
    reference.load_state_dict(export_state_dict(ours, "timm"))  # the real ImageNet weights, in timm's names
    assert _compare(reference, ours, 224) <= 1e-4
    # and the other way round, from timm's module into ours
    assert _compare(reference, from_timm(reference, "lite0"), 224) <= 1e-4


def test_symmetric_padding_would_change_lite_outputs():
    """Why the Lite weights need SAME padding: with symmetric padding the logits move far beyond 1e-4."""
    state = load_checkpoint(lite_checkpoint("lite0"))
    same = load_weights(build("lite0", same_padding=True), state)
    symmetric = load_weights(build("lite0", same_padding=False), state)
    assert _compare(same, symmetric, 224) > 1e-2


def test_train_mode_forward_backward():
    model = build("b0", num_classes=10, resolution=64)
    out = model(torch.randn(4, 3, 64, 64))
    out.sum().backward()
    assert out.shape == (4, 10)
    assert all(p.grad is not None for p in model.parameters())


def test_compound_point_builds():
    config = resolve(phi=0.5)
    model = build(phi=0.5)
    assert model.config == config
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_initialisation_follows_the_official_code():
    """TF's conv initialiser: normal(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups (k*k for a depthwise
    kernel); the FC layer: uniform(+-1/sqrt(classes)); BatchNorm: gamma 1, beta 0."""
    torch.manual_seed(0)
    model = build("b0")
    depthwise = model.stages.stage7[0].depthwise.conv  # 5x5, 672 channels
    assert depthwise.weight.std().item() == pytest.approx((2 / 25) ** 0.5, rel=0.05)
    expand = model.stages.stage7[0].expand.conv  # 1x1, 112 -> 672
    assert expand.weight.std().item() == pytest.approx((2 / 672) ** 0.5, rel=0.05)
    assert model.classifier.weight.abs().max().item() <= 1000 ** -0.5
    assert model.classifier.weight.abs().max().item() > 0.9 * 1000 ** -0.5
    assert torch.all(model.head.bn.weight == 1) and torch.all(model.head.bn.bias == 0)
