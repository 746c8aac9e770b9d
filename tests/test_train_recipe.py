"""Each piece of the training recipe against a hand calculation (or timm as an independent oracle): TF RMSProp,
the warmup + staircase schedule, weight-decay groups, EMA of weights and BN statistics, label smoothing, the
minival split, the transforms, the resumable sampler and the config/CLI generation. Numbers: docs/paper-facts.md's
"ImageNet recipe" and Section 5.2 of the paper."""

import argparse
import math

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from effnet_edu import build
from effnet_edu.train import (EMA, FolderDataset, ResumableSampler, RMSpropTF, TrainConfig, add_arguments,
                              augment_transform, eval_transform, from_args, lr_at, minival_split, param_groups)
from effnet_edu.weights import IMAGENET_MEAN, IMAGENET_STD


def test_config_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.rmsprop_decay, c.momentum, c.eps) == (0.9, 0.9, 1e-3)  # Section 5.2 + official code
    assert c.lr_per_256 * 4096 / 256 == pytest.approx(0.256)  # "initial learning rate 0.256" at batch 4096
    assert (c.decay_rate, c.decay_epochs, c.warmup_epochs) == (0.97, 2.4, 5.0)
    assert (c.weight_decay, c.label_smoothing, c.ema_decay, c.drop_path) == (1e-5, 0.1, 0.9999, 0.2)
    assert (c.minival_size, c.epochs, c.augment) == (25000, 350, "autoaugment")


def test_every_field_is_a_command_line_option():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--batch-size", "512", "--lr-per-256", "0.02", "--no-decay-biases", "--width", "0.5",
                              "--resolution", "none", "--sync-bn", "--augment", "randaugment"])
    c = from_args(args)
    assert (c.batch_size, c.lr_per_256, c.decay_biases, c.width, c.resolution, c.sync_bn, c.augment) == (
        512, 0.02, False, 0.5, None, True, "randaugment")
    assert from_args(parser.parse_args([])) == TrainConfig()  # no options: exactly the paper's recipe
    assert "survival probability 0.8" in " ".join(parser.format_help().split())  # --help says why


def tf_rmsprop_by_hand(p, grads, lr, rho=0.9, mom=0.9, eps=1e-3, wd=0.0):
    """TF1 RMSPropOptimizer, scalar by scalar: ms starts at 1, eps inside the sqrt, lr inside the momentum."""
    ms, buf = 1.0, 0.0
    for g in grads:
        g = g + wd * p
        ms = rho * ms + (1 - rho) * g * g
        buf = mom * buf + lr * g / math.sqrt(ms + eps)
        p = p - buf
    return p


def test_rmsprop_tf_matches_hand_calculation():
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = RMSpropTF([w], lr=0.1, weight_decay=0.01)
    grads = [(0.5, -0.3), (0.2, 0.1), (-1.0, 0.4)]
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    for i, p0 in enumerate((1.0, -2.0)):
        assert w[i].item() == pytest.approx(tf_rmsprop_by_hand(p0, [g[i] for g in grads], 0.1, wd=0.01), rel=1e-12)
    # First step by hand: ms = 0.9 + 0.1 * 0.51^2 (g = 0.5 + 0.01 * 1), update = 0.1 * 0.51 / sqrt(ms + 1e-3)
    w1 = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt1 = RMSpropTF([w1], lr=0.1, weight_decay=0.01)
    w1.grad = torch.tensor([0.5], dtype=torch.float64)
    opt1.step()
    assert w1.item() == pytest.approx(1 - 0.1 * 0.51 / math.sqrt(0.9 + 0.1 * 0.51**2 + 1e-3), rel=1e-12)


def test_rmsprop_tf_matches_timm_and_differs_from_torch():
    from timm.optim import RMSpropTF as TimmRMSpropTF

    torch.manual_seed(0)
    a, b, c = (nn.Parameter(torch.randn(5, 3)) for _ in range(3))
    b.data.copy_(a.data)
    c.data.copy_(a.data)
    ours = RMSpropTF([a], lr=0.05, weight_decay=1e-5)
    timm_opt = TimmRMSpropTF([b], lr=0.05, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)
    torch_opt = torch.optim.RMSprop([c], lr=0.05, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)
    for _ in range(4):
        g = torch.randn(5, 3)
        for p, o in ((a, ours), (b, timm_opt), (c, torch_opt)):
            p.grad = g.clone()
            o.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert (a - c).abs().max() > 1e-2  # torch's RMSprop (ms from 0, eps outside the sqrt) is a different optimiser


