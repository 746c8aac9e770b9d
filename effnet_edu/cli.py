"""The ``effnet-edu`` command (also ``python -m effnet_edu``).

    effnet-edu info b3                      # scaled Table 1 and the parameter count
    effnet-edu info --phi 1.5               # any compound-scaling point (alpha, beta, gamma default to the paper's)
    effnet-edu info --width 1.2 --depth 1.4 --resolution 300
    effnet-edu predict --model lite0 cat.jpg --top 5
    effnet-edu cam --model lite0 cat.jpg --method gradcam --out cam.png

Each subcommand is an ``add_<name>_command(subparsers)`` that declares its options and a ``cmd_<name>(args)``
that runs it. Every command takes ``--json``. Errors the user can fix (a bad model name, a file that is not an
image, weights that do not fit) print one readable line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .arch import B_SERIES, FAMILY, MEMBER_NAMES, name_range, resolve, stages
from .scaling import BASE_RESOLUTION, FLOPS_BUDGET, ScalingError


class UserError(Exception):
    """A problem with the command's input: printed as one line, exit status 2."""


def _emit(args, payload, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def _add_scaling_options(parser) -> None:
    parser.add_argument("model", nargs="?", help=f"a released member: {', '.join(FAMILY)}")
    group = parser.add_argument_group("an explicit scaling point (instead of MODEL)")
    group.add_argument("--width", type=float, help="channel multiplier w")
    group.add_argument("--depth", type=float, help="layer multiplier d")
    group.add_argument("--resolution", type=int, help="input resolution r in pixels (also overrides MODEL's)")
    group = parser.add_argument_group("the compound rule (Section 3.3): d = alpha^phi, w = beta^phi, r = gamma^phi")
    group.add_argument("--phi", type=float, help="compound coefficient (>= 0)")
    group.add_argument("--alpha", type=float, help="depth base (>= 1, paper 1.2)")
    group.add_argument("--beta", type=float, help="width base (>= 1, paper 1.1)")
    group.add_argument("--gamma", type=float, help="resolution base (>= 1, paper 1.15)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")


def _add_source_option(parser) -> None:
    from .weights import SOURCES

    parser.add_argument("--source", choices=list(SOURCES), help="where --weights come from (default: read from its "
                        "keys; timm files need timm or timm_tf): " + "; ".join(f"{s.name} = {s.description}"
                                                                              for s in SOURCES.values()))


def _model_help() -> str:
    from .weights import OFFLINE

    return f"{OFFLINE} (offline weights), or {name_range(B_SERIES)} (torchvision's weights: internet once)"


def config_from_args(args):
    """The EfficientNetConfig that a command's scaling options describe."""
    scaling = {k: getattr(args, k) for k in ("width", "depth", "resolution", "phi", "alpha", "beta", "gamma")}
    if args.model is None and all(v is None for v in scaling.values()):
        raise UserError(f"give a model ({', '.join(FAMILY)}) or --width/--depth/--resolution or --phi")
    return resolve(args.model, num_classes=args.num_classes, **{k: v for k, v in scaling.items() if v is not None})


# ---------------------------------------------------------------------------------------------------- info
def add_info_command(subparsers) -> None:
    parser = subparsers.add_parser("info", help="the scaled Table 1 of any family member or scaling point")
    _add_scaling_options(parser)
    parser.add_argument("--layers", action="store_true",
                        help="also print parameters, multiply-adds and activations of every layer")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_info)


def info_payload(config, layers: bool = False) -> dict:
    from .accounting import count

    # Counted from the architecture (accounting.py, checked against the built model in the tests): no network
    # is built, so `info b7` answers at once. macs = multiply-adds (the paper's FLOPS); flops = 2 x macs.
    report = count(config)
    payload = {
        "name": config.name, "width": config.width, "depth": config.depth, "resolution": config.resolution,
        "num_classes": config.num_classes, "lite": config.lite, "params": report.params,
        "macs": report.macs, "flops": report.flops, "activations": report.activations,
        "activation_bytes": report.activation_bytes,
        "stages": [
            {"stage": s.stage, "operator": s.operator, "kernel": s.kernel_size, "stride": s.stride,
             "in_channels": s.in_channels, "out_channels": s.out_channels, "layers": s.layers,
             "resolution": s.resolution}
            for s in stages(config)
        ],
    }
    if layers:
        payload["layers"] = [row.to_dict() for row in report.rows]
    if config.compound is not None:
        point = config.compound
        payload["compound"] = {"phi": point.phi, "alpha": point.alpha, "beta": point.beta, "gamma": point.gamma,
                               "resolution_exact": point.resolution_exact, "flops_factor": point.flops_factor}
    return payload


