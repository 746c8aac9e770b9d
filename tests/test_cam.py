"""Class activation maps (effnet_edu.cam): each method checked against an independent computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import effnet_edu as ee
from effnet_edu import cam as C

torch.set_num_threads(1)  # tiny models: a second thread only adds synchronisation (and spins on a busy machine)


@pytest.fixture(scope="module")
def small():
    """A tiny EfficientNet (GAP + FC at the end, as every EfficientNet) with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = ee.build(width=0.25, depth=0.25, resolution=64, num_classes=7)
    model.train()
    with torch.no_grad():  # a few batches to move BN's running statistics off their (0, 1) initialisation
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64))
    return model.eval()


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(3, 3, 64, 64)


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def inplace_flags(model) -> list:
    return [m.inplace for m in model.modules() if hasattr(m, "inplace")]


def test_classic_cam_is_the_weighted_sum_of_feature_maps(small, x):
    result = C.cam(small, x, "cam", classes=[0, 3, 6])
    with torch.no_grad():
        features = small.forward_features(x)  # (B, C, h, w)
        logits = small(x)
    weight = small.classifier.weight  # (classes, C)
    for b, c in enumerate([0, 3, 6]):
        by_hand = sum(weight[c, k] * features[b, k] for k in range(features.shape[1]))  # Zhou et al., Eq. 1
        torch.testing.assert_close(result.raw[b], by_hand, rtol=1e-4, atol=1e-4)
        # GAP + FC: the mean of the map plus the bias *is* the class score.
        torch.testing.assert_close(result.raw[b].mean() + small.classifier.bias[c], logits[b, c], rtol=1e-4, atol=1e-4)
    assert result.maps.shape == (3, 64, 64)
    assert float(result.maps.min()) >= 0 and float(result.maps.max()) <= 1
    torch.testing.assert_close(result.probs, logits.softmax(1))


def test_default_class_is_the_top_prediction(small, x):
    result = C.cam(small, x)
    with torch.no_grad():
        assert result.classes == small(x).argmax(1).tolist()


def test_gradient_of_the_class_score_is_uniform_and_grad_cam_equals_cam(small, x):
    # For GAP + FC: d logit_c / d A[k, i, j] = W[c, k] / (h * w) at every location.
    features = small.forward_features(x).detach().requires_grad_(True)
    logits = small.forward_head(features)
    (grad,) = torch.autograd.grad(logits[:, 2].sum(), features)
    h, w = features.shape[-2:]
    expected = (small.classifier.weight[2] / (h * w))[None, :, None, None].expand_as(grad)
    torch.testing.assert_close(grad, expected)
    # So Grad-CAM's channel weights are CAM's divided by h*w: the same map up to a positive scale, and after
    # ReLU, upsampling and min-max scaling the two maps coincide.
    classic = C.cam(small, x, "cam", classes=2)
    grad_cam = C.cam(small, x, "gradcam", classes=2)
    assert grad_cam.method == "gradcam" and grad_cam.layer == "head"
    # (atol: grad-cam upsamples with OpenCV, whose bilinear weights are 11-bit fixed point: ~5e-4 steps.)
    torch.testing.assert_close(grad_cam.maps, classic.maps, rtol=0, atol=2e-3)


def test_hooks_are_released_after_many_calls(small):
    x = torch.randn(1, 3, 32, 32)
    before, flags = hook_count(small), inplace_flags(small)
    for i in range(100):
        C.cam(small, x, "gradcam" if i % 2 else "cam", layer=None)
    assert hook_count(small) == before
    assert inplace_flags(small) == flags and any(flags)
    assert all(p.grad is None for p in small.parameters())


@pytest.mark.parametrize("error", [RuntimeError, IndexError])
def test_hooks_are_released_after_an_exception(small, monkeypatch, error):
    import pytorch_grad_cam

    def fail(*args, **kwargs):
        raise error("boom")

    monkeypatch.setattr(pytorch_grad_cam.GradCAM, "get_cam_weights", fail)
    small.train()  # the mode must come back too
    before, flags = hook_count(small), inplace_flags(small)
    with pytest.raises(error, match="boom"):  # IndexError too: grad-cam's own __exit__ would swallow it
        C.cam(small, torch.randn(2, 3, 32, 32), "gradcam", layer="stage6")
    assert hook_count(small) == before
    assert inplace_flags(small) == flags
    assert small.training
    small.eval()


