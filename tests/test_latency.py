"""The latency harness (``effnet_edu.latency``) and the paper's Table 2/Table 4 data (``effnet_edu.paper``).

Oracles: a fake clock that the fake models advance by known amounts (so every median is computed by hand here),
the recorded order in which fake models are called, torchvision's exact parameter counts, and the numbers the
paper's text states (Tan & Le 2019, Section 1 Introduction and Section 5.2). No timed assertions: speed is a
benchmark's business (benchmarks/bench_latency.py)."""

import json
import math
import re
import statistics
from pathlib import Path

import pytest
import torch
import torchvision

from effnet_edu import latency
from effnet_edu.paper import COMPARISONS, EFFICIENTNETS, SPEEDUP_B1_VS_RESNET152, SPEEDUP_B7_VS_GPIPE, TABLE2, TABLE4

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_model(name, clock, durations, calls):
    """A 'model' whose k-th call takes durations[k] seconds of the fake clock and records its name."""
    it = iter(durations)

    def run():
        calls.append(name)
        clock.now += next(it)

    return run


def test_runs_are_interleaved_round_robin_warmup_included():
    clock, calls = FakeClock(), []
    cases = {n: fake_model(n, clock, [0.0] * 10, calls) for n in ("a", "b", "c")}
    latency.measure(cases, runs=3, warmup=2, timer=clock)
    # every round calls every model once, in the given order, before the next round starts
    assert calls == ["a", "b", "c"] * 5


def test_medians_from_a_fake_clock_and_warmup_is_not_counted():
    clock, calls = FakeClock(), []
    # two warm-up calls that take 100 s each, then the timed runs
    a = [100.0, 100.0, 0.005, 0.001, 0.003, 0.009]  # timed: 5, 1, 3, 9 ms -> median (3 + 5) / 2 = 4 ms
    b = [100.0, 100.0, 0.020, 0.010, 0.030, 0.012]  # timed: 20, 10, 30, 12 ms -> median (12 + 20) / 2 = 16 ms
    times = latency.measure({"a": fake_model("a", clock, a, calls), "b": fake_model("b", clock, b, calls)},
                            runs=4, warmup=2, timer=clock)
    assert times["a"] == pytest.approx([0.005, 0.001, 0.003, 0.009])
    assert times["b"] == pytest.approx([0.020, 0.010, 0.030, 0.012])
    assert latency.medians_ms(times) == pytest.approx({"a": 4.0, "b": 16.0})


def test_odd_number_of_runs_takes_the_middle_value():
    clock, calls = FakeClock(), []
    times = latency.measure({"m": fake_model("m", clock, [0.007, 0.002, 0.050], calls)}, runs=3, warmup=0,
                            timer=clock)
    assert latency.medians_ms(times) == pytest.approx({"m": 7.0})  # one slow outlier does not move the median


def test_tiny_real_models():
    cases = {"conv": latency.forward(torch.nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8)),
             "linear": latency.forward(torch.nn.Linear(5, 2), torch.randn(1, 5))}
    times = latency.measure(cases, runs=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"conv": 3, "linear": 3}
    assert all(t > 0 for v in times.values() for t in v)
    assert cases["linear"]().grad_fn is None  # inference: no autograd graph is recorded


@pytest.mark.parametrize("kwargs, message", [
    ({"cases": {}}, "at least one case"),
    ({"runs": 0}, "runs must be a whole number >= 1"),
    ({"runs": 2.5}, "runs must be a whole number >= 1"),
    ({"warmup": -1}, "warmup must be a whole number >= 0"),
    ({"cases": {"x": 3}}, "case 'x' is int, not a callable"),
])
def test_bad_input_is_one_clear_error(kwargs, message):
    args = {"cases": {"ok": lambda: None}, **kwargs}
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        latency.measure(**args)


def test_traffic_refuses_a_bad_resolution():
    with pytest.raises(ValueError, match="resolution must be a whole number of pixels >= 1, got 0"):
        latency.traffic(torch.nn.Conv2d(3, 4, 3), 0)