def info_text(payload: dict) -> str:
    lines = [f"EfficientNet {payload['name']}: width {payload['width']:g}, depth {payload['depth']:g}, "
             f"resolution {payload['resolution']}" + (" (Lite: ReLU6, no SE)" if payload["lite"] else "")]
    if "compound" in payload:
        c = payload["compound"]
        lines.append(f"compound rule: phi {c['phi']:g}, alpha {c['alpha']:g}, beta {c['beta']:g}, gamma {c['gamma']:g}"
                     f" -> r = {BASE_RESOLUTION} * gamma^phi = {c['resolution_exact']:.2f} -> {payload['resolution']};"
                     f" alpha*beta^2*gamma^2 = {c['flops_factor']:.4f} (target ~{FLOPS_BUDGET:g})")
    header = (f"{'stage':>5}  {'operator':<24}{'kernel':>6}{'stride':>7}{'in':>6}{'out':>6}{'layers':>7}"
              f"{'resolution':>12}")
    lines += ["", header, "-" * len(header)]
    for s in payload["stages"]:
        res = f"{s['resolution']}x{s['resolution']}"
        lines.append(f"{s['stage']:>5}  {s['operator']:<24}{s['kernel']:>6}{s['stride']:>7}{s['in_channels']:>6}"
                     f"{s['out_channels']:>6}{s['layers']:>7}{res:>12}")
    lines += ["", f"parameters: {payload['params']:,} ({payload['num_classes']} classes)"]
    lines += [f"multiply-adds (paper's FLOPS): {payload['macs']:,} ({payload['macs'] / 1e9:.3f} B)",
              f"FLOPs (2 x MACs): {payload['flops']:,} ({payload['flops'] / 1e9:.3f} B)",
              f"activations (batch 1): {payload['activations']:,} elements, "
              f"{payload['activation_bytes'] / 2**20:,.1f} MiB at fp32"]
    if "layers" in payload:
        header = f"{'layer':<26}{'params':>12}{'MACs':>16}{'activations':>13}  out shape"
        lines += ["", header, "-" * len(header)]
        for row in payload["layers"]:
            shape = "x".join(map(str, row["out_shape"]))
            lines.append(f"{row['name']:<26}{row['params']:>12,}{row['macs']:>16,}{row['activations']:>13,}  {shape}")
    return "\n".join(lines)


def cmd_info(args) -> None:
    payload = info_payload(config_from_args(args), layers=args.layers)
    _emit(args, payload, info_text(payload))


# ------------------------------------------------------------------------------------------------- predict
def add_predict_command(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify images with real ImageNet weights")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", default="lite0", help=_model_help())
    parser.add_argument("--weights", help="a state-dict file instead of the released weights "
                                          "(ours, torchvision, timm or EfficientNet-PyTorch keys)")
    _add_source_option(parser)
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_predict)


def load_model(name: str, weights: str | None = None, source: str | None = None):
    """A model in eval mode: the released weights of ``name``, or the file ``weights`` loaded into ``name``'s shape."""
    from .weights import from_file, pretrained

    return (pretrained(name) if weights is None else from_file(name, weights, source)).eval()


def cmd_predict(args) -> None:
    from .images import classify, load_image

    images = [load_image(path) for path in args.images]  # fail on a bad file before loading any model
    model = load_model(args.model, args.weights, args.source)
    results = classify(model, images, top=args.top)
    payload = [{"image": path, "top": [{"label": label, "index": index, "probability": prob}
                                       for label, index, prob in top]}
               for path, top in zip(args.images, results)]
    lines = []
    for item in payload:
        lines.append(f"{item['image']} ({model.config.name}):")
        lines += [f"  {t['probability']:7.2%}  {t['label']} ({t['index']})" for t in item["top"]]
    _emit(args, payload, "\n".join(lines))


# --------------------------------------------------------------------------------------------------- train
def add_train_command(subparsers) -> None:
    from .train.config import add_arguments

    parser = subparsers.add_parser(
        "train", help="train on an ImageNet-style folder with the paper's recipe (every recipe value is an option)",
        description="Train with the recipe of Section 5.2 (defaults = the paper's values). Multi-GPU: "
                    "torchrun --nproc_per_node 8 -m effnet_edu train ...")
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    parser.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    from .train import DataError, from_args, train

    if not args.data:
        raise UserError("--data DIR is required (DIR/train/<class>/*.JPEG, optionally DIR/val/<class>/...)")
    try:
        result = train(from_args(args))
    except (DataError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in result.items() if k.endswith(("top1", "top5")))
    _emit(args, result, f"done: step {result['step']}, {metrics}; checkpoints in {args.output}")


