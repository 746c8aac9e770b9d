"""Decode and augment on the GPU (``TrainConfig.decode_on = "gpu"``): loader workers only read the JPEG bytes and
draw each image's random crop, flip and AutoAugment sub-policy; the training process decodes the whole batch with
nvJPEG (``torchvision.io.decode_jpeg(..., device="cuda")``) and applies the augmentation to batched uint8 tensors.

Why: a CPU core decodes and augments a few hundred ImageNet images per second (PIL decode + random-resized crop +
AutoAugment), so a GPU that trains B0 at thousands of images/s needs more cores than most machines give it.

How it stays fast: the training process is shared with the training step, so its per-batch work must be a few
hundred kernel launches and no waits for the device. Workers send a batch's bytes as one buffer (``Packed``);
nvJPEG decodes the list in one call; crop + resize + flip is two batched matmuls per image size
(``bicubic_weights``); AutoAugment runs per (op, magnitude) group, with the geometric ops in one ``grid_sample`` and
Equalize/AutoContrast rewritten without host syncs; small per-batch plans go to the device from pinned memory.

The augmentation is the CPU path's (``data.augment_transform``), not an approximation of it: the random numbers are
drawn by the same torchvision calls, in the same order, from the same per-sample seed (seed, epoch, index), so each
image gets the same crop box, flip and AutoAugment ops with the same magnitudes as on the CPU path. What differs is
the arithmetic: bicubic resampling and the AutoAugment ops run on tensors instead of PIL images, and nvJPEG's IDCT
is not libjpeg's, so pixels differ by a few levels (``tests/test_gpu_data.py`` measures it).

    loader = gpu_train_loader(dataset, sampler, batch_size, device)   # yields (images, labels, bad) on the device
"""

from __future__ import annotations

import io
import math
import queue
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.profiler import record_function
from torchvision import transforms as T

from .data import DataError, FolderDataset, first_readable

try:  # the exact op implementations torchvision's AutoAugment applies (private, stable since torchvision 0.10)
    from torchvision.transforms._functional_tensor import _apply_grid_transform
    from torchvision.transforms.autoaugment import _apply_op
    from torchvision.transforms.functional import _get_inverse_affine_matrix
except ImportError:  # pragma: no cover
    _apply_op = None

DECODE_ON = ("cpu", "gpu")


def _steps(transform: T.Compose) -> dict:
    """The CPU pipeline's parts by type, so both paths read their settings from ONE definition."""
    parts = {type(t).__name__: t for t in transform.transforms}
    missing = {"RandomResizedCrop", "RandomHorizontalFlip", "Normalize"} - set(parts)
    if missing:
        raise ValueError(f"the GPU path needs a train transform with {', '.join(sorted(missing))}")
    if "RandAugment" in parts:
        raise ValueError("decode_on='gpu' supports augment='autoaugment' or 'none', not 'randaugment'")
    return parts


class EncodedDataset(torch.utils.data.Dataset):
    """Item ``(epoch, index)`` -> (encoded image, label, params, bad). No decoding: the JPEG bytes as a uint8 tensor
    (a non-JPEG file is decoded here by PIL and sent as a (3, H, W) uint8 tensor), and the augmentation's random
    parameters drawn exactly as ``FolderDataset`` + ``augment_transform`` draw them for that sample:
    params = (top, left, height, width, flip, policy, p1, p2, sign1, sign2) as a float64 tensor.

    A file PIL cannot open is replaced by the next readable one (as ``FolderDataset`` does) and reported in ``bad``."""

    def __init__(self, samples, transform: T.Compose, seed: int = 0, skip_bad: bool = True):
        self.samples, self.seed, self.skip_bad = samples, seed, skip_bad
        parts = _steps(transform)
        self.crop, self.flip = parts["RandomResizedCrop"], parts["RandomHorizontalFlip"]
        self.autoaugment = parts.get("AutoAugment")

    def __len__(self):
        return len(self.samples)

    def params(self, image: Image.Image, index: int, epoch: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)  # FolderDataset.load's seed
            top, left, h, w = self.crop.get_params(image, self.crop.scale, self.crop.ratio)  # header only: no decode
            flip = float(torch.rand(1).item() < self.flip.p)
            policy, probs, signs = (self.autoaugment.get_params(len(self.autoaugment.policies)) if self.autoaugment
                                    else (-1, torch.zeros(2), torch.zeros(2)))
        return torch.tensor([top, left, h, w, flip, policy, *probs.tolist(), *signs.tolist()], dtype=torch.float64)

    def load(self, index: int, epoch: int):
        path, label = self.samples[index]
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:  # reads the header: size and format
            params = self.params(image, index, epoch)
            # A JPEG must end with its EOI marker (FF D9); libjpeg and nvJPEG may fill in a truncated file where PIL
            # (the CPU path) rejects it, so anything else is decoded here by PIL, which raises for broken files.
            if image.format == "JPEG" and image.mode in ("RGB", "L") and data.rstrip(b"\0\r\n ")[-2:] == b"\xff\xd9":
                encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            else:  # PNG, CMYK JPEG, truncated ...: decoded here (rare in ImageNet)
                encoded = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
        return encoded, label, params

    def __getitem__(self, key):
        return first_readable(self, key)


