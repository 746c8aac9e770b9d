"""The elastic (weight-shared) network of the scaling lab: extraction, recalibration, training, CLI and explorer.

Oracles: ``effnet_edu.build`` at the point with weights sliced here by hand (an independent indexing of the same
rule), ``effnet_edu.accounting`` and ``torch.utils.flop_counter`` for the counts, the training step's own
functional forward for the same slices, and the scaling lab's stored from-scratch results."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from effnet_edu import build
from effnet_edu.accounting import count
from effnet_edu.lab import elastic as E
from effnet_edu.lab.families import Point
from effnet_edu.lab.train import Recipe

INSIDE = [E.SMALLEST, E.LARGEST, Point("effnet", 1.5, 1.3, 90), Point("effnet", 1.1, 2.0, 71)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Shared weights with random values (and non-trivial BatchNorm affine parameters), saved as training does."""
    path = tmp_path_factory.mktemp("elastic")
    torch.manual_seed(0)
    net = E.sub_network(E.LARGEST)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    torch.save({"recipe": {}, "weights": {n: p.detach().half() for n, p in net.named_parameters()}},
               path / "weights.pt")
    return path


def by_hand(point: Point, folder) -> torch.nn.Module:
    """The network ``build()`` makes at the point, each parameter cut from the shared tensor with narrow()."""
    shared = torch.load(folder / "weights.pt", weights_only=True)["weights"]
    a = point.absolute()
    model = build(width=a["width"], depth=a["depth"], resolution=point.resolution, num_classes=16, dropout=0.1,
                  drop_path=0.0, bn_momentum=0.1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            w = shared[name].float()
            for dim, size in enumerate(p.shape):
                w = w.narrow(dim, 0, size)
            p.copy_(w)
    return model


@pytest.mark.parametrize("point", INSIDE, ids=str)
def test_extracted_equals_the_network_built_at_the_point(point, folder):
    model = E.extract(point, folder, recalibrate=False)
    # extract() returns a channels_last model (faster on CPU); the same layout makes the same kernels run
    reference = by_hand(point, folder).to(memory_format=torch.channels_last)
    assert type(model) is type(reference)
    x = torch.randn(3, 3, point.resolution, point.resolution)
    model.train(), reference.train()  # batch statistics: both networks see the same normalisation
    with torch.no_grad():
        torch.manual_seed(1)  # the same dropout mask for both
        logits = model(x)
        torch.manual_seed(1)
        torch.testing.assert_close(logits, reference(x), rtol=0, atol=0)
    model.eval()
    report = count(width=point.absolute()["width"], depth=point.absolute()["depth"], resolution=point.resolution,
                   num_classes=16)
    assert sum(p.numel() for p in model.parameters()) == report.params
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, point.resolution, point.resolution))
    assert counter.get_total_flops() // 2 == report.macs


def test_box_corners(folder):
    shared = torch.load(folder / "weights.pt", weights_only=True)["weights"]
    largest = E.extract(E.LARGEST, folder, recalibrate=False)
    assert all(torch.equal(p.half(), shared[n]) for n, p in largest.named_parameters())  # all of it
    smallest = E.extract(E.SMALLEST, folder, recalibrate=False)
    c0 = build(width=0.25, depth=0.25, num_classes=16)
    assert [p.shape for p in smallest.parameters()] == [p.shape for p in c0.parameters()]
    assert sum(p.numel() for p in smallest.parameters()) == 128_748  # C0's count in the lab's stored results


def test_training_forward_uses_the_same_slices(folder):
    # The sandwich rule trains a point through functional_call on the largest's slices; extract must give the
    # network that was trained.
    point = Point("effnet", 1.3, 1.6, 80)
    shared = {n: w.float() for n, w in torch.load(folder / "weights.pt", weights_only=True)["weights"].items()}
    shell = E.sub_network(point).train().to(memory_format=torch.channels_last)  # as train_elastic does
    params = {n: E.leading_slice(shared[n], p.shape) for n, p in shell.named_parameters()}
    x = torch.randn(2, 3, 80, 80).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    trained = torch.func.functional_call(shell, params, (x,))
    model = E.extract(point, folder, recalibrate=False).train()
    torch.manual_seed(1)  # the same dropout mask
    # float32 tolerance, not bit equality: a sliced (strided) weight and its contiguous copy may take different
    # convolution kernels, whose multi-threaded sums differ in the last bits (measured: 5e-7 on 2 threads)
    torch.testing.assert_close(model(x), trained)
    model.eval()


