"""Starting from pretrained weights (``effnet_edu.train.transfer``, ``effnet-edu train --init-from``): the backbone
is the released one, the classifier is new; a frozen backbone does not move (weights and BatchNorm statistics, bit
for bit) through real optimizer steps of the trainer; ``--backbone-lr-scale`` sets the backbone's update size
exactly (checked against RMSProp's first step written out by hand); mistakes are one clear line. Also the lab's
transfer experiment (``effnet_edu.lab.transfer``) on a tiny recipe, and its stored results."""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from effnet_edu import build
from effnet_edu.cli import main
from effnet_edu.train import RMSpropTF, TrainConfig, TrainError, param_groups
from effnet_edu.train.config import check
from effnet_edu.train.data import make_demo_folder
from effnet_edu.train.engine import Trainer
from effnet_edu.train.transfer import freeze_backbone, init_from, train_mode
from effnet_edu.weights import WeightsError, pretrained, save_weights

CLASSES = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_demo_folder(tmp_path_factory.mktemp("transfer") / "data", CLASSES, 12, 4)


@pytest.fixture(scope="module")
def init_file(tmp_path_factory) -> Path:
    """A tiny "pretrained" network (width/depth 0.25, 10 classes: not the data's 4) saved by effnet-edu."""
    torch.manual_seed(1)
    net = build(width=0.25, depth=0.25, resolution=32, num_classes=10)
    for m in net.modules():  # non-trivial BatchNorm statistics, so that "unchanged" means something
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return save_weights(net, tmp_path_factory.mktemp("init") / "tiny.pt")


def tiny(data, output, **changes) -> TrainConfig:
    base = TrainConfig(data=str(data), output=str(output), width=0.25, depth=0.25, resolution=32, epochs=2,
                       batch_size=8, lr_per_256=0.5, warmup_epochs=0.0, num_workers=0, progress=False,
                       log_every=1, checkpoint_every=0, tensorboard=False, augment="none", dropout=0.0,
                       drop_path=0.0, minival_size=0)
    return replace(base, **changes)


def is_classifier(key: str) -> bool:
    return key.startswith("classifier.")


# ----------------------------------------------------------------------------------------------- init_from
def test_lite0_backbone_equals_the_released_model_and_the_classifier_is_new():
    released = pretrained("lite0").eval()  # the weights module's own loading of the ImageNet checkpoint
    torch.manual_seed(0)
    fresh = build("lite0", num_classes=7)
    ours = init_from(fresh, "lite0").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours.forward_features(x), released.forward_features(x))
    assert ours.classifier.weight.shape == (7, 1280) and ours.config.num_classes == 7
    # The model's own FC initialisation (the official code's): uniform(+-1/sqrt(classes)), zero bias.
    bound = 1 / math.sqrt(7)
    assert ours.classifier.weight.abs().max() <= bound and ours.classifier.weight.std() > bound / 3
    assert torch.count_nonzero(ours.classifier.bias) == 0
    assert ours.weights_source == "lite" and ours.config.same_padding and not fresh.config.same_padding


def test_init_from_a_file_keeps_its_backbone_and_settings(init_file):
    net = init_from(build(width=0.25, depth=0.25, resolution=32, num_classes=CLASSES), init_file)
    saved = torch.load(init_file, weights_only=True)["state_dict"]
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if not is_classifier(k))
    assert state["classifier.weight"].shape == (CLASSES, saved["classifier.weight"].shape[1])


@pytest.mark.parametrize("source, model, message", [
    ("lite7", "lite0", "neither a released model with offline weights"),
    ("missing.pt", "lite0", "neither a released model"),
    ("lite1", "lite0", "tensors have another shape"),
])
def test_init_from_refuses_what_does_not_fit(source, model, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match=message):
        init_from(build(model, num_classes=3), source)


def test_settings_that_contradict_each_other_are_refused(init_file):
    with pytest.raises(TrainError, match="needs pretrained weights"):
        check(TrainConfig(freeze_backbone=True))
    with pytest.raises(TrainError, match="would scale nothing"):
        check(TrainConfig(init_from="lite0", freeze_backbone=True, backbone_lr_scale=0.5))
    with pytest.raises(TrainError, match=r"in \(0, 1\]"):
        check(TrainConfig(init_from="lite0", backbone_lr_scale=0.0))
    check(TrainConfig(init_from=str(init_file), backbone_lr_scale=0.1))  # fine


@pytest.mark.parametrize("args, message", [
    (["--init-from", "nothing-here.pt"], "argument --init-from: 'nothing-here.pt' is neither"),
    (["--init-from", ""], "argument --init-from: empty: give lite0"),
    (["--init-from", "lite0", "--backbone-lr-scale", "1.5"], "argument --backbone-lr-scale: must be in (0, 1]"),
    (["--model", "b0", "--init-from", "lite0"], "--model lite0 matches them"),
    (["--freeze-backbone"], "--freeze-backbone needs pretrained weights"),
])
def test_train_command_says_what_is_wrong_in_one_line(args, message, data, tmp_path, capsys):
    argv = ["train", "--data", str(data), "--output", str(tmp_path / "out"), "--resolution", "32",
            "--batch-size", "8", "--num-workers", "0", *args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "last.pt").exists()