class Packed(NamedTuple):
    """A batch's encoded images in ONE uint8 buffer: a DataLoader worker sends one shared-memory block per batch
    instead of one per image (each costs a file-descriptor hand-over in the training process). ``shapes[i]`` is
    ``(n,)`` for JPEG bytes and ``(3, H, W)`` for an image the worker decoded."""
    data: torch.Tensor
    shapes: list

    def unpack(self) -> list[torch.Tensor]:
        sizes = [math.prod(shape) for shape in self.shapes]
        return [part.view(shape) for part, shape in zip(torch.split(self.data, sizes), self.shapes)]


def collate_encoded(batch):
    """Encoded images packed into one buffer (``Packed``); labels and params stacked."""
    encoded, labels, params, bad = zip(*batch)
    packed = Packed(torch.cat([e.reshape(-1) for e in encoded]), [tuple(e.shape) for e in encoded])
    return packed, torch.tensor(labels), torch.stack(params), list(bad)


def bicubic_weights(start: torch.Tensor, length: torch.Tensor, out_size: int, in_size: int,
                    flip: torch.Tensor | None = None, taps: int | None = None) -> torch.Tensor:
    """(N, out_size, in_size) resampling matrices: row o holds the weights PIL's antialiased bicubic resize gives
    the input pixels for output pixel o, when the crop [start, start + length) of a line of ``in_size`` pixels is
    resized to ``out_size`` (PIL's Resample.c: the cubic kernel with a = -0.5 stretched by the downscale factor,
    truncated to the crop and renormalised). ``flip`` reverses a sample's output order: a horizontal flip of the
    resized crop costs nothing. Multiplying an image by these matrices is the whole batch's crop + resize in two
    matmuls, whatever the crop sizes. ``taps``: the most input pixels one output pixel uses (PIL's ksize; computed
    from ``length`` if not given, which waits for the device); the weights are computed for those taps only and
    scattered into the zero matrix."""
    if taps is None:
        taps = 2 * math.ceil(2.0 * max(1.0, float(length.max()) / out_size)) + 1
    start, length = start.view(-1, 1, 1), length.view(-1, 1, 1)
    scale = length / out_size  # (N, 1, 1) input pixels per output pixel
    filterscale = scale.clamp(min=1.0)  # antialias: the kernel widens when downscaling
    support = 2.0 * filterscale
    o = torch.arange(out_size, device=start.device, dtype=start.dtype).view(1, -1, 1)
    if flip is not None:
        o = torch.where(flip.view(-1, 1, 1), out_size - 1 - o, o)
    center = (o + 0.5) * scale  # (N, R, 1) in crop coordinates
    xmin = torch.trunc(center - support + 0.5).clamp(min=0)
    xmax = torch.minimum(torch.trunc(center + support + 0.5), length)
    x = xmin + torch.arange(taps, device=start.device, dtype=start.dtype)  # (N, R, taps) the pixels o reads
    t = ((x - center + 0.5) / filterscale).abs()
    w = torch.where(t < 1, (1.5 * t - 2.5) * t * t + 1, -0.5 * (((t - 5) * t + 8) * t - 4))  # PIL's bicubic
    w = torch.where((x < xmax) & (t < 2), w, 0.0)
    w = w / w.sum(-1, keepdim=True)
    index = (x + start).long().clamp_(max=in_size - 1)  # taps past the crop have weight 0: adding them is harmless
    dense = torch.zeros(len(w), out_size, in_size, device=w.device, dtype=w.dtype)
    return dense.scatter_add_(2, index, w)  # (N, R, W)


