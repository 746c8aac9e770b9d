"""Input pipeline: does the loader keep the GPU fed? The CPU path (PIL in DataLoader workers) and the GPU path
(``decode_on="gpu"``: workers read bytes, nvJPEG + batched augmentation in the training process,
``effnet_edu.train.gpu_data``) on a folder of ImageNet-like JPEGs, as a fraction of our B0 train step's rate on
synthetic data measured in the same process (goal >= 0.85). Three steps, each its own process so a hang in one
cannot take the others (``benchmarks/gpu_check.sh`` runs them with time limits):

    python benchmarks/bench_input.py make DIR [--images 8192]        # ~500x375 JPEGs, all cores
    python benchmarks/bench_input.py rates DIR --device cuda --out OUT  # synthetic, CPU path, GPU path, stages
    python benchmarks/bench_input.py profile DIR --device cuda --out OUT # torch.profiler tables of the GPU path

``rates``: (1) the synthetic rate: B0 train step (fwd + bwd + RMSProp, bf16 autocast, channels_last on CUDA);
(2) the GPU path's stages on fixed batches (decode, + crop/resize/flip, + AutoAugment, + normalise), milliseconds
per batch with the device synchronised, and the host time until each call returns, plus libjpeg-turbo's decode
rate on one core (what decoding in the workers would cost instead); (3) each path's loader alone and end to end
(the same train step fed by it), images/s counted after the first round of workers.
``profile``: the GPU path end to end for a few steps under torch.profiler (tables by device time and by CPU
time), and the number of host-device synchronisations one batch of ``BatchAugment`` makes
(``torch.cuda.set_sync_debug_mode``). ``--device cpu --smoke`` runs all of it at toy sizes (checks the script).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import Stepper, make_jpeg_folder  # noqa: E402

import effnet_edu as ee  # noqa: E402
from effnet_edu.train import FolderDataset, augment_transform, scan_folder  # noqa: E402
from effnet_edu.train.gpu_data import BatchAugment, EncodedDataset, collate_encoded, gpu_train_loader  # noqa: E402


def settings(args) -> dict:
    gpu = args.device.startswith("cuda")
    small = args.smoke or not gpu
    return {"gpu": gpu, "batch": args.batch or (8 if small else 256), "resolution": args.resolution or
            (64 if small else 224), "workers": args.workers if args.workers is not None else (1 if small else
            os.cpu_count()), "gpu_workers": args.gpu_workers if args.gpu_workers is not None else (1 if small else
            min(8, os.cpu_count() or 1)), "epochs": args.epochs or (1 if small else 3)}


def stepper(device, s) -> Stepper:
    torch.manual_seed(0)
    return Stepper("ours", ee.build("b0"), device, s["batch"], s["resolution"])


def synthetic_rate(step: Stepper, rounds: int, steps: int) -> float:
    t = time.perf_counter()
    step.step()
    step.sync()
    print(f"  first train step {time.perf_counter() - t:.1f} s (cuDNN autotuning, allocator)", flush=True)
    rates = [step.rate(steps, 2) for _ in range(rounds)]
    return statistics.median(rates)


def keys(samples, epochs: int, batch: int) -> list:
    order = [(e, i) for e in range(epochs) for i in torch.randperm(len(samples), generator=torch.Generator()
                                                                     .manual_seed(e)).tolist()]
    return order[: len(order) // batch * batch]


def cpu_loader(samples, s, device):
    data = FolderDataset(samples, augment_transform(s["resolution"], "autoaugment"), seed=0)
    return torch.utils.data.DataLoader(data, batch_size=s["batch"], sampler=keys(samples, s["epochs"], s["batch"]),
                                       num_workers=s["workers"], pin_memory=device.type == "cuda", drop_last=True,
                                       prefetch_factor=4 if s["workers"] else None)


def gpu_loader(samples, s, device):
    data = FolderDataset(samples, augment_transform(s["resolution"], "autoaugment"), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "without a CUDA device" in the CPU check of this script
        return gpu_train_loader(data, keys(samples, s["epochs"], s["batch"]), s["batch"], device, s["gpu_workers"])


def drain(loader, device, step: Stepper | None, skip: int) -> tuple[float, int]:
    """img/s from the arrival of batch ``skip`` (start-up and the first round of workers excluded) to the end; with
    a stepper, each batch also trains one step (end to end). Returns (rate, batches counted)."""
    n, start, counted = 0, None, 0
    for b, (images, labels, _) in enumerate(loader):
        if step is not None:
            if device.type == "cuda":
                images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                labels = labels.to(device, non_blocking=True)
            step.step(images, labels % 1000)
        if b + 1 == skip:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        elif b + 1 > skip:
            n, counted = n + len(labels), counted + 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (n / (time.perf_counter() - start) if start and n else float("nan")), counted


def sample_batches(samples, s, count: int):
    """``count`` collated batches of the GPU path (as its workers send them), read here in the main process."""
    data = EncodedDataset(samples, augment_transform(s["resolution"], "autoaugment"), seed=0)
    order = keys(samples, 1, s["batch"])
    return [collate_encoded([data[k] for k in order[i * s["batch"]:(i + 1) * s["batch"]]]) for i in range(count)]


def stage_times(samples, s, device, reps: int) -> dict:
    """ms per batch of each stage of BatchAugment (device synchronised; median over ``reps`` batches) and its host
    ms (until the call returns, before the synchronisation: the launch cost, plus nvJPEG's own wait for its
    decoding): which stage limits the GPU path."""
    augment = BatchAugment(augment_transform(s["resolution"], "autoaugment"), device)
    batches = sample_batches(samples, s, min(reps, max(1, len(samples) // s["batch"])))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def decode(b):
        return augment.decode(b[0].unpack())[0]

    def crop(b):
        return augment.resized_crop_flip(decode(b), b[2])

    def autoaugment(b):
        return augment.apply_autoaugment(crop(b), b[2].tolist())

    def full(b):
        return augment(b[0], b[2])[0]

    result = {}
    for name, fn in (("decode", decode), ("decode+crop", crop), ("decode+crop+autoaugment", autoaugment),
                     ("all (+normalise)", full)):
        fn(batches[0])  # warm-up (nvJPEG's buffers, kernels)
        sync()
        wall, host = [], []
        for i in range(reps):
            b = batches[i % len(batches)]
            t = time.perf_counter()
            fn(b)
            returned = time.perf_counter()
            sync()
            wall.append(1000 * (time.perf_counter() - t))
            host.append(1000 * (returned - t))
        result[name] = {"ms_per_batch": statistics.median(wall), "host_ms_per_batch": statistics.median(host),
                        "img_per_s": s["batch"] * 1000 / statistics.median(wall)}
        print(f"    {name:<26} {result[name]['ms_per_batch']:7.1f} ms/batch ({result[name]['img_per_s']:7.0f} img/s)"
              f"   host {result[name]['host_ms_per_batch']:6.1f} ms", flush=True)
    from torchvision.io import decode_jpeg

    jpegs = [e for e in batches[0][0].unpack() if e.dim() == 1][:32]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for e in jpegs:
            decode_jpeg(e)
    per_core = len(jpegs) / (time.perf_counter() - t)
    result["libjpeg_decode_img_per_s_one_core"] = per_core
    print(f"    (libjpeg-turbo decode alone on one CPU core: {per_core:.0f} img/s)", flush=True)
    return result


def guarded(fn, *args):
    """fn(*args), or None with the traceback printed: one failing measurement must not cost the others."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 (reported, and the run goes on)
        traceback.print_exc()
        print(f"  ({getattr(fn, '__name__', 'measurement')} failed: traceback above; continuing)", flush=True)
        return None