def test_layer_after_an_inplace_activation(small, x):
    """head.bn is followed by an in-place activation: the CAM must use the BatchNorm output, not act(bn)."""
    flags = inplace_flags(small)
    result = C.cam(small, x, "gradcam", classes=1, layer="head.bn")
    # By hand, with an out-of-place activation.
    with torch.no_grad():
        before_bn = small.head.conv(small.stages(small.stem(x.clone())))
    a = small.head.bn(before_bn).detach().requires_grad_(True)
    act = F.relu6 if small.config.lite else F.silu
    logits = small.forward_head(act(a))
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), a)
    raw = (grad.mean((2, 3), keepdim=True) * a).sum(1).detach()  # Grad-CAM, Selvaraju et al. Eq. 1-2
    torch.testing.assert_close(result.maps, C.scale_maps(raw, (64, 64)), rtol=0, atol=1e-4)
    assert bool((a < 0).any())  # the pre-activation really differs from the activation's output here
    assert inplace_flags(small) == flags and small.head.act.inplace


def test_every_method_on_a_batch_and_any_stage(small, x):
    for method in C.METHODS:
        layer = None if method == "cam" else "stage7"
        result = C.cam(small, x[:2], method, classes=[1, 4], layer=layer)
        assert result.maps.shape == (2, 64, 64), method
        assert torch.isfinite(result.maps).all() and float(result.maps.max()) <= 1 + 1e-6, method
        assert result.classes == [1, 4]
    assert hook_count(small) == 0


def test_clear_errors(small, x):
    with pytest.raises(C.CamError, match="unknown CAM method 'gradcan'.*gradcam"):
        C.cam(small, x, "gradcan")
    with pytest.raises(C.CamError, match="unknown layer 'stage12'.*stage1..stage9"):
        C.cam(small, x, "gradcam", layer="stage12")
    with pytest.raises(C.CamError, match="classic CAM.*head.*gradcam"):
        C.cam(small, x, "cam", layer="stage6")
    with pytest.raises(C.CamError, match="class 7 is out of range.*0..6"):
        C.cam(small, x, "gradcam", classes=7)
    with pytest.raises(C.CamError, match=r"\(B, 3, H, W\)"):
        C.cam(small, x[0], "cam")
    assert C.method_name("Grad-CAM++") == "gradcam++" and C.method_name("Score_CAM") == "scorecam"


def test_localisation_on_masks_with_known_answers():
    cam_map = torch.zeros(40, 40)
    cam_map[10:20, 10:20] = 1.0  # a 10x10 blob; its first maximum is (x=10, y=10)
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[15:25, 10:20] = True  # the object overlaps the lower half of the blob: 50 of 100 pixels
    score = C.localisation(cam_map, mask)
    assert score.hit is False  # (10, 10) is above the object
    assert score.energy == pytest.approx(0.5)
    assert score.iou == pytest.approx(50 / 150)
    assert C.localisation(cam_map, (10, 15, 20, 25)) == score  # the same object as a box (x0, y0, x1, y1)
    # Peak on the object, and a faint (30% of max) halo that the half-maximum threshold leaves out.
    cam_map[:, :] = 0.3
    cam_map[20, 12] = 1.0
    score = C.localisation(cam_map, mask)
    assert score.hit is True
    assert score.energy == pytest.approx((0.3 * 99 + 1.0) / (0.3 * 1599 + 1.0))
    assert score.iou == pytest.approx(1 / 100)
    assert C.localisation(cam_map, mask, threshold=0.2).iou == pytest.approx(100 / 1600)
    empty = C.localisation(torch.zeros(40, 40), mask)
    assert (empty.hit, empty.energy, empty.iou) == (False, 0.0, 0.0)
    means = C.mean_localisation(torch.stack([cam_map, cam_map]), torch.stack([mask, ~mask]))
    assert means["pointing"] == pytest.approx(0.5)
    with pytest.raises(C.CamError, match="mask shape"):
        C.localisation(cam_map, mask[:10])


def test_mean_localisation_is_the_mean_of_localisation():
    # The batched scores against the one-image definition, on random maps with plateaus (ties for the maximum),
    # an all-zero map, negative values (clamped) and random masks, at two thresholds.
    g = torch.Generator().manual_seed(0)
    maps = (torch.rand(12, 16, 16, generator=g) * 4).floor() - 1  # values -1..2: ties and negatives
    maps[3] = 0.0
    masks = torch.rand(12, 16, 16, generator=g) > 0.6
    for threshold in (0.5, 0.2):
        scores = [C.localisation(m, k, threshold) for m, k in zip(maps, masks)]
        means = C.mean_localisation(maps, masks, threshold)
        assert means["pointing"] == pytest.approx(sum(s.hit for s in scores) / 12)
        assert means["energy"] == pytest.approx(sum(s.energy for s in scores) / 12)
        assert means["iou"] == pytest.approx(sum(s.iou for s in scores) / 12)
    with pytest.raises(C.CamError, match="same"):
        C.mean_localisation(maps, masks[:, :8])


