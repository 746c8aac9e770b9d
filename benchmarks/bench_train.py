"""Training throughput: our EfficientNet vs timm's, and the JPEG input pipeline (CPU and GPU paths). From the repo root:

    python benchmarks/bench_train.py                          # CPU: B0, batch 8 at 128px, eager, ~1-2 min on 2 cores
    python benchmarks/bench_train.py --device cuda --out DIR  # GPU: B0 batch 256 and B4@380 batch 64, bf16
                                                              # autocast, channels_last, eager and torch.compile
    python benchmarks/bench_train.py --smoke                  # every stage at toy sizes (checks the script itself)

1. Train step on synthetic data (forward + backward + RMSProp step, label-smoothed cross-entropy). Each library
   with its own TF-style RMSProp (ours: ``effnet_edu.train.RMSpropTF``; timm: ``timm.optim.RMSpropTF``, both
   multi-tensor ``foreach`` steps, same hyper-parameters), both models built in the same process and timed in
   alternating rounds; median img/s and the ratio ours / timm (1.0 = same speed).
2. On CUDA, a torch.profiler table of each model's top kernels (eager) is written to --out.
3. Input pipeline on a generated ImageNet-like folder (~500 x 375 JPEGs) with the paper's augmentation
   (random-resized crop + flip + AutoAugment): the loader alone, then end to end (our train step fed by it), for
   the CPU path (PIL in --workers DataLoader processes) and, on CUDA, the GPU path (nvJPEG + batched augmentation,
   ``effnet_edu.train.gpu_data``); img/s and the fraction of the synthetic train-step rate (goal >= 0.85).

Stages run in that order of priority and are skipped once --budget seconds have passed. Results go to stdout and,
with --out, to DIR/bench.json (the last line printed is the same JSON summary).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import effnet_edu as ee
from effnet_edu.train import FolderDataset, RMSpropTF, param_groups, scan_folder, augment_transform
from effnet_edu.train.gpu_data import gpu_train_loader

START = time.perf_counter()
SAME_OPTIMIZER = False  # --optimizer ours: both models step with our RMSpropTF (compares the models alone)


def elapsed() -> float:
    return time.perf_counter() - START


# ----------------------------------------------------------------------------- train step

def make_models(name: str, compiled: bool) -> dict:
    import timm

    torch.manual_seed(0)
    ours = ee.build(name)
    # Same regularisation in both: the model's dropout, stochastic depth 0.2 (timm's defaults are 0 for both).
    theirs = timm.create_model(f"efficientnet_{name}", drop_rate=ours.config.dropout, drop_path_rate=0.2)
    models = {"ours": ours, "timm": theirs}
    return {k: torch.compile(m) if compiled else m for k, m in models.items()}


def make_optimizer(kind: str, model):
    if kind == "ours" or SAME_OPTIMIZER:
        return RMSpropTF(param_groups(model, 1e-5), lr=1e-3)
    from timm.optim import RMSpropTF as TimmRMSpropTF

    return TimmRMSpropTF(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)


class Stepper:
    """One model's training step on ``device`` (bf16 autocast + channels_last on CUDA, fp32 on CPU)."""

    def __init__(self, kind, model, device, batch, resolution):
        self.gpu = device.type == "cuda"
        self.model = model.to(device).train()
        if self.gpu:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(kind, self.model)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        self.x = torch.randn(batch, 3, resolution, resolution, device=device)
        if self.gpu:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 1000, (batch,), device=device)
        self.amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.gpu)
        self.device = device

    def step(self, x=None, y=None):
        with self.amp:
            loss = self.criterion(self.model(self.x if x is None else x).float(), self.y if y is None else y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def sync(self):
        if self.gpu:
            torch.cuda.synchronize(self.device)

    def rate(self, steps: int, warmup: int) -> float:
        """img/s over ``steps`` back-to-back steps (one synchronisation at each end: no per-step bubbles)."""
        for _ in range(warmup):
            self.step()
        self.sync()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.sync()
        return steps * len(self.x) / (time.perf_counter() - start)


def compare(args, device, name, batch, resolution, compiled) -> dict:
    models = make_models(name, compiled)
    steppers = {k: Stepper(k, m, device, batch, resolution) for k, m in models.items()}
    first = {}
    for k, s in steppers.items():  # compilation, cuDNN autotuning, allocator warm-up
        t = time.perf_counter()
        s.step()
        s.sync()
        first[k] = time.perf_counter() - t
    rates = {k: [] for k in steppers}
    for _ in range(args.rounds):  # alternate, so drift (clocks, other jobs) hits both alike
        for k, s in steppers.items():
            rates[k].append(s.rate(args.steps, args.warmup))
    result = {k: statistics.median(v) for k, v in rates.items()}
    result["ratio"] = result["ours"] / result["timm"]
    result["rounds"] = rates
    result["first_step_s"] = first
    if device.type == "cuda":
        result["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result, steppers


def profile(steppers: dict, out: Path | None, tag: str) -> None:
    """torch.profiler over 3 steps of each model: the top kernels by GPU time, written to OUT/profile_<tag>.txt."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    tables = []
    for kind, s in steppers.items():
        s.step()
        s.sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if s.gpu else [])
        with torch_profile(activities=activities) as prof:
            for _ in range(3):
                s.step()
            s.sync()
        table = prof.key_averages().table(sort_by="device_time_total" if s.gpu else "cpu_time_total", row_limit=30)
        tables.append(f"===== {kind} {tag}: 3 training steps =====\n{table}\n")
    text = "\n".join(tables)
    if out:
        (out / f"profile_{tag}.txt").write_text(text)
    print(text[:2500] if not out else f"  profiler tables -> {out / f'profile_{tag}.txt'}")


# ----------------------------------------------------------------------------- input pipeline

def _write_jpegs(job):
    root, start, stop, classes = job
    rng = np.random.default_rng(start)
    sizes = []
    for i in range(start, stop):
        folder = Path(root) / "train" / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(low).resize((500, 375), Image.BICUBIC), dtype=np.int16)
        image = (image + rng.integers(-25, 25, image.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"img_{i}.JPEG"
        Image.fromarray(image).save(path, quality=90)
        sizes.append(path.stat().st_size)
    return sizes


def make_jpeg_folder(root: Path, count: int, classes: int = 10, processes: int = 1) -> float:
    """ImageNet-like files: 500 x 375 (ImageNet's median size), smooth colour fields plus texture, JPEG quality 90.
    Returns the mean file size in KB."""
    chunks = [(str(root), s, min(s + 256, count), classes) for s in range(0, count, 256)]
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            sizes = sum(pool.map(_write_jpegs, chunks), [])
    else:
        sizes = sum(map(_write_jpegs, chunks), [])
    return float(np.mean(sizes)) / 1024


def cpu_loader(samples, batch, workers, epochs, seed=0):
    data = FolderDataset(samples, augment_transform(224, "autoaugment"), seed)
    keys = [(e, i) for e in range(epochs) for i in torch.randperm(len(samples)).tolist()]
    return torch.utils.data.DataLoader(data, batch_size=batch, sampler=keys, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), drop_last=True,
                                       prefetch_factor=4 if workers else None, persistent_workers=False)


def gpu_loader(samples, batch, workers, epochs, device, seed=0):
    data = FolderDataset(samples, augment_transform(224, "autoaugment"), seed)
    keys = [(e, i) for e in range(epochs) for i in torch.randperm(len(samples)).tolist()]
    keys = keys[: len(keys) // batch * batch]
    return gpu_train_loader(data, keys, batch, device, workers)


def drain(loader, device, stepper=None, skip=2):
    """Images/s from the end of the ``skip``-th batch (worker start-up and warm-up excluded) to the end; with a
    stepper, every batch also trains one step (end to end)."""
    n, start = 0, None
    for b, (images, labels, _) in enumerate(loader):
        if stepper is not None:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last) \
                if device.type == "cuda" else images
            labels = labels.to(device, non_blocking=True)
            stepper.step(images, labels % 1000)
        if b + 1 == skip:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        elif b + 1 > skip:
            n += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start) if start and n else float("nan")


# ----------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, help="B0 batch (default: 256 on cuda, 8 on cpu)")
    parser.add_argument("--resolution", type=int, help="B0 train-step input size (default: 224 on cuda, 128 on cpu)")
    parser.add_argument("--steps", type=int, help="timed steps per round (default: 20 on cuda, 3 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps per round (default: 3 on cuda, 1 on cpu)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: on cuda only)")
    parser.add_argument("--b4", action=argparse.BooleanOptionalAction, default=None,
                        help="also time B4 at 380 px (default: on cuda only)")
    parser.add_argument("--b4-batch", type=int, default=64, help="B4 batch (default 64)")
    parser.add_argument("--images", type=int, help="JPEGs in the generated folder (default: 4096 on cuda, 96 on cpu)")
    parser.add_argument("--workers", type=int, help="DataLoader processes (default: all cores on cuda, 1 on cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on cpu, as shared machines "
                                                    "thrash with more; torch's choice on cuda)")
    parser.add_argument("--budget", type=float, default=1e9, help="seconds: skip the stages that start later")
    parser.add_argument("--out", help="folder for bench.json and the profiler tables")
    parser.add_argument("--optimizer", choices=["own", "ours"], default="own",
                        help="own: each library's RMSpropTF (default); ours: both use effnet_edu's (models alone)")
    parser.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                        help="time the input pipeline (default: yes)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, every stage (checks the script)")
    args = parser.parse_args()
    global SAME_OPTIMIZER
    SAME_OPTIMIZER = args.optimizer == "ours"
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.batch, args.resolution, args.steps, args.warmup, args.rounds = args.batch or 4, 64, 1, 0, 1
        args.images, args.b4_batch = args.images or 24, 2
    args.batch = args.batch or (256 if gpu else 8)
    args.resolution = args.resolution or (224 if gpu else 128)
    args.steps = args.steps or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    args.images = args.images or (4096 if gpu else 96)
    args.workers = args.workers if args.workers is not None else (os.cpu_count() if gpu else 1)
    compile_too = gpu if args.compile is None else args.compile
    b4_too = (gpu or args.smoke) if args.b4 is None else args.b4
    if args.threads or not gpu:
        torch.set_num_threads(args.threads or 1)
    if gpu:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels (both models)
    summary = {"device": torch.cuda.get_device_name(device) if gpu else "cpu", "torch": torch.__version__,
               "cpu_cores": os.cpu_count(), "batch": args.batch, "resolution": args.resolution,
               "b4_batch": args.b4_batch, "steps": args.steps, "rounds": args.rounds, "optimizer": args.optimizer}

    def save():
        if out:
            (out / "bench.json").write_text(json.dumps(summary, indent=1, default=float))

    setting = "bf16 autocast, channels_last" if gpu else "fp32"
    print(f"{summary['device']}, torch {torch.__version__}, {os.cpu_count()} cores; train step = fwd + bwd + "
          f"RMSProp (each library's own), {setting}")

    b0 = (f"b0@{args.resolution}", "b0", args.batch, args.resolution)
    b4 = (f"b4@{380 if not args.smoke else 64}", "b4", args.b4_batch, 380 if not args.smoke else 64)
    plan = [(b0, False)]
    steppers_b0 = None
    for (tag, name, batch, res), compiled in plan:
        mode = "compile" if compiled else "eager"
        result, steppers = compare(args, device, name, batch, res, compiled)
        summary[f"{tag}_{mode}"] = result
        print(f"  {tag} batch {batch:<4} {mode:<8} ours {result['ours']:9.1f} img/s   timm {result['timm']:9.1f} "
              f"img/s   ours/timm {result['ratio']:.3f}", flush=True)
        steppers_b0 = steppers
    save()
    if gpu or args.smoke:
        try:
            profile(steppers_b0, out, "b0_eager")
        except Exception as exc:  # a profiler problem must not cost the rest of the run
            print(f"  profiler failed: {type(exc).__name__}: {exc}")
    synthetic = summary[f"{b0[0]}_eager"]["ours"]
    ours_b0 = steppers_b0["ours"]
    del steppers_b0["timm"]
    if gpu:
        torch.cuda.empty_cache()

    # --- the input pipeline ---
    if args.pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            kb = make_jpeg_folder(Path(tmp), args.images, processes=min(os.cpu_count(), 16) if gpu else 1)
            samples, _, _ = scan_folder(Path(tmp) / "train")
            print(f"input pipeline: {len(samples)} JPEGs 500x375 ({kb:.0f} KB each, written in "
                  f"{time.perf_counter() - t:.1f} s), crop 224 + flip + AutoAugment, batch {args.batch}, "
                  f"{args.workers} workers", flush=True)
            pipe = {"images": len(samples), "jpeg_kb": kb, "workers": args.workers, "synthetic_ours_eager": synthetic}
            epochs = 2
            paths = [("cpu", lambda: cpu_loader(samples, args.batch, args.workers, epochs))]
            if gpu or args.smoke:
                paths.append(("gpu", lambda: gpu_loader(samples, args.batch, min(args.workers, 8), epochs, device)))
            for path, make in paths:
                if elapsed() > args.budget:
                    print(f"  (budget spent: {path} path skipped)")
                    continue
                alone = drain(make(), device)
                end_to_end = drain(make(), device, ours_b0)
                pipe[path] = {"loader_img_per_s": alone, "end_to_end_img_per_s": end_to_end,
                              "loader_fraction_of_synthetic": alone / synthetic,
                              "end_to_end_fraction_of_synthetic": end_to_end / synthetic}
                print(f"  decode on {path}: loader alone {alone:8.1f} img/s ({alone / synthetic:.2f} x synthetic), "
                      f"end to end {end_to_end:8.1f} img/s ({end_to_end / synthetic:.2f} x synthetic "
                      f"{synthetic:.0f})", flush=True)
            summary["pipeline"] = pipe
            save()
    del ours_b0, steppers
    if gpu:
        torch.cuda.empty_cache()

    # --- compiled, then B4 ---
    later = ([(b0, True)] if compile_too else []) + ([(b4, False)] if b4_too else []) + \
            ([(b4, True)] if compile_too and b4_too else [])
    for (tag, name, batch, res), compiled in later:
        mode = "compile" if compiled else "eager"
        # Rough stage lengths on an H100-class machine (compilation dominates), so a stage that cannot finish
        # inside the budget is not started.
        need = {("b0", False): 20, ("b0", True): 135, ("b4", False): 40, ("b4", True): 200}[(name, compiled)]
        if elapsed() + need > args.budget:
            print(f"  (budget spent: {tag} {mode} skipped)")
            continue
        result, steppers = compare(args, device, name, batch, res, compiled)
        summary[f"{tag}_{mode}"] = result
        print(f"  {tag} batch {batch:<4} {mode:<8} ours {result['ours']:9.1f} img/s   timm {result['timm']:9.1f} "
              f"img/s   ours/timm {result['ratio']:.3f}   (first step {result['first_step_s']['ours']:.0f} s / "
              f"{result['first_step_s']['timm']:.0f} s)", flush=True)
        if compiled and tag.startswith("b0") and "pipeline" in summary and summary["pipeline"].get("gpu"):
            p = summary["pipeline"]
            for path in ("cpu", "gpu"):
                if path in p:
                    p[path]["loader_fraction_of_compiled"] = p[path]["loader_img_per_s"] / result["ours"]
        del steppers
        if gpu:
            torch.cuda.empty_cache()
        save()
    summary["elapsed_s"] = elapsed()
    save()
    print(json.dumps(summary, default=float))


if __name__ == "__main__":
    main()
