"""Real weights on real photos, and every way a user can hand us bad weights or bad images."""

import subprocess
import sys

import pytest
import torch

from effnet_edu import WeightsError, build, pretrained
from effnet_edu.images import ImageError, classify, imagenet_classes, load_image, sample_photos
from effnet_edu.weights import from_file, load_checkpoint, load_weights, lite_checkpoint, save_weights

# What a person sees in each photo bundled with scikit-image / scikit-learn, as ImageNet classes.
SENSIBLE = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat"},  # a tabby cat
    "coffee": {"espresso", "cup", "coffee mug"},  # a cup of coffee
    "china": {"palace", "monastery", "bell cote", "castle", "pagoda"},  # a Chinese temple
    "motorcycle": {"moped", "motor scooter", "disk brake", "crash helmet"},  # a motorbike
    "rocket": {"missile", "projectile", "space shuttle", "drilling platform"},  # a rocket on its pad
}


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_real_lite_weights_classify_real_photos(name, photos):
    model = pretrained(name)
    results = classify(model, [photos[k] for k in SENSIBLE], top=3)
    for photo, top in zip(SENSIBLE, results):
        labels = {label for label, _, _ in top}
        assert labels & SENSIBLE[photo], f"{name} on {photo}: {top}"
    # the coffee photo is unambiguous: espresso is the top-1 class with a clear margin
    coffee = results[list(SENSIBLE).index("coffee")]
    assert coffee[0][0] == "espresso" and coffee[0][2] > 0.5


def test_imagenet_classes():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[285] == "Egyptian cat"


def test_weights_for_another_variant_name_the_keys():
    state = load_checkpoint(lite_checkpoint("lite0"))
    with pytest.raises(WeightsError) as info:
        load_weights(build("lite1"), state)
    message = str(info.value)
    assert "do not fit lite1" in message and "16 MBConv blocks" in message and "21 MBConv blocks" in message
    assert "missing: _blocks.16." in message and "wrong shape:" in message
    assert info.value.missing and info.value.mismatched


def test_weights_for_another_class_count():
    state = build("b0", num_classes=10).state_dict()
    with pytest.raises(WeightsError) as info:
        load_weights(build("b0"), state)
    assert "10 classes in the checkpoint" in str(info.value)
    assert "classifier.weight: checkpoint (10, 1280), model (1000, 1280)" in str(info.value)


def test_unexpected_keys_are_named():
    state = build("b0").state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="unexpected: extra.weight"):
        load_weights(build("b0"), state)


def test_unknown_keys_and_bad_files(tmp_path):
    with pytest.raises(WeightsError, match="cannot tell where these weights come from"):
        load_weights(build("b0"), {"foo": torch.zeros(1)})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(WeightsError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="offline ImageNet weights exist for lite0, lite1, lite2 only"):
        lite_checkpoint("lite3")


def test_saved_weights_rebuild_the_same_model(tmp_path, photos):
    model = pretrained("lite0")
    path = save_weights(model, tmp_path / "lite0.pth")
    again = from_file(None, path)
    assert again.config.same_padding and again.weights_source == "lite"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), again.eval()(x))


def test_bad_images(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    with pytest.raises(ImageError, match="notes.jpg: not an image file"):
        load_image(text)
    truncated = tmp_path / "cut.jpg"
    photo = tmp_path / "ok.jpg"
    sample_photos()["chelsea"].save(photo)
    truncated.write_bytes(photo.read_bytes()[:2000])
    with pytest.raises(ImageError, match="cut.jpg: cannot decode"):
        load_image(truncated)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nothing.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.slow  # a fresh interpreter imports torch
def test_library_import_stays_light():
    code = ("import sys, effnet_edu, effnet_edu.cli, effnet_edu.images, effnet_edu.weights; "
            "heavy = [m for m in ('ipywidgets', 'matplotlib', 'jupyter', 'jupyter_client', 'IPython', "
            "'notebook', 'jupyterlab') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_torchvision_pretrained_path_offline(monkeypatch, randomize):
    """pretrained("b0") goes through torchvision's weights API (a download for a real user); here the download
    is replaced by a randomly initialised torchvision state dict, and the logits must match that model."""
    import torchvision
    from torchvision.models._api import WeightsEnum

    torch.manual_seed(0)
    reference = randomize(torchvision.models.efficientnet_b0()).eval()
    asked = []

    def fake_get_state_dict(self, *args, **kwargs):
        asked.append(self)
        return reference.state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    model = pretrained("b0")
    assert asked == [torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max() <= 1e-4
    assert model.weights_source == "torchvision" and not model.training


def test_torchvision_pretrained_offline_error(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError, match="need internet once.*Offline, use lite0, lite1 or lite2"):
        pretrained("b3")


def test_a_weights_file_is_read_once(tmp_path, monkeypatch):
    from effnet_edu import weights

    path = save_weights(build("b0", num_classes=7), tmp_path / "b0.pth")
    reads = []
    real_load = torch.load
    monkeypatch.setattr(weights.torch, "load", lambda *a, **k: reads.append(a) or real_load(*a, **k))
    checkpoint = weights.read_checkpoint(path)
    assert checkpoint.num_classes == 7 and checkpoint.meta["num_classes"] == 7
    model = from_file(None, path, checkpoint=checkpoint)
    assert len(reads) == 1 and model.config.num_classes == 7
    from_file(None, path)  # without the record: one more read, not two
    assert len(reads) == 2


def test_every_source_is_one_description():
    """Each --source choice has a key layout that round-trips our weights (export, then detect and load)."""
    from effnet_edu.cli import build_parser
    from effnet_edu.weights import SOURCES, detect_source, export_state_dict

    parser = build_parser()
    choices = {a.dest: a.choices for a in parser._subparsers._group_actions[0].choices["eval"]._actions}
    assert choices["source"] == list(SOURCES)
    model = build("b0").eval()
    for name, source in SOURCES.items():
        state = export_state_dict(model, name)
        assert detect_source(state) == source.layout.name
        again = load_weights(build("b0"), state, name)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