def equalize(batch: torch.Tensor) -> torch.Tensor:
    """torchvision's ``F.equalize`` for a (N, C, H, W) uint8 batch in a fixed number of kernels (torchvision loops
    over images and channels and synchronises with the device twice per channel). Same integer arithmetic: the
    histogram of each channel; step = (pixels - count of the largest value) // 255; lut = (cdf + step // 2) // step
    shifted by one; a channel with step 0 is left as it is."""
    n, c = batch.shape[:2]
    flat = batch.reshape(n * c, -1).long()  # (N*C, H*W)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=batch.device).scatter_add_(1, flat, torch.ones_like(flat))
    step = (flat.shape[1] - hist.gather(1, flat.amax(1, keepdim=True))) // 255  # (N*C, 1)
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = torch.nn.functional.pad(lut, [1, 0])[:, :-1].clamp(0, 255)
    out = torch.where(step == 0, flat, lut.gather(1, flat))
    return out.to(torch.uint8).view_as(batch)


def autocontrast(batch: torch.Tensor) -> torch.Tensor:
    """torchvision's ``F.autocontrast`` for uint8 without its boolean-mask assignment (a device sync on CUDA)."""
    minimum = batch.amin((-2, -1), keepdim=True).float()
    maximum = batch.amax((-2, -1), keepdim=True).float()
    scale = 255.0 / (maximum - minimum)
    flat = ~torch.isfinite(scale)  # a constant channel is left as it is
    minimum, scale = minimum.masked_fill(flat, 0.0), scale.masked_fill(flat, 1.0)
    return ((batch - minimum) * scale).clamp(0, 255.0).to(batch.dtype)


GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def affine_matrix(op_name: str, magnitude: float, size: tuple[int, int]) -> list[float]:
    """The inverse affine matrix torchvision's ``_apply_op`` -> ``F.affine`` / ``F.rotate`` builds for a tensor of
    ``size`` (H, W), so a batch with one matrix per image can be warped in one ``grid_sample``."""
    h, w = size
    if op_name in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        center = [0 - w * 0.5, 0 - h * 0.5]  # F.affine(center=[0, 0]) in tensor coordinates
        return _get_inverse_affine_matrix(center, 0.0, [0.0, 0.0], 1.0,
                                          [shear, 0.0] if op_name == "ShearX" else [0.0, shear])
    if op_name in ("TranslateX", "TranslateY"):
        t = [float(int(magnitude)), 0.0] if op_name == "TranslateX" else [0.0, float(int(magnitude))]
        return _get_inverse_affine_matrix([0.0, 0.0], 0.0, t, 1.0, [0.0, 0.0])
    return _get_inverse_affine_matrix([0.0, 0.0], -magnitude, [0.0, 0.0], 1.0, [0.0, 0.0])  # F.rotate's -angle


def affine_grid(rescaled_theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """torchvision's ``_gen_affine_grid`` with one matrix per image: ``rescaled_theta`` (N, 3, 2) is its
    theta.transpose(1, 2) / (w / 2, h / 2), computed on the host. Returns the (N, h, w, 2) sampling grid."""
    base = torch.empty(1, h, w, 3, dtype=rescaled_theta.dtype, device=rescaled_theta.device)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1, steps=w, device=base.device))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1, steps=h, device=base.device).unsqueeze_(-1))
    base[..., 2].fill_(1)
    n = len(rescaled_theta)
    return base.view(1, h * w, 3).expand(n, h * w, 3).bmm(rescaled_theta).view(n, h, w, 2)