# ------------------------------------------------------------------------------------------ frozen backbone
def test_frozen_backbone_is_bit_identical_after_real_training_steps(data, init_file, tmp_path):
    config = tiny(data, tmp_path / "run", init_from=str(init_file), freeze_backbone=True, epochs=1)
    trainer = Trainer(config)
    model = trainer.run.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    in_optimizer = {id(p) for g in trainer.run.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.classifier.parameters()}  # frozen: no slot, no weight decay
    result = trainer.fit()
    assert result["step"] == 6  # 48 images (no minival), batch 8, 1 epoch
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    backbone = [k for k in before if not is_classifier(k)]
    assert any("running_var" in k for k in backbone)  # BatchNorm statistics are compared too
    changed = [k for k in backbone if not torch.equal(before[k], after[k])]
    assert changed == []  # weights, BatchNorm statistics and BatchNorm's batch counter
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert all(p.grad is None for name, p in model.named_parameters() if not is_classifier(name))


def test_train_mode_keeps_a_frozen_backbone_in_eval_mode():
    net = freeze_backbone(build(width=0.25, depth=0.25, resolution=32, num_classes=3))
    train_mode(net)
    assert net.training and net.dropout.training and net.classifier.training
    assert not any(m.training for part in (net.stem, net.stages, net.head) for m in part.modules())
    unfrozen = train_mode(build(width=0.25, depth=0.25, resolution=32, num_classes=3))
    assert all(m.training for m in unfrozen.modules())


# ------------------------------------------------------------------------------------------ backbone lr scale
def test_backbone_lr_scale_sets_the_update_size_rmsprop_by_hand(data, init_file, tmp_path):
    """One step of the real trainer against TF-RMSProp's first step written out (ms starts at 1, momentum at 0):
    ms = decay + (1 - decay) g^2, update = lr g / sqrt(ms + eps), g including weight decay for decayed tensors."""
    wd, scale = 1e-3, 0.1
    trainer = Trainer(tiny(data, tmp_path / "run", init_from=str(init_file), backbone_lr_scale=scale,
                           weight_decay=wd, label_smoothing=0.0))
    model, opt = trainer.run.model, trainer.run.optimizer
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales == [scale, 1.0]
    classifier = {id(p) for p in model.classifier.parameters()}
    for g in opt.param_groups:
        assert all((id(p) in classifier) == (g["lr_scale"] == 1.0) for p in g["params"])
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % CLASSES
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    copy = init_from(build(width=0.25, depth=0.25, resolution=32, num_classes=CLASSES, dropout=0.0, drop_path=0.0),
                     init_file)
    copy.load_state_dict(model.state_dict())
    copy.train()
    nn.functional.cross_entropy(copy(images), labels).backward()
    grads = {n: p.grad for n, p in copy.named_parameters()}
    trainer.run.model.train()
    _, lr = trainer.train_step(iter([(images, labels, [""] * 8)]))
    assert lr == pytest.approx(trainer.peak_lr)  # no warmup: the peak from the first step
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] for p in g["params"]}
    for name, p in model.named_parameters():
        g = grads[name] + (wd * reference[name] if id(p) in decayed else 0)
        step_lr = lr * (1.0 if is_classifier(name) else scale)
        expected = reference[name] - step_lr * g / torch.sqrt(0.9 + 0.1 * g * g + 1e-3)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7, msg=name)


def test_param_groups_without_a_scale_stay_two_groups_and_skip_frozen_tensors():
    net = build(width=0.25, depth=0.25, resolution=32, num_classes=3)
    decay, no_decay = param_groups(net, 1e-5)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))
    freeze_backbone(net)
    groups = param_groups(net, 1e-5)
    assert sum(len(g["params"]) for g in groups) == 2  # classifier weight and bias
    RMSpropTF(groups, lr=0.1)  # an empty group is accepted
    with pytest.raises(ValueError, match="backbone_lr_scale"):
        param_groups(net, 1e-5, backbone_lr_scale=-1)


# ------------------------------------------------------------------------------- the lab's transfer experiment
def test_lab_subsets_are_balanced_and_nested():
    from effnet_edu.lab.transfer import subset

    labels = torch.arange(16).repeat(5)[torch.randperm(80, generator=torch.Generator().manual_seed(0))]
    small, large = subset(labels, 2), subset(labels, 4)
    assert torch.bincount(labels[small], minlength=16).tolist() == [2] * 16
    assert set(small.tolist()) <= set(large.tolist())
    with pytest.raises(ValueError, match="only 5"):
        subset(labels, 6)


def test_lab_input_is_renormalised_for_the_lite_weights():
    """The lab feeds ImageNet-normalised images; the Lite checkpoints expect (x - 127) / 128 on 0..255 pixels."""
    from effnet_edu.lab.train import normalise
    from effnet_edu.lab.transfer import SourceInput

    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    seen = SourceInput(nn.Identity(), "lite")(normalise(pixels))
    torch.testing.assert_close(seen, (pixels.float() - 127) / 128, rtol=0, atol=1e-5)


