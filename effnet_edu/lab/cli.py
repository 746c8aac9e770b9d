"""``effnet-edu lab``: the scaling lab from the command line.

    effnet-edu lab results --json                 # the stored results (one entry per trained model)
    effnet-edu lab train --width 2 --depth 1 --resolution 64 --seed 0 --json   # train one classroom model
    effnet-edu lab reproduce [--quick] [--jobs 2] [--out DIR]                # every experiment, resumable
    effnet-edu lab search [--quick] [--out DIR] [--seed S] [--target-macs T] [--w W]   # Section 4's search

Widths and depths are multipliers of the family's baseline (C0 for EfficientNet); the resolution is in pixels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_lab_command(subparsers) -> None:
    parser = subparsers.add_parser("lab", help="the scaling lab: classroom-scale reproductions of Figures 3, 4, 8 "
                                               "and Tables 3 and 7")
    commands = parser.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    p = commands.add_parser("results", help="print the stored results")
    p.add_argument("--experiment", help="only one experiment: c0, fig3, fig4, grid, step2, fig8, table3")
    p.add_argument("--dir", type=Path, help="a results folder written by `lab reproduce --out` (default: stored)")
    p.add_argument("--json", action="store_true", help="the whole results.json (or the experiment's entries)")
    p.set_defaults(func=cmd_results)

    p = commands.add_parser("train", help="train one classroom model from scratch and print its entry")
    p.add_argument("--family", default="effnet", choices=["effnet", "mobilenetv2", "resnet"])
    p.add_argument("--width", type=_positive_float, default=1.0, help="multiple of the baseline's width (default 1)")
    p.add_argument("--depth", type=_positive_float, default=1.0, help="multiple of the baseline's depth (default 1)")
    p.add_argument("--resolution", type=_pixels, default=64, help="input side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="the reduced recipe: 640 images, one epoch")
    p.add_argument("--out", type=Path, help="also store the checkpoint and entry in this results folder")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("reproduce", help="train every experiment's models and write results.json (resumable)")
    p.add_argument("--quick", action="store_true", help="the reduced recipe (a few minutes); needs --out")
    p.add_argument("--out", type=Path, help="results folder (default: the package's stored results)")
    p.add_argument("--jobs", type=_jobs, default=2, help="models trained at a time (default 2)")
    p.add_argument("--json", action="store_true", help="print the results as JSON when done")
    p.set_defaults(func=cmd_reproduce)

    p = commands.add_parser("search", help="Section 4's baseline search at classroom scale: random MBConv networks "
                                           "around C0, reward ACC x (MACs/T)^w (resumable)")
    p.add_argument("--quick", action="store_true", help="a reduced search (a minute or two); needs --out")
    p.add_argument("--out", type=Path, metavar="DIR", help="results folder (default: the package's stored results)")
    p.add_argument("--seed", type=_seed, metavar="S", default=0,
                   help="picks the candidates and seeds their training (default 0)")
    p.add_argument("--target-macs", type=_target, default=None, metavar="T",
                   help="T, the target multiply-adds (default 2,000,000: just above C0's 1.96M)")
    p.add_argument("--w", type=_w, default=None, metavar="W", help="the reward's exponent w (default -0.07, Section 4)")
    p.add_argument("--candidates", type=_candidates, default=None, metavar="N",
                   help="random candidates to train (default 30; --quick: 4), besides C0's shape")
    p.add_argument("--json", action="store_true", help="print search.json when done")
    p.set_defaults(func=cmd_search)


def _number(convert, low, high, what: str):
    """An argparse ``type=``: ``convert`` the text and check ``low <= value <= high`` (NaN fails too)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be in {_show(low)}..{_show(high)}, got {text}")
        return value
    return parse


def _show(bound) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


_positive_float = _number(float, 0.1, 16, "a multiplier of the baseline")
_pixels = _number(int, 32, 512, "the lab's resolution in pixels (its images are 128 px)")
_jobs = _number(int, 1, 64, "a number of processes")
_seed = _number(int, 0, 2**31 - 1, "a seed (a whole number)")
_target = _number(float, 1e4, 1e10, "the target T in multiply-adds")
# w < 0 rewards fewer FLOPS; w = 0 ranks by accuracy alone; w > 0 would reward *more* FLOPS: not a trade-off.
_w = _number(float, -1, 0, "the reward's exponent w (Section 4 uses -0.07)")
_candidates = _number(int, 1, 10000, "a number of candidates")