def test_schedule_warmup_then_staircase():
    spe, peak = 10, 0.1  # 10 steps per epoch: warmup = 50 steps, one decay every 24 steps
    assert lr_at(0, spe, peak) == 0.0
    assert lr_at(25, spe, peak) == pytest.approx(0.05)
    assert lr_at(49, spe, peak) == pytest.approx(0.098)
    assert lr_at(50, spe, peak) == pytest.approx(0.1 * 0.97**2)  # floor(50 / 24) = 2 decays, counted from step 0
    assert lr_at(71, spe, peak) == pytest.approx(0.1 * 0.97**2)
    assert lr_at(72, spe, peak) == pytest.approx(0.1 * 0.97**3)
    assert lr_at(3500, spe, peak) == pytest.approx(0.1 * 0.97**145)  # 350 epochs: floor(350 / 2.4) = 145 decays
    # Batch 4096 on ImageNet (1,281,167 - 25,000 images, 306 steps/epoch): the paper's 0.256 peak.
    assert lr_at(round(5 * 306.7), 306.7, 0.016 * 4096 / 256) == pytest.approx(0.256 * 0.97**2)


def test_weight_decay_skips_batchnorm_and_optionally_biases():
    model = build(width=0.25, depth=0.25, resolution=32, num_classes=3)
    bn = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    biases = {id(p) for n, p in model.named_parameters() if n.endswith("bias") and id(p) not in bn}
    decay, no_decay = param_groups(model, 1e-5)
    assert {id(p) for p in no_decay["params"]} == bn and no_decay["weight_decay"] == 0.0
    assert biases <= {id(p) for p in decay["params"]} and decay["weight_decay"] == 1e-5
    decay, no_decay = param_groups(model, 1e-5, decay_biases=False)
    assert {id(p) for p in no_decay["params"]} == bn | biases
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_ema_of_weights_and_batchnorm_statistics():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    ema = EMA(model, decay=0.9, warmup=False)
    w0 = model[0].weight.detach().clone()
    mean0 = model[1].running_mean.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(4, 1, 3, 3))  # train mode: BN running statistics move
    ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    torch.testing.assert_close(ema.module[1].running_mean, 0.9 * mean0 + 0.1 * model[1].running_mean)
    assert ema.module[1].num_batches_tracked.item() == 1  # integer buffers are copied
    # TF's num_updates warmup: decay = min(0.9999, (1 + t) / (10 + t)): 0.1 at t = 0, 0.9999 from t = 89,991.
    warm = EMA(model, decay=0.9999)
    assert warm.current_decay() == pytest.approx(0.1)
    warm.updates = 90
    assert warm.current_decay() == pytest.approx(91 / 100)
    warm.updates = 10**6
    assert warm.current_decay() == 0.9999