def test_recalibration_changes_only_batchnorm_buffers(folder):
    point = Point("effnet", 1.2, 1.0, 72)
    raw = E.extract(point, folder, recalibrate=False).state_dict()
    calibrated = E.extract(point, folder).state_dict()
    assert raw.keys() == calibrated.keys()
    changed = {k for k in raw if not torch.equal(raw[k], calibrated[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert any(k.endswith("running_var") for k in changed)
    # ... and the new statistics are those of the calibration set: the stem's BN mean equals the stem conv's
    # output mean over the calibration images (one batch-independent oracle).
    model = E.extract(point, folder)
    from effnet_edu.lab.train import normalise

    with torch.no_grad():
        stem = model.stem.conv(normalise(E.calibration_images(72)).contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(model.stem.bn.running_mean, stem.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("point", [Point("effnet", 2.1, 1, 64), Point("effnet", 1, 0.9, 64),
                                   Point("effnet", 1, 1, 130), Point("effnet", 1, 1, 63),
                                   Point("resnet", 1, 1, 64)], ids=str)
def test_points_outside_the_box_are_refused(point, folder):
    with pytest.raises(E.OutsideBox, match="width 1..2, depth 1..2, resolution 64..128"):
        E.extract(point, folder)


def test_evaluate_counts_and_scores(folder):
    point = Point("effnet", 1.5, 1.3, 90)
    result = E.evaluate(point, 32, folder)
    report = count(width=0.375, depth=0.325, resolution=90, num_classes=16)
    assert (result["params"], result["macs"], result["test_images"]) == (report.params, report.macs, 32)
    assert 0 <= result["accuracy"] <= 100 and 0 <= result["pointing"] <= 100
    assert math.isclose(result["accuracy"] * 32 / 100, round(result["accuracy"] * 32 / 100), abs_tol=0.01)
    assert E.evaluate(point, 32, folder) is result  # cached


@pytest.mark.slow
def test_training_resumes_bit_identically(tmp_path):
    recipe = E.ElasticRecipe(epochs=1, batch=16, data=Recipe(train_images=64, val_images=16, test_images=16))
    threads = torch.get_num_threads()  # train_elastic(threads=1) sets torch's global thread count: restore it
    try:
        _resume_check(tmp_path, recipe)
    finally:
        torch.set_num_threads(threads)


def _resume_check(tmp_path, recipe):
    whole = E.train_elastic(tmp_path / "whole", recipe, threads=1, save_every=2)

    class Stop(Exception):
        pass

    def stop_at_3(step, total, losses):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        E.train_elastic(tmp_path / "part", recipe, progress=stop_at_3, threads=1, save_every=2)
    assert (tmp_path / "part" / "resume.pt").is_file()
    E.train_elastic(tmp_path / "part", recipe, threads=1, save_every=2)
    a = torch.load(tmp_path / "whole" / "weights.pt", weights_only=True)["weights"]
    b = torch.load(tmp_path / "part" / "weights.pt", weights_only=True)["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "part" / "resume.pt").exists()
    assert whole["steps"] == 4 and all(math.isfinite(r["largest"]) for r in whole["log"])


def test_random_points_cover_the_box():
    g = torch.Generator().manual_seed(0)
    points = [E.random_point(g) for _ in range(400)]
    assert all(E.check_point(p) for p in points)
    assert min(p.resolution for p in points) == 64 and max(p.resolution for p in points) == 128
    assert min(p.width for p in points) < 1.05 and max(p.width for p in points) > 1.95


def test_cli_eval_and_cam(folder, capsys):
    from effnet_edu.cli import main

    assert main(["lab", "eval", "--phi", "1", "--weights", str(folder), "--images", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # phi = 1 with the paper's coefficients: w = 1.1, d = 1.2, r = 64 * 1.15 = 73.6 -> 74
    assert (out["width"], out["depth"], out["resolution"]) == (1.1, 1.2, 74)
    assert out["macs"] == count(width=0.275, depth=0.3, resolution=74, num_classes=16).macs
    assert {"accuracy", "pointing", "params"} <= out.keys()
    assert main(["lab", "cam", "--width", "2", "--resolution", "96", "--weights", str(folder), "test:5",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"label", "probability", "peak"} <= out.keys() and out["feature_map"] == 3
    assert all(0 <= v < 128 for v in out["peak"])


@pytest.mark.parametrize("argv, message", [
    (["--width", "3"], "covers width 1..2"),
    (["--phi", "5"], "covers width 1..2"),
    (["--phi", "1", "--width", "2"], "not both"),
    (["--alpha", "1.2"], "need --phi"),
    (["--phi", "1", "--alpha", "0.5"], "at least 1"),
])
def test_cli_errors(argv, message, folder, capsys):
    from effnet_edu.cli import main

    assert main(["lab", "eval", *argv, "--weights", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_explorer_driven_from_python(folder):
    pytest.importorskip("ipywidgets")
    from effnet_edu_widgets import ElasticExplorer

    x = ElasticExplorer(folder=folder)
    assert x.error.value == "" and x.state["inside"] and x.cams.value
    first_cams, first_acc = x.cams.value, x.state["accuracy"]
    x.phi.value = 3.0  # w = 1.1^3 = 1.331, d = 1.2^3 = 1.728, r = 64 * 1.15^3 = 97.3 -> 97
    assert (x.state["point"].width, x.state["point"].depth, x.state["point"].resolution) == (1.331, 1.728, 97)
    assert x.state["macs"] == count(width=0.25 * 1.331, depth=0.25 * 1.728, resolution=97, num_classes=16).macs
    assert f"{x.state['params']:,}" in x.readout.value and x.cams.value != first_cams
    assert 0 <= x.state["accuracy"] <= 100 and x.state["accuracy"] is not first_acc
    x.images.value = list(x.images.options)[1]
    assert [i["index"] for i in x.state["images"]] == [4, 5, 6, 7]
    x.phi.value = 4.5  # depth 1.2^4.5 = 2.27: outside the box, counts only
    assert not x.state["inside"] and "no trained sub-network covers" in x.readout.value
    assert x.state["macs"] == count(width=0.25 * 1.1**4.5, depth=0.25 * 1.2**4.5,
                                    resolution=round(64 * 1.15**4.5), num_classes=16).macs
    x.phi.value = 1.0
    x.lock.value = True
    x.alpha.value = 1.4  # beta follows: sqrt(2 / (1.4 * 1.15^2))
    assert x.beta.value == pytest.approx(math.sqrt(2 / (1.4 * 1.15**2)), abs=1e-4)
    x.gamma.value = 2.0  # alpha * gamma^2 = 5.6 > 2: no beta >= 1 holds the budget
    assert "cannot hold" in x.error.value and x.state["inside"]  # the last valid view stays


def test_explorer_without_weights_says_so(tmp_path):
    pytest.importorskip("ipywidgets")
    from effnet_edu_widgets import ElasticExplorer

    x = ElasticExplorer(folder=tmp_path)
    assert "no elastic network in" in x.error.value and "elastic-train" in x.error.value
    # phi = 1: w 1.1, d 1.2, 74 px; the counts still show
    assert x.state["params"] == count(width=0.275, depth=0.3, resolution=74, num_classes=16).params
    assert f"{x.state['params']:,}" in x.readout.value


def test_scratch_points_are_the_labs_efficientnets_inside_the_box():
    from effnet_edu import lab

    rows = E.scratch_points(lab.entries())
    names = [n for r in rows for n in r["names"]]
    assert names and all(n.startswith("effnet-") for n in names)  # not Table 3's MobileNetV2/ResNet
    assert all(E.check_point(r["point"]) for r in rows)
    c0 = next(r for r in rows if r["point"] == E.SMALLEST)
    seeds = lab.entries(experiment="c0")
    assert c0["seeds"] == len(seeds) == 3
    assert c0["accuracy"] == pytest.approx(100 * sum(e["accuracy"] for e in seeds) / 3)
    assert not any(r["point"].depth > 2 for r in rows)  # Figure 3's depth 3, 4, 6 lie outside the box
