"""Class activation maps: where in the image does the network find a class? (Section 6 (Discussion), Figure 7.)

Classic CAM (Zhou et al., 2016) is exact for a network that ends in global average pooling + one FC layer, as
EfficientNet does (Table 1, stage 9). With A (C, h, w) the last feature map and W (classes, C) the FC weights,

    logit_c = b_c + sum_k W[c, k] * mean_xy A[k, x, y] = b_c + mean_xy M_c[x, y],   M_c = sum_k W[c, k] * A[k]

so M_c says how much each location adds to the class score. No backward pass is needed: one forward pass and a
weighted sum. Grad-CAM (Selvaraju et al., 2017) replaces W[c, k] by the spatial mean of d logit_c / d A[k],
which for GAP + FC is W[c, k] / (h * w) everywhere: the same map up to a positive scale, but it also works for
any earlier layer. Grad-CAM++, Score-CAM, EigenCAM, Layer-CAM, ... come from the ``grad-cam`` package
(``pytorch_grad_cam``), imported only when used.

    >>> result = cam(model, batch, method="gradcam", layer="stage6")   # maps: (B, R, R) in [0, 1]
    >>> overlay(photo_view, result.maps[0])                               # a PIL image

Every map is made the same way, so methods can be compared: ReLU (keep what speaks *for* the class), bilinear
upsampling to the input size, then min-max scaling to [0, 1] per image (grad-cam's convention).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .images import EVAL_CROP_PADDING, eval_crop
from .model import EfficientNet

# Our names -> pytorch_grad_cam class names. "cam" is ours: the classic, backward-free CAM.
METHODS = {
    "cam": None,
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",  # one forward pass per channel of the layer: slow on CPU (1280 for the head)
}
IOU_THRESHOLD = 0.5  # a pixel is "on" when the map is at least half its maximum (the blob's half-maximum width)


class CamError(ValueError):
    """A CAM request that cannot be served (unknown method or layer, class out of range); says what is allowed."""


@dataclass
class CamResult:
    maps: torch.Tensor  # (B, H, W) in [0, 1], upsampled to the input size
    raw: torch.Tensor | None  # (B, h, w) the unscaled map at the layer's resolution (classic CAM only)
    classes: list[int]  # the class each map explains
    probs: torch.Tensor  # (B, num_classes) softmax of the model's logits
    method: str
    layer: str


def method_name(method: str) -> str:
    """Normalise a method name: "Grad-CAM++" -> "gradcam++", "score_cam" -> "scorecam"."""
    key = str(method).lower().replace("-", "").replace("_", "").replace(" ", "")
    key = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "classic": "cam"}.get(key, key)
    if key not in METHODS:
        raise CamError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    return key


def target_layer(model: EfficientNet, layer: str | None = None) -> tuple[str, nn.Module]:
    """The layer whose output a CAM explains: by default ``model.cam_layer`` (the head, stage 9).

    Accepts Table 1's stage names ("stage1" = stem .. "stage9" = head), "stem", "head", or any module path
    ("stages.stage6.2.depthwise")."""
    if layer is None or layer in ("head", "stage9"):
        return "head", model.cam_layer
    if layer in ("stem", "stage1"):
        return "stem", model.stem
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.Module) and layer in stages._modules:  # "stage2" .. "stage8"
        return layer, stages.get_submodule(layer)
    try:
        return layer, model.get_submodule(layer)
    except AttributeError:
        raise CamError(f"unknown layer {layer!r}; use stage1..stage9 (Table 1), 'stem', 'head', or a module path "
                       f"such as 'stages.stage6.0.depthwise'") from None


def check_classes(model: EfficientNet, classes, batch: int) -> list[int] | None:
    """None (each image's top class), one class for all images, or one per image; checked against the FC layer."""
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        classes = [int(classes)] * batch
    classes = [int(c) for c in (classes.tolist() if isinstance(classes, torch.Tensor) else classes)]
    if len(classes) != batch:
        raise CamError(f"got {len(classes)} target classes for a batch of {batch} images")
    n = model.classifier.out_features
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise CamError(f"target class {bad[0]} is out of range: this model has classes 0..{n - 1}")
    return classes


def _check_input(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise CamError(f"expected a normalised image batch of shape (B, 3, H, W), got {shape}")
    return x


def scale_maps(raw: torch.Tensor, size) -> torch.Tensor:
    """(B, h, w) raw maps -> (B, H, W) in [0, 1]: ReLU, bilinear upsampling, per-image min-max."""
    maps = F.interpolate(raw.clamp(min=0)[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    return (maps - lo) / (hi - lo + 1e-7)  # 1e-7: an all-zero map stays zero


def classic_cam(features: torch.Tensor, classifier: nn.Linear, classes: Sequence[int],
                size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Classic CAM from the last feature map: M_c = sum_k W[c, k] * A[k], the classifier row of each image's class
    times the (B, C, h, w) features, then ``scale_maps`` to the input ``size`` (H, W).

    Returns (maps (B, H, W) in [0, 1], raw (B, h, w)). No forward pass: a cached feature map gives a new class's
    map in about a millisecond."""
    raw = torch.einsum("bchw,bc->bhw", features, classifier.weight[list(classes)])
    return scale_maps(raw, size), raw


@contextlib.contextmanager
def cam_session(model: EfficientNet):
    """Run a CAM in a clean state and always restore it, even when an exception is raised.

    - eval mode (BatchNorm statistics and dropout must not change the map); the old mode comes back after;
    - in-place activations switched off: EfficientNet's SiLU/ReLU6 use inplace=True, which overwrites the
      output of the layer before them. A hook that saved that output (as grad-cam's does, without a copy)
      would then hold the activation's result instead, so a CAM of "head.bn" would silently be one of
      "head.act". Turning in-place off costs one extra tensor per activation during the call;
    - parameter gradients as they were: grad-cam calls ``model.zero_grad()``, which would wipe the gradients of
      a training step that is in progress; we keep references to them and put them back."""
    training = model.training
    grads = [(p, p.grad) for p in model.parameters()]
    inplace = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in inplace:
        setattr(m, "inplace", False)
    model.eval()
    try:
        yield model
    finally:
        for m in inplace:
            setattr(m, "inplace", True)
        model.train(training)
        for p, grad in grads:
            p.grad = grad


@torch.no_grad()
def class_activation_map(model: EfficientNet, x: torch.Tensor, classes=None) -> CamResult:
    """Classic CAM (Zhou et al., 2016): one forward pass, then the FC weights of the class times the last
    feature map. ``classes``: None (top prediction), an int, or one per image."""
    x = _check_input(x)
    classes = check_classes(model, classes, len(x))
    with cam_session(model):
        features = model.forward_features(x)  # (B, C, h, w)
        logits = model.forward_head(features)  # (B, classes)
    if classes is None:
        classes = logits.argmax(1).tolist()
    maps, raw = classic_cam(features, model.classifier, classes, x.shape[-2:])
    return CamResult(maps, raw, classes, logits.softmax(1), "cam", "head")


def _grad_cam_method(model, x, method, classes, layer_name, layer) -> CamResult:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, str(METHODS[method]))

    def start_graph_here(module, inputs, output):
        # Gradients are only needed from the logits back to this layer: cut the graph here so the backward pass
        # skips everything before it (for the head: just pooling and the FC layer, so Grad-CAM costs about one
        # forward pass). Registered before grad-cam's own hooks, so they see (and hook) this new leaf.
        return output.detach().requires_grad_(True)

    handles = [layer.register_forward_hook(start_graph_here)]
    # Only the gradient with respect to the layer's output is needed, never the weights': with the parameters
    # frozen, the forward pass records no graph before the target layer (and no .grad is ever allocated).
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    engine = None
    try:
        engine = cls(model=model, target_layers=[layer])  # registers grad-cam's hooks (released below)
        if method == "scorecam":
            engine.batch_size = 64
        # targets=None: grad-cam explains each image's top class (the argmax of the logits, as we would).
        targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
        # Score-CAM prints a tqdm progress bar on stderr; keep the console and the notebooks clean.
        quiet = contextlib.redirect_stderr(io.StringIO()) if method == "scorecam" else contextlib.nullcontext()
        with torch.enable_grad(), quiet:
            maps = engine(input_tensor=x, targets=targets)  # (B, H, W) numpy, already scaled to [0, 1]
        logits = engine.outputs.detach()  # the forward pass grad-cam just ran: no second one for the scores
        if classes is None:
            classes = logits.argmax(1).tolist()
    finally:
        # Not ``with engine:``: grad-cam's __exit__ swallows IndexError. Release explicitly, always.
        if engine is not None:
            engine.activations_and_grads.release()
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)
    maps = torch.from_numpy(np.asarray(maps, dtype=np.float32))
    return CamResult(maps, None, list(classes), logits.softmax(1), method, layer_name)


def cam(model: EfficientNet, x: torch.Tensor, method: str = "cam", classes=None, layer: str | None = None) -> CamResult:
    """Any CAM method for a batch ``x`` (B, 3, R, R), normalised for ``model``.

    method: "cam" (classic, ours, head only), "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam",
    "eigencam", "scorecam" (grad-cam package). classes: None (top prediction), an int, or one per image.
    layer: None (the head, ``model.cam_layer``), "stage1".."stage9", or a module path."""
    method = method_name(method)
    x = _check_input(x)
    layer_name, module = target_layer(model, layer)
    classes = check_classes(model, classes, len(x))
    if method == "cam":
        if module is not model.cam_layer:
            raise CamError(f"classic CAM is defined for the last feature map only (the head), not {layer_name!r}: "
                           f"it reuses the FC weights, which only apply there; use method='gradcam' for other layers")
        return class_activation_map(model, x, classes)
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        raise ImportError(f"method {method!r} needs the grad-cam package: pip install 'effnet-edu[cam]' "
                          f"(method 'cam' works without it)") from None
    with cam_session(model):
        return _grad_cam_method(model, x, method, classes, layer_name, module)


# ------------------------------------------------------------------------------------------ images and overlays
def _values(cam_map) -> torch.Tensor:
    """A map given as a tensor (even one that requires grad), an array or nested lists -> float32 tensor."""
    if isinstance(cam_map, torch.Tensor):
        return cam_map.detach().float().cpu()
    return torch.as_tensor(np.asarray(cam_map, dtype=np.float32))


def crop_box(image_size: tuple[int, int], resolution: int) -> tuple[float, float, float, float]:
    """Where the evaluation crop (``images.eval_crop``: shorter side -> res + padding, center crop res) lies in
    the original image: (left, top, right, bottom) in original pixels."""
    width, height = image_size
    short, long = min(width, height), max(width, height)
    new_short = resolution + EVAL_CROP_PADDING
    new_long = int(new_short * long / short)  # torchvision's Resize rule
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    left, top = int(round((new_w - resolution) / 2.0)), int(round((new_h - resolution) / 2.0))  # CenterCrop's rule
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + resolution) * sx, (top + resolution) * sy


def to_original(point_xy, image_size, resolution) -> tuple[float, float]:
    """A pixel (x, y) of the model's input (pixel centres) -> the same point in the original image's pixels."""
    left, top, right, bottom = crop_box(image_size, resolution)
    sx, sy = (right - left) / resolution, (bottom - top) / resolution
    return left + (point_xy[0] + 0.5) * sx - 0.5, top + (point_xy[1] + 0.5) * sy - 0.5


def peak(cam_map: torch.Tensor) -> tuple[int, int]:
    """(x, y) of the maximum of one (H, W) map (the pointing game's guess)."""
    index = int(_values(cam_map).flatten().argmax())
    return index % cam_map.shape[-1], index // cam_map.shape[-1]


def model_view(image: Image.Image, resolution: int) -> Image.Image:
    """The RGB crop the model sees (eval transform without the normalisation): what to draw a CAM on."""
    return eval_crop(resolution)(image.convert("RGB"))


def colorize(cam_map, cmap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours through a matplotlib colormap (imported here, lazily)."""
    import matplotlib

    values = _values(cam_map).clamp(0, 1).numpy()
    if cmap not in matplotlib.colormaps:
        raise CamError(f"unknown colormap {cmap!r}; try jet, viridis, inferno or turbo")
    rgb = matplotlib.colormaps[cmap](values)[..., :3]
    return (rgb * 255 + 0.5).astype(np.uint8)


def overlay(image: Image.Image, cam_map, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend a colorized map over an image: alpha 0 = the photo only, 1 = the map only. The map is resized
    (bilinear) to the image if their sizes differ."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise CamError(f"alpha must be between 0 and 1, got {alpha}")
    values = _values(cam_map)
    width, height = image.size
    if tuple(values.shape) != (height, width):
        values = F.interpolate(values[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    heat = colorize(values.clamp(0, 1).numpy(), cmap).astype(np.float32)
    photo = np.asarray(image.convert("RGB"), dtype=np.float32)
    return Image.fromarray((photo * (1 - alpha) + heat * alpha + 0.5).astype(np.uint8))


# ------------------------------------------------------------------------------------------------ localisation
@dataclass(frozen=True)
class Localisation:
    hit: bool  # pointing game (Zhang et al., 2016): the map's maximum lies on the object
    energy: float  # share of the map's total mass inside the object (energy pointing game, Wang et al., 2020)
    iou: float  # IoU between {map >= threshold * max} and the object


def localisation(cam_map, target, threshold: float = IOU_THRESHOLD) -> Localisation:
    """Score one (H, W) map against the ground truth: an (H, W) boolean mask, or a box (x0, y0, x1, y1) in
    pixels with x1, y1 exclusive. The IoU thresholds the map at ``threshold`` x its maximum (default 0.5:
    Zhou et al. use 0.2 to draw generous boxes; half-maximum keeps the blob comparable to a tight mask)."""
    values = _values(cam_map)
    if values.dim() != 2:
        raise CamError(f"expected one (H, W) map, got shape {tuple(values.shape)}")
    if not 0.0 < threshold <= 1.0:
        raise CamError(f"threshold must be in (0, 1], got {threshold}")
    if isinstance(target, (tuple, list)) and len(target) == 4:
        x0, y0, x1, y1 = (int(round(v)) for v in target)
        mask = torch.zeros(values.shape, dtype=torch.bool)
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    else:
        mask = torch.as_tensor(np.asarray(target)).bool()
        if mask.shape != values.shape:
            raise CamError(f"mask shape {tuple(mask.shape)} differs from the map's {tuple(values.shape)}")
    values = values.clamp(min=0)
    x, y = peak(values)
    total = float(values.sum())
    energy = float(values[mask].sum()) / total if total > 0 else 0.0
    on = values >= threshold * values.max() if total > 0 else torch.zeros_like(mask)
    union = int((on | mask).sum())
    iou = int((on & mask).sum()) / union if union else 0.0
    return Localisation(bool(mask[y, x]) and total > 0, energy, iou)


def mean_localisation(maps, masks, threshold: float = IOU_THRESHOLD) -> dict[str, float]:
    """Average pointing-game hit rate, energy and IoU over a batch of maps (B, H, W) and masks (B, H, W): the
    mean of ``localisation`` over the pairs, computed for the whole batch at once (~100x faster than a loop)."""
    values = _values(maps).clamp(min=0)
    masks = torch.as_tensor(np.asarray(masks)).bool()
    if values.dim() != 3 or masks.shape != values.shape:
        raise CamError(f"expected maps and masks of the same (B, H, W) shape, got {tuple(values.shape)} "
                       f"and {tuple(masks.shape)}")
    if not 0.0 < threshold <= 1.0:
        raise CamError(f"threshold must be in (0, 1], got {threshold}")
    n = max(len(values), 1)
    flat, flat_mask = values.flatten(1), masks.flatten(1)
    total = flat.sum(1)
    alive = total > 0  # an all-zero map points nowhere and covers nothing
    hit = flat_mask.gather(1, flat.argmax(1, keepdim=True))[:, 0] & alive
    energy = torch.where(alive, (flat * flat_mask).sum(1) / total.clamp(min=1e-30), torch.zeros_like(total))
    on = (flat >= threshold * flat.max(1, keepdim=True).values) & alive[:, None]
    union = (on | flat_mask).sum(1)
    iou = torch.where(union > 0, (on & flat_mask).sum(1) / union.clamp(min=1), torch.zeros_like(total))
    return {"pointing": float(hit.sum()) / n, "energy": float(energy.sum()) / n, "iou": float(iou.sum()) / n}
