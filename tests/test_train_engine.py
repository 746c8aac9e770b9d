"""The training engine end to end on a tiny generated JPEG folder (4 classes x 12 images, 32 px, width/depth 0.25):
a run learns, a killed run resumes bit-identically, 2-process DDP (gloo, SyncBatchNorm) equals one process,
bad files and empty classes are reported, and ``effnet-edu eval`` reads the checkpoints."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from effnet_edu.cli import main
from effnet_edu.train import DataError, FolderDataset, TrainConfig, eval_transform, minival_split, scan_folder, train
from effnet_edu.train.data import make_demo_folder

CLASSES, PER_CLASS = 4, 12


def make_folder(root: Path, classes=CLASSES, per_class=PER_CLASS, val=4) -> Path:
    """DATA/train/<wnid>/*.JPEG and DATA/val/<wnid>/*.JPEG (64 x 48), each class a different tint plus noise."""
    return make_demo_folder(root, classes, per_class, val)


def tiny(data, output, **changes) -> TrainConfig:
    # 44 training images (4 held out as minival: 2% per class, at least 1), batch 8: 5 steps per epoch.
    base = TrainConfig(data=str(data), output=str(output), width=0.25, depth=0.25, resolution=32, epochs=2,
                       batch_size=8, lr_per_256=0.5, warmup_epochs=0.4, num_workers=0, progress=False,
                       log_every=1, checkpoint_every=0, tensorboard=False)
    return replace(base, **changes)


def torchrun(args: list, timeout: float) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` with 2 CPU processes; on a timeout the whole process group is killed, so no
    worker outlives the test."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    with subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    return make_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory):
    """One uninterrupted 2-epoch run (dropout and stochastic depth on; AutoAugment off, too strong for 10 steps)."""
    output = tmp_path_factory.mktemp("reference")
    losses = []
    result = train(tiny(data, output, tensorboard=True, augment="none"), callbacks={"on_step": lambda s: losses.append(s["loss"])})
    return output, result, losses


def test_two_epochs_learn_and_write_everything(reference_run):
    output, result, losses = reference_run
    assert result["step"] == 10 and len(losses) == 10
    assert np.mean(losses[-3:]) < np.mean(losses[:2])  # the loss falls
    assert {"last.pt", "best.pt", "log.csv", "tensorboard"} <= {p.name for p in output.iterdir()}
    header = (output / "log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "lr", "images_per_s", "data_wait", "minival_top1", "val_top5"} <= set(header)
    ckpt = torch.load(output / "last.pt", weights_only=True)  # a checkpoint is data: weights_only loads it
    assert {"model", "ema", "optimizer", "rng", "step", "epoch", "batch_in_epoch"} <= set(ckpt)
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (10, 2, 0)


def test_killed_mid_epoch_then_resumed_is_bit_identical(data, reference_run, tmp_path):
    reference, _, _ = reference_run

    def crash(state):
        if state["step"] == 7:  # step 7 = second batch of epoch 2: the last checkpoint is step 6, mid-epoch
            raise KeyboardInterrupt("simulated kill")

    config = tiny(data, tmp_path, checkpoint_every=1, augment="none")
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks={"on_step": crash})
    assert torch.load(tmp_path / "last.pt", weights_only=True)["batch_in_epoch"] == 1
    # Resume with 2 loader worker processes: the augmentation depends on (seed, epoch, index) only.
    result = train(replace(config, resume=True, num_workers=2))
    assert result["step"] == 10
    ours = torch.load(tmp_path / "last.pt", weights_only=True)
    ref = torch.load(reference / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        for key, value in ref[part].items():
            assert torch.equal(ours[part][key], value), f"{part}.{key} differs after resume"


def test_ddp_two_processes_with_sync_bn_match_one_process(data, tmp_path):
    """torchrun, 2 CPU processes (gloo), 4 images each + SyncBatchNorm == 1 process with the same 8-image batch.
    Dropout and stochastic depth are off: their masks come from per-process RNG streams by design."""
    common = ["--data", str(data), "--width", "0.25", "--depth", "0.25", "--resolution", "32", "--epochs", "1",
              "--batch-size", "8", "--lr-per-256", "0.5", "--warmup-epochs", "0.4", "--dropout", "0",
              "--drop-path", "0", "--num-workers", "0", "--no-progress", "--no-tensorboard", "--device", "cpu"]
    done = torchrun(["-m", "effnet_edu", "train", *common, "--sync-bn", "--output", str(tmp_path / "ddp")], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["train", *common, "--output", str(tmp_path / "single")]) == 0
    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    single = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    assert ddp["step"] == single["step"] == 5
    diff = max((ddp["model"][k].double() - v.double()).abs().max().item() for k, v in single["model"].items())
    # Same images, same BN statistics, same averaged gradients: only the order of float32 sums differs (two
    # half-batch sums, gloo's all-reduce). Tolerance 5e-3, from measurements of this setup: the same 2-process
    # step in float64 gives gradients equal to 2e-13 (the math is exact); in float32, 5 RMSProp steps drift by
    # 6e-4..9e-4 (gradients reach ~14 and BN at stages 7-8 normalises 8 values per channel); without
    # --sync-bn (per-process BN statistics) the difference is 0.39, so the tolerance still catches a missing sync.
    assert diff < 5e-3, diff
    print(f"DDP vs single process, max abs weight difference after 5 steps: {diff:.3g}")


def test_bad_images_and_empty_class_are_reported(tmp_path):
    data = make_folder(tmp_path / "data", classes=3, per_class=10, val=2)
    bad_class = data / "train" / "n00000001"
    truncated = bad_class / "train_1_3.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:300])  # a download cut short
    (bad_class / "notes.JPEG").write_text("not an image")
    (data / "train" / "n00000009").mkdir()  # an empty class folder
    with pytest.warns(UserWarning, match="1 empty class folder.*n00000009"):
        samples, classes, empty = scan_folder(data / "train")
    assert len(classes) == 4 and empty == [str(data / "train" / "n00000009")]

    # The dataset replaces a bad file by the next readable one and names it; strict mode raises with the path.
    index = [p for p, _ in samples].index(str(truncated))
    image, label, bad = FolderDataset(samples, eval_transform(32))[index]
    assert str(truncated) in bad and image.shape == (3, 32, 32)
    with pytest.raises(DataError, match="train_1_3.JPEG"):
        FolderDataset(samples, eval_transform(32), skip_bad=False)[index]

    # A whole run finishes, counts the bad files it met in training and lists them in the output folder.
    train_ix, _ = minival_split(samples, 25000, 0)  # 28 training images, 7 batches of 4: every image is seen
    bad_files = [samples[i][0] for i in train_ix if samples[i][0] in (str(truncated), str(bad_class / "notes.JPEG"))]
    with pytest.warns(UserWarning, match="empty class"):
        result = train(tiny(data, tmp_path / "out", epochs=1, batch_size=4, warmup_epochs=0))
    assert result["bad_images"] == len(bad_files) > 0 and result["empty_classes"] == empty
    listed = (tmp_path / "out" / "bad_images.rank0.txt").read_text()
    assert all(path in listed for path in bad_files)


def test_eval_command_reads_our_checkpoints(reference_run, data, capsys):
    output, result, _ = reference_run
    assert main(["eval", "--weights", str(output / "best.pt"), "--data", str(data), "--num-workers", "0",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == CLASSES * 4 and 0 <= report["top1"] <= report["top5"] <= 100
    # last.pt's EMA weights were evaluated on val at the end of training: the command reproduces that number.
    assert main(["eval", "--weights", str(output / "last.pt"), "--data", str(data), "--num-workers", "0",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(result["val_top1"])


def test_train_command_reports_a_missing_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_eval_command_reads_imported_weights(source, data, tmp_path, capsys):
    """A torchvision / timm B0 state-dict file (random weights, 4 classes): the command's top-1 equals the top-1
    of the original torchvision / timm model on the same preprocessed images (an independent oracle)."""
    torch.manual_seed(0)
    if source == "torchvision":
        import torchvision

        reference = torchvision.models.efficientnet_b0(num_classes=CLASSES)
    else:
        import timm

        reference = timm.create_model("efficientnet_b0", num_classes=CLASSES)
    for m in reference.modules():  # non-trivial BN statistics, so the eval-mode outputs depend on them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    samples, _, _ = scan_folder(data / "val")
    images = torch.stack([FolderDataset(samples, eval_transform(64))[i][0] for i in range(len(samples))])
    labels = torch.tensor([label for _, label in samples])
    with torch.no_grad():
        expected = 100 * (reference.eval()(images).argmax(1) == labels).float().mean().item()
    assert main(["eval", "--model", "b0", "--weights", str(tmp_path / "weights.pt"), "--source", source,
                 "--data", str(data), "--resolution", "64", "--num-workers", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(expected)


def test_accumulation_and_bf16_autocast_run(data, tmp_path):
    """Gradient accumulation (2 micro-batches of 4 per step of 8) under bf16 autocast on CPU: it runs, stays finite
    and takes the same number of optimizer steps (BN statistics over 4 images differ, so no exact comparison)."""
    result = train(tiny(data, tmp_path, epochs=1, accumulate=2, precision="bf16", augment="none"))
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert result["step"] == 5 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
