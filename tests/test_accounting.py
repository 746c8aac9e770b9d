"""Exactness of effnet_edu.accounting against independent oracles.

Oracles: the built network itself (``sum(p.numel())`` per module), ``torch.utils.flop_counter.FlopCounterMode``
(2 FLOPs per multiply-add, so MACs = its count / 2), forward hooks and ``stage_features`` for activation
shapes, the reference numbers of ``reference.py`` (exact Table 2 params, the conv+linear multiply-adds), and
formulas derived by hand for one block. Big networks are built on the ``meta`` device: real modules and real
shape propagation, no memory and no arithmetic, so counting B7 at 600px takes a fraction of a second; one
real CPU forward (B0 at 224) checks that meta and CPU give the same count.
"""

import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee
from effnet_edu import accounting
from effnet_edu.accounting import block_count, count, flops_growth, growth_table
from effnet_edu.arch import FAMILY, resolve
from effnet_edu.cli import main
from effnet_edu.model import MBConv

from reference import MACS_BILLIONS, PARAMS

def build_meta(**kwargs):
    with torch.device("meta"):
        return ee.build(**kwargs).eval()


def traced(model, resolution, device="meta"):
    """(total MACs, {module name: MACs}) from PyTorch's flop counter on one image."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution, device=device))
    per_module = {k.removeprefix("EfficientNet."): sum(v.values()) // 2
                  for k, v in counter.get_flop_counts().items() if k.startswith("EfficientNet.")}
    return counter.get_total_flops() // 2, per_module


def numel(module):
    return sum(p.numel() for p in module.parameters())


def random_points(n=10, seed=0):
    """Seeded scaling points: explicit multipliers (some Lite, some with TF padding) and compound ones."""
    rng = random.Random(seed)
    points = []
    for i in range(n):
        if i % 2 == 0:
            kwargs = dict(width=round(rng.uniform(0.25, 2.2), 3), depth=round(rng.uniform(0.3, 3.2), 3),
                          resolution=rng.randint(32, 320))
            if i % 4 == 0:
                kwargs.update(lite=True, same_padding=True)
        else:
            kwargs = dict(phi=round(rng.uniform(0, 3), 3), alpha=round(rng.uniform(1, 1.4), 3),
                          beta=round(rng.uniform(1, 1.3), 3), gamma=round(rng.uniform(1, 1.3), 3))
        kwargs["num_classes"] = rng.choice([1000, 10, 37, 101])
        points.append(kwargs)
    return points


# Every member and seeded random points (the fast loop, -m "not slow", keeps B0, Lite0 and four points).
CONFIGS = [pytest.param(dict(model=name), id=name, marks=() if name in ("b0", "lite0") else pytest.mark.slow)
           for name in FAMILY] + [pytest.param(kw, id=",".join(f"{k}={v}" for k, v in kw.items()),
                                               marks=() if i < 4 else pytest.mark.slow)
                                  for i, kw in enumerate(random_points())]


# ----------------------------------------------------------------------------------------------- whole networks
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_params_and_macs_match_the_built_network(kwargs):
    model = build_meta(**kwargs)
    report = count(dict(kwargs))
    assert report.params == numel(model)
    macs, per_module = traced(model, model.config.resolution)
    assert report.macs == macs
    assert report.flops == 2 * macs
    for row in report.rows:  # every row is exactly its module
        module = model.get_submodule(row.module)
        assert row.params == numel(module), row.name
        assert row.macs == per_module.get(row.module, 0), row.name
    # The rows cover every parameter exactly once (no module double counted, none forgotten).
    assert sum(r.params for r in report.rows) == report.params
    assert sum(s.params for s in report.stages) == report.params
    assert sum(s.macs for s in report.stages) == report.macs


@pytest.mark.parametrize("name", FAMILY)  # a new member needs its reference numbers in reference.py
def test_family_matches_the_reference_numbers(name):
    report = count(name)
    assert report.params == PARAMS[name]
    if name in MACS_BILLIONS:
        value, decimals = MACS_BILLIONS[name]
        assert round(report.macs / 1e9, decimals) == value


def test_b0_on_a_real_forward_at_224():
    torch.manual_seed(0)
    model = ee.build("b0").eval()
    macs, _ = traced(model, 224, device="cpu")
    assert count("b0").macs == macs  # and the meta-device count above agrees with this real one
    assert round(macs / 1e9, 3) == 0.386


# ----------------------------------------------------------------------------------------------- activations
@pytest.mark.parametrize("kwargs, device", [(dict(model="b0"), "cpu"),  # a real forward
                                            (dict(width=0.7, depth=1.3, resolution=97), "meta"),
                                            (dict(model="lite1", resolution=65, same_padding=True), "meta")],
                         ids=["b0", "odd-resolution", "lite-same"])
def test_activations_match_a_forward(kwargs, device):
    torch.manual_seed(0)
    model = ee.build(**kwargs).eval() if device == "cpu" else build_meta(**kwargs)
    report = count(dict(kwargs))
    x = torch.randn(1, 3, model.config.resolution, model.config.resolution, device=device)
    seen = {}
    hooks = [model.get_submodule(r.module).register_forward_hook(
        lambda m, i, o, name=r.name: seen.__setitem__(name, tuple(o.shape[1:]))) for r in report.rows]
    try:
        with torch.no_grad():
            features = model.stage_features(x)
            model.forward_head(features["stage9"])
    finally:
        for h in hooks:
            h.remove()
    for row in report.rows:
        assert row.out_shape == seen[row.name], row.name
        assert row.activations == torch.Size(seen[row.name]).numel()
    for stage in report.stages:
        assert stage.out_shape == tuple(features[stage.name].shape[1:]), stage.name
        assert stage.activations == sum(r.activations for r in report.rows if r.stage == stage.stage)
    assert report.activations == sum(r.activations for r in report.rows)
    assert report.activation_bytes == 4 * report.activations


def test_stages_follow_table_1():
    table = ee.stages(resolve("b3"))
    report = count("b3")
    assert [(s.stage, s.operator, s.layers, s.resolution) for s in report.stages] == \
        [(s.stage, s.operator, s.layers, s.resolution) for s in table]


# ----------------------------------------------------------------------------------------------- one block
def test_block_count_against_hand_formulas():
    # B0 stage4/block1 (Table 1 row 4, second layer): 40 -> 40 channels, MBConv6, k5x5, stride 1, 28x28 input.
    c, e, k, r, se = 40, 6, 5, 28, 10  # SE squeeze = max(1, int(40 * 0.25)) = 10
    h = c * e  # 240 expanded channels
    b = block_count(c, c, e, k, 1, resolution=r)
    expected = {  # (params, MACs, activations, bytes moved at fp32)
        "expand": (c * h + 2 * h, c * h * r * r, h * r * r, 4 * (c * r * r + c * h + 2 * h + h * r * r)),
        "depthwise": (k * k * h + 2 * h, k * k * h * r * r, h * r * r, 4 * (h * r * r + k * k * h + 2 * h + h * r * r)),
        "se": (h * se + se + se * h + h, 2 * h * se, h * r * r, 4 * (3 * h * r * r + 2 * h * se + se + h)),
        "project": (h * c + 2 * c, h * c * r * r, c * r * r,
                    4 * (h * r * r + h * c + 2 * c + c * r * r + c * r * r)),  # residual: block input read again
    }
    for part, (params, macs, acts, moved) in expected.items():
        row = b.part(part)
        assert (row.params, row.macs, row.activations, row.bytes_moved) == (params, macs, acts, moved), part
    assert b.params == sum(v[0] for v in expected.values()) == 31_290
    assert b.macs == 19_761_600 and b.flops == 2 * b.macs
    assert b.spec.residual and b.spec.hidden_channels == 240
    # The lesson: depthwise does the fewest multiply-adds per byte of the three convs.
    assert b.part("depthwise").intensity < min(b.part("expand").intensity, b.part("project").intensity)
    # The same block inside the network and as a module.
    net = count("b0")
    for part in expected:
        assert net.layer(f"stage4/block1/{part}").macs == b.part(part).macs
    spec = next(s for s in ee.blocks(resolve("b0")) if s.name == "stage4/block1")
    assert b.params == numel(MBConv(spec, resolve("b0")))
    assert "depthwise" in b.table() and b.to_dict()["macs"] == b.macs


def test_block_count_variants():
    mb1 = block_count(32, 16, expand_ratio=1, kernel_size=3, stride=1, resolution=112)  # B0 stage 2
    assert mb1.part("expand") is None and mb1.part("se").params == 32 * 8 + 8 + 8 * 32 + 32
    assert not mb1.spec.residual
    lite = block_count(24, 40, 6, 5, 2, se_ratio=0, resolution=56)
    assert lite.part("se") is None and lite.part("depthwise").out_shape == (144, 28, 28)
    assert block_count(24, 40, se_channels=3).part("se").params == 144 * 3 + 3 + 3 * 144 + 144
    assert block_count(24, 40, stride=2, resolution=57).part("project").out_shape == (40, 29, 29)  # ceil(57/2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=0, out_channels=8), "in_channels"),
    (dict(in_channels=8, out_channels=8, kernel_size=4), "odd"),
    (dict(in_channels=8, out_channels=8, stride=3), "stride must be one of 1, 2"),
    (dict(in_channels=8, out_channels=8, se_ratio=1.5), "se_ratio"),
    (dict(in_channels=8, out_channels=8, se_channels=-1), "se_channels"),
    (dict(in_channels=8, out_channels=8, resolution=2.5), "resolution"),
])
def test_block_count_rejects_bad_input(kwargs, message):
    with pytest.raises(ee.ScalingError, match=message):
        block_count(**kwargs)


# ----------------------------------------------------------------------------------------------- API
def test_count_accepts_every_way_of_naming_a_network():
    config = resolve("b1", num_classes=10)
    a = count(config)
    assert count("b1", num_classes=10) == a
    assert count({"model": "b1", "num_classes": 10}) == a
    assert count(build_meta(model="b1", num_classes=10)) == a
    assert count(phi=1.0).config.resolution == 258
    assert count(width=1.2, depth=1.4, resolution=300).params == count("b3").params  # same scaling point
    with pytest.raises(ee.ScalingError, match="unknown model"):
        count("b9")
    with pytest.raises(TypeError, match="model name"):
        count(3.5)
    with pytest.raises(TypeError):
        count(config, num_classes=3)


def test_rows_names_table_and_dict():
    report = count("b0")
    names = [r.name for r in report.rows]
    assert names[:3] == ["stem/conv", "stem/bn", "stage2/block0/depthwise"]  # MBConv1: no expansion
    assert names[-3:] == ["head/conv", "head/bn", "classifier"]
    assert "stage4/block1/se" in names and "stage4/block1/expand" in names
    assert report.layer("stem/bn").macs == 0 and report.layer("stem/bn").params == 2 * 32
    assert not any(r.kind == "se" for r in count("lite0").rows)  # Lite has no SE
    text = report.table()
    assert "stage4/block1/depthwise" in text and "385,814,752" in text and "5,288,548" in text
    assert "stage9" in report.table("stage")
    with pytest.raises(ValueError, match="level"):
        report.table("block")
    with pytest.raises(KeyError, match="stem/conv"):
        report.layer("nope")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["macs"] == report.macs and d["flops"] == 2 * d["macs"] and len(d["layers"]) == len(report.rows)


def test_flops_growth():
    points = flops_growth([0, 1, 2.5])
    assert points[0].growth == 1.0 and points[0].macs == count("b0").macs  # phi = 0 is B0 at 224
    for p in points:
        assert p.macs == count(phi=p.phi).macs
        assert p.formula == pytest.approx((1.2 * 1.1**2 * 1.15**2) ** p.phi)
        assert p.doubling == 2.0**p.phi
    custom = flops_growth([2], alpha=1.0, beta=1.0, gamma=2 ** 0.5)  # resolution-only scaling: r^2 doubles
    assert custom[0].resolution == 448 and custom[0].formula == pytest.approx(4.0)
    assert "2^phi" in growth_table(points)


# ----------------------------------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_cli_info_json_matches_the_oracles(capsys):
    payload = json.loads(run_cli(capsys, "info", "b2", "--json"))
    model = build_meta(model="b2")
    macs, _ = traced(model, 260)
    assert payload["params"] == numel(model) == PARAMS["b2"]
    assert isinstance(payload["macs"], int) and payload["macs"] == macs
    assert isinstance(payload["flops"], int) and payload["flops"] == 2 * macs
    assert "layers" not in payload


def test_cli_info_layers_json(capsys):
    payload = json.loads(run_cli(capsys, "info", "--width", "0.5", "--depth", "0.6", "--resolution", "96",
                                 "--layers", "--json"))
    model = build_meta(width=0.5, depth=0.6, resolution=96)
    _, per_module = traced(model, 96)
    for row in payload["layers"]:
        module = model.get_submodule(row["module"])
        assert row["params"] == numel(module), row["name"]
        assert row["macs"] == per_module.get(row["module"], 0), row["name"]
    assert sum(r["params"] for r in payload["layers"]) == payload["params"] == numel(model)


def test_cli_info_text(capsys):
    out = run_cli(capsys, "info", "b0")
    assert "multiply-adds (paper's FLOPS): 385,814,752" in out and "FLOPs (2 x MACs): 771,629,504" in out
    assert "stage4/block1/depthwise" not in out
    out = run_cli(capsys, "info", "b0", "--layers")
    assert "stage4/block1/depthwise" in out and "classifier" in out
    assert main(["info", "b9"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_count_is_cached_and_module_has_no_torch_import():
    assert count("b5") is count("b5")
    assert "torch" not in accounting.__dict__