def test_label_smoothing_is_tfs():
    # TF: targets (1 - 0.1) * onehot + 0.1 / K. Logits (2, 0, 0), class 0, K = 3, by hand:
    logp = [2 - math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2)]
    q = [0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]
    expected = -sum(a * b for a, b in zip(q, logp))
    loss = nn.CrossEntropyLoss(label_smoothing=TrainConfig().label_smoothing)(torch.tensor([[2.0, 0, 0]]),
                                                                             torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def samples_with_counts(counts):
    return [(f"c{c}/{i}.JPEG", c) for c, n in enumerate(counts) for i in range(n)]


def test_minival_split_is_stratified_disjoint_and_fixed():
    samples = samples_with_counts([10, 20, 30, 40])
    train, held = minival_split(samples, size=5, seed=0)
    # exact quotas 0.5, 1, 1.5, 2 -> floors 0, 1, 1, 2 (4); the 5th goes to the largest remainder, ties to class 0
    assert [sum(samples[i][1] == c for i in held) for c in range(4)] == [1, 1, 1, 2]
    assert set(train).isdisjoint(held) and sorted(train + held) == list(range(100))
    assert minival_split(samples, size=5, seed=0) == (train, held)  # same every run
    assert minival_split(samples, size=5, seed=1)[1] != held
    # too small for 25,000: 2% per class, at least 1, never a class's last image
    _, held = minival_split(samples_with_counts([10, 20, 1, 300]), size=25000)
    assert [sum(samples_with_counts([10, 20, 1, 300])[i][1] == c for i in held) for c in range(4)] == [1, 1, 0, 6]
    assert minival_split(samples, size=0) == (list(range(100)), [])


def test_minival_split_imagenet_shaped():
    counts = [732 + (i * 37) % 569 for i in range(200)]  # ImageNet classes hold 732..1300 images
    samples = samples_with_counts(counts)
    _, held = minival_split(samples, size=len(samples) // 50, seed=0)  # ~2%, like 25,000 of 1,281,167
    assert len(held) == len(samples) // 50
    for c, n in enumerate(counts):
        got = sum(samples[i][1] == c for i in held)
        assert abs(got - n * len(held) / len(samples)) < 1  # largest remainder: within 1 of the exact share


def test_augment_transform_is_the_papers():
    t = augment_transform(64)
    crop, flip, policy = t.transforms[:3]
    assert isinstance(crop, T.RandomResizedCrop) and crop.scale == (0.08, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3)) and crop.interpolation == T.InterpolationMode.BICUBIC
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(policy, T.AutoAugment) and policy.policy == T.AutoAugmentPolicy.IMAGENET
    assert isinstance(augment_transform(64, "randaugment").transforms[2], T.RandAugment)
    assert augment_transform(40)(Image.new("RGB", (80, 60))).shape == (3, 40, 40)
    with pytest.raises(ValueError, match="autoaugment"):
        augment_transform(64, "mixup")


def bordered(size, inner):
    """A red image (W, H) = size with a blue box inner = (left, top, right, bottom)."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), inner)
    return image


def test_eval_crop_keeps_res_over_res_plus_32():
    # 64 x 48 image at res 32: the crop is 32 / 64 = half of the shorter side, a centred 24 x 24 box
    # (columns 20..44, rows 12..36). A blue box 2 px larger on every side fills the whole output; a blue box
    # 2 px smaller leaves red at the output's border.
    t = eval_transform(32)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    inside = t(bordered((64, 48), (18, 10, 46, 38))) * std + mean  # (3, 32, 32), back to 0..1
    assert inside.shape == (3, 32, 32)
    assert inside[0].max() < 0.05 and inside[2].min() > 0.95  # all blue
    outside = t(bordered((64, 48), (22, 14, 42, 34))) * std + mean
    assert outside[0, 0].max() > 0.9 and outside[0, 16, 16] < 0.05  # red border, blue centre


def test_augmentation_is_seeded_per_sample_and_leaves_global_rng(tmp_path):
    Image.effect_noise((64, 48), 60).convert("RGB").save(tmp_path / "a.JPEG")
    data = FolderDataset([(str(tmp_path / "a.JPEG"), 0)], augment_transform(32), seed=3)
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    x1, label, bad = data[(5, 0)]
    assert torch.equal(torch.rand(3), expected_next)  # global RNG untouched: dropout masks unaffected
    assert torch.equal(data[(5, 0)][0], x1) and not torch.equal(data[(6, 0)][0], x1)
    assert (label, bad) == (0, "")


def test_resumable_sampler_positions():
    s = ResumableSampler(10, batch_size=4, rank=0, world_size=2, seed=0)
    s1 = ResumableSampler(10, batch_size=4, rank=1, world_size=2, seed=0)
    single = ResumableSampler(10, batch_size=4, seed=0)
    order = [i for _, i in single]
    assert len(order) == 8 and sorted(order) == sorted(set(order))  # 2 full batches, the tail of 2 dropped
    r0, r1 = [i for _, i in s], [i for _, i in s1]
    assert r0 == order[0::2] and r1 == order[1::2]
    assert set(r0[:2] + r1[:2]) == set(order[:4])  # the first global batch is the same images
    s.set_epoch(0, start_batch=1)
    assert [i for _, i in s] == order[4::2] and len(s) == 2  # resume at the second batch
    single.set_epoch(1)
    assert [i for _, i in single] != order and all(e == 1 for e, _ in single)
