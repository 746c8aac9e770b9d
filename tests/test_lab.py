"""The scaling lab: its dataset, trainer, experiment definitions, stored results and command line.

Oracles: geometry (every object dot lies inside the object's mask), the loss of an untrained 16-class model
(ln 16), ``effnet_edu.accounting`` for matched multiply-adds, ``torch.utils.flop_counter`` for the other families,
and re-evaluation of the stored checkpoints on the regenerated test split.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from effnet_edu import lab
from effnet_edu.accounting import count
from effnet_edu.lab import data as D
from effnet_edu.lab import experiments as E

TINY = replace(lab.QUICK, train_images=192, val_images=64, test_images=64, epochs=3, bn_images=64)


def test_dataset_is_deterministic_and_balanced():
    a = D.make_dataset(32, seed=5)
    b = D.make_dataset(32, seed=5)
    c = D.make_dataset(32, seed=6)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    images, masks, labels = a
    assert images.shape == (32, D.SIZE, D.SIZE, 3) and images.dtype == np.uint8
    assert masks.shape == (32, D.SIZE, D.SIZE) and masks.dtype == bool
    assert np.bincount(labels, minlength=16).tolist() == [2] * 16  # 32 images, 16 classes


def test_masks_cover_the_object_and_not_the_clutter(monkeypatch):
    """Record every dot the renderer paints: the last ones are the object's (painted on top). Each object dot's
    whole disc must be inside the mask; no distractor's centre may be."""
    calls = []
    real = D.dot

    def spy(canvas, xx, yy, cx, cy, radius, *rest):
        calls.append((cx, cy, radius, rest[0]))
        return real(canvas, xx, yy, cx, cy, radius, *rest)

    monkeypatch.setattr(D, "dot", spy)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:D.SIZE, 0:D.SIZE]
    for label in range(len(D.CLASSES)):
        calls.clear()
        image, mask = D.render(rng, label)
        orientation = D.ORIENTATIONS[label % 4]
        # the object's dots are the trailing run of calls with the class's orientation and one radius
        n_object = 0
        for cx, cy, r, o in reversed(calls):
            if o != orientation or r != calls[-1][2]:
                break
            n_object += 1
        assert 7 <= n_object <= 11 or n_object >= 7, calls
        for cx, cy, r, _ in calls[-n_object:]:
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
            assert mask[disc].all()
        for cx, cy, r, _ in calls[:len(calls) - n_object]:
            assert not mask[int(cy), int(cx)]
        assert 0.03 < mask.mean() < 0.6


def test_shapes_outline_the_named_polygon():
    rng = np.random.default_rng(0)
    ring = D.outline("ring", 12, rng)
    assert np.allclose(np.hypot(*ring.T), 1.0)
    square = D.outline("square", 40, rng)
    corner = 1 / math.sqrt(2)  # corners at 45 degrees: an axis-aligned square of half-side 1/sqrt(2)
    assert np.allclose(np.abs(square).max(1), corner, atol=1e-9)
    with pytest.raises(ValueError, match="unknown shape"):
        D.outline("hexagon", 5, rng)


def test_trainer_learns(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_EDU_CACHE", str(tmp_path))
    import torch.nn.functional as F

    from effnet_edu.lab.train import normalise

    point, recipe = lab.Point("effnet", 1.0, 1.0, 32), replace(TINY, epochs=8)
    images, labels = lab.resized("train", 32, recipe), lab.split("train", recipe)[2]
    torch.manual_seed(0)  # the initial weights train_model starts from (same seed)
    fresh = lab.build_point(point, 16, recipe.dropout).train()
    with torch.no_grad():
        start = float(F.cross_entropy(fresh(normalise(images)), labels))
    assert start > math.log(16) - 0.3  # an untrained 16-class model is no better than chance (ln 16) ...
    losses = []
    model, entry = lab.train_model(point, seed=0, recipe=recipe, progress=lambda step, total, loss: losses.append(loss))
    assert losses[-1] < start - 0.3  # ... and the loss falls
    assert entry["params"] == sum(p.numel() for p in model.parameters())
    assert entry["macs"] == count(width=0.25, depth=0.25, resolution=32, num_classes=16).macs
    assert 0 <= entry["accuracy"] <= 1 and entry["seed"] == 0


def test_training_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_EDU_CACHE", str(tmp_path))
    recipe = replace(TINY, epochs=1)
    a, ea = lab.train_model(lab.Point("effnet", 1.0, 1.0, 32), 1, recipe)
    b, eb = lab.train_model(lab.Point("effnet", 1.0, 1.0, 32), 1, recipe)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert ea["accuracy"] == eb["accuracy"]


def test_matched_pairs_are_within_five_percent():
    for family in ("effnet", "mobilenetv2", "resnet"):
        target = E.compound_point(family, 1.0)
        goal = lab.macs(target, 16)
        for dimension in ("depth", "width", "resolution"):
            point = E.match_macs(target, dimension)
            ratio = lab.macs(point, 16) / goal
            if abs(ratio - 1) > E.MATCH_TOLERANCE:
                # Allowed only when no single-dimension point is that close: MACs grow with the multiplier, so the
                # neighbour on the other side of the target must be outside the tolerance too. (MobileNetV2's
                # width rounds channels to multiples of 8 and jumps from -9.5% to +7.5% around its compound point.)
                step = {"width": 0.01, "depth": 0.01, "resolution": 1}[dimension] * (-1 if ratio > 1 else 1)
                value, here = getattr(point, dimension), lab.macs(point, 16)
                for _ in range(300):  # walk to the next distinct MACs level on the target's other side
                    value = round(value + step, 4)
                    neighbour = lab.Point(family, **{"width": point.width, "depth": point.depth,
                                                     "resolution": point.resolution, dimension: value})
                    if lab.macs(neighbour, 16) != here:
                        break
                assert (lab.macs(neighbour, 16) - goal) * (here - goal) < 0  # it lies across the target ...
                assert abs(lab.macs(neighbour, 16) / goal - 1) > E.MATCH_TOLERANCE, (family, dimension, point)
                assert (family, dimension) in E.UNMATCHED, (family, dimension, ratio)
            others = {"width": point.width, "depth": point.depth, "resolution": point.resolution}
            base = lab.BASES[family]
            unchanged = [k for k in others if k != dimension]
            assert all(others[k] == (base.resolution if k == "resolution" else 1.0) for k in unchanged)


def test_macs_of_the_other_families_match_the_flop_counter_and_ours_match_accounting():
    from torch.utils.flop_counter import FlopCounterMode

    point = lab.Point("effnet", 1.5, 2.0, 80)
    a = point.absolute()
    model = lab.build_point(point, 16).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 80, 80))
    assert counter.get_total_flops() // 2 == lab.macs(point, 16)
    assert lab.macs(point, 16) == count(width=a["width"], depth=a["depth"], resolution=80, num_classes=16).macs


