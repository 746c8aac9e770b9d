"""The notebooks' exercise and prediction checks (effnet_edu_widgets.checks) against independent oracles: hand
formulas, torchvision's B0 and built modules. A check must accept the right answer, reject a wrong one and
never raise on a missing one."""

import math

import torch
import torchvision

import effnet_edu as ee
from effnet_edu_widgets import checks


def test_unanswered_checks_print_and_do_not_raise(capsys):
    assert checks.check_most_params_block(None) is False
    assert checks.check_stage_costs(None, None) is False
    assert "not answered yet" in capsys.readouterr().out


def test_depthwise_kernel_ratio_is_k_squared():
    assert checks.check_depthwise_kernel_ratio((5 / 3) ** 2)
    assert not checks.check_depthwise_kernel_ratio(5 / 3)


def test_most_params_block_against_built_modules():
    config = ee.resolve("b0")
    numel = {s.name: sum(p.numel() for p in ee.MBConv(s, config).parameters()) for s in ee.blocks(config)}
    best = max(numel, key=numel.get)
    assert checks.check_most_params_block(best)
    assert not checks.check_most_params_block("stage2/block0")


def test_head_share_against_torchvision():
    tv = torchvision.models.efficientnet_b0(weights=None)
    head = sum(p.numel() for m in (tv.features[8], tv.classifier) for p in m.parameters())
    share = head / sum(p.numel() for p in tv.parameters())
    assert checks.check_head_share(share)
    assert not checks.check_head_share(share / 2)


def test_rows_changed_and_gpipe_and_initial_loss():
    assert checks.check_rows_changed(range(1, 10))  # every stage's input resolution scales with the input
    assert not checks.check_rows_changed([1])
    assert checks.check_gpipe_ratio(556e6 / 66_347_960)  # Table 2: GPipe 556M; B7's exact count (torchvision)
    assert checks.check_initial_loss(math.log(4))
    assert not checks.check_initial_loss(1.0)


def test_bytes_prediction_reveals_se():
    # SE reads the expanded tensor twice and writes it once for ~no multiply-adds (see accounting.block_count)
    assert checks.check_bytes_prediction("se")
    assert not checks.check_bytes_prediction("expand")


def test_scaling_prediction_uses_the_counted_growth():
    from torch.utils.flop_counter import FlopCounterMode

    def macs(config):
        with torch.device("meta"):
            model = ee.EfficientNet(config).eval()
            x = torch.empty(1, 3, config.resolution, config.resolution)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        return counter.get_total_flops() // 2

    growth = macs(ee.resolve(phi=1)) / macs(ee.resolve("b0"))
    assert checks.check_scaling_prediction(growth)
    assert not checks.check_scaling_prediction(1.92 * 0.8)


def test_elastic_macs_per_param_against_built_models(capsys):
    # Oracle: built networks, counted by torch (parameters) and the flop counter (multiply-adds = FLOPs / 2).
    from torch.utils.flop_counter import FlopCounterMode

    def ratio(w, d, r):
        model = ee.build(width=0.25 * w, depth=0.25 * d, num_classes=16).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, r, r))
        return counter.get_total_flops() / 2 / sum(p.numel() for p in model.parameters())

    corners = {"smallest": (1, 1, 64), "largest": (2, 2, 128), "widest at 64 px": (2, 1, 64),
               "deepest at 64 px": (1, 2, 64), "C0 at 128 px": (1, 1, 128)}
    best = max(corners, key=lambda k: ratio(*corners[k]))
    assert checks.check_elastic_macs_per_param(best)
    assert not checks.check_elastic_macs_per_param("largest")
    assert checks.check_elastic_macs_per_param(None) is False
    unanswered = capsys.readouterr().out.splitlines()[-1]
    assert "not answered yet" in unanswered and "MACs per parameter (" not in unanswered  # no answer table shown
