"""The GPU input path (train/gpu_data.py), run on the CPU: it must give every image the crop, flip and AutoAugment
ops that the CPU path (FolderDataset + augment_transform, the oracle) gives it, batch composition must not matter,
and broken files must be reported, not crash. The same code runs on CUDA in tests/test_cuda.py."""

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from effnet_edu.train import FolderDataset, TrainConfig, scan_folder, train, augment_transform
from effnet_edu.train.data import make_demo_folder
from effnet_edu.train.gpu_data import BatchAugment, EncodedDataset, check_decode_on, collate_encoded

STD_LEVELS = 255 * 0.226  # one unit of a normalised image is ~58 grey levels (ImageNet std ~0.225)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Eight 160 x 120 JPEGs with structure at every scale (smooth colour fields + texture), like small photos."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for i in range(8):
        (root / "train" / f"n{i % 2:08d}").mkdir(parents=True, exist_ok=True)
        low = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(low).resize((160, 120), Image.BICUBIC), dtype=np.int16)
        pixels = (pixels + rng.integers(-20, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"n{i % 2:08d}" / f"{i}.JPEG", quality=90)
    return scan_folder(root / "train")[0]


def gpu_path(samples, transform, keys, seed=0):
    encoded, labels, params, bad = collate_encoded([EncodedDataset(samples, transform, seed)[k] for k in keys])
    images, failed = BatchAugment(transform, "cpu")(encoded, params)
    return images, labels, bad, failed


@pytest.mark.parametrize("augment", ["none", "autoaugment"])
def test_same_augmentation_as_the_cpu_path(photos, augment):
    transform = augment_transform(64, augment)
    keys = [(3, i) for i in range(len(photos))]
    images, labels, bad, failed = gpu_path(photos, transform, keys, seed=5)
    reference = FolderDataset(photos, transform, seed=5)
    expected = torch.stack([reference[k][0] for k in keys])
    assert images.shape == expected.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert labels.tolist() == [label for _, label in photos] and bad == [""] * 8 and failed == []
    # Same crop boxes, flips and ops: only resampling (tensor vs PIL bicubic) and rounding differ. Measured on these
    # files: mean difference ~0.2 grey levels without AutoAugment, ~0.3 with it (its ops also run on tensors).
    per_image = (images - expected).abs().mean((1, 2, 3)) * STD_LEVELS
    assert per_image.max() < 1.5, per_image
    # The check has teeth: another seed (other crops) differs by tens of grey levels.
    other = gpu_path(photos, transform, keys, seed=6)[0]
    assert ((other - expected).abs().mean((1, 2, 3)) * STD_LEVELS).min() > 5


def test_each_image_is_a_function_of_seed_epoch_index_only(photos):
    transform = augment_transform(48, "autoaugment")
    together = gpu_path(photos, transform, [(0, i) for i in range(8)])[0]
    reversed_alone = [gpu_path(photos, transform, [(0, i)])[0][0] for i in reversed(range(8))]
    assert torch.equal(together, torch.stack(reversed_alone[::-1]))
    next_epoch = gpu_path(photos, transform, [(1, i) for i in range(8)])[0]
    assert not torch.equal(together, next_epoch)


def test_grouped_autoaugment_equals_torchvisions_per_image_forward(photos):
    """The batch is transformed one op group at a time; torchvision's AutoAugment.forward on each image alone, with
    the random draws it makes under the same seed, is the oracle (bit-exact: the same tensor ops)."""
    transform = augment_transform(48, "autoaugment")
    augment = BatchAugment(transform, "cpu")
    policy = next(t for t in transform.transforms if isinstance(t, T.AutoAugment))
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (40, 3, 48, 48), dtype=torch.uint8)
    rows, expected = [], []
    for i in range(len(batch)):
        torch.manual_seed(100 + i)
        policy_id, probs, signs = policy.get_params(len(policy.policies))
        rows.append([0, 0, 48, 48, 0, policy_id, *probs.tolist(), *signs.tolist()])
        torch.manual_seed(100 + i)
        expected.append(policy(batch[i]))
    assert len({r[5] for r in rows}) > 10  # many different sub-policies in one batch
    assert torch.equal(augment.apply_autoaugment(batch.clone(), rows), torch.stack(expected))