def test_grid_satisfies_the_constraint():
    points = E.grid()
    assert (1.2, 1.1, 1.15) in points  # the paper's Step-1 result lies on the grid
    for alpha, beta, gamma in points:
        assert min(alpha, beta, gamma) >= 1
        assert abs(alpha * beta**2 * gamma**2 - 2) <= E.GRID_TOLERANCE
    chosen = E.grid_points()
    assert set(chosen) <= set(points) and (1.2, 1.1, 1.15) in chosen


# ------------------------------------------------------------------------------------------ the stored results
@pytest.fixture(scope="module")
def stored():
    return lab.results()


def test_stored_results_cover_every_experiment(stored):
    experiments = {x for e in stored["models"] for x in e["experiments"]}
    assert {"c0", "fig3", "fig4", "grid", "step2", "fig8", "table3"} <= experiments
    assert {e["name"] for e in stored["models"]} == {r.key for r in E.plan(tuple(stored["step2_coefficients"]))}
    assert len(lab.entries(experiment="c0")) == 3 and len(lab.entries(experiment="fig8", family="effnet")) == 15
    for e in stored["models"]:
        for key in ("name", "family", "width", "depth", "resolution", "params", "macs", "seed", "accuracy",
                    "val_accuracy", "train_seconds"):
            assert key in e


def test_stored_accounting_matches_the_library(stored):
    for e in stored["models"]:
        point = lab.Point(e["family"], e["width"], e["depth"], e["resolution"])
        assert e["macs"] == lab.macs(point, 16) and e["params"] == lab.params(point, 16)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["effnet-w1-d1-r64-s0", "effnet-w1.1-d1.2-r74-s1", "mobilenetv2-w1-d1-r64-s0",
                                  "resnet-w1-d1-r64-s0"])
def test_stored_checkpoint_gives_its_stored_accuracy(name):
    model = lab.load_model(name)
    entry = model.entry
    images, labels = lab.resized("test", entry["resolution"]), lab.split("test")[2]
    assert lab.accuracy(model, images, labels) == entry["accuracy"]


def test_step2_uses_the_best_grid_point_by_validation(stored):
    grid = lab.entries(experiment="grid")
    best = max(grid, key=lambda e: (e["val_accuracy"], -e["macs"]))
    assert stored["step2_coefficients"] == best["coefficients"]
    alpha, beta, gamma = best["coefficients"]
    step2 = sorted(lab.entries(experiment="step2"), key=lambda e: e["macs"])
    expected = [E.compound_point("effnet", phi, alpha, beta, gamma) for phi in (1.0, 2.0, 3.0)]
    assert [(e["width"], e["depth"], e["resolution"]) for e in step2] == [
        (p.width, p.depth, p.resolution) for p in expected]


# ------------------------------------------------------------------------------------------- the command line
def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "effnet_edu", "lab", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_results_json(stored):
    out = _cli("results", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["models"] == stored["models"]
    out = _cli("results", "--experiment", "fig3", "--json")
    assert {e["name"] for e in json.loads(out.stdout)} == {e["name"] for e in lab.entries(experiment="fig3")}
    out = _cli("results", "--experiment", "fig99")
    assert out.returncode == 2 and "no experiment 'fig99'" in out.stderr and "fig3" in out.stderr


def test_cli_train_json(tmp_path):
    out = subprocess.run([sys.executable, "-m", "effnet_edu", "lab", "train", "--width", "1", "--depth", "1",
                          "--resolution", "32", "--seed", "0", "--quick", "--json"], capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, "EFFNET_EDU_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    entry = json.loads(out.stdout)
    assert entry["name"] == "effnet-w1-d1-r32-s0" and entry["resolution"] == 32
    assert entry["macs"] == count(width=0.25, depth=0.25, resolution=32, num_classes=16).macs
    bad = _cli("train", "--resolution", "5000")
    assert bad.returncode == 2 and "32..512" in bad.stderr
