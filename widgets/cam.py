"""CamExplorer: where does an EfficientNet-Lite look? Class activation maps on real photos, live.

    from effnet_edu_widgets import CamExplorer
    CamExplorer()                       # bundled photos + your own upload; the Lite models with offline weights

Controls: the photo (or an upload), the released model (Lite0, Lite1, Lite2: three released networks, not three
compound-scaling steps: Lite0 and Lite1 have the same width), the CAM method, the layer, the target class (the
top 5 of the current prediction) and the overlay strength. The work is done by pure functions (``predict``,
``cam_map``, ``render_png``, ``read_upload``) that tests call directly; the widget only wires controls to them and
caches what a control change does not invalidate (changing the overlay strength only re-blends; changing the class
with classic CAM only re-weights the cached feature map: no network pass at all).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from html import escape

import torch
from PIL import Image

from effnet_edu import cam as C
from effnet_edu.images import ImageError, load_image, preprocess, top_classes
from effnet_edu.weights import LITE_PACKAGES

from ._base import Explorer

RELEASED = tuple(LITE_PACKAGES)  # the released members whose ImageNet weights install offline
WIDGET_METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "eigencam")  # Score-CAM: too slow live
LAYERS = ("stage9", "stage8", "stage7", "stage6", "stage5")  # Table 1 rows; stage9 is the head


@dataclass
class Prediction:
    """One photo through one model: what every CAM of it shares."""

    view: Image.Image  # the crop the model sees (resize + center crop, not normalised)
    x: torch.Tensor  # (1, 3, R, R) normalised input
    features: torch.Tensor  # (1, C, R/32, R/32) last feature map, for classic CAM without a new forward pass
    top: list[tuple[str, int, float]]  # top 5: (label, class index, probability)


@torch.no_grad()
def predict(model, image: Image.Image, top: int = 5) -> Prediction:
    """The library's classify path (``preprocess``, ``top_classes``), keeping the feature map for the CAMs."""
    model.eval()
    x = preprocess(model, [image])
    features = model.forward_features(x)
    probs = model.forward_head(features).softmax(1)
    return Prediction(C.model_view(image, model.config.resolution), x, features, top_classes(probs, top)[0])


def cam_map(model, prediction: Prediction, method: str, class_index: int, layer: str = "stage9") -> torch.Tensor:
    """The (R, R) map in [0, 1] for one class. Classic CAM reuses the cached features (a weighted sum, ~1 ms)."""
    if C.method_name(method) == "cam" and layer in (None, "stage9", "head"):
        with torch.no_grad():
            return C.classic_cam(prediction.features, model.classifier, [class_index], prediction.x.shape[-2:])[0][0]
    return C.cam(model, prediction.x, method, classes=class_index, layer=layer).maps[0]


def render_png(view: Image.Image, cam_values, alpha: float) -> bytes:
    buffer = io.BytesIO()
    C.overlay(view, cam_values, alpha).save(buffer, format="PNG", compress_level=1)  # fast beats small here
    return buffer.getvalue()


def read_upload(value) -> tuple[str, Image.Image]:
    """The (name, RGB image) of an ipywidgets 8 FileUpload value; ImageError if it is not a usable image."""
    files = list(value or ())
    if not files:
        raise ImageError("no file uploaded")
    item = files[-1]
    name = item.get("name", "upload")
    # The library's one loading path: 16-bit, transparent and EXIF-rotated photos come out right here too.
    return name, load_image(bytes(item["content"]), name)


def top_options(prediction: Prediction) -> list[tuple[str, int]]:
    return [(f"{label} ({p:.1%})", index) for label, index, p in prediction.top]