def test_load_names_the_command_when_nothing_is_stored(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench_latency.py"):
        latency.load(tmp_path / "missing.json")


# -- the paper's numbers --------------------------------------------------------------------------------------------

def test_table2_agrees_with_what_the_text_states():
    b7, gpipe = TABLE2["EfficientNet-B7"], TABLE2["GPipe"]
    # Section 5.2: "EfficientNet-B7 achieves 84.3% top1 accuracy with 66M parameters and 37B FLOPS, being more
    # accurate but 8.4x smaller than the previous best GPipe"
    assert (b7.top1, b7.params, b7.flops) == (84.3, 66e6, 37e9)
    assert round(gpipe.params / b7.params, 1) == 8.4
    # Section 1: GPipe "achieved 84.3% ImageNet top-1 accuracy"
    assert gpipe.top1 == 84.3
    # Section 5.2: "EfficientNet-B3 achieves higher accuracy than ResNeXt-101 using 18x fewer FLOPS"
    b3, resnext = TABLE2["EfficientNet-B3"], TABLE2["ResNeXt-101"]
    assert b3.top1 > resnext.top1 and round(resnext.flops / b3.flops) == 18
    # Section 1: B4 improves on ResNet-50 "with similar FLOPS" (83.0% there: the introduction rounds B4's 82.9%)
    b4, r50 = TABLE2["EfficientNet-B4"], TABLE2["ResNet-50"]
    assert abs(b4.flops / r50.flops - 1) < 0.05 and abs(b4.top1 - 83.0) <= 0.1


def test_table4_speedups_are_the_ratios_the_text_states():
    # Section 5.2: "EfficientNet-B1 runs 5.7x faster than the widely used ResNet-152, while EfficientNet-B7 runs
    # about 6.1x faster than GPipe"
    assert round(TABLE4["ResNet-152"].seconds / TABLE4["EfficientNet-B1"].seconds, 1) == SPEEDUP_B1_VS_RESNET152
    assert round(TABLE4["GPipe"].seconds / TABLE4["EfficientNet-B7"].seconds, 1) == SPEEDUP_B7_VS_GPIPE
    for row in TABLE4.values():  # Table 4 repeats Table 2's accuracies
        assert row.top1 == TABLE2[row.model].top1


def test_table2_params_are_torchvision_counts_rounded():
    # Table 2 prints parameters to two significant figures; torchvision's released weights' metadata gives the exact
    # counts (1000 classes; read from the enum, nothing downloaded). B2 is the one row that does not round to the
    # printed number (9.11M printed as 9.2M).
    for row in EFFICIENTNETS:
        weights = getattr(torchvision.models, f"EfficientNet_{row.member.upper()}_Weights").IMAGENET1K_V1
        exact = weights.meta["num_params"]
        rounded = float(f"{exact:.2g}")
        assert (rounded == row.params) != (row.member == "b2"), (row.model, exact, row.params)


def test_docs_paper_facts_show_the_same_table2():
    text = (ROOT / "docs/paper-facts.md").read_text()
    section = text.split("## Table 2", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if re.match(r"\| B\d ", line)]
    assert [f"EfficientNet-{r[0]}" for r in rows] == [r.model for r in EFFICIENTNETS]
    for cells, row in zip(rows, EFFICIENTNETS):
        params, flops, top1 = cells[6], cells[7], cells[8]  # model, w, d, r, dropout, exact, params, FLOPS, top-1
        assert float(params.rstrip("M")) * 1e6 == pytest.approx(row.params), row.model
        assert float(flops.rstrip("B")) * 1e9 == pytest.approx(row.flops), row.model
        assert float(top1.rstrip("%")) == row.top1
    for row in COMPARISONS:
        flops = f" {row.flops / 1e9:g}B" if row.flops else ""
        assert f"{row.model} {row.top1:.1f}% {row.params / 1e6:g}M{flops}" in " ".join(section.split()), row.model


# -- the stored measurement -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [latency.STORED, latency.STORED_COMPILE], ids=lambda p: p.name)
def test_stored_measurement_is_consistent_and_shipped(path):
    stored = latency.load(path)
    for key in ("date", "machine", "threads", "runs", "command", "cases", "summary"):
        assert key in stored, key
    assert stored["runs"] >= 20 and stored["threads"] >= 1 and stored["machine"]["torch"]
    for case in stored["cases"]:
        assert len(case["runs_ms"]) == stored["runs"], case["name"]
        assert case["median_ms"] == pytest.approx(statistics.median(case["runs_ms"]), abs=2e-3), case["name"]
    names = {(c["source"], c["member"], c["variant"]) for c in stored["cases"]}
    assert {("ours", "b1", "eager"), ("torchvision", "resnet152", "eager")} <= names
    package_data = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1]
    assert '"data/*.json"' in package_data.split("\n[", 1)[0], "the notebook reads it from the installed package"
    json.dumps(stored)  # plain JSON all the way down


# -- bytes moved against multiply-adds ----------------------------------------------------------------------------

def test_traffic_of_one_conv_by_hand():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)  # on 8x8: 4 x 8 x 8 outputs, each 3 x 3 x 3 multiply-adds
    (row,) = latency.traffic(conv_net := torch.nn.Sequential(conv), 8)
    assert (row.kind, row.macs) == ("conv kxk", 4 * 64 * 27)
    assert row.bytes_moved == 4 * (3 * 64 + (4 * 27 + 4) + 4 * 64)  # input read, weights + bias read, output written
    assert not any(p.is_meta for p in conv_net.parameters())  # the caller's model keeps its weights


def test_traffic_macs_agree_with_pytorchs_flop_counter_and_the_accounting():
    from torch.utils.flop_counter import FlopCounterMode

    import effnet_edu as ee

    with torch.device("meta"):
        resnet, b0, x = torchvision.models.resnet50(), ee.build("b0"), torch.empty(1, 3, 224, 224)
        with FlopCounterMode(display=False) as counter:
            resnet(x)
    assert sum(r.macs for r in latency.traffic(resnet, 224)) == counter.get_total_flops() // 2  # 2 FLOPs per MAC
    rows = latency.traffic(b0, 224)
    assert sum(r.macs for r in rows) == ee.count("b0").macs
    kinds = {r.kind for r in rows}
    assert {"depthwise", "conv 1x1", "conv kxk", "se", "batchnorm", "activation", "linear"} == kinds


def test_notebook_07_checks(capsys):
    from effnet_edu_widgets import checks

    # oracle: torchvision's weights metadata, "_ops" = billions of multiply-adds at the evaluation crop (ResNet-152
    # at 224 px, B1 at 240 px, as Table 2); read from the enums, nothing downloaded
    ops = [w.IMAGENET1K_V1.meta["_ops"] for w in (torchvision.models.ResNet152_Weights,
                                                   torchvision.models.EfficientNet_B1_Weights)]
    assert checks.check_macs_ratio(ops[0] / ops[1]) is True
    assert checks.check_macs_ratio(11 / 0.7 / 2) is False
    assert checks.check_bytes_ratio(None) is False and "not answered yet" in capsys.readouterr().out
    assert checks.check_gain_per_doubling((84.3 - 84.0) / math.log2(37 / 19)) is True  # Table 2, by hand
    assert checks.check_gain_per_doubling(0.6) is False