def cmd_results(args) -> None:
    from ..cli import UserError
    from .store import RESULTS, results

    try:
        data = results(args.dir or RESULTS)
    except (FileNotFoundError, ValueError) as exc:  # no results there, or a file that is not JSON
        raise UserError(str(exc)) from None
    rows = data["models"]
    if args.experiment:
        rows = [e for e in rows if args.experiment in e["experiments"]]
        if not rows:
            known = sorted({x for e in data["models"] for x in e["experiments"]})
            raise UserError(f"no experiment {args.experiment!r}; choose one of {', '.join(known)}")
    if args.json:
        print(json.dumps(rows if args.experiment else data, indent=1))
        return
    print(f"{'model':<32}{'params':>10}{'MACs':>12}{'val':>8}{'test':>8}{'seconds':>9}  experiments")
    for e in rows:
        print(f"{e['name']:<32}{e['params']:>10,}{e['macs']:>12,}{e['val_accuracy']:>8.3f}{e['accuracy']:>8.3f}"
              f"{e['train_seconds']:>9.0f}  {','.join(e['experiments'])}")


def cmd_train(args) -> None:
    from .experiments import Run
    from .families import Point
    from .train import QUICK, RECIPE, train_model

    point = Point(args.family, args.width, args.depth, args.resolution)
    model, entry = train_model(point, args.seed, QUICK if args.quick else RECIPE)
    run = Run(point, args.seed, ("cli",))
    entry = {"name": run.key, **entry, "experiments": ["cli"]}
    if args.out:
        from .run import save_run

        save_run(args.out, run, model, entry)
    if args.json:
        print(json.dumps(entry, indent=1))
    else:
        print(f"{entry['name']}: {entry['params']:,} parameters, {entry['macs']:,} MACs, validation accuracy "
              f"{entry['val_accuracy']:.3f}, test accuracy {entry['accuracy']:.3f} ({entry['train_seconds']:.0f} s)")


def cmd_reproduce(args) -> None:
    from ..cli import UserError
    from .run import reproduce
    from .store import RESULTS

    if args.quick and args.out is None:
        raise UserError("--quick writes a reduced reproduction: give it a folder with --out (the stored results "
                        "stay as they are)")
    results = reproduce(args.out or RESULTS, quick=args.quick, jobs=args.jobs)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"{len(results['models'])} models, results in {(args.out or RESULTS) / 'results.json'} "
              f"({results['wall_seconds'] / 60:.1f} min)")


def cmd_search(args) -> None:
    from ..cli import UserError
    from . import search as S
    from .store import RESULTS

    if args.quick and args.out is None:
        raise UserError("--quick writes a reduced search: give it a folder with --out (the stored results stay as "
                        "they are)")
    out = args.out or RESULTS
    try:
        (out / "search-runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where the folder should be, no permission, ...
        raise UserError(f"cannot write search results to {out}: {exc.strerror or exc}") from None
    results = S.run_search(out, quick=args.quick, seed=args.seed, candidates=args.candidates,
                           target=S.TARGET if args.target_macs is None else args.target_macs,
                           w=S.PAPER_W if args.w is None else args.w)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    entries = [e for e in results["candidates"] if not e["c0"]]
    chosen = next(e for e in entries if e["name"] == results["chosen"])
    c0 = [e for e in results["candidates"] if e["c0"]]
    better = sum(e["val_accuracy"] > c0[0]["val_accuracy"] and e["macs"] <= c0[0]["macs"] for e in entries)
    print(f"{len(entries)} candidates and C0 ({len(c0)} seeds), {results['wall_seconds'] / 60:.1f} min; "
          f"results in {out / 'search.json'}")
    print(f"chosen for T = {results['target_macs']:,.0f} MACs, w = {results['w']:g}: {chosen['name']} "
          f"({chosen['macs']:,} MACs, validation accuracy {chosen['val_accuracy']:.3f})")
    accuracies = ", ".join(f"{e['val_accuracy']:.3f}" for e in c0)
    seeds = ", ".join(str(e["seed"]) for e in c0)
    print(f"C0's shape: {c0[0]['macs']:,} MACs, validation accuracy {accuracies} (seeds {seeds}); "
          f"{better} candidate(s) at most as costly and more accurate (seed {c0[0]['seed']})")
