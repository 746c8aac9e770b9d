"""The scaling lab's classroom dataset: constellations of finely striped dots, where depth, width and resolution
each have a job. Numpy only, deterministic from a seed, every image with its object mask.

Each 128x128 image holds one *object*: 7-11 small dots placed along the outline of a shape, every dot filled with
fine stripes at one orientation. The class is the pair (shape, stripe orientation): 4 x 4 = 16 classes.

- **Depth (receptive field, composition).** A single dot says nothing about the shape: every shape is made of
  the same dots. Only the *arrangement* of dots 30-80 pixels apart tells a ring from a square or a triangle, so
  the network must combine evidence across most of the image (a large receptive field, built by stacking
  layers: Section 3.2 names "larger receptive fields" as the reason to go deeper).
- **Resolution (fine detail).** The stripes have a period of 5-7.5 native pixels. A model that sees the image
  at 64 px (half size) gets a period of 2.5-3.75 pixels, close to the Nyquist limit of 2 pixels: the finer
  stripes are blurred away by the resize or aliased. More pixels (Section 3.2: "higher resolution ... fine-grained
  patterns") make it visible again.
- **Width (fine-grained classes).** Sixteen classes that differ by one attribute each need many distinct
  channel detectors (four orientations at several phases, shape-part detectors); wider layers "capture more
  fine-grained features" (Section 3.2).
- **Clutter.** 4-8 distractor dots with random orientations and colours, scattered away from the object, so
  counting orientations over the whole image is not enough: the model has to know which dots belong together,
  and a class activation map can be scored against the object's mask.

The mask is the object's region: the filled shape the dots outline, widened by a dot's radius (what a person would
circle). Everything is drawn in float32 and stored as uint8.

    >>> images, masks, labels = make_dataset(8, seed=0)   # (8, 128, 128, 3) uint8, (8, 128, 128) bool, (8,)
"""

from __future__ import annotations

import numpy as np

SIZE = 128  # native side in pixels; models see it resized to their own resolution
SHAPES = ("ring", "square", "triangle", "cross")
ORIENTATIONS = (0, 45, 90, 135)  # stripe direction in degrees
CLASSES = tuple(f"{s}/{o}" for s in SHAPES for o in ORIENTATIONS)  # label = 4 * shape + orientation
PERIOD = (5.0, 7.5)  # stripe period in native pixels: 2.5-3.75 px at 64 px, near the Nyquist limit of 2
DOT_RADIUS = (5.5, 7.5)
OBJECT_RADIUS = (26.0, 40.0)


def outline(shape: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points spread evenly along the outline of ``shape`` (unit size, centred at 0), shape (n, 2)."""
    t = (np.arange(n) + rng.uniform(0, 1)) / n  # even spacing from a random start
    if shape == "ring":
        a = 2 * np.pi * t
        return np.stack([np.cos(a), np.sin(a)], 1)
    if shape in ("square", "triangle"):
        k = 4 if shape == "square" else 3
        corners = np.array([[np.cos(a), np.sin(a)] for a in 2 * np.pi * (np.arange(k + 1) / k + 1 / 8)])
        side, frac = np.divmod(t * k, 1)
        side = side.astype(int)
        return corners[side] * (1 - frac[:, None]) + corners[side + 1] * frac[:, None]
    if shape == "cross":  # two bars: points along the horizontal and the vertical bar, none doubled at the centre
        u = (t * 2) % 1 * 2 - 1
        bar = (t * 2).astype(int)
        return np.where(bar[:, None] == 0, np.stack([u, 0 * u], 1), np.stack([0 * u, u], 1))
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def region(shape: str, xx, yy, cx, cy, radius, angle, pad) -> np.ndarray:
    """The filled shape that the dots outline (rotated like them), widened by ``pad`` pixels."""
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s)
    v = (-(xx - cx) * s + (yy - cy) * c)
    if shape == "ring":
        return u**2 + v**2 <= (radius + pad) ** 2
    if shape == "cross":
        half = radius + pad
        return ((np.abs(u) <= half) & (np.abs(v) <= pad)) | ((np.abs(v) <= half) & (np.abs(u) <= pad))
    k = 4 if shape == "square" else 3
    inside = np.ones_like(u, bool)
    for i in range(k):  # intersection of half-planes, one per side (the polygon of ``outline``)
        a = 2 * np.pi * ((i + 0.5) / k + 1 / 8)  # direction of the side's normal
        apothem = radius * np.cos(np.pi / k)
        inside &= u * np.cos(a) + v * np.sin(a) <= apothem + pad
    return inside


def dot(canvas, xx, yy, cx, cy, radius, orientation, period, phase, colour) -> None:
    """Paint one striped dot in place (only inside its bounding box)."""
    size = canvas.shape[0]
    x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, size)
    y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return
    bx, by = xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
    inside = (bx - cx) ** 2 + (by - cy) ** 2 <= radius**2
    a = np.deg2rad(orientation)
    # Stripes run along the orientation: the intensity varies across it (soft edges, no aliasing at native size).
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (-(bx * np.sin(a)) + by * np.cos(a)) / period + phase)
    shade = stripes[inside][:, None]
    canvas[y0:y1, x0:x1][inside] = colour * 0.15 * (1 - shade) + colour * shade


def render(rng: np.random.Generator, label: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) uint8 and its object mask (size, size) bool."""
    shape, orientation = SHAPES[label // len(ORIENTATIONS)], ORIENTATIONS[label % len(ORIENTATIONS)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: two random dim colours mixed by a smooth random field, plus sensor-like noise.
    a = rng.uniform(0, np.pi)
    field = 0.5 + 0.5 * np.sin(rng.uniform(0.02, 0.06) * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 6.3))
    c0, c1 = rng.uniform(0.1, 0.5, 3), rng.uniform(0.1, 0.5, 3)
    canvas = c0 * field[..., None] + c1 * (1 - field[..., None])
    canvas += rng.normal(0, 0.03, canvas.shape)
    # The object: a constellation of dots along the outline of its shape.
    radius = rng.uniform(*OBJECT_RADIUS)
    dot_radius = rng.uniform(*DOT_RADIUS)
    margin = radius + dot_radius + 2
    cx, cy = rng.uniform(margin, size - margin, 2)
    angle = rng.uniform(-0.35, 0.35)  # a little rotation; shapes stay recognisable (a square is not a diamond)
    n = int(rng.integers(7, 12))
    points = outline(shape, n, rng) @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    mask = region(shape, xx, yy, cx, cy, radius, angle, dot_radius + 1)
    # Clutter first (the object is painted on top): distractor dots outside the object's region.
    for _ in range(int(rng.integers(4, 9))):
        for _try in range(10):
            x, y = rng.uniform(dot_radius, size - dot_radius, 2)
            if not mask[int(y), int(x)]:
                dot(canvas, xx, yy, x, y, dot_radius * rng.uniform(0.8, 1.1), ORIENTATIONS[rng.integers(4)],
                    rng.uniform(*PERIOD), rng.uniform(0, 6.3), rng.uniform(0.5, 1.0, 3))
                break
    colour = rng.uniform(0.5, 1.0, 3)
    period = rng.uniform(*PERIOD)
    for px, py in points * radius:
        dot(canvas, xx, yy, cx + px, cy + py, dot_radius, orientation, period, rng.uniform(0, 6.3), colour)
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
