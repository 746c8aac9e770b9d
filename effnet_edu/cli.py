"""The ``effnet-edu`` command (also ``python -m effnet_edu``).

    effnet-edu info b3                      # scaled Table 1 and the parameter count
    effnet-edu info --phi 1.5               # any compound-scaling point (alpha, beta, gamma default to the paper's)
    effnet-edu info --width 1.2 --depth 1.4 --resolution 300
    effnet-edu predict --model lite0 chelsea --top 5     # a bundled photo by name, or any image file
    effnet-edu cam --model lite0 cat.jpg --method gradcam --out cam.png

Each subcommand is an ``add_<name>_command(subparsers)`` that declares its options and a ``cmd_<name>(args)``
that runs it. Every command takes ``--json``. Options are checked where they are parsed (the ``type=``
functions below); errors the user can fix (a bad model name, a file that is not an image, weights that do not
fit, a network beyond the size limits) print one line and exit with status 2, never a traceback (``EXPECTED``
in ``main``). Anything else is a bug: one line, exit status 1, and ``--debug`` (or ``EFFNET_EDU_DEBUG=1``)
shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .arch import B_SERIES, FAMILY, MEMBER_NAMES, name_range, resolve, stages
from .scaling import BASE_RESOLUTION, FLOPS_BUDGET, ScalingError

# The bundled photos' names (images.SAMPLES), repeated so that `--help` does not import torch.
SAMPLE_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "china", "flower")


class UserError(Exception):
    """A problem with the command's input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage first) and the same exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ``type=`` functions: a bad option value fails while parsing, naming the option and what is allowed.
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def class_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class index (a whole number >= 0), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a class index is >= 0, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def weights_file(text: str) -> str:
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a weights file")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot read the file (permission denied)")
    return text


def image_output(text: str) -> str:
    """An image file we can write: checked before any model is loaded, so a typo costs nothing."""
    from PIL import Image

    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; give a file name such as {os.path.join(text, 'cam.png')}")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(text) and not os.access(text, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied (or a read-only file system)")
    Image.init()
    if os.path.splitext(text)[1].lower() not in Image.registered_extensions():
        raise argparse.ArgumentTypeError(f"cannot tell the image format of {text}: end the name in .png or .jpg")
    return text


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
    parser.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default 1000)")


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
    from .limits import check_size

    config = config_from_args(args)
    check_size(config)  # --phi 1000 describes 1e80 blocks: refuse by arithmetic, before listing or counting them
    payload = info_payload(config, layers=args.layers)
    _emit(args, payload, info_text(payload))


# ------------------------------------------------------------------------------------------------- predict
def add_predict_command(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify images with real ImageNet weights")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help=f"image files (JPEG, PNG, ...) or bundled photos: {', '.join(SAMPLE_NAMES)}")
    parser.add_argument("--model", default="lite0", help=_model_help())
    parser.add_argument("--weights", type=weights_file, help="a state-dict file instead of the released weights "
                                                            "(ours, torchvision, timm or EfficientNet-PyTorch keys)")
    _add_source_option(parser)
    parser.add_argument("--top", type=positive_int, default=5, help="how many classes to show (default 5)")
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
    if args.top > model.config.num_classes:
        raise UserError(f"--top {args.top} is more than the model's {model.config.num_classes} classes")
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
        usage="effnet-edu train --data DIR [--output DIR] [--model NAME] [--resume] [options: see --help]",
        description="Train with the recipe of Section 5.2 (defaults = the paper's values). Multi-GPU: "
                    "torchrun --nproc_per_node 8 -m effnet_edu train ...")
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    parser.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    from .train import DataError, TrainError, from_args, train

    if not args.data:
        raise UserError("--data DIR is required (DIR/train/<class>/*.JPEG, optionally DIR/val/<class>/...)")
    try:
        result = train(from_args(args))
    except (DataError, TrainError) as exc:
        raise UserError(str(exc)) from None
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in result.items() if k.endswith(("top1", "top5")))
    _emit(args, result, f"done: step {result['step']}, {metrics}; checkpoints in {args.output}")


# ---------------------------------------------------------------------------------------------------- eval
def add_eval_command(subparsers) -> None:
    from .train.config import option_type  # the same range checks as train's options

    parser = subparsers.add_parser("eval", help="top-1/top-5 accuracy of weights on DIR/val (resize + center crop)")
    parser.add_argument("--model", help=f"{MEMBER_NAMES} (optional for files written by effnet-edu)")
    parser.add_argument("--weights", required=True, help="our checkpoint (EMA weights used), or a torchvision, "
                                                         "timm or EfficientNet-PyTorch state-dict file")
    _add_source_option(parser)
    parser.add_argument("--data", required=True, help="dataset folder holding SPLIT/<class>/<images>")
    parser.add_argument("--split", default="val", help="subfolder to evaluate (default: val)")
    parser.add_argument("--resolution", type=option_type("resolution", int),
                        help="input resolution (default: the model's)")
    parser.add_argument("--batch-size", type=option_type("batch_size", int), default=64)
    parser.add_argument("--num-workers", type=option_type("num_workers", int), default=4)
    parser.add_argument("--device", type=option_type("device", str), default="auto", help="auto, cpu, cuda, cuda:1")
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
MAX_OVERLAY_PIXELS = 16_000_000  # draw on a scaled-down copy of larger photos: the blend costs ~40 bytes a pixel


