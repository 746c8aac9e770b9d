"""The output folder of a run: a lock so that only one run writes it, the checks made before anything trains, and
log.csv / TensorBoard. (The checkpoints themselves are written by ``weights.save_weights``: atomic, exclusive.)"""

from __future__ import annotations

import csv
import os
import socket
import time
from pathlib import Path

from ..weights import atomic_file
from .config import TrainError


class OutputLock:
    """``<output>/run.lock`` holds "pid host" of the run that writes the folder, so a second run refuses to start
    instead of interleaving checkpoints. A lock whose process is gone on this host (a run killed with SIGKILL) is
    stale and taken over; one from another host is kept, since its process cannot be checked from here."""

    def __init__(self, path: Path):
        self.path, self.held = path, False

    def holder(self) -> str | None:
        """Who holds the lock ("process 123 on host"), or None when the lock is stale."""
        try:
            pid_text, host = self.path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):  # unreadable or garbled: stale, unless just created and being written now
            try:
                return None if time.time() - self.path.stat().st_mtime > 10 else "a run that is starting"
            except OSError:
                return None
        if host != socket.gethostname() or os.name == "nt":  # on Windows os.kill would end the process
            return f"process {pid} on {host}"
        try:
            os.kill(pid, 0)  # signal 0 only asks whether the process exists
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # it exists, owned by another user
        return f"process {pid} on {host}"

    def acquire(self) -> None:
        folder = self.path.parent
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None:
                    raise TrainError(f"{folder} is in use by another run ({holder}, see {self.path}): wait for it, "
                                     f"choose another --output, or delete the lock file if that run is gone") from None
                self.path.unlink(missing_ok=True)  # stale: its process was killed
                continue
            except OSError as exc:
                raise TrainError(f"cannot write in the --output folder {folder}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as file:
                file.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            return
        raise TrainError(f"could not take {self.path}: other runs keep creating it")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def claim_output(output: Path, lock: OutputLock, resume: bool) -> None:
    """Before anything trains: the output is a folder we can write, no other run uses it, and a fresh run does
    not overwrite an earlier run's checkpoints (``--resume`` continues them)."""
    if output.exists() and not output.is_dir():
        raise TrainError(f"--output {output} is a file, not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"cannot create the --output folder {output}: {exc.strerror or exc}") from None
    lock.acquire()
    last = output / "last.pt"
    if resume != last.exists():
        lock.release()
        raise TrainError(f"--resume: no checkpoint at {last}" if resume else
                         f"{output} holds a run already ({last}): pass --resume to continue it, or choose another "
                         f"--output")


class Log:
    """log.csv (one row per logged or evaluated step, both in one row when they coincide) and TensorBoard
    scalars, written by rank 0. On resume, rows after the checkpoint's step are dropped (those steps are trained
    again), so the file stays one header and each step once."""

    COLUMNS = ["step", "epoch", "loss", "lr", "images_per_s", "data_wait", "minival_top1", "minival_top5",
               "val_top1", "val_top5", "bad_images"]

    def __init__(self, output: Path, tensorboard: bool, resume_step: int | None = None):
        path, kept = output / "log.csv", []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as file:
                kept = [row for row in csv.DictReader(file) if (row.get("step") or "").isdigit()
                        and int(row["step"]) <= resume_step]
        with atomic_file(path, "w", newline="") as file:  # replaces a planted link instead of writing through it
            writer = csv.DictWriter(file, self.COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        self.file = open(os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)), "a", newline="")
        self.csv = csv.DictWriter(self.file, self.COLUMNS, extrasaction="ignore")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                # purge_step: TensorBoard hides the events of steps that the resumed run trains again
                purge = None if resume_step is None else resume_step + 1
                self.tb = SummaryWriter(str(output / "tensorboard"), purge_step=purge)
            except ImportError:
                pass  # tensorboard is an optional extra: pip install 'effnet-edu[train]'

    def write(self, row: dict) -> None:
        self.csv.writerow(row)
        self.file.flush()
        if self.tb:
            for key, value in row.items():
                if key not in ("step", "epoch") and value is not None:
                    self.tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()