class CamExplorer(Explorer):
    """Photo, released model, method, layer, target class and overlay strength; the overlay redraws live.

    ``explorer.state`` is a dict of what is shown (model, photo, method, layer, class, probability, peak);
    errors (a bad upload, classic CAM on an inner layer) appear in ``explorer.error`` and the last good image
    stays. ``photos``: a dict name -> PIL image (default: ``effnet_edu.images.sample_photos()``);
    ``models``: a dict name -> model to use instead of the released Lite weights (tests, your own models)."""

    def __init__(self, photos: dict | None = None, photo: str = "chelsea", model: str = RELEASED[0],
                 method: str = "cam", alpha: float = 0.5, models: dict | None = None):
        from effnet_edu.images import sample_photos

        super().__init__()
        w = self.w
        self.photos = dict(photos) if photos is not None else sample_photos()
        self._models = dict(models or {})
        self._predictions: dict = {}
        self._map = None
        self.state: dict = {}
        style = {"description_width": "110px"}
        first = photo if photo in self.photos else next(iter(self.photos))
        self.photo = w.Dropdown(options=list(self.photos), value=first, description="photo",
                                style=style).add_class("effnet-cam-photo")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload photo")
        names = tuple(dict.fromkeys((*RELEASED, *self._models)))
        self.model_name = w.Dropdown(options=names, value=model, description="released model",
                                     style=style).add_class("effnet-cam-model")
        self.method = w.Dropdown(options=WIDGET_METHODS, value=C.method_name(method), description="method",
                                 style=style).add_class("effnet-cam-method")
        self.layer = w.Dropdown(options=[("stage9 (head)", "stage9")] + [(s, s) for s in LAYERS[1:]], value="stage9",
                                description="layer", style=style).add_class("effnet-cam-layer")
        self.target = w.Dropdown(options=[], description="class", style=style,
                                 layout=w.Layout(width="420px")).add_class("effnet-cam-class")
        self.alpha = w.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="overlay",
                                   style=style).add_class("effnet-cam-alpha")
        self.info = w.HTML("").add_class("effnet-cam-info")
        self.image = w.Image(format="png", layout=w.Layout(width="360px")).add_class("effnet-cam-image")
        self._layout(
            w.HBox([w.VBox([self.photo, self.upload, self.model_name, self.method, self.layer, self.target,
                            self.alpha]),
                    w.VBox([self.image, self.info])]),
            self.messages,
        )
        self._busy = False
        self._new_prediction()
        for control, handler in ((self.photo, self._new_prediction), (self.model_name, self._new_prediction),
                                 (self.method, self._new_map), (self.layer, self._new_map),
                                 (self.target, self._new_map), (self.alpha, self._redraw),
                                 (self.upload, self._uploaded)):
            control.observe(handler, names="value")

    # --------------------------------------------------------------------------------------- the computation
    def model(self, name: str | None = None):
        name = self.model_name.value if name is None else name
        if name not in self._models:
            from effnet_edu.weights import pretrained

            self._models[name] = pretrained(name)
        return self._models[name]

    def _new_prediction(self, change=None):
        def step():
            key = (self.model_name.value, self.photo.value)
            if key not in self._predictions:
                self._predictions[key] = predict(self.model(), self.photos[self.photo.value])
            prediction = self._predictions[key]
            self._busy = True  # changing the class list must not trigger a second redraw
            try:
                self.target.options = top_options(prediction)
                self.target.value = prediction.top[0][1]
            finally:
                self._busy = False
            self._compute_map()
            self._render()

        self.guard(step)

    def _new_map(self, change=None):
        if not self._busy:
            self.guard(lambda: (self._compute_map(), self._render()))

    def _redraw(self, change=None):
        self.guard(self._render)

    def _uploaded(self, change=None):
        def step():
            name, image = read_upload(self.upload.value)
            key = f"upload: {name}"
            self.photos[key] = image
            self._predictions = {k: v for k, v in self._predictions.items() if k[1] != key}
            if key not in self.photo.options:
                self.photo.options = list(self.photo.options) + [key]
            if self.photo.value == key:
                self._new_prediction()
            else:
                self.photo.value = key  # triggers the prediction

        self.guard(step)

    def _compute_map(self):
        prediction = self._predictions[(self.model_name.value, self.photo.value)]
        model = self.model()
        self._map = cam_map(model, prediction, self.method.value, self.target.value, self.layer.value)
        label, index, p = next(t for t in prediction.top if t[1] == self.target.value)
        x, y = C.peak(self._map)
        self.state = {"model": model.config.name, "resolution": model.config.resolution, "photo": self.photo.value,
                      "method": self.method.value, "layer": self.layer.value, "class": index, "label": label,
                      "probability": p, "peak": (x, y)}

    def _render(self):
        prediction = self._predictions[(self.model_name.value, self.photo.value)]
        self.image.value = render_png(prediction.view, self._map, self.alpha.value)
        s = self.state
        top = "".join(f"<li>{escape(label)}: {p:.1%}</li>" for label, _, p in prediction.top)
        self.info.value = (f"<b>{s['model']}</b> at {s['resolution']} px, {escape(s['method'])} on {s['layer']}: "
                           f"<b>{escape(s['label'])}</b> ({s['probability']:.1%}), peak at {s['peak']}"
                           f"<ol style='margin:2px 0'>{top}</ol>")
