"""Images in and predictions out: loading files, the bundled real photos, ImageNet class names, and the
preprocessing that matches each weights source (reference.md, "training recipe").

Training crop: random-resized crop (area 0.08-1, aspect 3/4-4/3) + horizontal flip, bicubic.
Evaluation: resize the shorter side to res + 32, then a center crop of res (crop fraction res / (res + 32)).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T

from .weights import SOURCES

# The evaluation crop: resize the shorter side to res + 32, then center-crop res (crop fraction res / (res + 32),
# 0.875 at 224: the official EfficientNet eval preprocessing).
EVAL_CROP_PADDING = 32


class ImageError(ValueError):
    """An input that is not a usable image; the message names the file and the reason."""


def load_image(path) -> Image.Image:
    """Open an image file as RGB, or raise ImageError saying which file and why."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not deep inside a transform
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (PIL cannot identify it); "
                         f"use JPEG, PNG, BMP, GIF, TIFF or WebP") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode the image ({exc})") from None


def sample_photos() -> dict[str, Image.Image]:
    """Real colour photos that ship inside scikit-image and scikit-learn (no download): a cat, a rocket, ..."""
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise ImportError("the sample photos come from scikit-image and scikit-learn: "
                          "pip install 'effnet-edu[weights]'") from None
    photos = {name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")}
    photos["motorcycle"] = Image.fromarray(data.stereo_motorcycle()[0])
    sklearn_images = load_sample_images()
    for filename, array in zip(sklearn_images.filenames, sklearn_images.images):
        photos[Path(filename).stem] = Image.fromarray(array)  # "china" (a temple), "flower"
    return photos


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's bundled metadata (no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def _normalize(source: str) -> T.Normalize:
    if source not in SOURCES:
        raise ValueError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")
    return T.Normalize(SOURCES[source].mean, SOURCES[source].std)


def eval_crop(resolution: int) -> T.Compose:
    """PIL image -> the RGB crop the model sees: shorter side to res + EVAL_CROP_PADDING (bicubic), center crop."""
    return T.Compose([
        T.Resize(resolution + EVAL_CROP_PADDING, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(resolution),
    ])


def eval_transform(resolution: int, source: str = "ours") -> T.Compose:
    """PIL image -> normalised (3, res, res) tensor: ``eval_crop``, then the source's normalisation."""
    return T.Compose([eval_crop(resolution), T.ToTensor(), _normalize(source)])


def train_transform(resolution: int, source: str = "ours") -> T.Compose:
    """Random-resized crop (area 0.08-1, aspect 3/4-4/3) + flip, bicubic; augmentation policies live in training."""
    return T.Compose([
        T.RandomResizedCrop(resolution, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        _normalize(source),
    ])


def source_of(model) -> str:
    """The weights source a model was loaded from (decides the input normalisation); "ours" when trained here."""
    return getattr(model, "weights_source", "ours")


def preprocess(model, images) -> torch.Tensor:
    """PIL images (or paths) -> a (B, 3, R, R) batch normalised for ``model``'s weights, at its resolution."""
    transform = eval_transform(model.config.resolution, source_of(model))
    pil = [load_image(im) if isinstance(im, (str, Path)) else im.convert("RGB") for im in images]
    return torch.stack([transform(im) for im in pil])


@torch.no_grad()
def classify(model, images, top: int = 5) -> list[list[tuple[str, int, float]]]:
    """Top-k ImageNet predictions per image: [(label, class index, probability), ...]."""
    if not 1 <= top <= model.config.num_classes:
        raise ValueError(f"top must be between 1 and {model.config.num_classes}, got {top}")
    model.eval()
    return top_classes(model(preprocess(model, images)).softmax(dim=1), top)


def top_classes(probs: torch.Tensor, top: int = 5) -> list[list[tuple[str, int, float]]]:
    """(B, classes) probabilities -> the top-k [(label, class index, probability), ...] per image; labels are
    ImageNet's names for 1000 classes, else the index as text."""
    names = imagenet_classes() if probs.shape[1] == 1000 else None
    values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
    return [
        [(names[i] if names else str(i), int(i), float(p)) for p, i in zip(v.tolist(), ix.tolist())]
        for v, ix in zip(values, indices)
    ]