class BatchAugment:
    """Decode a batch on ``device`` and apply the CPU pipeline's crop, flip, AutoAugment and normalisation to it.
    Returns (B, 3, R, R) float32 in channels_last, and the indices of images that failed to decode (replaced by
    the batch's first good image).

    Everything after decoding is a fixed, small number of batched kernels, with no host-device synchronisation:
    the per-image decisions (crop boxes, flips, which AutoAugment op with which magnitude) are known on the host
    from ``params``, so they travel to the device in two small copies and the work is grouped around them:
    - crop + resize + flip: two matmuls with per-image bicubic matrices (``bicubic_weights``) per image size;
    - AutoAugment, per stage: the images that apply an op are gathered sorted by (op, magnitude), each run of equal
      ops is transformed as one slice by torchvision's op (geometric ops: all at once, one matrix per image;
      Equalize and AutoContrast: batched versions without syncs), and scattered back."""

    def __init__(self, transform: T.Compose, device):
        parts = _steps(transform)
        crop = parts["RandomResizedCrop"]
        self.size = list(crop.size)
        if crop.interpolation != T.InterpolationMode.BICUBIC:
            raise ValueError(f"the GPU path resizes bicubic (the recipe's crop), not {crop.interpolation.value}")
        self.autoaugment = parts.get("AutoAugment")
        if self.autoaugment is not None and _apply_op is None:
            raise ImportError("this torchvision has no transforms.autoaugment._apply_op; use augment='none' "
                              "with decode_on='gpu', or decode_on='cpu'")
        self.device = torch.device(device)
        # The resize matmuls (~90 GFLOP for 256 crops of 500x375 images) on CUDA's fp16 tensor cores: a tenth of a
        # millisecond instead of milliseconds taken from training; pixels (0..255) are exact in fp16, the weights
        # and the horizontal pass's output round to 11 bits (tests/test_gpu_data.py measures the difference).
        self.resample_dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        normalize = parts["Normalize"]
        self.mean = torch.tensor(normalize.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(normalize.std, device=self.device).view(1, 3, 1, 1) * 255
        if self.autoaugment is not None:  # (op, p, magnitude, signed) per sub-policy and stage, as forward() computes
            aa = self.autoaugment
            space = aa._augmentation_space(10, (self.size[0], self.size[1]))
            self.policies = [[(op, p, float(space[op][0][m].item()) if m is not None else 0.0, space[op][1])
                              for op, p, m in policy] for policy in aa.policies]
            self.fill = [float(aa.fill)] * 3 if isinstance(aa.fill, (int, float)) else aa.fill

    def upload(self, tensor: torch.Tensor) -> torch.Tensor:
        """Host -> device without waiting: from pinned memory, on the current stream."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def decode(self, encoded: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
        from torchvision.io import ImageReadMode, decode_jpeg

        jpeg = [i for i, e in enumerate(encoded) if e.dim() == 1]
        images: list = [e.to(self.device, non_blocking=True) if e.dim() == 3 else None for e in encoded]
        failed: list[int] = []
        if not jpeg:
            return images, failed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 announces a move to TorchCodec
            try:  # one batched nvJPEG call (hardware decoder on A100/H100) is much faster than one per image
                decoded = decode_jpeg([encoded[i] for i in jpeg], mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:  # a corrupt file fails the whole batch: find it, one image at a time
                decoded = []
                for i in jpeg:
                    try:
                        decoded.append(decode_jpeg(encoded[i], mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError:
                        decoded.append(None)
                        failed.append(i)
        for i, image in zip(jpeg, decoded):
            images[i] = image
        return images, failed

    def __call__(self, encoded, params: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        with record_function("gpu_data.decode"):  # named ranges for torch.profiler (benchmarks/bench_input.py)
            images, failed = self.decode(encoded.unpack() if isinstance(encoded, Packed) else list(encoded))
        good = [i for i in range(len(images)) if images[i] is not None]
        if not good:
            raise DataError(f"none of the {len(images)} images of a batch could be decoded")
        # An image that failed to decode is replaced by the batch's first good one (its pixels and its params).
        source = [i if images[i] is not None else good[0] for i in range(len(images))]
        images = [images[i] for i in source]
        rows = params[source]
        with record_function("gpu_data.crop_resize_flip"):
            batch = self.resized_crop_flip(images, rows)  # (B, 3, R, R) uint8
        if self.autoaugment is not None:
            with record_function("gpu_data.autoaugment"):
                batch = self.apply_autoaugment(batch, rows.tolist())
        with record_function("gpu_data.normalize"):
            batch = (batch.float() - self.mean) / self.std  # ToTensor's / 255 and Normalize in one step
            return batch.contiguous(memory_format=torch.channels_last), failed

    def resized_crop_flip(self, images: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """RandomResizedCrop (bicubic, antialiased as PIL) + RandomHorizontalFlip of (3, H, W) uint8 images on the
        device; ``rows[:, :5]`` = (top, left, height, width, flip). Images of one size are stacked and resized by
        two batched matmuls, horizontal then vertical as PIL: (3H, W) @ (W, R), then (R, H) @ (H, 3R)."""
        n, (r_h, r_w) = len(images), self.size
        shapes = [tuple(im.shape[-2:]) for im in images]
        order = sorted(range(n), key=lambda i: shapes[i])  # images of one size side by side
        plan = self.upload(rows[order, :5].float())  # (B, 5)
        height, width = max(s[0] for s in shapes), max(s[1] for s in shapes)
        longest = rows[:, 2:4].amax(0).tolist()  # on the host: the largest crop sets the taps (PIL's ksize)
        taps_y, taps_x = (2 * math.ceil(2.0 * max(1.0, size / r)) + 1 for size, r in zip(longest, self.size))
        wy = bicubic_weights(plan[:, 0], plan[:, 2], r_h, height, taps=taps_y)  # (B, R, Hmax)
        wx = bicubic_weights(plan[:, 1], plan[:, 3], r_w, width, flip=plan[:, 4] > 0, taps=taps_x)  # (B, R, Wmax)
        wy, wx = wy.to(self.resample_dtype), wx.to(self.resample_dtype)
        out, a = [], 0
        while a < n:
            h, w = shapes[order[a]]
            b = a + 1
            while b < n and shapes[order[b]] == (h, w):
                b += 1
            x = torch.stack([images[order[k]] for k in range(a, b)]).to(self.resample_dtype)  # (G, 3, h, w)
            x = x.view(b - a, 3 * h, w) @ wx[a:b, :, :w].transpose(1, 2)  # (G, 3h, R) horizontal pass
            x = x.view(b - a, 3, h, r_w).transpose(1, 2).reshape(b - a, h, 3 * r_w)  # (G, h, 3R)
            out.append(wy[a:b, :, :h] @ x)  # (G, R, 3R) vertical pass
            a = b
        batch = torch.cat(out) if len(out) > 1 else out[0]
        if order != list(range(n)):
            batch = batch.index_select(0, self.upload(torch.tensor(order).argsort()))
        batch = batch.view(n, r_h, 3, r_w).permute(0, 2, 1, 3)  # (B, 3, R, R)
        return batch.float().round_().clamp_(0, 255).to(torch.uint8, memory_format=torch.contiguous_format)

    def apply_autoaugment(self, batch: torch.Tensor, rows: list) -> torch.Tensor:
        """AutoAugment with each image's own sub-policy, ``rows[i][5:10]`` = (policy, p1, p2, sign1, sign2) as
        ``AutoAugment.get_params`` drew them; the ops in the order AutoAugment.forward applies them, with the
        magnitudes it computes."""
        interpolation = self.autoaugment.interpolation  # type: ignore[union-attr]
        r_h, r_w = batch.shape[-2:]
        for stage in range(2):
            active = []  # (op, magnitude, image) for the images whose op fires at this stage
            for i, row in enumerate(rows):
                op, p, magnitude, signed = self.policies[int(row[5])][stage]
                if row[6 + stage] <= p:
                    active.append(("~" if op in GEOMETRIC else op, -magnitude if signed and row[8 + stage] == 0
                                   else magnitude, i, op))
            if not active:
                continue
            active.sort(key=lambda a: a[:3])  # runs of equal (op, magnitude); all geometric ops in one run, last
            index = self.upload(torch.tensor([a[2] for a in active]))
            geometric = [a for a in active if a[0] == "~"]
            if geometric:
                theta = torch.tensor([affine_matrix(op, m, (r_h, r_w)) for _, m, _, op in geometric]).view(-1, 2, 3)
                rescaled = self.upload(theta.transpose(1, 2) / torch.tensor([0.5 * r_w, 0.5 * r_h]))
            x = batch.index_select(0, index)
            a = 0
            while a < len(active):
                b = a + 1
                while b < len(active) and active[b][:2] == active[a][:2]:
                    b += 1
                key, magnitude, _, op = active[a]
                if key == "~":  # every geometric op of this stage, one matrix per image (nearest, as F.affine)
                    grid = affine_grid(rescaled, r_h, r_w)
                    x[a:] = _apply_grid_transform(x[a:], grid, interpolation.value, fill=self.fill)
                    break
                x[a:b] = equalize(x[a:b]) if op == "Equalize" else autocontrast(x[a:b]) if op == "AutoContrast" \
                    else _apply_op(x[a:b], op, magnitude, interpolation=interpolation, fill=self.fill)
                a = b
            batch = batch.index_copy(0, index, x)
        return batch


class GpuLoader:
    """Iterate (images on ``device``, labels, bad) like the engine's DataLoader: workers read bytes, the training
    process decodes and augments. On CUDA a background thread prepares the next ``prefetch`` batches on a side
    stream while the current step runs."""

    def __init__(self, loader: torch.utils.data.DataLoader, augment: BatchAugment, prefetch: int = 2):
        self.loader, self.augment, self.prefetch = loader, augment, prefetch

    def __len__(self):
        return len(self.loader)

    def _prepare(self, batch):
        encoded, labels, params, bad = batch
        images, failed = self.augment(encoded, params)
        bad = list(bad)
        for i in failed:  # replaced by the batch's first good image (with its label)
            bad[i] = bad[i] or f"image {i} of the batch could not be decoded on {self.augment.device}"
        if failed:
            good = next(i for i in range(len(labels)) if i not in failed)
            labels = labels.clone()
            labels[failed] = labels[good]
        return images, self.augment.upload(labels), bad

    def __iter__(self):
        if self.augment.device.type != "cuda" or self.prefetch <= 0:
            for batch in self.loader:
                yield self._prepare(batch)
            return
        stream = torch.cuda.Stream(self.augment.device)
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work():
            try:
                if self.augment.device.index is not None:
                    torch.cuda.set_device(self.augment.device)  # the current device is per thread
                with torch.cuda.stream(stream):
                    for batch in self.loader:
                        images, labels, bad = self._prepare(batch)
                        event = torch.cuda.Event()
                        event.record(stream)
                        while not stop.is_set():
                            try:
                                ready.put((images, labels, bad, event), timeout=0.1)
                                break
                            except queue.Full:
                                continue
                        if stop.is_set():
                            return
            except BaseException as exc:  # re-raised in the training thread
                ready.put(exc)
                return
            ready.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                images, labels, bad, event = item
                current = torch.cuda.current_stream(self.augment.device)
                current.wait_event(event)
                images.record_stream(current)  # made on the side stream, used (and freed) on this one
                labels.record_stream(current)
                yield images, labels, bad
        finally:
            stop.set()
            thread.join(timeout=10)


def gpu_train_loader(dataset: FolderDataset, sampler, batch_size: int, device, num_workers: int = 8,
                     prefetch: int = 2) -> GpuLoader:
    """The GPU path for a training ``FolderDataset`` (its samples, seed and transform): a DataLoader of encoded
    images + ``BatchAugment`` on ``device``."""
    device = torch.device(device)
    if device.type != "cuda":
        warnings.warn(f"decode_on='gpu' without a CUDA device: decoding and augmenting batches on {device} in the "
                      "training process (slower than decode_on='cpu' with loader workers)", stacklevel=2)
    encoded = EncodedDataset(dataset.samples, dataset.transform, dataset.seed, dataset.skip_bad)
    loader = torch.utils.data.DataLoader(
        encoded, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_encoded,
        pin_memory=False, generator=torch.Generator(), prefetch_factor=4 if num_workers else None)
    return GpuLoader(loader, BatchAugment(dataset.transform, device), prefetch)


def check_decode_on(value: str) -> str:
    if value not in DECODE_ON:
        raise ValueError(f"decode_on must be 'cpu' (PIL in loader workers) or 'gpu' (nvJPEG + batched augmentation "
                         f"on the training device), got {value!r}")
    return value


__all__ = ["BatchAugment", "DECODE_ON", "EncodedDataset", "GpuLoader", "check_decode_on", "collate_encoded",
           "gpu_train_loader"]
