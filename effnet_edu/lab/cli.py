"""``effnet-edu lab``: the scaling lab from the command line.

    effnet-edu lab results --json                 # the stored results (one entry per trained model)
    effnet-edu lab train --width 2 --depth 1 --resolution 64 --seed 0 --json   # train one classroom model
    effnet-edu lab reproduce [--quick] [--jobs 2] [--out DIR]                # every experiment, resumable
    effnet-edu lab eval --phi 1 --alpha 1.2 --beta 1.1 --gamma 1.15 --json   # a sub-network of the elastic network
    effnet-edu lab cam --width 2 --resolution 96 test:7 --json               # its class activation map
    effnet-edu lab elastic-train [--quick --out DIR]                          # train the elastic network (resumable)
    effnet-edu lab transfer [--quick] [--out DIR]      # ImageNet Lite0 fine-tuned vs from scratch (Section 5.3)
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

    p = commands.add_parser("transfer", help="fine-tune the ImageNet Lite0 weights on the lab's dataset against "
                                             "training from scratch, across training-set sizes (resumable)")
    p.add_argument("--quick", action="store_true", help="a reduced version (about a minute); needs --out")
    p.add_argument("--out", type=Path, help="results folder (default: the package's stored results)")
    p.add_argument("--json", action="store_true", help="print transfer.json when done")
    p.set_defaults(func=cmd_transfer)
    p = commands.add_parser("eval", help="a sub-network of the elastic network: params, MACs, test accuracy, "
                                         "CAM localisation")
    _add_point_options(p)
    p.add_argument("--images", type=_number(int, 1, 2000, "a number of test images"), default=2000,
                   help="score on the first N test images (default all 2,000)")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("cam", help="class activation map of a sub-network of the elastic network")
    _add_point_options(p)
    p.add_argument("image", help="an image file, or test:N for the N-th image of the lab's test split")
    p.set_defaults(func=cmd_cam)

    p = commands.add_parser("elastic-train", help="train the elastic network, then validate it against the "
                                                  "from-scratch models (resumable)")
    p.add_argument("--quick", action="store_true", help="640 images, one epoch (a few minutes); needs --out")
    p.add_argument("--out", type=Path, help="folder for weights.pt and the validation (default: stored)")
    p.add_argument("--threads", type=_jobs, help="CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_elastic_train)

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


def _add_point_options(p) -> None:
    group = p.add_argument_group("the scaling point: multipliers of C0 (or phi, alpha, beta, gamma: Eq. 3)")
    group.add_argument("--width", type=_positive_float, help="width multiplier w (default 1)")
    group.add_argument("--depth", type=_positive_float, help="depth multiplier d (default 1)")
    group.add_argument("--resolution", type=_pixels, help="input side in pixels (default 64)")
    group.add_argument("--phi", type=_number(float, 0, 16, "phi"), help="compound coefficient phi")
    group.add_argument("--alpha", type=_positive_float, help="depth base alpha (default the paper's 1.2)")
    group.add_argument("--beta", type=_positive_float, help="width base beta (default 1.1)")
    group.add_argument("--gamma", type=_positive_float, help="resolution base gamma (default 1.15)")
    p.add_argument("--weights", type=Path, help="a folder written by `lab elastic-train --out` (default: stored)")
    p.add_argument("--json", action="store_true", help="print JSON")


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


def point_of(args):
    """The Point the options name: phi/alpha/beta/gamma (Eq. 3 on C0) or width/depth/resolution, not both."""
    from ..cli import UserError
    from ..scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA
    from .experiments import compound_point, scaled
    from .families import Point

    compound = [x for x in (args.phi, args.alpha, args.beta, args.gamma) if x is not None]
    direct = [x for x in (args.width, args.depth, args.resolution) if x is not None]
    if compound and direct:
        raise UserError("give either --phi/--alpha/--beta/--gamma or --width/--depth/--resolution, not both")
    if compound:
        if args.phi is None:
            raise UserError("--alpha, --beta and --gamma need --phi (the point is alpha^phi, beta^phi, gamma^phi)")
        for name in ("alpha", "beta", "gamma"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise UserError(f"--{name} must be at least 1 (Eq. 3's constraint), got {getattr(args, name):g}")
        return compound_point("effnet", args.phi, args.alpha or PAPER_ALPHA, args.beta or PAPER_BETA,
                              args.gamma or PAPER_GAMMA)
    point = scaled("effnet", args.width or 1.0, args.depth or 1.0)
    return Point("effnet", point.width, point.depth, args.resolution or point.resolution)


def _elastic_call(fn):
    """Run ``fn`` and turn the elastic network's expected failures into one-line errors."""
    from ..cli import UserError
    from .elastic import OutsideBox

    try:
        return fn()
    except (OutsideBox, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None


def cmd_eval(args) -> None:
    from . import elastic

    point = point_of(args)
    result = _elastic_call(lambda: elastic.evaluate(point, args.images, args.weights))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"width {point.width:g}, depth {point.depth:g}, {point.resolution} px: {result['params']:,} parameters, "
              f"{result['macs']:,} MACs, test accuracy {result['accuracy']:.1f}% on {result['test_images']} images, "
              f"CAM pointing game {result['pointing']:.1f}%")