def rates(args, root: Path, out: Path | None, s: dict, device) -> dict:
    samples = scan_folder(root / "train")[0]
    summary = {"device": torch.cuda.get_device_name(device) if s["gpu"] else "cpu", "torch": torch.__version__,
               "cpu_cores": os.cpu_count(), "images": len(samples), **s}
    print(f"{summary['device']}, {os.cpu_count()} cores, torch {torch.__version__}; {len(samples)} JPEGs, crop "
          f"{s['resolution']} + flip + AutoAugment, batch {s['batch']}, {s['epochs']} epochs per measurement",
          flush=True)

    def save():
        if out:
            (out / "input.json").write_text(json.dumps(summary, indent=1, default=float))

    step = stepper(device, s)
    synthetic = synthetic_rate(step, args.rounds, args.steps)
    summary["synthetic_img_per_s"] = synthetic
    print(f"  synthetic data: {synthetic:8.1f} img/s (our B0 train step, median of {args.rounds} rounds)", flush=True)
    save()
    if s["gpu"] or args.smoke:  # first: quick, and the most telling if a later stage hangs
        print(f"  GPU path stages on {device} (no training running; one thread):", flush=True)
        summary["gpu_stages"] = guarded(stage_times, samples, s, device, args.stage_reps)
        save()
    for path, make, workers in (("cpu", cpu_loader, s["workers"]), ("gpu", gpu_loader, s["gpu_workers"])):
        if path == "gpu" and not s["gpu"] and not args.smoke:
            continue
        skip = max(2, min(workers, 16))  # the first round of workers arrives in a burst
        measured = guarded(lambda: (drain(make(samples, s, device), device, None, skip),
                                    drain(make(samples, s, device), device, step, skip)))
        if measured is None:
            summary[path] = None
            continue
        (alone, n_alone), (e2e, n_e2e) = measured
        summary[path] = {"workers": workers, "loader_img_per_s": alone, "end_to_end_img_per_s": e2e,
                         "batches_counted": [n_alone, n_e2e], "end_to_end_fraction": e2e / synthetic,
                         "loader_fraction": alone / synthetic}
        print(f"  {path} path ({workers} workers): loader alone {alone:8.1f} img/s ({alone / synthetic:.2f} x "
              f"synthetic), end to end {e2e:8.1f} img/s ({e2e / synthetic:.2f} x synthetic)  [{n_alone}/{n_e2e} "
              f"batches counted]", flush=True)
        save()
    return summary


