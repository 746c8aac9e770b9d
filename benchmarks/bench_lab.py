"""The scaling lab's trainer against a plain PyTorch loop over the same model and data (images/s).

    python benchmarks/bench_lab.py             # C0 and a 2x-width C0, 2 threads, ~2 minutes
    python benchmarks/bench_lab.py --threads 1

Both sides train a freshly seeded model for the same number of steps on the lab's training split at the model's
resolution (uint8 images normalised per batch): ours through ``effnet_edu.lab.train_model`` (schedule, progress
callback, precise-BN and evaluation excluded from the timing: only the training loop counts), the reference as
the ten-line loop anyone would write. They alternate, three rounds each, medians reported; the goal is >= 0.9x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from effnet_edu.lab import RECIPE, Point, build_point, resized, split
from effnet_edu.lab.train import normalise


def plain_loop(point: Point, steps: int, batch: int) -> float:
    """The reference: AdamW, cross-entropy, the same data; returns images/s."""
    images, labels = resized("train", point.resolution), split("train")[2]
    torch.manual_seed(0)
    model = build_point(point, 16).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE.lr, weight_decay=RECIPE.weight_decay)
    order = torch.randperm(len(images))
    start = time.perf_counter()
    for i in range(steps):
        idx = order[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(normalise(images[idx])), labels[idx], label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def lab_trainer(point: Point, steps: int, batch: int) -> float:
    """Ours: ``train_model`` for exactly ``steps`` steps; the loop is timed from the first to the last progress call."""
    from effnet_edu.lab.train import train_model

    recipe = replace(RECIPE, epochs=1, train_images=steps * batch, bn_images=batch)
    marks = []
    train_model(point, 0, recipe, progress=lambda step, total, loss: marks.append((step, time.perf_counter())))
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) * batch / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("train", "val", "test"):
        split(name)
    print(f"{torch.get_num_threads()} threads, {args.steps} steps of batch {RECIPE.batch}")
    for point in (Point("effnet", 1.0, 1.0, 64), Point("effnet", 2.0, 1.0, 64)):
        resized("train", point.resolution)
        ours, plain = [], []
        for _ in range(args.rounds):
            plain.append(plain_loop(point, args.steps, RECIPE.batch))
            ours.append(lab_trainer(point, args.steps + 20, RECIPE.batch))
        o, p = statistics.median(ours), statistics.median(plain)
        print(f"{point}: lab trainer {o:7.1f} img/s, plain loop {p:7.1f} img/s, ratio {o / p:.3f}")


if __name__ == "__main__":
    main()