def cmd_cam(args) -> None:
    import torch

    from ..cam import peak
    from ..cli import UserError
    from . import elastic
    from .data import CLASSES, SIZE
    from .train import split

    point = point_of(args)
    if args.image.startswith("test:"):
        try:
            index = int(args.image[5:])
            images = split("test")[0]
            image = images[index].permute(2, 0, 1)
        except (ValueError, IndexError):
            raise UserError(f"{args.image!r}: test:N needs N in 0..1999") from None
    else:
        import numpy as np
        from PIL import Image

        from ..images import load_image

        photo = load_image(args.image).resize((SIZE, SIZE), Image.Resampling.BICUBIC)  # lab images: 128 px squares
        image = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)
    out = _elastic_call(lambda: elastic.class_maps(point, image[None], args.weights))
    cls = int(out["classes"][0])
    x, y = peak(out["maps"][0])
    payload = {"image": args.image, "width": point.width, "depth": point.depth, "resolution": point.resolution,
               "label": CLASSES[cls], "index": cls, "probability": round(float(out["probs"][0, cls]), 4),
               "peak": [x, y], "feature_map": out["grid"]}
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        print(f"{args.image}: {payload['label']} ({payload['probability']:.1%}); the map ({out['grid']}x{out['grid']} "
              f"cells) peaks at x={x}, y={y} of the 128 px image")


def cmd_elastic_train(args) -> None:
    from ..cli import UserError
    from . import elastic
    from .run import _progress

    if args.quick and args.out is None:
        raise UserError("--quick trains a reduced network: give it a folder with --out (the stored weights stay)")
    out = args.out or elastic.WEIGHTS
    recipe = elastic.QUICK_ELASTIC if args.quick else elastic.ELASTIC
    bar = _progress(0, "elastic network")
    state = {"last": 0}

    def progress(step, total, losses):
        bar.total = total
        bar.update(step - state["last"])
        state["last"] = step
        bar.set_postfix_str(f"loss largest {losses[0]:.3f}, smallest {losses[1]:.3f}")

    info = elastic.train_elastic(out, recipe, progress, threads=args.threads)
    bar.close()
    summary = elastic.write_validation(out)
    print(f"trained in {info['train_seconds'] / 60:.1f} min; against the from-scratch models: mean |difference| "
          f"{summary['mean_abs_difference']:.1f} points, worst {summary['worst_abs_difference']:.1f}, Kendall tau "
          f"{summary['kendall_tau']:.2f}; written to {out}")
def cmd_transfer(args) -> None:
    from ..cli import UserError
    from .store import RESULTS
    from .transfer import FILE, curves, reproduce

    if args.quick and args.out is None:
        raise UserError("--quick writes a reduced experiment: give it a folder with --out (the stored results "
                        "stay as they are)")
    out = args.out or RESULTS
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    results = reproduce(out, quick=args.quick, progress=None if args.json else print)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    table = curves(results)
    print(f"{'images/class':>12}" + "".join(f"{init:>10}" for init in table))
    for i, (n, _) in enumerate(next(iter(table.values()))):
        print(f"{n:>12}" + "".join(f"{points[i][1]:>10.3f}" for points in table.values()))
    print(f"{len(results['runs'])} runs, {results['cpu_seconds'] / 60:.1f} CPU minutes; "
          f"results in {out / FILE}")
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