def test_colorize_uses_jet_and_overlay_blends():
    # Fixed pixels of the jet colour map (MATLAB's definition, which matplotlib copies): it starts at dark blue
    # (0, 0, 0.5), passes pure blue-cyan, green at the middle, orange-red, and ends at dark red (0.5, 0, 0).
    low, quarter, middle, three_quarters, high = C.colorize(np.array([[0.0, 0.25, 0.5, 0.75, 1.0]]))[0].tolist()
    assert low == [0, 0, 128] and high == [128, 0, 0]
    assert quarter[0] == 0 and quarter[2] == 255 and three_quarters[0] == 255 and three_quarters[2] == 0
    assert middle[1] == 255 and all(100 <= c <= 155 for c in (middle[0], middle[2]))
    assert C.colorize(np.array([[0.0]]), "gray")[0, 0].tolist() == [0, 0, 0]  # the cmap argument is used
    photo = Image.fromarray(np.full((30, 50, 3), 200, np.uint8))
    heat = torch.rand(7, 7)
    assert np.array_equal(np.asarray(C.overlay(photo, heat, alpha=0.0)), np.asarray(photo))
    full = C.overlay(photo, heat, alpha=1.0)
    assert full.size == (50, 30)
    up = F.interpolate(heat[None, None], size=(30, 50), mode="bilinear", align_corners=False)[0, 0]
    assert np.abs(np.asarray(full).astype(int) - C.colorize(up.numpy()).astype(int)).max() <= 1
    with pytest.raises(C.CamError, match="alpha"):
        C.overlay(photo, heat, alpha=1.5)


@pytest.mark.parametrize("size", [(400, 300), (300, 451), (256, 256)])
def test_peak_maps_back_to_the_original_image(size):
    # Oracle: torchvision's own resize + center crop of an image with one bright dot.
    from torchvision import transforms as T

    width, height = size
    for dot in [(width // 2 + 17, height // 2 - 23), (width // 2 - 40, height // 2 + 31)]:
        image = np.zeros((height, width, 3), np.uint8)
        image[dot[1] - 1:dot[1] + 2, dot[0] - 1:dot[0] + 2] = 255
        view = T.CenterCrop(224)(T.Resize(256, interpolation=T.InterpolationMode.BICUBIC)(Image.fromarray(image)))
        assert np.array_equal(np.asarray(C.model_view(Image.fromarray(image), 224)), np.asarray(view))
        spot = torch.from_numpy(np.asarray(view, dtype=np.float32).sum(-1))
        x, y = C.peak(spot)
        ox, oy = C.to_original((x, y), size, 224)
        assert abs(ox - dot[0]) <= 2 and abs(oy - dot[1]) <= 2
    left, top, right, bottom = C.crop_box(size, 224)
    assert right - left == pytest.approx(bottom - top, rel=0.01)  # square, up to Resize truncating the long side
    assert 0 <= left and right <= width + 1e-6 and 0 <= top and bottom <= height + 1e-6


def test_cli_cam_json_on_a_real_photo(tmp_path, capsys):
    import json

    from effnet_edu.cli import main
    from effnet_edu.images import sample_photos

    photo = sample_photos()["chelsea"]  # a tabby cat, 451 x 300
    path = tmp_path / "chelsea.png"
    photo.save(path)
    out = tmp_path / "cam.png"
    assert main(["cam", "--model", "lite0", str(path), "--method", "gradcam", "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) >= {"label", "index", "probability", "peak"}
    assert "cat" in payload["label"].lower() and 281 <= payload["index"] <= 285  # ImageNet's domestic cats
    assert 0 < payload["probability"] <= 1
    x, y = payload["peak"]
    left, top, right, bottom = C.crop_box(photo.size, 224)
    assert left - 1 <= x <= right and top - 1 <= y <= bottom  # inside the part of the photo the model saw
    assert Image.open(out).size == photo.size  # drawn on the original image, in the same pixels as peak
    # --class picks another target; a bad file is a clear error with exit status 2, no traceback.
    assert main(["cam", str(path), "--class", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 1
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    assert main(["cam", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "Traceback" not in err
    assert main(["cam", str(path), "--method", "gradcan"]) == 2
    assert "unknown CAM method" in capsys.readouterr().err


def test_a_cam_keeps_the_gradients_of_a_training_step(small, x):
    small(x).sum().backward()  # a training step in progress: gradients computed, optimizer not yet stepped
    before = {name: p.grad.clone() for name, p in small.named_parameters()}
    C.cam(small, x, "gradcam")
    after = dict(small.named_parameters())
    assert all(torch.equal(after[name].grad, grad) for name, grad in before.items())
    small.zero_grad(set_to_none=True)


def test_grad_methods_leave_parameters_trainable(small, x):
    frozen_before = [p.requires_grad for p in small.parameters()]
    C.cam(small, x, "gradcam++", layer="stage5")
    assert [p.requires_grad for p in small.parameters()] == frozen_before and all(frozen_before)
    assert all(p.grad is None for p in small.parameters())