def test_lab_transfer_runs_resume_from_their_files(tmp_path, monkeypatch):
    from effnet_edu import lab
    from effnet_edu.lab import transfer as T

    data = replace(lab.QUICK, train_images=48, test_images=32)
    recipe = replace(T.TRANSFER, resolution=32, steps=2, batch=8, per_class=(2,), bn_images=16)
    first = T.reproduce(tmp_path, recipe=recipe, data=data, progress=None)
    assert sorted(e["name"] for e in first["runs"]) == ["frozen-n2-s0", "imagenet-n2-s0", "scratch-n2-s0"]
    assert all(0 <= e["accuracy"] <= 1 and e["train_images"] == 32 for e in first["runs"])

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(T, "train_run", no_training)
    again = T.reproduce(tmp_path, recipe=recipe, data=data, progress=None)
    assert again == first == T.results(tmp_path)  # nothing retrained, the file (wall time, date) kept as it was
    (tmp_path / T.RUNS / "scratch-n2-s0.json").unlink()  # a run lost: only it is trained again
    trained = []
    monkeypatch.undo()
    real = T.train_run
    monkeypatch.setattr(T, "train_run", lambda run, *a, **k: (trained.append(run.key), real(run, *a, **k))[1])
    third = T.reproduce(tmp_path, recipe=recipe, data=data, progress=None)
    assert trained == ["scratch-n2-s0"] and third["complete"]
    assert [e["name"] for e in third["runs"]] == [e["name"] for e in first["runs"]]


def test_lab_transfer_command_needs_a_folder_for_quick(capsys):
    assert main(["lab", "transfer", "--quick"]) == 2
    assert "--quick writes a reduced experiment" in capsys.readouterr().err


def test_the_papers_tables_5_and_6_agree_with_docs_paper_facts():
    from effnet_edu.lab.transfer import TABLE5, TABLE6

    text = (Path(__file__).resolve().parents[1] / "docs" / "paper-facts.md").read_text()
    section = text.split("## Tables 5 and 6", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| dataset")]
    table6 = {r[0]: tuple(int(v.replace(",", "")) for v in r[1:]) for r in rows if len(r) == 4}
    table5 = {r[0]: tuple((r[i], float(r[i + 1].rstrip("%")), None if r[i + 2] == "-" else int(r[i + 2].rstrip("M")))
                          for i in (1, 4, 7, 10)) for r in rows if len(r) == 13}
    assert table6 == TABLE6 and table5 == TABLE5
    # Section 5.3's count: EfficientNet at least as accurate as the state of the art on 5 of the 8 datasets.
    assert sum(ours[1] >= sota[1] for _, _, sota, ours in TABLE5.values()) == 5
    # ... "using 9.6x fewer parameters": the geometric mean of the ratios where the paper gives both sizes, rounded
    # as Table 5 prints them (556M / 64M = "8.7x", 556M / 41M = "14x").
    ratios = [sota[2] / ours[2] for _, _, sota, ours in TABLE5.values() if sota[2] and ours[2]]
    ratios = [round(r, 1) if r < 10 else round(r) for r in ratios]
    assert round(math.prod(ratios) ** (1 / len(ratios)), 1) == 9.6


def test_notebook_checks_count_the_probe_from_the_model(capsys):
    from effnet_edu_widgets.checks import check_probe_params

    assert check_probe_params(1280 * 16 + 16) and not check_probe_params(1280 * 16) and not check_probe_params(None)
    assert "not answered yet" in capsys.readouterr().out


def test_stored_transfer_results_are_the_current_plans():
    """The shipped transfer.json was made with today's recipe and holds every planned run (a recipe change needs
    `effnet-edu lab transfer` again)."""
    from dataclasses import asdict

    from effnet_edu.lab import transfer as T

    stored = T.results(Path(T.__file__).parent / "results")  # the package's, whatever EFFNET_EDU_LAB_RESULTS says
    assert stored["complete"] and stored["recipe"] == json_ready(asdict(T.TRANSFER))
    assert [e["name"] for e in stored["runs"]] == [r.key for r in T.plan()]
    assert all(1 / 16 <= e["accuracy"] <= 1 for e in stored["runs"])  # nothing below chance on 2,000 test images


def json_ready(value):
    """Tuples as JSON stores them (lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}


def test_notebook_check_of_the_transfer_gain_reads_the_stored_runs(capsys):
    import json

    from effnet_edu.lab import transfer as T
    from effnet_edu_widgets.checks import check_transfer_gain

    runs = {e["name"]: e["accuracy"] for e in json.loads((T.RESULTS / T.FILE).read_text())["runs"]}
    gain = 100 * (runs["imagenet-n10-s0"] - runs["scratch-n10-s0"])
    assert check_transfer_gain(round(gain, 1)) and not check_transfer_gain(gain + 5)
    assert not check_transfer_gain(3.0, per_class=7)  # no such runs: a message, not an exception
    assert "no runs at 7 images per class" in capsys.readouterr().out
