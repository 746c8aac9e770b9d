"""A classroom stand-in for ImageNet in Figure 7: textured shapes on cluttered backgrounds, with the object's
ground-truth mask, so "does the CAM look at the object?" gets a number instead of an impression.

Each image holds one object of one of five classes. A class is a shape *and* a texture *and* a hue:

    disc/stripes/red   square/checker/green   triangle/dots/blue   ring/diagonals/yellow   cross/waves/magenta

The background is a smooth two-colour noise plus 6-12 small distractors: the same five shapes with random
textures and random colours, at a third of the object's size or less. So every local cue (a red stripe, a corner)
also appears in the clutter, and a model that only pools texture statistics is pulled off the object: that is
what the localisation scores measure. Everything is numpy, deterministic from the seed.

    >>> images, masks, labels = make_dataset(8, seed=0)   # (8, 192, 192, 3) uint8, (8, 192, 192) bool, (8,)
"""

from __future__ import annotations

import numpy as np

SIZE = 192  # native side in pixels; models see it resized to their own resolution
CLASSES = ("disc", "square", "triangle", "ring", "cross")
TEXTURES = ("stripes", "checker", "dots", "diagonals", "waves")
HUES = np.array([[0.9, 0.15, 0.1], [0.1, 0.75, 0.2], [0.15, 0.3, 0.95], [0.95, 0.85, 0.1], [0.85, 0.15, 0.85]])


def shape_mask(kind: str, xx, yy, cx, cy, radius, angle) -> np.ndarray:
    """Boolean mask of one shape centred at (cx, cy), roughly ``radius`` pixels in half-extent, rotated."""
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / radius  # rotated coordinates in units of the radius
    v = (-(xx - cx) * s + (yy - cy) * c) / radius
    if kind == "disc":
        return u**2 + v**2 <= 1
    if kind == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if kind == "triangle":  # equilateral, pointing "up" in the rotated frame
        return (v <= 0.5) & (v >= -1 + np.sqrt(3) * np.abs(u))
    if kind == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1) & (r2 >= 0.45**2)
    if kind == "cross":
        return ((np.abs(u) <= 1) & (np.abs(v) <= 0.3)) | ((np.abs(u) <= 0.3) & (np.abs(v) <= 1))
    raise ValueError(f"unknown shape {kind!r}; choose one of {', '.join(CLASSES)}")


def texture(kind: str, xx, yy, period, phase) -> np.ndarray:
    """A (H, W) pattern in [0, 1] with the given period in pixels."""
    k = 2 * np.pi / period
    if kind == "stripes":
        return (np.sin(k * yy + phase) > 0).astype(np.float32)
    if kind == "checker":
        return ((np.sin(k * xx + phase) > 0) ^ (np.sin(k * yy + phase) > 0)).astype(np.float32)
    if kind == "dots":
        return ((np.sin(k * xx + phase) * np.sin(k * yy + phase)) > 0.5).astype(np.float32)
    if kind == "diagonals":
        return (np.sin(k * (xx + yy) / np.sqrt(2) + phase) > 0).astype(np.float32)
    if kind == "waves":
        return 0.5 + 0.5 * np.sin(k * yy + 3 * np.sin(k * xx / 2) + phase)
    raise ValueError(f"unknown texture {kind!r}; choose one of {', '.join(TEXTURES)}")


def paint(canvas, xx, yy, shape, cx, cy, radius, angle, texture_kind, period, phase, colour, rng) -> np.ndarray:
    """Draw one textured shape on ``canvas`` (in place, only inside its bounding box) and return its full mask.
    The texture is ``colour`` modulated between a dark shade of it and the colour itself."""
    size = canvas.shape[0]
    x0, x1 = max(int(cx - 1.5 * radius), 0), min(int(cx + 1.5 * radius) + 2, size)
    y0, y1 = max(int(cy - 1.5 * radius), 0), min(int(cy + 1.5 * radius) + 2, size)
    mask = np.zeros((size, size), bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    bx, by = xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
    local = shape_mask(shape, bx, by, cx, cy, radius, angle)
    mask[y0:y1, x0:x1] = local
    shade = texture(texture_kind, bx, by, period, phase)[local][:, None]
    dark = colour * rng.uniform(0.15, 0.4)
    canvas[y0:y1, x0:x1][local] = dark * (1 - shade) + colour * shade
    return mask


def render(rng: np.random.Generator, label: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) uint8 and its object mask (size, size) bool."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: two random colours mixed by a smooth random field (a few low-frequency sinusoids).
    field = sum(np.sin(rng.uniform(0.01, 0.06) * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 6.3))
                for a in rng.uniform(0, np.pi, 3))
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    c0, c1 = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    canvas = c0 * field[..., None] + c1 * (1 - field[..., None])
    canvas += rng.normal(0, 0.04, canvas.shape)  # sensor-like noise
    # The object: its class fixes shape, texture and hue; size, place, angle, period and shade vary.
    radius = rng.uniform(0.17, 0.28) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * np.pi)
    # Clutter: small shapes of every class with random textures and colours, anywhere (even over the object's
    # spot: the object is painted last, on top).
    for _ in range(rng.integers(6, 13)):
        r = rng.uniform(0.04, 0.09) * size
        colour = HUES[rng.integers(5)] if rng.random() < 0.5 else rng.uniform(0, 1, 3)
        paint(canvas, xx, yy, CLASSES[rng.integers(5)], *rng.uniform(0, size, 2), r, rng.uniform(0, 2 * np.pi),
              TEXTURES[rng.integers(5)], rng.uniform(5, 10), rng.uniform(0, 6.3), colour, rng)
    colour = np.clip(HUES[label] + rng.normal(0, 0.08, 3), 0, 1)
    mask = paint(canvas, xx, yy, CLASSES[label], cx, cy, radius, angle, TEXTURES[label], rng.uniform(6, 11),
                 rng.uniform(0, 6.3), colour, rng)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8), mask


def make_dataset(n: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images with balanced labels: images (n, size, size, 3) uint8, masks (n, size, size) bool,
    labels (n,) int64. The same (n, seed) always gives the same arrays."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), bool)
    for i, label in enumerate(labels):
        images[i], masks[i] = render(rng, int(label), size)
    return images, masks, labels.astype(np.int64)
