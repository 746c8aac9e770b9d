"""The explorers driven from Python: set a control, read the readouts, compare with independent oracles.

Oracles: the parameters of the network ``effnet_edu.build`` makes (``numel``), its multiply-adds as PyTorch's
``FlopCounterMode`` counts them (2 FLOPs per multiply-add), its stage shapes from ``stage_features``, all on the
``meta`` device (shapes only, no memory, so phi = 3.5 costs well under a second); the exact Table 2 counts of
``reference.py``. Widget observers fire synchronously, so no kernel or browser is needed here.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee
from effnet_edu.scaling import ScalingError
from effnet_edu_widgets import BlockExplorer, ScalingExplorer
from effnet_edu_widgets.block import block_view
from effnet_edu_widgets.scaling import MODES, budget_beta, scaling_state

from reference import PARAMS

def number(html: str) -> int:
    """The first exact integer (with thousands separators) in a readout."""
    match = re.search(r"\d{1,3}(?:,\d{3})+|\d+", re.sub(r"<[^>]+>", "", html).split(" ", 1)[1])
    return int(match.group(0).replace(",", ""))


def oracle(**kwargs):
    """Params, MACs and stage shapes of the network effnet_edu.build makes, counted by PyTorch on meta tensors."""
    with torch.device("meta"):
        model = ee.build(**kwargs).eval()
        r = model.config.resolution
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            features = model.stage_features(torch.empty(1, 3, r, r))
            model.forward_head(features["stage9"])
    layers = {name: len(stage) for name, stage in model.stages.named_children()}
    return (sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2,
            {k: tuple(v.shape[1:]) for k, v in features.items()}, layers)


@pytest.fixture(scope="module")
def explorer():
    return ScalingExplorer(phi=1.0)


@pytest.mark.parametrize("phi", [0.0, 1.05, 3.5])
def test_readouts_equal_the_built_network(explorer, phi):
    explorer.mode.value = MODES[0]
    explorer.alpha.value, explorer.beta.value, explorer.gamma.value = 1.2, 1.1, 1.15
    explorer.phi.value = phi
    assert explorer.error.value == ""
    params, macs, shapes, layers = oracle(phi=phi)
    assert number(explorer.labels["params"].value) == params
    assert number(explorer.labels["macs"].value) == macs
    assert number(explorer.labels["flops"].value.rsplit("=", 1)[1]) == 2 * macs  # labelled FLOPs = 2 x MACs
    config = ee.resolve(phi=phi)
    assert f"r = {config.resolution} px" in explorer.labels["resolution"].value
    assert f"d = {1.2 ** phi:.3f}" in explorer.labels["depth"].value
    assert f"w = {1.1 ** phi:.3f}" in explorer.labels["width"].value
    assert explorer.state.formula.params == params and explorer.state.phi == phi


def test_stage_table_matches_the_built_network(explorer):
    explorer.mode.value = MODES[0]
    explorer.phi.value = 2.0
    _, _, shapes, layers = oracle(phi=2.0)
    rows = re.findall(r"<tr><td>(\d)</td><td>[^<]*</td><td>(\d+)x\d+</td><td>(\d+)</td><td>(\d+)</td>",
                      explorer.table.value)
    assert [int(s) for s, *_ in rows] == list(range(1, 10))
    resolution = ee.resolve(phi=2.0).resolution
    for stage, res, channels, n in rows:
        out_channels, out_res, _ = shapes[f"stage{stage}"]
        assert int(channels) == out_channels
        if stage not in ("1", "9"):
            assert int(n) == layers[f"stage{stage}"]
        if stage == "1":
            assert int(res) == resolution
    # every stage's input resolution is the previous stage's output resolution
    for (stage, res, *_), previous in zip(rows[1:], rows[:-1]):
        assert int(res) == shapes[f"stage{previous[0]}"][1]


def test_constraint_is_marked(explorer):
    explorer.mode.value = MODES[0]
    explorer.alpha.value, explorer.beta.value, explorer.gamma.value = 1.2, 1.1, 1.15
    text = explorer.labels["constraint"].value
    assert f"{1.2 * 1.1**2 * 1.15**2:.4f}" in text and "meets ~2" in text  # 1.9203
    explorer.alpha.value = 1.5
    assert "misses ~2" in explorer.labels["constraint"].value
    explorer.alpha.value = 1.2


def test_released_mode_snaps_and_shows_both(explorer):
    explorer.phi.value = 3.4
    explorer.mode.value = MODES[1]
    try:
        assert explorer.phi.value == 3.0
        assert number(explorer.labels["params"].value) == PARAMS['b3']
        assert "released B3" in explorer.labels["model"].value
        formula_params, *_ = oracle(phi=3.0)
        assert f"{PARAMS['b3']:,}" in explorer.comparison.value
        assert f"{formula_params:,}" in explorer.comparison.value  # side by side: the mismatch is visible
        explorer.phi.value = 7.0
        assert number(explorer.labels["params"].value) == PARAMS['b7']
    finally:
        explorer.mode.value = MODES[0]
    assert explorer.comparison.value == "" and explorer.phi.step == 0.05


def test_bad_value_shows_error_and_keeps_last_view(explorer):
    explorer.mode.value = MODES[0]
    explorer.alpha.value = 1.2
    explorer.phi.value = 1.5
    before = {name: label.value for name, label in explorer.labels.items()}
    image, state = explorer.image.value, explorer.state
    explorer.alpha.value = 0.9  # the paper requires alpha >= 1
    assert "alpha must be &gt;= 1, got 0.9" in explorer.error.value  # HTML-escaped ">="
    explorer.phi.value = 2.0  # still invalid: nothing else changes
    assert "alpha must be &gt;= 1" in explorer.error.value
    assert {name: label.value for name, label in explorer.labels.items()} == before
    assert explorer.image.value == image and explorer.state is state
    explorer.alpha.value = 1.2
    assert explorer.error.value == ""
    assert number(explorer.labels["params"].value) == oracle(phi=2.0)[0]


def test_plot_updates(explorer):
    explorer.mode.value = MODES[0]
    explorer.phi.value = 1.0
    first = bytes(explorer.image.value)
    explorer.phi.value = 4.0
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and bytes(explorer.image.value) != first


@pytest.mark.parametrize("kwargs, message", [
    (dict(phi=1, alpha=0.5), "alpha must be >= 1"),
    (dict(phi=1, gamma=float("nan")), "finite"),
    (dict(phi=-1), "phi must be >= 0"),
    (dict(phi=7.5), "between 0 and 7"),
    (dict(phi=1, mode="both"), "mode must be one of"),
])
def test_pure_function_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scaling_state(**kwargs)


def test_block_explorer_matches_the_module():
    explorer = BlockExplorer(in_channels=24, out_channels=40, expand_ratio=6, kernel_size=5, stride=2,
                             se_ratio=0.25, resolution=56)
    # The same block as B0's stage4/block0, built as a module and counted by PyTorch.
    config = ee.resolve("b0")
    spec = next(b for b in ee.blocks(config) if b.name == "stage4/block0")
    module = ee.MBConv(spec, config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.zeros(1, 24, 56, 56))
    flops = counter.get_flop_counts()
    assert explorer.block.params == sum(p.numel() for p in module.parameters())
    assert explorer.block.macs == counter.get_total_flops() // 2
    for part in ("expand", "depthwise", "project"):
        assert explorer.block.part(part).macs == sum(flops[f"MBConv.{part}"].values()) // 2
        assert explorer.block.part(part).params == sum(p.numel() for p in getattr(module, part).parameters())
    assert f"<b>params</b> {explorer.block.params:,}" in explorer.totals.value
    # The point of the widget: depthwise has a larger share of bytes moved than of MACs.
    dw = explorer.block.part("depthwise")
    assert dw.bytes_moved / explorer.block.bytes_moved > dw.macs / explorer.block.macs
    assert "Depthwise k5x5" in explorer.summary.value


def test_block_explorer_bad_values_keep_last_view():
    explorer = BlockExplorer()
    totals, block = explorer.totals.value, explorer.block
    explorer.in_channels.value = 0
    assert "in_channels must be a positive whole number" in explorer.error.value
    explorer.in_channels.value = 40
    explorer.resolution.value = -3
    assert "resolution" in explorer.error.value
    assert explorer.totals.value == totals and explorer.block == block
    explorer.resolution.value = 28
    assert explorer.error.value == ""
    explorer.expand_ratio.value = 1  # MBConv1: no expansion layer
    assert explorer.block.part("expand") is None
    with pytest.raises(ScalingError, match="kernel_size must be odd"):
        block_view(40, 40, 6, 4, 1, 0.25, 28)


def test_budget_lock_holds_the_constraint_and_beta_follows(explorer):
    explorer.mode.value = MODES[0]
    explorer.alpha.value, explorer.beta.value, explorer.gamma.value, explorer.phi.value = 1.2, 1.1, 1.15, 2.0
    explorer.lock.value = True
    try:
        assert explorer.beta.disabled and explorer.error.value == ""
        for alpha, gamma in ((1.2, 1.15), (1.4, 1.05), (1.0, 1.3)):
            explorer.alpha.value, explorer.gamma.value = alpha, gamma
            p = explorer.state.point
            assert (p.alpha, p.gamma) == (alpha, gamma)
            assert p.alpha * p.beta**2 * p.gamma**2 == pytest.approx(2.0, rel=1e-12)  # the budget, exactly
            assert p.beta == pytest.approx((2.0 / (alpha * gamma**2)) ** 0.5)
            assert explorer.beta.value == pytest.approx(p.beta)
            assert "budget locked" in explorer.labels["budget"].value
        # the network shown is the one the formula builds at these alpha, beta, gamma
        assert number(explorer.labels["params"].value) == oracle(phi=2.0, alpha=1.0, beta=p.beta, gamma=1.3)[0]
        state = explorer.state
        explorer.alpha.value = 1.8  # 1.8 * 1.3^2 = 3.04 > 2: beta would have to shrink
        assert "cannot hold alpha * beta^2 * gamma^2 = 2 with beta &gt;= 1" in explorer.error.value
        assert explorer.state is state
        explorer.alpha.value = 1.1
        assert explorer.error.value == ""
    finally:
        explorer.lock.value = False
        explorer.alpha.value, explorer.beta.value, explorer.gamma.value = 1.2, 1.1, 1.15
    assert not explorer.beta.disabled and "free" in explorer.labels["budget"].value


def test_budget_beta():
    # The paper's step-1 point spends 1.2 * 1.1^2 * 1.15^2 = 1.92 of the budget 2: at 1.92, beta comes back as 1.1.
    assert budget_beta(1.2, 1.15, budget=1.2 * 1.1**2 * 1.15**2) == pytest.approx(1.1, rel=1e-12)
    assert budget_beta(1.2, 1.15) == pytest.approx((2 / (1.2 * 1.15**2)) ** 0.5)  # 1.1226 holds exactly 2
    assert budget_beta(2.0, 1.0) == 1.0 and budget_beta(1.0, 1.0, budget=4.0) == 2.0
    with pytest.raises(ScalingError, match="lower alpha or gamma"):
        budget_beta(1.5, 1.2)
    with pytest.raises(ScalingError, match="alpha must be >= 1"):
        budget_beta(0.9, 1.0)
    with pytest.raises(ScalingError, match="budget must be a number >= 1"):
        budget_beta(1.0, 1.0, budget=0.5)
