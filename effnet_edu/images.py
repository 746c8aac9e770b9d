"""Images in and predictions out: loading files, the bundled real photos, ImageNet class names, and the
preprocessing that matches each weights source (the official code's preprocessing; docs/paper-facts.md,
"The ImageNet recipe").

Training crop: random-resized crop (area 0.08-1, aspect 3/4-4/3) + horizontal flip, bicubic.
Evaluation: resize the shorter side to res + 32, then a center crop of res (crop fraction res / (res + 32)).
"""

from __future__ import annotations

import io
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms as T

from .weights import SOURCES

# The evaluation crop: resize the shorter side to res + 32, then center-crop res (crop fraction res / (res + 32),
# 0.875 at 224: the official EfficientNet eval preprocessing).
EVAL_CROP_PADDING = 32


class ImageError(ValueError):
    """An input that is not a usable image; the message names the file and the reason."""


# Real colour photos that ship inside scikit-image and scikit-learn (no download): name -> loader.
SAMPLES = {
    "astronaut": lambda: _skimage("astronaut")(),
    "chelsea": lambda: _skimage("chelsea")(),  # a tabby cat
    "coffee": lambda: _skimage("coffee")(),
    "rocket": lambda: _skimage("rocket")(),
    "motorcycle": lambda: _skimage("stereo_motorcycle")()[0],
    "china": lambda: _sklearn("china.jpg"),  # a temple
    "flower": lambda: _sklearn("flower.jpg"),
}
SAMPLE_PREFIX = "sample:"  # "sample:chelsea" names a bundled photo even when a file called "chelsea" exists


def _skimage(name):
    try:
        from skimage import data
    except ImportError:
        raise ImportError("the sample photos come from scikit-image and scikit-learn: "
                          "pip install 'effnet-edu[weights]'") from None
    return getattr(data, name)


def _sklearn(filename):
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        raise ImportError("the sample photos come from scikit-image and scikit-learn: "
                          "pip install 'effnet-edu[weights]'") from None
    return load_sample_image(filename)


def sample_photo(name: str) -> Image.Image:
    """One bundled photo by name ("chelsea", or "sample:chelsea"); ImageError listing the names if unknown."""
    key = str(name).removeprefix(SAMPLE_PREFIX)
    if key not in SAMPLES:
        raise ImageError(f"no bundled photo {key!r}: the sample photos are {', '.join(SAMPLES)}")
    return Image.fromarray(SAMPLES[key]())


def sample_photos() -> dict[str, Image.Image]:
    """All bundled photos: a cat, an astronaut, a rocket, coffee, a motorcycle, a temple and a flower."""
    return {name: sample_photo(name) for name in SAMPLES}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB with the same appearance.

    ``convert("RGB")`` alone gets several modes wrong: it *clips* 16- and 32-bit grey ("I;16", "I") at 255, so
    a 16-bit PNG turns white, and it drops transparency, exposing whatever colour hides under alpha = 0. Here
    16-bit values are scaled by 255/65535; 32-bit integer and float images are scaled from their own
    range (floats in [0, 1] by 255); transparent pixels are composited over white, as a viewer shows them.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)  # (H, W)
        if mode.startswith("I;16") or (mode == "I" and values.size and 0 <= values.min() and values.max() <= 65535):
            scaled = values * (255 / 65535)  # Pillow opens 16-bit PNG/TIFF as "I;16" (or "I" in some versions)
        elif mode == "F" and values.size and 0 <= values.min() and values.max() <= 1:
            scaled = values * 255
        else:  # a range we cannot know: stretch what is there
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
            scaled = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, P, 1, CMYK, YCbCr, LAB, HSV: Pillow's conversions are right


def _open(source, name: str) -> Image.Image:
    try:
        with Image.open(source) as image:
            image.load()  # decode now, so a truncated file fails here and not deep inside a transform
            return to_rgb(ImageOps.exif_transpose(image))  # a phone photo's EXIF says which way is up
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc}); if you trust the file, raise "
                         f"PIL.Image.MAX_IMAGE_PIXELS") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (PIL cannot identify it); "
                         f"use JPEG, PNG, BMP, GIF, TIFF or WebP") from None
    except PermissionError:
        raise ImageError(f"{name}: cannot read the file (permission denied)") from None
    except MemoryError:
        raise ImageError(f"{name}: too large to decode in the memory available") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, struct.error) as exc:
        raise ImageError(f"{name}: cannot decode the image ({type(exc).__name__}: {exc})") from None


def load_image(source, name: str | None = None) -> Image.Image:
    """Open an image as 8-bit RGB (``to_rgb``: 16-bit, transparent and EXIF-rotated images come out right), or
    raise ImageError saying which file and why.

    ``source`` is a path; a bundled photo's name ("chelsea" when no such file exists, or "sample:chelsea");
    or the bytes / a binary file object of an upload (``name`` then labels messages)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open(io.BytesIO(bytes(source)), name or "upload")
    if hasattr(source, "read"):
        return _open(source, str(name or getattr(source, "name", "upload")))
    text = str(source)
    if text.startswith(SAMPLE_PREFIX):
        return sample_photo(text)
    path = Path(source)
    if not path.exists():
        if text in SAMPLES:
            return sample_photo(text)
        raise ImageError(f"{path}: no such file (or use a bundled photo: {', '.join(SAMPLES)})")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    return _open(path, str(path))


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
    pil = [load_image(im) if isinstance(im, (str, Path)) else to_rgb(im) for im in images]
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