def count_syncs(samples, s, device) -> list[str]:
    """Host-device synchronisations of one batch through BatchAugment (torch.cuda.set_sync_debug_mode)."""
    augment = BatchAugment(augment_transform(s["resolution"], "autoaugment"), device)
    batch = sample_batches(samples, s, 1)[0]
    augment(batch[0], batch[2])
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            augment(batch[0], batch[2])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).split("\n")[0] for w in caught if "synchroniz" in str(w.message)]
    line = f"host-device synchronisations in one BatchAugment call (batch {s['batch']}): {len(syncs)}"
    print("  " + line, flush=True)
    return [line + "".join(f"\n  {m}" for m in syncs[:10]) + "\n"]


def profile(args, root: Path, out: Path | None, s: dict, device) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    samples = scan_folder(root / "train")[0]
    text = []
    if s["gpu"]:
        text += guarded(count_syncs, samples, s, device) or []
    step = stepper(device, s)
    step.step()
    step.sync()
    loader = gpu_loader(samples, s, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if s["gpu"] else [])
    it = iter(loader)
    for _ in range(args.profile_warmup):  # threads, workers, nvJPEG and cuDNN warm
        images, labels, _ = next(it)
        step.step(images, labels % 1000)
    step.sync()
    with torch_profile(activities=activities) as prof:
        t = time.perf_counter()
        for _ in range(args.profile_steps):
            images, labels, _ = next(it)
            step.step(images, labels % 1000)
        step.sync()
        wall = time.perf_counter() - t
    del it
    head = (f"GPU path end to end, {args.profile_steps} steps of batch {s['batch']} on {device} "
            f"({args.profile_steps * s['batch'] / wall:.0f} img/s under the profiler); the loader thread's work "
            f"(decode, crop, AutoAugment) and the train step share the process")
    averages = prof.key_averages()
    if s["gpu"]:
        text.append(f"===== {head}: by device time =====\n"
                    f"{averages.table(sort_by='device_time_total', row_limit=40)}\n")
    text.append(f"===== {head}: by CPU time (self) =====\n"
                f"{averages.table(sort_by='self_cpu_time_total', row_limit=40)}\n")
    body = "\n".join(text)
    if out:
        (out / "profile_gpu_path.txt").write_text(body)
        print(f"  profiler tables -> {out / 'profile_gpu_path.txt'}", flush=True)
    else:
        print(body[:4000])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["make", "rates", "profile"])
    parser.add_argument("root", help="folder of the generated JPEGs (ROOT/train/<class>/*.JPEG)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, help="JPEGs to write (default 8192; 48 with --smoke)")
    parser.add_argument("--batch", type=int, help="default 256 on CUDA, 8 on the CPU")
    parser.add_argument("--resolution", type=int, help="crop size and train-step input (224 on CUDA, 64 on CPU)")
    parser.add_argument("--workers", type=int, help="CPU path loader processes (default: all cores)")
    parser.add_argument("--gpu-workers", type=int, help="GPU path byte-reading processes (default: 8)")
    parser.add_argument("--epochs", type=int, help="passes over the folder per measurement (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="synthetic-rate rounds")
    parser.add_argument("--steps", type=int, default=20, help="steps per synthetic round")
    parser.add_argument("--stage-reps", type=int, default=10, help="batches per stage timing")
    parser.add_argument("--profile-warmup", type=int, default=4)
    parser.add_argument("--profile-steps", type=int, default=6)
    parser.add_argument("--out", help="folder for input.json and profile_gpu_path.txt")
    parser.add_argument("--smoke", action="store_true", help="toy sizes (checks the script on a CPU)")
    args = parser.parse_args()
    root, out = Path(args.root), Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if args.command == "make":
        count = args.images or (48 if args.smoke else 8192)
        t = time.perf_counter()
        kb = make_jpeg_folder(root, count, processes=min(os.cpu_count() or 1, 16))
        print(f"  {count} JPEGs 500x375 ({kb:.0f} KB each) in {root} in {time.perf_counter() - t:.1f} s", flush=True)
        return
    if args.smoke:
        args.rounds, args.steps, args.stage_reps, args.profile_warmup, args.profile_steps = 1, 2, 2, 1, 2
    device = torch.device(args.device)
    s = settings(args)
    if s["gpu"]:  # fixed shapes: cuDNN's fastest kernels for the rates (as bench_train.py); the profile of the
        # loader skips the ~40 s of autotuning
        torch.backends.cudnn.benchmark = args.command == "rates"
    else:
        torch.set_num_threads(1)
    if args.command == "rates":
        summary = rates(args, root, out, s, device)
        print(json.dumps(summary, default=float))
    else:
        profile(args, root, out, s, device)


if __name__ == "__main__":
    main()
