"""Recount latency of effnet_edu.accounting vs build + FlopCounterMode trace. Run: python benchmarks/bench_accounting.py

What is timed (one process, same machine, medians):

- ``recount``: ``resolve(name)`` + the uncached count (``accounting._count``): what a slider pays for a config
  it has never seen; ``cached``: ``count(name)`` again (the lru cache hit a widget pays on a repeat).
- ``build+trace cpu``: ``build(name)`` on CPU (random init included) and one forward of a 1x3xRxR image under
  ``torch.utils.flop_counter.FlopCounterMode`` at the native resolution (B0 224, B7 600): the obvious way to
  get the same numbers. B7 runs once (about 15-25 s on 2 cores), B0 twice; meta runs three times.
- ``build+trace meta``: the same on the ``meta`` device (shapes only, no arithmetic): the fastest tracing can be.

Prints the ratio trace / recount; both traced totals are checked to equal the count.
"""

import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee
from effnet_edu.accounting import _count, count
from effnet_edu.arch import resolve


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_and_trace(name, device):
    with torch.device(device):
        model = ee.build(name).eval()
    res = model.config.resolution
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, res, res, device=device))
    return counter.get_total_flops() // 2


def main():
    torch.set_num_threads(2)
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{load}; medians; MACs = multiply-adds\n")
    print(f"{'model':<6} {'res':>4} {'recount':>10} {'cached':>10} {'trace meta':>11} {'trace cpu':>10} "
          f"{'meta/recount':>13} {'cpu/recount':>12}")
    for name, cpu_repeats in (("b0", 2), ("b7", 1)):
        expected = count(name).macs
        recount = median_seconds(lambda: _count(resolve(name)), 500)
        cached = median_seconds(lambda: count(name), 2000)
        macs = []  # every traced total must equal the count
        meta = median_seconds(lambda: macs.append(build_and_trace(name, "meta")), 3)
        cpu = median_seconds(lambda: macs.append(build_and_trace(name, "cpu")), cpu_repeats)
        assert set(macs) == {expected}, (macs, expected)
        res = resolve(name).resolution
        print(f"{name:<6} {res:>4} {recount * 1e3:>8.3f}ms {cached * 1e6:>8.1f}us {meta:>10.2f}s {cpu:>9.2f}s "
              f"{meta / recount:>12,.0f}x {cpu / recount:>11,.0f}x")


if __name__ == "__main__":
    main()