# ---------------------------------------------------------------------------------------------------- eval
def add_eval_command(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="top-1/top-5 accuracy of weights on DIR/val (resize + center crop)")
    parser.add_argument("--model", help=f"{MEMBER_NAMES} (optional for files written by effnet-edu)")
    parser.add_argument("--weights", required=True, help="our checkpoint (EMA weights used), or a torchvision, "
                                                         "timm or EfficientNet-PyTorch state-dict file")
    _add_source_option(parser)
    parser.add_argument("--data", required=True, help="dataset folder holding SPLIT/<class>/<images>")
    parser.add_argument("--split", default="val", help="subfolder to evaluate (default: val)")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--json", action="store_true", help="machine-readable output: top1, top5 in percent")
    parser.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    import warnings
    from pathlib import Path

    import torch

    from .images import eval_transform, source_of
    from .train import DataError, FolderDataset, evaluate, scan_folder
    from .weights import from_file, read_checkpoint

    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = read_checkpoint(args.weights)  # read once; the classifier's shape says how many classes it has
    extra = {} if checkpoint.num_classes is None else {"num_classes": checkpoint.num_classes}
    model = from_file(args.model, args.weights, args.source, checkpoint=checkpoint, **extra).eval().to(device)
    resolution = args.resolution or model.config.resolution
    try:
        samples, classes, _ = scan_folder(Path(args.data) / args.split)
    except DataError as exc:
        raise UserError(str(exc)) from None
    if len(classes) > model.config.num_classes:
        raise UserError(f"{args.data}/{args.split} has {len(classes)} class folders but the model only "
                        f"{model.config.num_classes} classes")
    if len(classes) < model.config.num_classes:
        warnings.warn(f"{len(classes)} class folders for a {model.config.num_classes}-class model: label i is the "
                      f"i-th folder in sorted order, which matches only if the folders are the model's classes")
    data = FolderDataset(samples, eval_transform(resolution, source_of(model)))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, num_workers=args.num_workers)
    result = {"model": model.config.name, "resolution": resolution, **evaluate(model, loader, device)}
    _emit(args, result, f"{model.config.name} at {resolution}px on {result['images']} images: "
                        f"top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}%"
                        + (f" ({result['bad']} unreadable images replaced)" if result["bad"] else ""))


# ----------------------------------------------------------------------------------------------------- cam
def add_cam_command(subparsers) -> None:
    parser = subparsers.add_parser("cam", help="class activation map of an image: where the model finds a class")
    parser.add_argument("image", metavar="IMAGE", help="an image file (JPEG, PNG, ...)")
    parser.add_argument("--model", default="lite0", help=_model_help())
    parser.add_argument("--weights", help="a state-dict file instead of the released weights")
    _add_source_option(parser)
    parser.add_argument("--method", default="cam", help="cam (classic, Zhou et al. 2016), gradcam, gradcam++, "
                                                        "xgradcam, hirescam, layercam, eigencam, scorecam")
    parser.add_argument("--class", dest="class_index", type=int,
                        help="target class index (default: the top prediction)")
    parser.add_argument("--layer", help="stage1..stage9 (Table 1; default stage9, the head) or a module path")
    parser.add_argument("--out", help="write the overlay (on the crop the model sees) to this PNG/JPEG file")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay strength, 0..1 (default 0.5)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_cam)


def cmd_cam(args) -> None:
    from . import cam as C
    from .images import imagenet_classes, load_image, preprocess

    image = load_image(args.image)  # a bad file fails before any model is loaded
    try:
        method = C.method_name(args.method)
        model = load_model(args.model, args.weights, args.source)
        result = C.cam(model, preprocess(model, [image]), method, classes=args.class_index, layer=args.layer)
        index, resolution = result.classes[0], model.config.resolution
        x, y = C.to_original(C.peak(result.maps[0]), image.size, resolution)  # back through resize + crop
        picture = C.overlay(C.model_view(image, resolution), result.maps[0], args.alpha) if args.out else None
    except C.CamError as exc:
        raise UserError(str(exc)) from None
    if picture is not None:
        try:
            picture.save(args.out)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot write {args.out}: {exc}") from None
    names = imagenet_classes() if model.config.num_classes == 1000 else None
    payload = {
        "image": args.image, "model": model.config.name, "method": method, "layer": result.layer,
        "label": names[index] if names else str(index), "index": index,
        "probability": float(result.probs[0, index]),
        "peak": [min(max(int(round(x)), 0), image.width - 1), min(max(int(round(y)), 0), image.height - 1)],
        "out": args.out,
    }
    text = (f"{args.image} ({payload['model']}, {method} on {payload['layer']}): {payload['label']} "
            f"({payload['index']}, {payload['probability']:.1%}); the map peaks at x={payload['peak'][0]}, "
            f"y={payload['peak'][1]} of the original image" + (f"; overlay written to {args.out}" if args.out else ""))
    _emit(args, payload, text)


# -------------------------------------------------------------------------------------------------- main
COMMANDS = [add_info_command, add_predict_command, add_train_command, add_eval_command, add_cam_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effnet-edu", description="EfficientNet (Tan & Le, 2019) to learn and use.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .images import ImageError
    from .weights import WeightsError

    try:
        args.func(args)
    except (UserError, ScalingError, ImageError, WeightsError) as exc:
        print(f"effnet-edu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effnet-edu {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `effnet-edu info b7 --layers | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