def overlay_on_original(image, cam_map, resolution: int, alpha: float):
    """The map drawn over the original image, so that the picture and ``peak`` (original pixels) agree: the
    (R, R) map is resized into the box the evaluation crop covers (``cam.crop_box``) and is 0 outside it, where
    the model saw nothing. Photos over ``MAX_OVERLAY_PIXELS`` are scaled down first (``out_size`` says so)."""
    import torch
    import torch.nn.functional as F

    from . import cam as C

    scale = min(1.0, (MAX_OVERLAY_PIXELS / (image.width * image.height)) ** 0.5)
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    left, top, right, bottom = (int(round(v * scale)) for v in C.crop_box((round(image.width / scale),
                                                                           round(image.height / scale)), resolution))
    right, bottom = min(max(right, left + 1), image.width), min(max(bottom, top + 1), image.height)
    values = torch.as_tensor(cam_map, dtype=torch.float32).detach().cpu()
    inside = F.interpolate(values[None, None], size=(bottom - top, right - left), mode="bilinear",
                           align_corners=False)[0, 0]  # (box height, box width)
    full = torch.zeros(image.height, image.width)
    full[top:bottom, left:right] = inside
    return C.overlay(image, full, alpha)


def add_cam_command(subparsers) -> None:
    parser = subparsers.add_parser("cam", help="class activation map of an image: where the model finds a class")
    parser.add_argument("image", metavar="IMAGE",
                        help=f"an image file (JPEG, PNG, ...) or a bundled photo: {', '.join(SAMPLE_NAMES)}")
    parser.add_argument("--model", default="lite0", help=_model_help())
    parser.add_argument("--weights", type=weights_file, help="a state-dict file instead of the released weights")
    _add_source_option(parser)
    parser.add_argument("--method", default="cam", help="cam (classic, Zhou et al. 2016), gradcam, gradcam++, "
                                                        "xgradcam, hirescam, layercam, eigencam, scorecam")
    parser.add_argument("--class", dest="class_index", type=class_index,
                        help="target class index (default: the top prediction)")
    parser.add_argument("--layer", help="stage1..stage9 (Table 1; default stage9, the head) or a module path")
    parser.add_argument("--out", type=image_output,
                        help="write the map over the original image to this PNG/JPEG file (same pixels as 'peak'; "
                             "the map is 0 outside the centre crop the model sees)")
    parser.add_argument("--alpha", type=fraction, default=0.5, help="overlay strength, 0..1 (default 0.5)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_cam)


def cmd_cam(args) -> None:
    from . import cam as C
    from .images import imagenet_classes, load_image, preprocess

    image = load_image(args.image)  # a bad file or method fails before any model is loaded (CamError: exit 2)
    method = C.method_name(args.method)
    model = load_model(args.model, args.weights, args.source)
    result = C.cam(model, preprocess(model, [image]), method, classes=args.class_index, layer=args.layer)
    index, resolution = result.classes[0], model.config.resolution
    x, y = C.to_original(C.peak(result.maps[0]), image.size, resolution)  # back through resize + crop
    picture = overlay_on_original(image, result.maps[0], resolution, args.alpha) if args.out else None
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
        "out": args.out, "out_size": list(picture.size) if picture is not None else None,
    }
    text = (f"{args.image} ({payload['model']}, {method} on {payload['layer']}): {payload['label']} "
            f"({payload['index']}, {payload['probability']:.1%}); the map peaks at x={payload['peak'][0]}, "
            f"y={payload['peak'][1]} of the original image" + (f"; overlay written to {args.out}" if args.out else ""))
    _emit(args, payload, text)


# -------------------------------------------------------------------------------------------------- main
def add_lab_command(subparsers) -> None:
    from .lab.cli import add_lab_command as add

    add(subparsers)


COMMANDS = [add_info_command, add_predict_command, add_train_command, add_eval_command, add_cam_command,
            add_lab_command]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="effnet-edu", description="EfficientNet (Tan & Le, 2019) to learn and use.")
    debug_help = "show the full traceback of any error (also: EFFNET_EDU_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    for sub in subparsers.choices.values():  # `effnet-edu info b0 --debug` works too
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a user can fix: one line, exit status 2. Imported here so that `info` never imports torch."""
    from .cam import CamError
    from .images import ImageError
    from .weights import WeightsError

    # ImportError: our messages say which extra to install; MemoryError: a size within the limits that this
    # machine still cannot hold.
    return (UserError, ScalingError, ImageError, WeightsError, CamError, ImportError, MemoryError)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("EFFNET_EDU_DEBUG", "").strip() not in ("", "0")
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"effnet-edu {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `effnet-edu info b7 --layers | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the message holds
        if isinstance(exc, MemoryError):
            message = f"out of memory ({message}); try a smaller model, image or batch"
        if isinstance(exc, expected_errors()):
            print(f"effnet-edu {args.command}: error: {message}", file=sys.stderr)
            return 2
        print(f"effnet-edu {args.command}: internal error: {type(exc).__name__}: {message} (this is a bug; "
              f"run again with --debug or EFFNET_EDU_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
