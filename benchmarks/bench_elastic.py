"""ElasticExplorer's budgets: a new point in <= 1.5 s (cut + recalibrate + score 500 test images + 4 CAMs + redraw)
and an already-visited point in <= 100 ms, on 2 CPU threads.

    python benchmarks/bench_elastic.py                 # 10 slider positions, 2 threads, ~1 minute
    python benchmarks/bench_elastic.py --threads 1 --weights DIR

The explorer is driven from Python exactly as a slider would drive it (setting ``phi``): first every position once
(new points), then every position again (revisits). The reference, run in the same process on the same points, is
the least any implementation must pay for a new point: one plain forward pass of the already-built sub-network over
the same 256 calibration + 500 test images. The ratio says how much the explorer adds to that.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from effnet_edu.lab import elastic as E
from effnet_edu.lab.train import normalise
from effnet_edu_widgets import ElasticExplorer
from effnet_edu_widgets.elastic import lab_state

PHIS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 0.3, 1.2)  # all inside the box with the paper's coefficients


@torch.inference_mode()
def plain_forward_ms(point, folder) -> float:
    model = E.extract(point, folder)  # built and cached by the explorer run: only the forward passes are timed
    images = torch.cat([E.calibration_images(point.resolution), E.split_at("test", point.resolution, E.LIVE_TEST)[0]])
    start = time.perf_counter()
    for i in range(0, len(images), 32):
        model(normalise(images[i:i + 32]))
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, help="a folder written by `effnet-edu lab elastic-train --out`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    explorer = ElasticExplorer(phi=PHIS[0], folder=args.weights)  # the first point: loads data, not timed
    new, again, reference = [], [], []
    for phi in PHIS[1:]:
        start = time.perf_counter()
        explorer.phi.value = phi
        new.append((time.perf_counter() - start) * 1e3)
        assert explorer.state["inside"] and not explorer.error.value, explorer.error.value
    for phi in PHIS[1:]:
        start = time.perf_counter()
        explorer.phi.value = phi
        again.append((time.perf_counter() - start) * 1e3)
    for phi in PHIS[1:]:
        reference.append(plain_forward_ms(lab_state(phi).point, args.weights))
    print(f"torch {torch.__version__}, {args.threads} thread(s), {len(new)} slider positions (phi {PHIS[1:]})")
    for phi, n, a, r in zip(PHIS[1:], new, again, reference):
        p = lab_state(phi).point
        print(f"  phi {phi:>3}: w {p.width:<6g} d {p.depth:<6g} {p.resolution:>3} px   new {n:7.0f} ms   "
              f"revisit {a:5.1f} ms   plain forward {r:6.0f} ms   ratio {n / r:4.2f}")
    print(f"new point: median {statistics.median(new):.0f} ms, worst {max(new):.0f} ms (budget 1500 ms); "
          f"revisit: median {statistics.median(again):.1f} ms, worst {max(again):.1f} ms (budget 100 ms)")
    print(f"new point / plain forward of the same images: median ratio "
          f"{statistics.median(n / r for n, r in zip(new, reference)):.2f}")


if __name__ == "__main__":
    main()
