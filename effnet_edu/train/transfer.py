"""Starting from pretrained weights: the transfer-learning setting of Section 5.3 ("take ImageNet pretrained
checkpoints and finetune on new datasets", Tables 5 and 6).

    model = init_from(build("lite0", num_classes=16), "lite0")      # ImageNet backbone, a fresh 16-class classifier
    freeze_backbone(model)                                          # optional: train the classifier only
    optimizer = RMSpropTF(param_groups(model, 1e-5, backbone_lr_scale=0.1), lr=...)   # or a slower backbone

The *backbone* is everything but the final FC layer (``model.classifier``): stem, the MBConv stages and the 1x1
head conv. Only the classifier depends on the class count, so it is the one part replaced; it starts from the
model's own initialisation rule (``EfficientNet._init_weights``), as a model trained from scratch would.

A frozen backbone runs in evaluation mode (``train_mode``): its BatchNorm layers normalise with the running
statistics stored in the checkpoint and do not update them, and stochastic depth is off. Frozen weights with
moving statistics would be a backbone that still changes under the classifier (the features of an image would
depend on the batch it came in and drift as the statistics move); in evaluation mode the classifier learns on
exactly the features it will see at test time, which is what "a fixed feature extractor" means.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from ..model import EfficientNet
from ..weights import (
    LITE_PACKAGES,
    OFFLINE,
    SOURCES,
    WeightsError,
    detect_source,
    lite_checkpoint,
    load_checkpoint,
    load_weights,
    read_checkpoint,
)

PRETRAINED = tuple(LITE_PACKAGES)  # names --init-from accepts: released weights that load offline


def init_problem(value: str) -> str | None:
    """Why ``value`` cannot be an ``--init-from`` (None when it can): a released name, or a file that exists."""
    if value in PRETRAINED:
        return None
    if not value.strip():
        return f"empty: give {OFFLINE} or the path of a weights file"
    path = Path(value)
    if path.is_dir():
        return f"{value} is a folder; give a weights file (e.g. {path / 'best.pt'}) or {OFFLINE}"
    if path.is_file():
        return None
    return f"{value!r} is neither a released model with offline weights ({OFFLINE}) nor an existing weights file"


def _pretrained_state(source: str, model: EfficientNet) -> tuple[dict, str, dict, str]:
    """(state dict, its key layout, the config settings its weights need, the weights source to record)."""
    if source in PRETRAINED:
        return load_checkpoint(lite_checkpoint(source)), "lite", SOURCES["lite"].settings(), "lite"
    why = init_problem(source)
    if why:
        raise WeightsError(why)
    checkpoint = read_checkpoint(source)
    if checkpoint.meta is not None:  # written by effnet-edu: its own keys, with the settings it was built with
        meta = checkpoint.meta
        settings = {k: meta[k] for k in ("bn_eps", "same_padding") if k in meta}
        return checkpoint.state_dict, "ours", settings, str(meta.get("weights_source", "ours"))
    layout = detect_source(checkpoint.state_dict)
    if layout == "timm":
        raise WeightsError(f"{source} has timm keys, which timm's efficientnet_* and tf_efficientnet_* share but "
                           f"their padding does not: load it with effnet_edu.weights.from_timm(..., tf=...) and "
                           f"save_weights() it, then pass that file")
    return checkpoint.state_dict, layout, SOURCES[layout].settings(model.config.name), layout


def init_from(model: EfficientNet, source: str | Path, num_classes: int | None = None) -> EfficientNet:
    """A network with ``model``'s architecture and settings whose backbone holds pretrained weights and whose
    classifier is fresh, for ``num_classes`` classes (default: ``model``'s).

    ``source``: a released name (lite0, lite1, lite2: offline ImageNet weights) or a weights file that
    ``effnet_edu.weights`` reads (ours, torchvision, EfficientNet-PyTorch keys). Returns a NEW model: weights
    converted from TensorFlow need "SAME" padding and their BatchNorm epsilon, so the network is rebuilt with the
    settings the weights need (``model`` itself is not changed). Raises ``WeightsError`` when the weights belong
    to another architecture (naming the keys that do not fit)."""
    num_classes = model.config.num_classes if num_classes is None else num_classes
    state, layout, settings, weights_source = _pretrained_state(str(source), model)
    new = EfficientNet(replace(model.config, num_classes=num_classes, **settings))
    # The checkpoint's classifier is for its own classes: drop it and load the fresh one in its place, so that the
    # strict load below checks every *backbone* tensor's name and shape and nothing else.
    fc = SOURCES[layout].layout.fixed["classifier"]
    state = {k: v for k, v in state.items() if not k.startswith(fc + ".")}
    state.update({f"{fc}.weight": new.classifier.weight.detach(), f"{fc}.bias": new.classifier.bias.detach()})
    try:
        load_weights(new, state, layout)
    except WeightsError as exc:
        problems = [f"{len(keys)} {what} (e.g. {keys[0].split(':')[0]})" for keys, what in (
            (exc.mismatched, "tensors have another shape"), (exc.missing, "tensors the network needs are missing"),
            (exc.unexpected, "tensors have no place in the network")) if keys]
        hint = f"; --model {source} matches them" if source in PRETRAINED else ""
        origin = "effnet-edu" if layout == "ours" else layout
        raise WeightsError(f"the {origin} weights of {source} do not fit the network being trained "
                           f"({model.config.name}): {', '.join(problems)}{hint}",
                           exc.missing, exc.unexpected, exc.mismatched) from None
    new.weights_source = weights_source  # decides the input normalisation of training, eval and predict
    return new


def classifier_parameters(model: nn.Module) -> set[nn.Parameter]:
    """The parameters that a new class count replaces (the final FC layer): never frozen, never slowed down."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"{type(model).__name__} has no .classifier module to tell the classifier from the backbone")
    return set(classifier.parameters())


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """The top-level parts that are not the classifier (stem, stages, head; dropout holds no state)."""
    classifier = getattr(model, "classifier", None)
    return [m for m in model.children() if m is not classifier]


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Stop gradients to everything but the classifier (in place); see ``train_mode`` for BatchNorm."""
    keep = classifier_parameters(model)
    for p in model.parameters():
        p.requires_grad_(p in keep)
    return model


def is_frozen(model: nn.Module) -> bool:
    """True when some parameter receives no gradient (``freeze_backbone`` was applied)."""
    return any(not p.requires_grad for p in model.parameters())


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except that a frozen backbone stays in evaluation mode: BatchNorm uses and keeps its
    stored statistics, stochastic depth is off (see the module's docstring for why). The dropout before the
    classifier still trains."""
    model.train()
    if is_frozen(model):
        for module in backbone_modules(model):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):  # dropout has none: it keeps training
                module.eval()
    return model
