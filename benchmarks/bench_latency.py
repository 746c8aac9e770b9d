"""Table 4 on this CPU: our EfficientNets against torchvision's ResNet-50/152, and against torchvision's and timm's
EfficientNets at the same member. Batch 1, fixed threads, medians of interleaved runs.

    python benchmarks/bench_latency.py                      # B0-B3, 1 thread, 20 runs (a few minutes on 2 cores)
    python benchmarks/bench_latency.py --out effnet_edu/data/latency.json   # store it for notebook 08
    python benchmarks/bench_latency.py --members b0 b1 --runs 5 --no-compile          # a quick look

The paper (Section 5.2, Table 4) times batch 1 on one core of a Xeon CPU, "average latency over 20 runs":
EfficientNet-B1 0.098 s vs ResNet-152 0.554 s (5.7x faster), B7 3.1 s vs GPipe 19.0 s (6.1x). GPipe (an
AmoebaNet with 556M parameters) has no public PyTorch implementation, so only the B1 / ResNet-152 pair is redone.

Every network is built with random weights (``weights=None``: nothing is downloaded; the weights' values do not
change the arithmetic, and denormal floats, which could, are flushed to zero). All cases run in ONE interleaved
measurement (``effnet_edu.latency.measure``): round r times every case once before round r + 1, after untimed
warm-up rounds, so load from other processes hits every case alike; the median of the runs is reported.
Variants: eager (default memory format), ``channels_last``, and ``torch.compile`` (inductor; reported as failed,
not crashed, where it does not work on this machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee
from effnet_edu import latency
from effnet_edu.arch import B_SERIES
from effnet_edu.paper import SPEEDUP_B1_VS_RESNET152, TABLE2, TABLE4

RESNETS = ("resnet50", "resnet152")
RESNET_TABLE2 = {"resnet50": "ResNet-50", "resnet152": "ResNet-152"}


def resnet_macs(name: str) -> int:
    """Multiply-adds of torchvision's ResNet at 224 px, counted by PyTorch (2 FLOPs per multiply-add, halved)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.empty(1, 3, 224, 224)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def build_cases(members, libraries: bool, channels_last: bool, compile_names, log):
    """name -> (callable, info). info: source, member, variant, params, macs, resolution (and error for compile)."""
    cases, failed = {}, {}

    def add(name, model, resolution, info, variant="eager"):
        x = torch.randn(1, 3, resolution, resolution)
        model = model.eval()
        if variant == "channels_last":
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        if variant == "compile":
            try:
                start = time.perf_counter()
                model = torch.compile(model)
                latency.forward(model, x)()  # compiles now, so a failure is caught here and not mid-measurement
                log(f"  compiled {name} in {time.perf_counter() - start:.0f} s")
            except Exception as error:  # noqa: BLE001 - any backend failure is reported, not fatal
                failed[name] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
                log(f"  torch.compile failed for {name}: {failed[name]}")
                return
        cases[name] = (latency.forward(model, x), {**info, "variant": variant, "resolution": resolution})

    torch.manual_seed(0)
    for member in members:
        r = ee.count(member)
        info = {"member": member, "params": r.params, "macs": r.macs}
        for variant in ("eager", "channels_last", "compile"):
            if variant == "channels_last" and not channels_last or variant == "compile" and member not in compile_names:
                continue
            add(f"ours {member} {variant}", ee.build(member), r.config.resolution, {**info, "source": "ours"}, variant)
        if libraries:
            add(f"torchvision {member} eager", getattr(torchvision.models, f"efficientnet_{member}")(weights=None),
                r.config.resolution, {**info, "source": "torchvision"})
            import timm

            add(f"timm {member} eager", timm.create_model(f"efficientnet_{member}", pretrained=False),
                r.config.resolution, {**info, "source": "timm"})
    for name in RESNETS:
        model = getattr(torchvision.models, name)(weights=None)
        info = {"member": name, "params": sum(p.numel() for p in model.parameters()), "macs": resnet_macs(name),
                "source": "torchvision"}
        for variant in ("eager", "channels_last", "compile"):
            if variant == "channels_last" and not channels_last or variant == "compile" and name not in compile_names:
                continue
            add(f"{name} {variant}", getattr(torchvision.models, name)(weights=None), 224, info, variant)
    return cases, failed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (Table 4: one core)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per case (Table 4: 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before the timed ones")
    parser.add_argument("--members", nargs="+", default=["b0", "b1", "b2", "b3"], choices=B_SERIES)
    parser.add_argument("--compile", nargs="*", default=["b1", "resnet152"], metavar="NAME",
                        help="which networks to also time under torch.compile (default: the Table 4 pair, "
                             "B1 and ResNet-152: compiling takes minutes each on 2 cores); none with --no-compile")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--no-libraries", action="store_true", help="skip torchvision's and timm's EfficientNets")
    parser.add_argument("--out", type=Path, help="write the result as JSON here (notebook 08 reads "
                                                  "effnet_edu/data/latency.json)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        parser.error("--threads and --runs must be >= 1, --warmup >= 0")
    if args.out and not args.out.parent.is_dir():
        parser.error(f"--out: folder {args.out.parent} does not exist")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights must not slow a network down through denormal arithmetic
    compile_names = set() if args.no_compile else set(args.compile)
    if compile_names - set(args.members) - set(RESNETS):
        parser.error(f"--compile: {', '.join(sorted(compile_names - set(args.members) - set(RESNETS)))} is not "
                     f"timed in this run; choose from {', '.join([*args.members, *RESNETS])}")
    log = lambda text: print(text, flush=True)  # noqa: E731

    load_before = os.getloadavg()
    log(f"building and warming up (torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"nice {os.nice(0)}, load average {load_before[0]:.2f} on {os.cpu_count()} cores)")
    cases, failed = build_cases(args.members, not args.no_libraries, not args.no_channels_last, compile_names, log)
    log(f"timing {len(cases)} cases: {args.warmup} warm-up + {args.runs} timed rounds, interleaved")
    start = time.perf_counter()
    times = latency.measure({name: fn for name, (fn, _) in cases.items()}, runs=args.runs, warmup=args.warmup)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    ms = latency.medians_ms(times)

    rows = [{"name": name, **info, "median_ms": round(ms[name], 3),
             "runs_ms": [round(1000 * t, 3) for t in times[name]]} for name, (_, info) in cases.items()]
    print()
    print(f"{'case':<28}{'params':>12}{'MACs (B)':>10}{'median ms':>11}{'min ms':>9}{'max ms':>9}")
    for row in rows:
        print(f"{row['name']:<28}{row['params']:>12,}{row['macs'] / 1e9:>10.3f}{row['median_ms']:>11.1f}"
              f"{min(row['runs_ms']):>9.1f}{max(row['runs_ms']):>9.1f}")
    for name, error in failed.items():
        print(f"{name:<28}  torch.compile failed: {error}")

    by = {(r["source"], r["member"], r["variant"]): r for r in rows}
    summary: dict = {"table4": {}, "vs_libraries": {}}
    print("\nTable 4 (paper: B1 0.098 s vs ResNet-152 0.554 s, one Xeon core, mean of 20 runs: "
          f"{SPEEDUP_B1_VS_RESNET152}x faster)")
    paper_flops = TABLE2["ResNet-152"].flops / TABLE2["EfficientNet-B1"].flops
    paper_latency = TABLE4["ResNet-152"].seconds / TABLE4["EfficientNet-B1"].seconds
    for variant in ("eager", "channels_last", "compile"):
        for member in args.members:
            for resnet in RESNETS:
                ours, ref = by.get(("ours", member, variant)), by.get(("torchvision", resnet, variant))
                if not ours or not ref:
                    continue
                speed, cost = ref["median_ms"] / ours["median_ms"], ref["macs"] / ours["macs"]
                summary["table4"][f"{member} vs {resnet} {variant}"] = {"latency_ratio": round(speed, 3),
                                                                        "macs_ratio": round(cost, 3)}
                mark = f"   paper {paper_latency:.2f}x (MACs {paper_flops:.1f}x)" \
                    if (member, resnet) == ("b1", "resnet152") else ""
                print(f"  {variant:<13} {member.upper()} vs {RESNET_TABLE2[resnet]:<10}: {speed:5.2f}x faster, "
                      f"{cost:5.1f}x fewer MACs{mark}")
    print("  B7 vs GPipe (paper 6.1x): not measured, GPipe (AmoebaNet, 556M parameters) has no PyTorch model here")

    print("\nOurs against the libraries at the same member (eager; ratio = their ms / our ms, >= 1: ours no slower)")
    for member in args.members:
        ours = by.get(("ours", member, "eager"))
        for lib in ("torchvision", "timm"):
            ref = by.get((lib, member, "eager"))
            if ours and ref:
                ratio = ref["median_ms"] / ours["median_ms"]
                summary["vs_libraries"][f"{member} vs {lib}"] = round(ratio, 3)
                print(f"  {member.upper()} vs {lib:<12}: {ratio:5.3f}  ({ref['median_ms']:.1f} ms vs "
                      f"{ours['median_ms']:.1f} ms)")

    contended = f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} cores"
    print(f"\nMeasured in {wall:.0f} s at nice {os.nice(0)}; {contended}. On a shared machine absolute times vary "
          "from run to run; the ratios, from interleaved runs, are what to compare.")
    result = {
        "what": "inference latency, batch 1, random weights, median of interleaved runs (benchmarks/bench_latency.py)",
        "command": "python benchmarks/bench_latency.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**latency.machine(), "torchvision": torchvision.__version__,
                    "timm": __import__("timm").__version__ if not args.no_libraries else None},
        "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "nice": os.nice(0),
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)], "wall_seconds": round(wall, 1),
        "cases": rows, "compile_failed": failed, "summary": summary,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
