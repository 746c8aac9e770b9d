"""The scaling rules against hand-derived values and the paper's numbers (Section 3.3, Tables 1 and 2; the official coefficients in reference.py)."""

import math

import pytest

from effnet_edu import FAMILY, ScalingError, compound, resolve, round_filters, round_repeats, stages

from reference import COEFFICIENTS


@pytest.mark.parametrize("channels, width, expected", [
    (32, 1.0, 32),    # unchanged
    (32, 1.1, 32),    # 35.2 -> nearest multiple of 8 is 32, only 9% below: kept
    (40, 1.1, 48),    # 44 -> 48 (ties round up: int(44 + 4) // 8 * 8)
    (16, 1.4, 24),    # 22.4 -> 24
    (80, 1.2, 96),    # 96 exactly
    (1280, 2.0, 2560),
    (16, 0.25, 8),    # 4 -> never below 8
    (112, 1.1, 120),  # 123.2 -> 120 (2.6% below)
])
def test_round_filters_by_hand(channels, width, expected):
    assert round_filters(channels, width) == expected


def test_round_filters_never_loses_more_than_ten_percent():
    for c in range(8, 400, 4):
        for w in (0.5, 0.75, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 3.3):
            r = round_filters(c, w)
            assert r % 8 == 0 and r >= 8
            assert r >= 0.9 * c * w, (c, w, r)


def test_round_repeats_is_ceil():
    assert [round_repeats(n, 3.1) for n in (1, 2, 3, 4)] == [4, 7, 10, 13]  # B7: 1*3.1 -> 4
    assert round_repeats(3, 1.0) == 3


def test_compound_rule_matches_paper():
    point = compound(1)
    assert (point.depth, point.width) == (1.2, 1.1)
    assert point.resolution_exact == pytest.approx(224 * 1.15)
    assert point.resolution == 258  # 257.6 rounded to the nearest integer (our documented rule)
    assert point.flops_factor == pytest.approx(1.2 * 1.1**2 * 1.15**2)  # 1.92, "approximately 2"
    assert "1.9203" in point.constraint_report()
    p3 = compound(3, 1.2, 1.1, 1.15)
    assert p3.depth == pytest.approx(1.728) and p3.width == pytest.approx(1.331)
    assert p3.flops_growth == pytest.approx(1.9203**3, rel=1e-4)


def test_family_table_is_the_official_one():
    assert {k: (m.width, m.depth, m.resolution, m.dropout) for k, m in FAMILY.items()} == COEFFICIENTS


def test_b0_stage_table_is_table_1():
    # (operator, kernel, stride, out channels, layers, input resolution), Table 1 of the paper
    table1 = [("Conv3x3", 3, 2, 32, 1, 224), ("MBConv1", 3, 1, 16, 1, 112), ("MBConv6", 3, 2, 24, 2, 112),
              ("MBConv6", 5, 2, 40, 2, 56), ("MBConv6", 3, 2, 80, 3, 28), ("MBConv6", 5, 1, 112, 3, 14),
              ("MBConv6", 5, 2, 192, 4, 14), ("MBConv6", 3, 1, 320, 1, 7),
              ("Conv1x1 & Pooling & FC", 1, 1, 1280, 1, 7)]
    rows = stages(resolve("b0"))
    assert [(r.operator, r.kernel_size, r.stride, r.out_channels, r.layers, r.resolution) for r in rows] == table1


def test_lite_keeps_stem_head_and_first_last_repeats():
    rows = stages(resolve("lite4"))
    assert rows[0].out_channels == 32 and rows[-1].out_channels == 1280
    assert rows[1].layers == 1 and rows[7].layers == 1  # first and last MBConv stage not repeated
    assert rows[2].layers == math.ceil(2 * 1.8)


@pytest.mark.parametrize("name", ["b0", "b3"])
def test_stochastic_depth_rates_are_torchvisions(name):
    """Oracle: the per-block drop probabilities torchvision builds its EfficientNet with (same default rate 0.2)."""
    import torchvision

    from effnet_edu import blocks

    reference = getattr(torchvision.models, f"efficientnet_{name}")()
    expected = [m.stochastic_depth.p for m in reference.modules() if hasattr(m, "stochastic_depth")]
    assert [b.drop_path for b in blocks(resolve(name))] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(phi=-1), "phi must be >= 0"),
    (dict(phi=float("nan")), "phi must be a finite number"),
    (dict(phi=float("inf")), "phi must be a finite number"),
    (dict(phi=1, alpha=0.9), "alpha must be >= 1"),
    (dict(phi=1, beta=0.5), "beta must be >= 1"),
    (dict(phi=1, gamma=0.99), "gamma must be >= 1"),
    (dict(width=0.01), "width 0.01 rounds to nothing"),
    (dict(width=0), "width must be > 0"),
    (dict(depth=-1), "depth must be > 0"),
    (dict(resolution=16), "resolution 16 is too small"),
    (dict(resolution=224.5), "resolution must be a whole number"),
    (dict(width=1.0, phi=1.0), "give one kind of scaling point"),
    (dict(model="b0", phi=1.0), "give one kind of scaling point"),
    (dict(model="efficientnet-b9"), "did you mean"),
    (dict(model="lite7"), "did you mean lite"),
    (dict(model="b0", num_classes=0), "num_classes must be a positive whole number"),
    (dict(model="b0", dropout=1.5), "dropout must be a probability"),
    (dict(model="b0", bogus=1), "unknown setting(s) bogus"),
])
def test_bad_scaling_points_give_specific_errors(kwargs, message):
    with pytest.raises(ScalingError, match=None) as info:
        resolve(**kwargs)
    assert message in str(info.value)


def test_model_name_aliases():
    assert resolve("EfficientNet-B3").name == "b3"
    assert resolve("b0", resolution=300).resolution == 300
