"""Training throughput: our B0 vs timm's efficientnet_b0, and the JPEG input pipeline. Run from the repo root:

    python benchmarks/bench_train.py                     # CPU: batch 8 at 128px, eager, ~1-2 min on 2 cores
    python benchmarks/bench_train.py --device cuda       # GPU: batch 256, bf16 autocast, channels_last,
                                                         # eager and torch.compile (docs/paper-facts.md: 4,523 / 6,215
                                                         # for timm on one H100)

1. Train step on synthetic data (forward + backward + our TF RMSProp step, label-smoothed cross-entropy), our B0
   and timm's efficientnet_b0 built in the same process and timed alternately; median img/s and the ratio
   ours / timm (1.0 = same speed).
2. Input pipeline: a generated ImageNet-like folder (~500 x 375 JPEGs) read through ``effnet_edu.train``'s
   dataset (decode + random-resized crop + flip + AutoAugment + normalise) by a DataLoader with --workers
   processes: decoded img/s, per worker, and as a fraction of the synthetic train-step rate (1.0 = the loader
   alone keeps up with that many workers; docs/paper-facts.md: 342 img/s per core with AutoAugment).

The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import effnet_edu as ee
from effnet_edu.train import FolderDataset, RMSpropTF, param_groups, scan_folder, train_transform


def train_step_rate(model, device, batch, resolution, steps, warmup, bf16, channels_last):
    """Median images/s of full training steps on a fixed synthetic batch."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = RMSpropTF(param_groups(model, 1e-5), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with amp:
            loss = criterion(model(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def compare_models(args, device, compiled):
    import timm

    torch.manual_seed(0)
    # Same regularisation in both: dropout 0.2, stochastic depth 0.2 (timm's default drop_path_rate is 0).
    models = {"ours": ee.build("b0"), "timm": timm.create_model("efficientnet_b0", drop_path_rate=0.2)}
    if compiled:
        models = {k: torch.compile(m) for k, m in models.items()}
    rates = {k: [] for k in models}
    for _ in range(args.rounds):  # alternate, so drift (other jobs, clocks) hits both alike
        for name, model in models.items():
            rates[name].append(train_step_rate(model, device, args.batch, args.resolution, args.steps, args.warmup,
                                               device.type == "cuda", device.type == "cuda"))
    return {k: statistics.median(v) for k, v in rates.items()}


def make_jpeg_folder(root: Path, count: int, classes: int = 10) -> None:
    """ImageNet-like files: 500 x 375, smooth colour fields plus texture, JPEG quality 90."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / "train" / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(low).resize((500, 375), Image.BICUBIC), dtype=np.int16)
        image = (image + rng.integers(-25, 25, image.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"img_{i}.JPEG", quality=90)


def pipeline_rate(args, augment):
    with tempfile.TemporaryDirectory() as tmp:
        make_jpeg_folder(Path(tmp), args.images)
        samples, _, _ = scan_folder(Path(tmp) / "train")
        kb = np.mean([Path(p).stat().st_size for p, _ in samples]) / 1024
        data = FolderDataset(samples, train_transform(224, augment))  # B0's crop, whatever the step's size
        loader = torch.utils.data.DataLoader(data, batch_size=16, num_workers=args.workers,
                                             sampler=[(0, i) for i in range(len(samples))])
        start = time.perf_counter()
        n = sum(len(batch[1]) for batch in loader)
        return n / (time.perf_counter() - start), kb


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, help="default: 256 on cuda, 8 on cpu")
    parser.add_argument("--resolution", type=int, help="train-step input size (default: 224 on cuda, 128 on cpu)")
    parser.add_argument("--steps", type=int, help="timed steps per round (default: 20 on cuda, 3 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 5 on cuda, 1 on cpu)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: on cuda only)")
    parser.add_argument("--images", type=int, default=96, help="JPEGs in the generated folder")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes for the pipeline")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on cpu, as shared machines "
                                                    "thrash with more; torch's choice on cuda)")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.batch = args.batch or (256 if gpu else 8)
    args.resolution = args.resolution or (224 if gpu else 128)
    args.steps = args.steps or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    compile_too = gpu if args.compile is None else args.compile
    if args.threads or not gpu:
        torch.set_num_threads(args.threads or 1)
    setting = (f"{device.type}, batch {args.batch}, {args.resolution}px" +
               (", bf16 autocast, channels_last" if gpu else ", fp32"))
    summary = {"device": torch.cuda.get_device_name(device) if gpu else "cpu", "batch": args.batch,
               "resolution": args.resolution}
    print(f"train step (fwd + bwd + RMSProp), {setting}:")
    modes = ["eager"] + (["compile"] if compile_too else [])
    for mode in modes:
        rates = compare_models(args, device, mode == "compile")
        ratio = rates["ours"] / rates["timm"]
        print(f"  {mode:<8} ours {rates['ours']:9.1f} img/s   timm {rates['timm']:9.1f} img/s   ours/timm {ratio:.3f}")
        summary[mode] = {"ours": rates["ours"], "timm": rates["timm"], "ratio": ratio}
    synthetic = summary["eager"]["ours"]
    print(f"input pipeline ({args.images} JPEGs ~500x375, {args.workers} worker(s), 224px crops):")
    for augment in ("none", "autoaugment"):
        rate, kb = pipeline_rate(args, augment)
        per_worker = rate / args.workers
        print(f"  {augment:<12} {rate:8.1f} img/s ({per_worker:.1f} per worker, files {kb:.0f} KB), "
              f"{rate / synthetic:.2f} x our eager train-step rate")
        summary[f"pipeline_{augment}"] = {"img_per_s": rate, "per_worker": per_worker,
                                          "fraction_of_train_step": rate / synthetic, "jpeg_kb": kb}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
