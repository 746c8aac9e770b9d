"""Decode and augment on the GPU (``TrainConfig.decode_on = "gpu"``): loader workers only read the JPEG bytes and
draw each image's random crop, flip and AutoAugment sub-policy; the training process decodes the whole batch with
nvJPEG (``torchvision.io.decode_jpeg(..., device="cuda")``) and applies the augmentation to batched uint8 tensors.

Why: a CPU core decodes and augments a few hundred ImageNet images per second (PIL decode + random-resized crop +
AutoAugment), so a GPU that trains B0 at thousands of images/s needs more cores than most machines give it.

The augmentation is the CPU path's (``data.augment_transform``), not an approximation of it: the random numbers are
drawn by the same torchvision calls, in the same order, from the same per-sample seed (seed, epoch, index), so each
image gets the same crop box, flip and AutoAugment ops with the same magnitudes as on the CPU path. What differs is
the arithmetic: bicubic resampling and the AutoAugment ops run on tensors instead of PIL images, and nvJPEG's IDCT
is not libjpeg's, so pixels differ by a few levels (``tests/test_gpu_data.py`` measures it).

    loader = gpu_train_loader(dataset, sampler, batch_size, device)   # yields (images, labels, bad) on the device
"""

from __future__ import annotations

import io
import queue
import threading
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from .data import DataError, FolderDataset, first_readable

try:  # the exact op implementations torchvision's AutoAugment applies (private, stable since torchvision 0.10)
    from torchvision.transforms.autoaugment import _apply_op
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


def collate_encoded(batch):
    """Variable-length encodings stay a list; labels and params are stacked."""
    encoded, labels, params, bad = zip(*batch)
    return list(encoded), torch.tensor(labels), torch.stack(params), list(bad)


class BatchAugment:
    """Decode a batch on ``device`` and apply the CPU pipeline's crop, flip, AutoAugment and normalisation to it.
    Returns (B, 3, R, R) float32 in channels_last, and the indices of images that failed to decode (replaced by
    the batch's first good image)."""

    def __init__(self, transform: T.Compose, device):
        parts = _steps(transform)
        crop = parts["RandomResizedCrop"]
        self.size, self.interpolation = list(crop.size), crop.interpolation
        self.autoaugment = parts.get("AutoAugment")
        if self.autoaugment is not None and _apply_op is None:
            raise ImportError("this torchvision has no transforms.autoaugment._apply_op; use augment='none' "
                              "with decode_on='gpu', or decode_on='cpu'")
        self.device = torch.device(device)
        normalize = parts["Normalize"]
        self.mean = torch.tensor(normalize.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(normalize.std, device=self.device).view(1, 3, 1, 1) * 255

    def decode(self, encoded: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
        from torchvision.io import ImageReadMode, decode_jpeg

        jpeg = [i for i, e in enumerate(encoded) if e.dim() == 1]
        images: list = [e.to(self.device, non_blocking=True) if e.dim() == 3 else None for e in encoded]
        failed = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 announces a move to TorchCodec
            try:  # one batched nvJPEG call is much faster than one per image
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

    def __call__(self, encoded: list[torch.Tensor], params: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        images, failed = self.decode(encoded)
        good = [i for i in range(len(images)) if images[i] is not None]
        if not good:
            raise DataError(f"none of the {len(images)} images of a batch could be decoded")
        # An image that failed to decode is replaced by the batch's first good one (its pixels and its params).
        source = [i if images[i] is not None else good[0] for i in range(len(images))]
        rows = [params[i].tolist() for i in source]
        crops = []
        for i, row in zip(source, rows):
            top, left, h, w = (int(v) for v in row[:4])
            # One resample per image (crop sizes differ): bicubic with antialiasing, as PIL's resize on the CPU path.
            crops.append(F.resized_crop(images[i], top, left, h, w, self.size, self.interpolation, antialias=True))
        batch = torch.stack(crops)  # (B, 3, R, R) uint8
        flip = torch.tensor([row[4] > 0 for row in rows], device=self.device)
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        if self.autoaugment is not None:
            batch = self.apply_autoaugment(batch, rows)
        batch = (batch.float() - self.mean) / self.std  # ToTensor's / 255 and Normalize in one step
        return batch.contiguous(memory_format=torch.channels_last), failed

    def apply_autoaugment(self, batch: torch.Tensor, rows: list) -> torch.Tensor:
        """AutoAugment with each image's own sub-policy: images whose op (name, magnitude) coincide are transformed
        together, one call per distinct op instead of one per image. The ops are torchvision's own (_apply_op), in
        the order AutoAugment.forward applies them, with the magnitudes it would compute."""
        aa = self.autoaugment
        assert aa is not None, "apply_autoaugment needs an AutoAugment policy"
        fill = [float(aa.fill)] * 3 if isinstance(aa.fill, (int, float)) else aa.fill  # as AutoAugment.forward
        space = aa._augmentation_space(10, (batch.shape[-2], batch.shape[-1]))
        for stage in range(2):
            groups = defaultdict(list)
            for i, row in enumerate(rows):
                op_name, p, magnitude_id = aa.policies[int(row[5])][stage]
                if row[6 + stage] <= p:
                    magnitudes, signed = space[op_name]
                    magnitude = float(magnitudes[magnitude_id].item()) if magnitude_id is not None else 0.0
                    if signed and row[8 + stage] == 0:
                        magnitude *= -1.0
                    groups[(op_name, magnitude)].append(i)
            for (op_name, magnitude), members in groups.items():
                index = torch.tensor(members, device=batch.device)
                batch[index] = _apply_op(batch[index], op_name, magnitude, interpolation=aa.interpolation, fill=fill)
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
        return images, labels.to(images.device, non_blocking=True), bad

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
