"""CUDA smoke tests: what only a GPU exercises (bf16 / fp16 + GradScaler, channels_last, torch.compile, nccl +
SyncBatchNorm, the GPU input path, determinism of a resumed run, evaluation against the CPU). Skipped without CUDA;
run them on a GPU machine with ``pytest tests/test_cuda.py`` (benchmarks/README.md has the last run's numbers)."""

import copy
import json
import os
from dataclasses import replace

# cuBLAS is deterministic only with a fixed workspace, set before its first handle exists (CUDA docs, "cuBLAS
# reproducibility"); harmless when the resume test is not run.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

from effnet_edu import build  # noqa: E402
from effnet_edu.cli import main  # noqa: E402
from effnet_edu.train import (FolderDataset, TrainConfig, eval_transform, scan_folder, train,  # noqa: E402
                              augment_transform)
from effnet_edu.train.data import make_demo_folder  # noqa: E402
from effnet_edu.train.engine import evaluate  # noqa: E402
from effnet_edu.train.gpu_data import BatchAugment, EncodedDataset, collate_encoded  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (torch.cuda.is_available() is False on this machine)")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_folder(tmp_path_factory.mktemp("tiny"))  # 4 classes x 12 train (+ 4 val) JPEGs, 64 x 48


def tiny(data, output, **changes) -> TrainConfig:
    base = TrainConfig(data=str(data), output=str(output), width=0.25, depth=0.25, resolution=32, epochs=2,
                       batch_size=8, lr_per_256=0.5, warmup_epochs=0.4, num_workers=0, progress=False, log_every=1,
                       checkpoint_every=0, tensorboard=False, device="cuda", augment="none")
    return replace(base, **changes)


@pytest.mark.parametrize("precision, channels_last, compile", [
    ("bf16", False, False), ("fp16", False, False), ("fp32", True, False), ("bf16", True, True)],
    ids=["bf16", "fp16-gradscaler", "channels_last", "bf16-channels_last-compile"])
def test_one_training_step(data, tmp_path, precision, channels_last, compile):
    config = tiny(data, tmp_path, precision=precision, channels_last=channels_last, compile=compile, max_steps=2,
                  lr_per_256=0.05, warmup_epochs=0)
    losses = []
    result = train(config, callbacks={"on_step": lambda s: losses.append(s["loss"])})
    assert result["step"] == 2 and np.isfinite(losses).all()
    ckpt = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    torch.manual_seed(config.seed)
    initial = build(width=0.25, depth=0.25, resolution=32, num_classes=4).state_dict()
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    moved = not torch.equal(ckpt["model"]["stem.conv.weight"], initial["stem.conv.weight"])
    if precision == "fp16":
        # GradScaler was on: it starts at 2^16 and halves on every step whose scaled fp16 gradients overflowed
        # (that step is skipped), so either a step was applied or the scale went down.
        scale = ckpt["scaler"]["scale"]
        assert scale in (2.0**16, 2.0**15, 2.0**14) and (moved or scale < 2.0**16), (scale, moved)
    else:
        assert moved and "scale" not in ckpt["scaler"]  # no scaler outside fp16


def test_nccl_ddp_with_sync_batchnorm(tmp_path):
    """One process (this machine may have one GPU): nccl initialises, DDP all-reduces the gradients through it and
    SyncBatchNorm runs on CUDA. With world size 1, torch's SyncBatchNorm computes the statistics locally (its
    cross-process kernels start at 2 processes), so the result must equal plain BatchNorm without DDP."""
    dist.init_process_group("nccl", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        plain = build(width=0.25, depth=0.25, resolution=32, num_classes=4, dropout=0.0, drop_path=0.0).cuda()
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain))
        assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == \
            sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) > 0
        ddp = nn.parallel.DistributedDataParallel(synced, device_ids=[torch.cuda.current_device()])
        x = torch.randn(8, 3, 32, 32, device="cuda")
        y = torch.randint(0, 4, (8,), device="cuda")
        for model in (plain, ddp):
            nn.functional.cross_entropy(model(x), y).backward()
        for (name, p), q in zip(plain.named_parameters(), synced.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
        for (name, b), c in zip(plain.named_buffers(), synced.buffers()):
            torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-6, msg=name)
    finally:
        dist.destroy_process_group()


@pytest.fixture
def deterministic():
    """The flags that make CUDA training reproducible: deterministic cuDNN algorithms and no autotuning, torch's
    deterministic kernels where it has both (a warning names any op that has none), and cuBLAS's fixed workspace
    (set at import above)."""
    cudnn = torch.backends.cudnn
    saved = torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:]