def test_broken_files_are_replaced_and_reported(photos, tmp_path):
    transform = augment_transform(32, "none")
    truncated = tmp_path / "truncated.JPEG"  # a valid header, then nothing
    truncated.write_bytes(Path(photos[0][0]).read_bytes()[:400])
    not_an_image = tmp_path / "notes.JPEG"
    not_an_image.write_text("not a jpeg")
    png = tmp_path / "photo.png"  # not a JPEG at all: decoded by PIL in the worker
    Image.open(photos[1][0]).save(png)
    samples = [(str(truncated), 1), (str(not_an_image), 0), (str(png), 0), *photos[3:5]]
    images, labels, bad, failed = gpu_path(samples, transform, [(0, i) for i in range(5)])
    assert images.shape == (5, 3, 32, 32) and torch.isfinite(images).all() and failed == []
    # As on the CPU path: an unreadable file is reported and the next readable one takes its place.
    assert "truncated.JPEG" in bad[0] and "notes.JPEG" in bad[1] and bad[2:] == ["", "", ""]
    reference = FolderDataset(samples, transform)
    expected = torch.stack([reference[(0, i)][0] for i in range(5)])
    assert ((images - expected).abs().mean((1, 2, 3)) * STD_LEVELS).max() < 1.5
    assert torch.equal(images[0], images[1]) and torch.equal(images[1], images[2])  # all three are the PNG

    # Bytes that pass the worker's checks but fail the decoder: replaced by the batch's first good image.
    packed, _, params, _ = collate_encoded([EncodedDataset(photos, transform)[(0, i)] for i in range(3)])
    encoded = packed.unpack()
    encoded[1] = torch.frombuffer(bytearray(b"\xff\xd8 not really a jpeg \xff\xd9"), dtype=torch.uint8)
    images, failed = BatchAugment(transform, "cpu")(encoded, params)
    assert failed == [1] and torch.equal(images[1], images[0])
    with pytest.raises(ValueError, match="randaugment"):
        BatchAugment(augment_transform(32, "randaugment"), "cpu")
    with pytest.raises(ValueError, match="decode_on must be 'cpu'.*or 'gpu'"):
        check_decode_on("nvjpeg")


def test_engine_trains_with_decode_on_gpu(tmp_path):
    """The engine's hook: the same tiny run as tests/test_train_engine.py with the batched path (on the CPU here,
    with a warning; on CUDA in tests/test_cuda.py)."""
    data = make_demo_folder(tmp_path / "data")
    config = TrainConfig(data=str(data), output=str(tmp_path / "run"), width=0.25, depth=0.25, resolution=32,
                         epochs=1, batch_size=8, num_workers=0, progress=False, log_every=1, tensorboard=False,
                         decode_on="gpu", device="cpu")
    losses = []
    with pytest.warns(UserWarning, match="without a CUDA device"):
        result = train(config, callbacks={"on_step": lambda s: losses.append(s["loss"])})
    assert result["step"] == 5 and np.isfinite(losses).all()
    with pytest.raises(ValueError, match="decode_on must be"):
        train(replace(config, decode_on="GPU"))


# ----------------------------------------------------------------------------- the batched pieces, one at a time

def textured(rng, width, height):
    """A smooth colour field plus +-25 levels of texture (photo-like, and hard on a resampler)."""
    low = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(low).resize((width, height), Image.BICUBIC), dtype=np.int16)
    return (pixels + rng.integers(-25, 25, pixels.shape)).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])  # float16 is what CUDA uses
def test_batched_crop_resize_flip_matches_pil_per_image(dtype):
    """Images of three sizes in one batch (grouped by size, then put back in order), boxes that downscale, upscale
    6x, touch the image's edges or cover it all; the oracle is the CPU path's own op: PIL's bicubic resized crop
    (+ flip) of each image alone. Our matmuls skip PIL's rounding to 8 bits between its horizontal and vertical
    passes: measured mean |difference| 0.12-0.22 grey levels (float32 and float16 alike; 0.17-0.22 for 224-pixel
    crops of 500x375 images), a few pixels 2-4 levels where a small crop is upscaled."""
    from torchvision.transforms import functional as F

    rng = np.random.default_rng(0)
    sizes = [(200, 150), (200, 150), (150, 200), (200, 150), (90, 70), (150, 200)]
    boxes = [(10, 20, 120, 160, 0), (0, 0, 150, 200, 1), (100, 50, 100, 100, 0), (140, 190, 10, 10, 1),
             (5, 7, 40, 30, 0), (0, 0, 200, 150, 1)]  # (top, left, height, width, flip)
    pixels = [textured(rng, w, h) for w, h in sizes]
    images = [torch.from_numpy(p).permute(2, 0, 1).contiguous() for p in pixels]
    augment = BatchAugment(augment_transform(64, "none"), "cpu")
    augment.resample_dtype = dtype
    batch = augment.resized_crop_flip(images, torch.tensor(boxes, dtype=torch.float64))
    assert batch.shape == (6, 3, 64, 64) and batch.dtype == torch.uint8
    for k, (top, left, h, w, flip) in enumerate(boxes):
        expected = F.resized_crop(Image.fromarray(pixels[k]), top, left, h, w, [64, 64], T.InterpolationMode.BICUBIC)
        expected = torch.from_numpy(np.array(F.hflip(expected) if flip else expected)).permute(2, 0, 1)
        difference = (batch[k].int() - expected.int()).abs()
        assert difference.float().mean() < 0.3 and difference.max() <= 4, (k, difference.float().mean())
    # The flip is exact: the same crop unflipped, mirrored.
    unflipped = [(t, l, h, w, 0) for t, l, h, w, _ in boxes]
    plain = augment.resized_crop_flip(images, torch.tensor(unflipped, dtype=torch.float64))
    flipped = torch.tensor([b[4] for b in boxes], dtype=torch.bool)
    assert torch.equal(batch[flipped], plain[flipped].flip(-1)) and torch.equal(batch[~flipped], plain[~flipped])


