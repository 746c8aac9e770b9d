"""CamExplorer driven from Python: set control values, check the state and that the picture changed."""

import io
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("ipywidgets")

from effnet_edu import cam as C  # noqa: E402
from effnet_edu_widgets import CamExplorer  # noqa: E402
from effnet_edu_widgets.cam import predict, read_upload  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def explorer():
    from effnet_edu.images import sample_photos

    photos = sample_photos()
    return CamExplorer(photos={k: photos[k] for k in ("chelsea", "coffee")}, photo="chelsea")


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_initial_state_is_lite0_classic_cam_of_the_top_class(explorer):
    s = explorer.state
    assert (s["model"], s["resolution"], s["method"], s["layer"]) == ("lite0", 224, "cam", "stage9")
    assert "cat" in s["label"].lower()  # chelsea is a tabby cat
    assert s["class"] == explorer.target.value == explorer.target.options[0][1]
    assert len(explorer.target.options) == 5
    assert png(explorer.image.value).shape == (224, 224, 3)
    # The picture is the pure functions' picture.
    model = explorer.model()
    prediction = predict(model, explorer.photos["chelsea"])
    expected = C.cam(model, prediction.x, "cam", classes=s["class"]).maps[0]
    assert s["peak"] == C.peak(expected)


def test_each_control_redraws(explorer):
    seen = [explorer.image.value]

    def changed():
        assert explorer.image.value != seen[-1]
        assert explorer.error.value == ""
        seen.append(explorer.image.value)

    explorer.alpha.value = 0.8
    changed()
    second = explorer.target.options[1][1]
    explorer.target.value = second
    changed()
    assert explorer.state["class"] == second
    # Grad-CAM on the head equals classic CAM up to a positive scale (GAP + FC), so after normalisation the
    # picture may not change at all: switch to a method that weighs channels differently.
    explorer.method.value = "eigencam"
    changed()
    assert explorer.state["method"] == "eigencam"
    explorer.layer.value = "stage7"
    changed()
    assert explorer.state["layer"] == "stage7"
    explorer.photo.value = "coffee"
    changed()
    assert explorer.state["photo"] == "coffee" and explorer.state["class"] == explorer.target.options[0][1]
    explorer.model_name.value = "lite1"  # a released model (Lite1 is deeper, at 240 px), not a phi
    changed()
    assert (explorer.state["model"], explorer.state["resolution"]) == ("lite1", 240)
    assert png(explorer.image.value).shape == (240, 240, 3)


def test_errors_show_in_the_widget(explorer):
    explorer.method.value = "cam"
    explorer.layer.value = "stage6"  # classic CAM exists only for the last feature map
    assert "classic CAM" in explorer.error.value
    picture = explorer.image.value
    explorer.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                              "last_modified": datetime.now()},)
    assert "notes.txt: not an image file" in explorer.error.value
    assert explorer.image.value == picture  # the last good picture stays
    explorer.layer.value = "stage9"
    assert explorer.error.value == ""


def test_a_good_upload_becomes_the_photo(explorer):
    buffer = io.BytesIO()
    explorer.photos["chelsea"].resize((300, 200)).save(buffer, format="PNG")
    explorer.upload.value = ({"name": "cat.png", "type": "image/png", "size": len(buffer.getvalue()),
                              "content": memoryview(buffer.getvalue()), "last_modified": datetime.now()},)
    assert explorer.error.value == ""
    assert explorer.photo.value == "upload: cat.png" and explorer.state["photo"] == "upload: cat.png"
    name, image = read_upload(explorer.upload.value)
    assert name == "cat.png" and image.size == (300, 200)


def test_released_models_are_a_choice_not_a_phi(explorer):
    from effnet_edu.weights import LITE_PACKAGES

    assert explorer.model_name.description == "released model"
    assert list(explorer.model_name.options) == list(LITE_PACKAGES)
    assert not hasattr(explorer, "phi")


def test_an_unexpected_error_shows_its_type_and_keeps_the_traceback(explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug, not a bad input")

    monkeypatch.setattr(C, "overlay", broken)
    picture = explorer.image.value
    explorer.alpha.value = 0.3 if explorer.alpha.value != 0.3 else 0.4
    assert "unexpected ZeroDivisionError: a bug, not a bad input" in explorer.error.value
    assert explorer.image.value == picture
    traceback_text = "".join(o.get("text", "") for o in explorer.details.outputs)
    assert "Traceback (most recent call last)" in traceback_text and "broken" in traceback_text
    monkeypatch.undo()
    explorer.alpha.value = 0.5
    assert explorer.error.value == "" and explorer.details.outputs == ()
