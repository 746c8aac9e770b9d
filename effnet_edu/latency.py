"""Measuring inference latency fairly on a shared machine, and the stored measurement of Table 4.

Table 4 of the paper (Section 5.2) times each network at batch 1 on one CPU core, "average latency over 20 runs".
On a machine that other jobs share, the load changes while we measure, so a fair comparison needs three things:

- **interleaving**: round r times every model once before round r + 1 starts, so a burst of load hits all models
  alike instead of whichever model happened to run during it;
- **warm-up runs that are not counted**: the first calls allocate memory, pick kernels and (for
  ``torch.compile``) compile;
- **the median**, not the mean: one run slowed by another process moves the mean, not the median.

``measure()`` does exactly that for any callables (a test checks it with fake models and a fake clock);
``forward()`` turns a model and an input into the callable to time; ``traffic()`` counts, for any network, the
multiply-adds and the bytes each layer moves, which is why FLOPs ratios are not latency ratios. ``load()`` reads the
measurement that
``benchmarks/bench_latency.py`` stored (``data/latency.json``): notebook 08 shows it next to the paper's Table 4.

    >>> import torch, effnet_edu as ee
    >>> from effnet_edu import latency
    >>> cases = {"b0": latency.forward(ee.build("b0"), torch.randn(1, 3, 224, 224))}
    >>> times = latency.measure(cases, runs=3, warmup=1)      # seconds, one list per case
    >>> ms = latency.medians_ms(times)                         # {"b0": ...}
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

STORED = Path(__file__).resolve().parent / "data" / "latency.json"  # eager and channels_last, B0-B3, both libraries
# B1 and ResNet-152 eager and under torch.compile (a separate run: compiling takes minutes per network on 2 cores)
STORED_COMPILE = STORED.with_name("latency_compile.json")


def measure(cases: Mapping[str, Callable[[], Any]], runs: int = 20, warmup: int = 2,
            timer: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Time every case ``runs`` times, round-robin, after ``warmup`` untimed rounds; seconds per run.

    Round r calls every case once, in the order given, before round r + 1 starts (the warm-up rounds too), so a
    change in the machine's load during the measurement is shared by all cases."""
    if not cases:
        raise ValueError("measure() needs at least one case to time")
    for name, value in (("runs", runs), ("warmup", warmup)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "runs" else 0):
            raise ValueError(f"{name} must be a whole number >= {1 if name == 'runs' else 0}, got {value!r}")
    for name, fn in cases.items():
        if not callable(fn):
            raise TypeError(f"case {name!r} is {type(fn).__name__}, not a callable to time")
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            start = timer()
            fn()
            times[name].append(timer() - start)
    return times


def medians_ms(times: Mapping[str, list[float]]) -> dict[str, float]:
    """The median of each case's runs, in milliseconds."""
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def forward(model, x) -> Callable[[], Any]:
    """A callable that runs ``model(x)`` for inference (eval mode, no autograd), as Table 4 times it."""
    import torch

    model.eval()

    def run():
        with torch.inference_mode():
            return model(x)

    return run


class Traffic(NamedTuple):
    """One layer call of ``traffic()``: what it computes and what it moves (batch 1, fp32)."""

    name: str  # module name in the model ("layer3.4.conv2", "stages.stage4.0.depthwise.0")
    kind: str  # "conv kxk", "conv 1x1", "depthwise", "linear", "se" (pool + rescale), "batchnorm", "activation"
    macs: int  # multiply-adds of the weights (0 for element-wise layers)
    bytes_moved: int  # 4 x (input elements read + parameters read + output elements written)


def traffic(model, resolution: int) -> list[Traffic]:
    """Multiply-adds and bytes moved of every conv, linear, BatchNorm, activation and SE layer of ``model`` for one
    image, as eager PyTorch runs them (each layer reads its input from memory and writes its output back).

    Counted on the ``meta`` device (shapes only: nothing is computed or allocated; a model with real weights is
    copied there first, so build it under ``with torch.device("meta"):`` to skip the copy). Not counted:
    functional ops outside modules (residual adds, pooling, flatten). A fused runtime (``torch.compile``, an
    inference engine) folds BatchNorm and the activation into the conv and moves fewer bytes; the convs' own
    traffic stays."""
    import copy

    import torch
    from torch import nn

    from .model import SqueezeExcitation

    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"resolution must be a whole number of pixels >= 1, got {resolution!r}")

    elementwise: dict[type[nn.Module], str] = {
        nn.BatchNorm2d: "batchnorm", nn.ReLU: "activation", nn.ReLU6: "activation", nn.SiLU: "activation",
        nn.Sigmoid: "activation", nn.Hardswish: "activation"}
    rows: list[Traffic] = []

    def hook(name):
        def record(module, inputs, output):
            n_in, n_out = inputs[0].numel(), output.numel()
            weights = sum(p.numel() for p in module.parameters(recurse=False))
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                macs = n_out * (module.in_channels // module.groups) * k  # each output value: C_in/groups x k x k
                kind = ("depthwise" if module.groups == module.in_channels > 1 else
                        "conv 1x1" if k == 1 else "conv kxk")
            elif isinstance(module, nn.Linear):
                macs, kind = module.in_features * module.out_features * (n_out // module.out_features), "linear"
            elif isinstance(module, SqueezeExcitation):  # mean over H, W reads x; x * scale reads x again, writes
                macs, kind, n_in, weights = 0, "se", 2 * n_in, 0  # its two 1x1 convs are counted as convs
            else:
                macs, kind = 0, elementwise[type(module)]
            rows.append(Traffic(name, kind, macs, 4 * (n_in + weights + n_out)))
        return record

    kinds: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear, SqueezeExcitation, *elementwise)
    on_meta = all(p.is_meta for p in model.parameters())
    meta = model if on_meta else copy.deepcopy(model).to("meta")  # the caller's model keeps its weights
    handles = [m.register_forward_hook(hook(n)) for n, m in meta.named_modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            meta.eval()(torch.empty(1, 3, resolution, resolution, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return rows


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, core count, OS, Python and library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(terse=True),
            "python": platform.python_version(), "torch": torch.__version__}


def load(path: Path | str = STORED) -> dict[str, Any]:
    """The stored measurement (written by ``benchmarks/bench_latency.py --out``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latency measurement at {path}: run `python benchmarks/bench_latency.py "
                                f"--out {path}` to make one")
    return json.loads(path.read_text())