def test_batched_ops_equal_torchvisions_per_image():
    """Equalize, AutoContrast (rewritten without host syncs) and the five geometric ops (one matrix per image in one
    grid_sample) against torchvision's own op on each image alone: bit-identical. Includes the edge cases of
    Equalize (a constant channel, a two-level channel) and AutoContrast (a constant channel)."""
    from torchvision.transforms import functional as F
    from torchvision.transforms._functional_tensor import _apply_grid_transform
    from torchvision.transforms.autoaugment import _apply_op

    from effnet_edu.train.gpu_data import GEOMETRIC, affine_grid, affine_matrix, autocontrast, equalize

    torch.manual_seed(0)
    batch = torch.randint(0, 256, (6, 3, 40, 48), dtype=torch.uint8)
    batch[1, 0] = 77  # constant channel
    batch[2, 1] = torch.where(batch[2, 1] > 128, 200, 10).to(torch.uint8)  # two levels
    batch[3] = batch[3] // 3 + 60  # low contrast
    assert torch.equal(equalize(batch), torch.stack([F.equalize(x) for x in batch]))
    assert torch.equal(autocontrast(batch), torch.stack([F.autocontrast(x) for x in batch]))
    ops = [(op, m) for op in GEOMETRIC for m in {"ShearX": (0.3, -0.1), "ShearY": (-0.3, 0.2), "Rotate": (30.0, -7.5),
                                                     "TranslateX": (21.7, -9.0), "TranslateY": (-13.2, 4.0)}[op]]
    images = torch.randint(0, 256, (len(ops), 3, 40, 48), dtype=torch.uint8)
    theta = torch.tensor([affine_matrix(op, m, (40, 48)) for op, m in ops]).view(-1, 2, 3)
    grid = affine_grid(theta.transpose(1, 2) / torch.tensor([24.0, 20.0]), 40, 48)
    ours = _apply_grid_transform(images, grid, "nearest", fill=None)
    theirs = torch.stack([_apply_op(x, op, m, T.InterpolationMode.NEAREST, None) for x, (op, m) in zip(images, ops)])
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, images)


def test_per_batch_work_does_not_grow_with_the_batch(photos):
    """What makes the path fast on a GPU, checked on the CPU with torch.profiler: crop + resize + flip launches the
    same ops for 4 images as for 32 (no per-image loop), and a batch through AutoAugment calls none of the ops that
    make a CUDA device wait for the host (.item(), boolean-mask indexing -> nonzero)."""
    from torch.profiler import profile

    augment = BatchAugment(augment_transform(48, "autoaugment"), "cpu")
    images = [torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8) for _ in range(32)]
    rows = torch.tensor([[5, 5, 50, 70, i % 2] for i in range(32)], dtype=torch.float64)
    counts = []
    for n in (4, 32):
        with profile() as prof:
            augment.resized_crop_flip(images[:n], rows[:n])
        calls = Counter(e.name for e in prof.events() if e.cpu_parent is None)  # the ops our code calls
        assert calls["aten::matmul"] == 2 and not calls["aten::upsample_bicubic2d"], calls
        counts.append(calls)
    assert counts[0] == counts[1]
    encoded, _, params, _ = collate_encoded([EncodedDataset(photos, augment_transform(48, "autoaugment"))[(e, i)]
                                             for e in range(8) for i in range(len(photos))])
    with profile() as prof:
        augment(encoded, params)
    called = {e.key for e in prof.key_averages()}
    assert not called & {"aten::item", "aten::_local_scalar_dense", "aten::nonzero"}, called
