"""The baseline search (Section 4): the reward, the search space, the search itself and its command line.

Oracles: the paper's formula evaluated by hand, ``torch.utils.flop_counter`` (halved: it counts two FLOPs per
multiply-add) and parameter counts of the built networks, the lab's own C0 (``families``) and B0's Table 1.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from effnet_edu import B0_STAGES, blocks, build, count, resolve
from effnet_edu.cli import main
from effnet_edu.lab import Point
from effnet_edu.lab import macs as lab_macs
from effnet_edu.lab import search as S
from effnet_edu.scaling import ScalingError


def test_reward_is_the_papers_formula():
    T = 2_000_000
    assert S.reward(0.8, T, T) == pytest.approx(0.8)  # FLOPS(m) = T: the reward is the accuracy
    # 2^-0.07 = exp(-0.07 ln 2) = exp(-0.0485203) = 0.9526380 (by hand): twice the target costs 4.7%
    assert S.reward(0.8, 2 * T, T) == pytest.approx(0.8 * 0.9526380, abs=1e-6)
    assert S.reward(0.8, T / 2, T) == pytest.approx(0.8 / 0.9526380, abs=1e-6)  # half the target gains 5.0%
    assert S.reward(0.5, 10 * T, T, w=0.0) == 0.5  # w = 0: accuracy alone
    assert S.PAPER_W == -0.07
    # The trade-off the formula implies: with w = -0.07, a model at 2T ties one at T only if 2^0.07 = 1.0497167x
    # as accurate.
    assert S.reward(0.8 * 1.0497167, 2 * T, T) == pytest.approx(S.reward(0.8, T, T), abs=1e-6)


def test_choice_and_front():
    entries = [{"name": "a", "macs": 1e6, "val_accuracy": 0.50}, {"name": "b", "macs": 2e6, "val_accuracy": 0.52},
               {"name": "c", "macs": 4e6, "val_accuracy": 0.51}, {"name": "d", "macs": 4e6, "val_accuracy": 0.60}]
    assert [e["name"] for e in S.pareto(entries)] == ["a", "b", "d"]  # c is beaten by b (cheaper, more accurate)
    assert S.choose(entries, 2e6, 0.0)["name"] == "d"  # accuracy alone
    # a: 0.50 x 2^0.07 = 0.5249; b: 0.52; d: 0.60 x 2^-0.07 = 0.5716
    assert S.choose(entries, 2e6, -0.07)["name"] == "d"
    # w = -0.5: a: 0.50 x sqrt(2) = 0.707; b: 0.52; d: 0.60 / sqrt(2) = 0.424
    assert S.choose(entries, 2e6, -0.5)["name"] == "a"


def test_the_choice_lies_on_the_front_moves_monotonically_in_w_and_ignores_t():
    """Properties of the formula on random entries: for w <= 0 a dominated entry never wins; as w falls the chosen
    MACs never rise (log reward = log ACC + w log MACs + const); with one w, T is a constant factor."""
    import random

    rng = random.Random(0)
    for _ in range(50):
        entries = [{"name": str(i), "macs": rng.randint(1, 8) * 1e6, "val_accuracy": rng.uniform(0.05, 0.5)}
                   for i in range(15)]
        front = {e["name"] for e in S.pareto(entries)}
        picks = [S.choose(entries, 2e6, w) for w in (0.0, -0.07, -0.2, -0.5, -1.0, -3.0)]
        assert all(p["name"] in front for p in picks)
        assert all(a["macs"] >= b["macs"] for a, b in zip(picks, picks[1:]))
        assert S.choose(entries, 1e6)["name"] == S.choose(entries, 4e6)["name"] == picks[1]["name"]
    # MnasNet's hard constraint (w = 0 below T, -1 above): T becomes a budget
    entries = [{"name": "small", "macs": 1e6, "val_accuracy": 0.40}, {"name": "big", "macs": 3e6, "val_accuracy": 0.45}]
    assert S.choose(entries, 1e6, 0.0, w_above=-1.0)["name"] == "small"  # big: 0.45 / 3 = 0.15
    assert S.choose(entries, 3e6, 0.0, w_above=-1.0)["name"] == "big"


def test_notebook_checks(capsys):
    from effnet_edu_widgets import checks

    assert checks.check_tie_ratio(2 ** 0.07) and checks.check_tie_ratio(1.1019, macs_ratio=4)  # 4^0.07 by hand
    assert not checks.check_tie_ratio(2.0) and not checks.check_tie_ratio(None)
    assert checks.check_choice_prediction("same", target=4e6)  # a single w: T cannot move the choice
    assert not checks.check_choice_prediction("costlier", target=4e6)
    assert checks.check_choice_prediction(None) is False
    assert "not answered yet" in capsys.readouterr().out


def test_sampling_is_deterministic_for_a_seed():
    a, b, c = S.random_candidates(12, seed=3), S.random_candidates(12, seed=3), S.random_candidates(12, seed=4)
    assert a == b and a != c
    assert S.random_candidates(5, seed=3) == a[:5]  # a shorter search is a prefix of a longer one
    assert len(set(a)) == 12 and S.c0_shape() not in a
    for candidate in a:
        assert S.from_key(S.key(candidate)) == candidate
        for choice in candidate:
            assert (choice.kernel_size in S.KERNELS and choice.expand_ratio in S.EXPANSIONS
                    and choice.se in S.SE_CHOICES and choice.layers in S.LAYERS)


def _flop_counter_macs(model, resolution):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, resolution, resolution))
    return counter.get_total_flops() // 2


def test_every_sampled_candidate_builds_and_its_macs_match_the_flop_counter():
    smallest = tuple(S.StageChoice(3, 1, False, 1) for _ in B0_STAGES)
    largest = tuple(S.StageChoice(5, 6, True, 2) for _ in B0_STAGES)
    for candidate in [*S.random_candidates(6, seed=0), smallest, largest]:
        torch.manual_seed(0)
        model = S.build_candidate(candidate)
        report = count(model)
        assert report.macs == _flop_counter_macs(model, S.RESOLUTION), S.key(candidate)
        assert report.params == sum(p.numel() for p in model.parameters())
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 16)
        # the candidate's choices reach the built blocks
        for stage, choice in zip(model.stages.children(), candidate):
            assert len(stage) == choice.layers
            for block in stage:
                assert block.depthwise.conv.kernel_size == (choice.kernel_size,) * 2
                assert block.spec.expand_ratio == choice.expand_ratio
                assert isinstance(block.se, torch.nn.Identity) != choice.se


def test_the_space_contains_c0s_shape():
    c0 = S.c0_shape()
    assert all(c.kernel_size in S.KERNELS and c.expand_ratio in S.EXPANSIONS and c.se and c.layers in S.LAYERS
               for c in c0)
    # The lab's C0 (B0 at width 0.25, depth 0.25, 64 px) and C0's shape in the space are the same network.
    lab_c0 = resolve(width=0.25, depth=0.25, resolution=64, num_classes=16)
    ours = S.config(c0)
    strip = [b._replace(drop_path=0.0) for b in blocks(lab_c0)]
    assert [b._replace(drop_path=0.0) for b in blocks(ours)] == strip
    assert count(ours).macs == lab_macs(Point("effnet", 1.0, 1.0, 64), 16) == 1_955_040


def test_custom_stage_rows_keep_b0_and_are_checked():
    assert resolve("b0").stage_rows is B0_STAGES
    no_se = tuple(replace(r, se=False) if r.name == "stage4" else r for r in B0_STAGES)
    model = build("b0", stage_rows=no_se, num_classes=10)
    assert all(isinstance(b.se, torch.nn.Identity) for b in model.stages.stage4)
    assert not any(isinstance(b.se, torch.nn.Identity) for b in model.stages.stage5)
    # dropping SE in stage 4 removes exactly its blocks' SE layers, each (hidden x sq + sq) + (sq x hidden + hidden)
    se = [(b.se_channels, b.hidden_channels) for b in blocks(resolve("b0")) if b.stage == 4]
    removed = sum(2 * s * h + s + h for s, h in se)
    full = sum(p.numel() for p in build("b0", num_classes=10).parameters())
    assert full - sum(p.numel() for p in model.parameters()) == removed
    assert count(model).params == sum(p.numel() for p in model.parameters())
    with pytest.raises(ScalingError, match="tuple of 7 StageRow"):
        resolve("b0", stage_rows=B0_STAGES[:3])
    with pytest.raises(ScalingError, match="stride 1 or 2"):
        resolve("b0", stage_rows=(replace(B0_STAGES[0], stride=3), *B0_STAGES[1:]))
    with pytest.raises(ScalingError, match="odd kernel_size"):
        resolve("b0", stage_rows=(replace(B0_STAGES[0], kernel_size=4), *B0_STAGES[1:]))


TINY = replace(S.QUICK_PROXY, train_images=128, val_images=32, epochs=1, bn_images=32)


def test_search_is_deterministic_and_resumable(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_EDU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(S, "QUICK_PROXY", TINY)
    monkeypatch.setattr(S, "C0_SEEDS", 2)
    a = S.run_search(tmp_path / "a", quick=True, seed=5, candidates=2)
    b = S.run_search(tmp_path / "b", quick=True, seed=5, candidates=2)

    def trained(results):
        return [{k: v for k, v in e.items() if k not in ("train_seconds", "threads")} for e in results["candidates"]]

    assert trained(a) == trained(b)
    assert [e["name"] for e in a["candidates"]][2:] == [S.key(c) for c in S.random_candidates(2, seed=5)]
    assert [e["seed"] for e in a["candidates"] if e["c0"]] == [5, 6]
    assert a["chosen"] == S.choose([e for e in a["candidates"] if not e["c0"]], S.TARGET, S.PAPER_W)["name"]
    assert json.loads((tmp_path / "a" / "search.json").read_text())["candidates"] == a["candidates"]
    # resumable: a stored candidate is read, not retrained (a marked file comes back as it is) ...
    runs = sorted((tmp_path / "a" / "search-runs").glob("*.json"))
    assert len(runs) == 4
    marked = json.loads(runs[0].read_text()) | {"val_accuracy": 0.999}
    runs[0].write_text(json.dumps(marked))
    runs[1].unlink()  # ... and a missing one is trained again, identically
    again = S.run_search(tmp_path / "a", quick=True, seed=5, candidates=2, w=-0.5)
    assert marked in again["candidates"] and again["w"] == -0.5
    assert trained(again) == [e | {"val_accuracy": 0.999} if e["name"] == marked["name"] and e["seed"] == marked["seed"]
                              else e for e in trained(a)]
    # a folder holding only search.json (the package's stored results) re-ranks without training anything
    for path in (tmp_path / "b" / "search-runs").glob("*.json"):
        path.unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("a stored candidate was trained again")

    monkeypatch.setattr(S, "evaluate", no_training)
    reranked = S.run_search(tmp_path / "b", quick=True, seed=5, candidates=2, w=0.0, target=1e6)
    assert reranked["candidates"] == b["candidates"] and (reranked["w"], reranked["target_macs"]) == (0.0, 1e6)
    assert reranked["wall_seconds"] == b["wall_seconds"]  # the search's time, not the re-ranking's
    assert reranked["chosen"] == max(reranked["candidates"][2:], key=lambda e: (e["val_accuracy"], -e["macs"]))["name"]


@pytest.mark.parametrize("argv, message", [
    (["--w", "0.3"], "must be in -1..0, got 0.3"),
    (["--target-macs", "abc"], "expected the target T in multiply-adds, got 'abc'"),
    (["--target-macs", "0"], "must be in 10000..1e+10"),
    (["--candidates", "0"], "must be in 1..10000, got 0"),
    (["--seed", "-1"], "must be in 0..2147483647, got -1"),
])
def test_cli_refuses_bad_numbers(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        main(["lab", "search", *argv])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_quick_needs_out_and_a_writable_folder(capsys, tmp_path):
    assert main(["lab", "search", "--quick"]) == 2
    assert "--quick writes a reduced search: give it a folder with --out" in capsys.readouterr().err
    (tmp_path / "file").write_text("not a folder")
    assert main(["lab", "search", "--quick", "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "cannot write search results to" in err and len(err.strip().splitlines()) == 1