def test_killed_mid_epoch_then_resumed_is_bit_identical_on_cuda(data, tmp_path, deterministic):
    """bf16 autocast, channels_last, dropout and stochastic depth on (their masks come from the CUDA generator,
    whose state the checkpoint holds): a run killed after step 7 and resumed from step 6 ends bit-identical."""
    reference = train(tiny(data, tmp_path / "reference", precision="bf16", channels_last=True))
    assert reference["step"] == 10

    def crash(state):
        if state["step"] == 7:
            raise KeyboardInterrupt("simulated kill")

    config = tiny(data, tmp_path / "resumed", precision="bf16", channels_last=True, checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks={"on_step": crash})
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["batch_in_epoch"] == 1
    assert train(replace(config, resume=True))["step"] == 10
    ours = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    ref = torch.load(tmp_path / "reference" / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        for key, value in ref[part].items():
            assert torch.equal(ours[part][key], value), f"{part}.{key} differs after resume"


def test_gpu_input_path_on_cuda(data, tmp_path):
    """nvJPEG + batched augmentation on CUDA: the engine trains with it (prefetch thread and side stream included),
    and it gives the same images as the same path on the CPU (libjpeg) up to the decoders' arithmetic (IDCT,
    chroma upsampling), measured on smooth photo-like JPEGs (pure noise would magnify the chroma differences)."""
    losses = []
    result = train(tiny(data, tmp_path / "run", decode_on="gpu", epochs=1, num_workers=2, augment="autoaugment"),
                   callbacks={"on_step": lambda s: losses.append(s["loss"])})
    assert result["step"] == 5 and np.isfinite(losses).all()
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(16):
        low = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(low).resize((160, 120), Image.BICUBIC), dtype=np.int16)
        pixels = (pixels + rng.integers(-20, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
        (tmp_path / "photos" / "n0").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "photos" / "n0" / f"{i:02d}.JPEG", quality=90)
    samples = scan_folder(tmp_path / "photos")[0]
    for augment in ("none", "autoaugment"):
        transform = augment_transform(64, augment)
        encoded, _, params, _ = collate_encoded([EncodedDataset(samples, transform, 0)[(0, i)] for i in range(16)])
        on_gpu, failed = BatchAugment(transform, "cuda")(encoded, params)
        on_cpu, _ = BatchAugment(transform, "cpu")(encoded, params)
        assert on_gpu.is_cuda and failed == [] and on_gpu.shape == (16, 3, 64, 64)
        levels = (on_gpu.cpu() - on_cpu).abs().mean((1, 2, 3)) * 255 * 0.226
        print(f"nvJPEG vs libjpeg path, augment={augment}: mean |difference| per image {levels.tolist()}")
        assert levels.max() < 3.0, levels  # grey levels


def test_eval_on_cuda_matches_cpu(data, tmp_path, capsys, randomize):
    """Logits of a B0 (random weights, non-trivial BN statistics) on CUDA vs CPU at 64 px: relative L2 error
    < 1e-5 in fp32 with TF32 off, < 5e-3 with torch's default TF32 convolutions, < 3e-2 under bf16 autocast.
    ``effnet-edu eval`` on a trained tiny checkpoint: the same top-1/top-5 on both devices, within one image."""
    torch.manual_seed(0)
    model = randomize(build("b0")).eval()
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        cuda_model = copy.deepcopy(model).cuda()
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            fp32 = cuda_model(x.cuda()).cpu()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        tf32 = cuda_model(x.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = cuda_model(x.cuda()).float().cpu()
    errors = {name: ((out - expected).norm() / expected.norm()).item()
              for name, out in (("fp32", fp32), ("tf32", tf32), ("bf16", bf16))}
    print("CUDA vs CPU logits, relative L2:", errors)
    assert errors["fp32"] < 1e-5 and errors["tf32"] < 5e-3 and errors["bf16"] < 3e-2, errors

    run = tmp_path / "run"
    train(tiny(data, run, epochs=2))
    results = {}
    capsys.readouterr()  # drop what training and the print above wrote
    for device in ("cpu", "cuda"):
        assert main(["eval", "--weights", str(run / "best.pt"), "--data", str(data), "--num-workers", "0",
                     "--device", device, "--json"]) == 0
        results[device] = json.loads(capsys.readouterr().out)
    one_image = 100 / results["cpu"]["images"]
    assert results["cuda"]["images"] == results["cpu"]["images"] == 16
    assert abs(results["cuda"]["top1"] - results["cpu"]["top1"]) <= one_image + 1e-9, results
    assert abs(results["cuda"]["top5"] - results["cpu"]["top5"]) <= one_image + 1e-9, results
    # The engine's own evaluate() on the same loader: a CPU model and its CUDA copy count the same hits.
    loader = torch.utils.data.DataLoader(FolderDataset(scan_folder(data / "val")[0], eval_transform(32)), batch_size=8)
    small = build(width=0.25, depth=0.25, resolution=32, num_classes=4)
    small.load_state_dict(torch.load(run / "best.pt", weights_only=True)["ema"])
    cpu_stats = evaluate(small, loader, torch.device("cpu"))
    cuda_stats = evaluate(copy.deepcopy(small).cuda(), loader, torch.device("cuda"))
    assert cpu_stats["images"] == cuda_stats["images"]
    assert abs(cpu_stats["top1"] - cuda_stats["top1"]) <= one_image + 1e-9
