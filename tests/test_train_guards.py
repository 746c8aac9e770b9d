"""Careless and hostile input to training, one test per root cause, through the public interface (``effnet-edu
train`` / ``eval`` in process or as a subprocess, and ``train()``): each asserts the one-line message, the exit
status and that nothing bad was written (no NaN weights, no temporary files, no file followed through a link)."""

import errno
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from test_train_engine import torchrun  # torchrun with 2 CPU processes, killed as a group on a timeout

from effnet_edu.cli import main
from effnet_edu.train import TrainConfig, TrainError, train
from effnet_edu.train.data import make_demo_folder

# 4 classes x 12 images, 4 held out as minival, batch 8: 5 steps per epoch of a 0.25 x 0.25 network at 32 px.
TINY = ["--width", "0.25", "--depth", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "8",
        "--augment", "none", "--num-workers", "0", "--no-progress", "--no-tensorboard", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    return make_demo_folder(tmp_path_factory.mktemp("tiny"))


def run(capsys, data, output, *options):
    """``effnet-edu train`` in this process: (exit status, stderr lines)."""
    status = main(["train", "--data", str(data), "--output", str(output), *TINY, *options])
    return status, capsys.readouterr().err.strip().splitlines()


def one_error(lines, *fragments):
    """Exactly one line, the command's error, containing every fragment."""
    assert len(lines) == 1 and lines[0].startswith("effnet-edu train: error: "), lines
    assert all(f in lines[0] for f in fragments), lines[0]


def finite(path) -> bool:
    state = torch.load(path, weights_only=True)
    return all(t.isfinite().all() for part in ("model", "ema", "state_dict") for t in state[part].values()
               if t.is_floating_point())


def tiny(data, output, **changes) -> TrainConfig:
    return replace(TrainConfig(data=str(data), output=str(output), width=0.25, depth=0.25, resolution=32, epochs=2,
                               batch_size=8, augment="none", num_workers=0, progress=False, tensorboard=False,
                               log_every=1, checkpoint_every=0, device="cpu"), **changes)


# ----------------------------------------------------------------------------- no silent wrong answers

@pytest.mark.parametrize("log_every", ["1", "1000"])
def test_nan_loss_stops_the_run_and_no_nan_weights_are_saved(data, tmp_path, capsys, log_every):
    # lr 1e30 per 256 images, no warmup: the first update makes the weights ~1e28, the next loss is inf/NaN.
    status, err = run(capsys, data, tmp_path, "--lr-per-256", "1e30", "--warmup-epochs", "0", "--checkpoint-every",
                      "1", "--log-every", log_every)
    assert status == 2
    one_error(err, "became NaN or infinite", "--lr-per-256")
    saved = [p for p in (tmp_path / "last.pt", tmp_path / "best.pt") if p.exists()]
    assert all(finite(p) for p in saved)  # whatever was saved before the blow-up is finite
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_nan_weights_the_loss_does_not_see_are_never_saved(data, tmp_path, monkeypatch):
    """A NaN in the EMA's BatchNorm statistics (the training loss uses neither): the check before every save stops
    the run, and last.pt keeps the last finite state."""
    from effnet_edu.train import EMA

    update = EMA.update

    def update_then_poison(self, model):
        update(self, model)
        if self.updates == 3:
            next(b for n, b in self.module.named_buffers() if n.endswith("running_var")).fill_(float("nan"))

    monkeypatch.setattr(EMA, "update", update_then_poison)
    with pytest.raises(TrainError, match=r"the weights became NaN or infinite by step 3 .* last.pt holds step 2"):
        train(tiny(data, tmp_path, checkpoint_every=1))
    assert finite(tmp_path / "last.pt") and torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 2


@pytest.mark.slow
def test_nan_loss_under_ddp_stops_every_process(data, tmp_path):
    """Both torchrun processes stop with the message (the flag is all-reduced): none hangs in a collective."""
    done = torchrun(["-m", "effnet_edu", "train", "--data", str(data), "--output", str(tmp_path), *TINY,
                     "--lr-per-256", "1e30", "--warmup-epochs", "0", "--log-every", "1000"], timeout=180)
    assert done.returncode != 0
    assert done.stderr.count("effnet-edu train: error: the training loss became NaN or infinite") == 2, done.stderr
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--lr-per-256", "0", "must be > 0"), ("--lr-per-256", "-0.1", "must be > 0"), ("--epochs", "0", "must be > 0"),
    ("--epochs", "inf", "finite"), ("--resolution", "0", "must be >= 1"), ("--batch-size", "0", "must be >= 1"),
    ("--num-workers", "-1", "must be >= 0"), ("--augment", "mixup", "invalid choice"),
    ("--precision", "fp8", "invalid choice"), ("--device", "cuda:99", "cuda:99"), ("--device", "tpu", "cpu, cuda"),
    ("--momentum", "1", "in [0, 1)"), ("--width", "none0", "expected a number"),
])
def test_bad_settings_are_one_line_and_exit_2(data, tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", str(data), "--output", str(tmp_path / "out"), option, value])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and last.startswith(f"effnet-edu train: error: argument {option}: ")
    assert message in last and not (tmp_path / "out").exists()
    # eval checks its options with the same rules
    if option in ("--batch-size", "--num-workers", "--resolution", "--device"):
        with pytest.raises(SystemExit):
            main(["eval", "--weights", "w.pt", "--data", str(data), option, value])
        assert message in capsys.readouterr().err


def test_library_callers_get_the_same_checks(data, tmp_path):
    with pytest.raises(TrainError, match=r"^epochs: must be > 0, got 0$"):
        train(tiny(data, tmp_path, epochs=0))
    with pytest.raises(TrainError, match="augment: expected one of autoaugment, randaugment, none"):
        train(tiny(data, tmp_path, augment="mixup"))
    assert not list(tmp_path.iterdir())


def test_class_folders_must_agree_with_num_classes_and_val(data, tmp_path, capsys):
    status, err = run(capsys, data, tmp_path / "out", "--num-classes", "3")
    assert status == 2
    one_error(err, "--num-classes 3 is fewer than the 4 class folders")
    odd = make_demo_folder(tmp_path / "odd", classes=2, per_class=12, val_per_class=2)
    (odd / "val" / "n99999999").mkdir()  # a class the model never sees in training
    status, err = run(capsys, odd, tmp_path / "out")
    assert status == 2
    one_error(err, "1 class folder(s) that", "n99999999")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- small data

def test_small_folder_with_the_default_batch_says_what_to_pass(data, tmp_path, capsys):
    status = main(["train", "--data", str(data), "--output", str(tmp_path), "--width", "0.25", "--depth", "0.25",
                   "--resolution", "32", "--num-workers", "0", "--no-progress"])  # the paper's batch of 4096
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    one_error(err, "the training set has 44 images", "fewer than one global batch of 4096", "--batch-size 8")
    assert not list(tmp_path.iterdir())


def test_a_run_shorter_than_log_every_still_logs_its_last_step(data, tmp_path, capsys):
    status, _ = run(capsys, data, tmp_path, "--log-every", "1000")
    assert status == 0
    header, *rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == 1
    row = dict(zip(header.split(","), rows[0].split(",")))
    assert row["step"] == "5" and all(row[k] for k in ("loss", "lr", "val_top1", "minival_top1"))


# ----------------------------------------------------------------------------- output folders

def test_a_second_run_on_the_same_folder_refuses_and_a_stale_lock_is_taken_over(data, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / "run.lock").write_text(f"{holder.pid} {socket.gethostname()}\n")  # a run in progress
        status, err = run(capsys, data, tmp_path)
        assert status == 2
        one_error(err, "is in use by another run", f"process {holder.pid}")
        assert not (tmp_path / "last.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    status, err = run(capsys, data, tmp_path)  # its process is gone: the lock is stale
    assert status == 0 and (tmp_path / "last.pt").exists() and not (tmp_path / "run.lock").exists()
    status, err = run(capsys, data, tmp_path)  # a finished run is not overwritten by a fresh one
    assert status == 2
    one_error(err, "holds a run already", "--resume")


def test_writes_never_follow_a_planted_symlink(data, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("best.pt", "last.pt.tmp", ".last.pt.tmp", "log.csv"):
        (out / name).symlink_to(victim)
    status, _ = run(capsys, data, out)
    assert status == 0 and victim.read_text() == "precious"
    assert not (out / "best.pt").is_symlink() and finite(out / "best.pt")
    assert not (out / "log.csv").is_symlink() and (out / "log.csv").read_text().startswith("step,")


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_temporary_file(data, tmp_path, capsys,
                                                                                 monkeypatch):
    real_save, calls = torch.save, []

    def save_until_disk_full(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real_save(obj, file, *args, **kwargs)
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_until_disk_full)
    status, err = run(capsys, data, tmp_path, "--checkpoint-every", "1")
    monkeypatch.undo()
    assert status == 2
    one_error(err, "cannot write", "last.pt", os.strerror(errno.ENOSPC), "step 1 is kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "log.csv"]  # no *.tmp, no lock
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1


@pytest.mark.parametrize("case", ["a file", "below a file"])
def test_an_output_that_is_not_a_writable_folder_is_refused_before_training(data, tmp_path, capsys, case):
    (tmp_path / "file").write_text("x")
    output = tmp_path / "file" if case == "a file" else tmp_path / "file" / "run"
    status, err = run(capsys, data, output)
    assert status == 2
    one_error(err, str(output))
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(data, tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        status, err = run(capsys, data, tmp_path)
    finally:
        tmp_path.chmod(0o700)
    assert status == 2
    one_error(err, "cannot write in the --output folder", "Permission denied")


def test_log_csv_stays_one_header_and_each_step_once_across_resume(data, tmp_path):
    def crash(state):
        if state["step"] == 8:  # the last checkpoint is the end of epoch 1 (step 5); rows 6, 7 are in log.csv
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(tiny(data, tmp_path), callbacks={"on_step": crash})
    assert not (tmp_path / "run.lock").exists()  # released on the way out
    train(tiny(data, tmp_path, resume=True))
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and sum(line.startswith("step,") for line in lines) == 1
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, 11))


# ----------------------------------------------------------------------------- resume from a bad checkpoint

class Payload:
    """A pickle that runs code when loaded without weights_only: it would create the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    output = tmp_path_factory.mktemp("finished")
    train(tiny(data, output, epochs=1))
    return output


@pytest.mark.parametrize("case", ["truncated", "hostile", "other network", "not a training checkpoint"])
def test_resume_from_a_bad_checkpoint_is_one_line(data, finished_run, tmp_path, capsys, case):
    last = tmp_path / "last.pt"
    good = (finished_run / "last.pt").read_bytes()
    options = ["--resume", "--epochs", "2"]
    if case == "truncated":
        last.write_bytes(good[: len(good) // 2])
        expected = "is not a readable checkpoint"
    elif case == "hostile":
        torch.save({"model": Payload(tmp_path / "marker")}, last)
        expected = "is not a readable checkpoint (UnpicklingError"
    elif case == "other network":
        last.write_bytes(good)
        options = ["--resume", "--epochs", "2", "--width", "0.5"]
        expected = "holds a different network (width 0.25 (this run: 0.5)"
    else:
        torch.save({"model": torch.load(finished_run / "last.pt", weights_only=True)["model"]}, last)
        expected = "is not a checkpoint written by effnet-edu train"
    before = last.read_bytes()
    status, err = run(capsys, data, tmp_path, *options)
    assert status == 2
    one_error(err, "--resume:", str(last), expected)
    assert not (tmp_path / "marker").exists()  # nothing was executed
    assert last.read_bytes() == before and not (tmp_path / "run.lock").exists()
