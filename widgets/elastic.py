"""ElasticExplorer: what compound scaling *buys*, live: accuracy, CAM localisation and the CAMs themselves for any
(phi, alpha, beta, gamma) inside the elastic network's box (``effnet_edu.lab.elastic``).

    from effnet_edu_widgets import ElasticExplorer
    ElasticExplorer()

Every slider position is a point of Eq. 3 applied to the classroom base C0 (d = alpha^phi, w = beta^phi,
r = 64 * gamma^phi). Inside the box the explorer extracts that sub-network from the shared weights, recalibrates its
BatchNorm, scores it on the first ``LIVE_TEST`` test images and draws the class activation maps of four test images
with their objects outlined. Outside the box it still counts parameters and MACs (``effnet_edu.accounting``) and
says that no trained sub-network covers the point. A revisited point (or one that rounds to the same network) is
served from the cache.

The pure functions (``lab_state``, ``cam_strip``) are what tests call; the widget wires sliders to them.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from html import escape

import numpy as np
import torch
from PIL import Image, ImageDraw

from effnet_edu.lab import elastic as E
from effnet_edu.lab.experiments import compound_point
from effnet_edu.lab.families import Point, macs, params
from effnet_edu.scaling import FLOPS_BUDGET, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, CompoundPoint, compound

from ._base import Explorer
from .scaling import budget_beta, constraint_text

IMAGE_SETS = {f"test images {i}-{i + 3}": tuple(range(i, i + 4)) for i in (0, 4, 8, 12, 16)}
MAX_PHI = 5.0


@dataclass(frozen=True)
class LabState:
    """What the sliders say, before any network runs: the compound point, the lab point, its counts, and
    whether a trained sub-network covers it (``message`` says why not)."""

    coefficients: CompoundPoint
    point: Point
    params: int
    macs: int
    inside: bool
    message: str = ""


def lab_state(phi: float, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA, gamma: float = PAPER_GAMMA,
              budget: float | None = None) -> LabState:
    """The pure function behind the sliders. With ``budget``, beta follows alpha and gamma (``budget_beta``).
    Raises ``ScalingError`` (a ``ValueError``) for impossible coefficients (below 1, phi < 0)."""
    if budget is not None:
        beta = budget_beta(alpha, gamma, budget)
    coefficients = compound(phi, alpha, beta, gamma)
    if coefficients.phi > MAX_PHI:
        raise ValueError(f"phi must be between 0 and {MAX_PHI:g} here, got {coefficients.phi:g}")
    point = compound_point("effnet", coefficients.phi, coefficients.alpha, coefficients.beta, coefficients.gamma)
    n = len(E.CLASSES)
    try:
        E.check_point(point)
        inside, message = True, ""
    except E.OutsideBox as exc:
        inside, message = False, str(exc)
    return LabState(coefficients, point, params(point, n), macs(point, n), inside, message)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (the mask minus its 4-neighbour erosion)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def cam_strip(point: Point, indices, folder=None, alpha: float = 0.5, scale: int = 2) -> tuple[bytes, list[dict]]:
    """A PNG of the CAMs (of the predicted classes) of the given test images, each object outlined in white,
    scaled up ``scale`` times (readable on a projector); and per image: true and predicted label, probability,
    whether the map's peak is on the object."""
    from effnet_edu.cam import overlay, peak
    from effnet_edu.lab.train import split

    images, masks, labels = split("test")
    chosen = torch.tensor(list(indices))
    out = E.class_maps(point, images[chosen].permute(0, 3, 1, 2), folder)
    tiles, info = [], []
    for k, i in enumerate(chosen.tolist()):
        photo = Image.fromarray(images[i].numpy())
        tile = np.asarray(overlay(photo, out["maps"][k], alpha)).copy()
        tile[_outline(masks[i].numpy())] = 255
        size = (tile.shape[1] * scale, tile.shape[0] * scale)
        tile_image = Image.fromarray(tile).resize(size, Image.Resampling.NEAREST)
        cls = int(out["classes"][k])
        x, y = peak(out["maps"][k])
        hit = bool(masks[i][y, x])
        ImageDraw.Draw(tile_image).text((4, 2), f"{E.CLASSES[cls]} {float(out['probs'][k, cls]):.0%}",
                                        fill=(255, 255, 255) if cls == int(labels[i]) else (255, 80, 80))
        tiles.append(tile_image)
        info.append({"index": i, "label": E.CLASSES[int(labels[i])], "predicted": E.CLASSES[cls],
                     "probability": float(out["probs"][k, cls]), "peak_on_object": hit})
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x0 = 0
    for t in tiles:
        strip.paste(t, (x0, 0))
        x0 += t.width + 4
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), info


class AccuracyPlot:
    """Test accuracy against MACs: the from-scratch models of the scaling lab (full test split), the validated
    sub-networks (full test split), the points visited (live subset) and the current one. The static part is
    drawn once; an update draws only the moving markers (blitting)."""

    def __init__(self, validation: dict | None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5.2, 3.6), dpi=90)
        self.canvas = FigureCanvasAgg(self.figure)
        ax = self.axes = self.figure.subplots()
        rows = (validation or {}).get("rows", [])
        if rows:
            ax.plot([r["macs"] / 1e6 for r in rows], [r["scratch"] for r in rows], "s", color="0.55", ms=5,
                    label="trained from scratch (lab, test split)")
            ax.plot([r["macs"] / 1e6 for r in rows], [r["elastic"] for r in rows], "o", mfc="none",
                    color="tab:blue", ms=6, label="same points, elastic (test split)")
        (self.visited,) = ax.plot([], [], ".", color="tab:orange", ms=7, animated=True,
                                  label=f"visited (first {E.LIVE_TEST} test images)")
        (self.marker,) = ax.plot([], [], "o", color="tab:red", ms=10, animated=True, label="current")
        top = max([24.0] + [r["macs"] / 1e6 for r in rows])
        ax.set(xscale="log", xlim=(1.5, top * 1.3), ylim=(0, 100), xlabel="MACs (millions)",
               ylabel="test accuracy (%)", title="What scaling buys (16-class lab task)")
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xticks([t for t in (2, 4, 8, 16, 32, 64) if t <= top * 1.3])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        self.figure.tight_layout()
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.points: dict = {}

    def render(self, current: tuple[float, float] | None) -> bytes:
        if current is not None:
            self.points[current] = True
        xs = [m / 1e6 for m, _ in self.points]
        self.visited.set_data(xs, [a for _, a in self.points])
        self.marker.set_data([current[0] / 1e6] if current else [], [current[1]] if current else [])
        self.canvas.restore_region(self.background)
        self.axes.draw_artist(self.visited)
        self.axes.draw_artist(self.marker)
        self.canvas.blit(self.figure.bbox)
        image = Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba(), "raw",
                                 "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


class ElasticExplorer(Explorer):
    """Sliders for phi, alpha, beta, gamma (and a FLOPs-budget lock that makes beta follow), a choice of test
    images; readouts (w, d, r, params, MACs, alpha * beta^2 * gamma^2, accuracy, localisation), the CAMs with the
    objects outlined, and accuracy against MACs.

    ``explorer.state`` holds what is shown (the point, counts, accuracy, localisation, per-image predictions);
    ``explorer.last_update_ms`` how long the last update took. ``folder``: weights written by
    ``effnet-edu lab elastic-train --out`` (default: the stored ones)."""

    def __init__(self, phi: float = 1.0, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
                 gamma: float = PAPER_GAMMA, lock: bool = False, budget: float = FLOPS_BUDGET, folder=None):
        super().__init__()
        w = self.w
        self.folder = folder
        try:
            validation = E.stored_validation(folder)
        except FileNotFoundError:
            validation = None
        slider = dict(continuous_update=False, style={"description_width": "70px"}, layout=w.Layout(width="330px"))
        self.phi = w.FloatSlider(value=phi, min=0.0, max=MAX_PHI, step=0.1, description="phi",
                                 **slider).add_class("effnet-phi-slider")
        self.alpha = w.FloatSlider(value=alpha, min=1.0, max=2.0, step=0.05, description="alpha",
                                   **slider).add_class("effnet-alpha-slider")
        self.beta = w.FloatSlider(value=beta, min=1.0, max=2.0, step=0.05, description="beta",
                                  **slider).add_class("effnet-beta-slider")
        self.gamma = w.FloatSlider(value=gamma, min=1.0, max=2.0, step=0.05, description="gamma",
                                   **slider).add_class("effnet-gamma-slider")
        self.lock = w.Checkbox(value=lock, description="lock alpha * beta^2 * gamma^2 (beta follows)",
                               indent=False).add_class("effnet-lock")
        self.budget = w.FloatSlider(value=budget, min=1.0, max=4.0, step=0.05, description="budget",
                                    **slider).add_class("effnet-budget-slider")
        self.images = w.Dropdown(options=list(IMAGE_SETS), description="images",
                                 style={"description_width": "70px"}).add_class("effnet-lab-images")
        self.status = w.HTML("").add_class("effnet-lab-status")
        self.readout = w.HTML("").add_class("effnet-lab-readout")
        self.cams = w.Image(format="png", layout=w.Layout(width="780px")).add_class("effnet-lab-cams")
        self.plot_image = w.Image(format="png", layout=w.Layout(width="470px")).add_class("effnet-lab-plot")
        self.plot = AccuracyPlot(validation)
        self.state: dict = {}
        controls = w.VBox([self.phi, self.alpha, self.beta, self.gamma, self.lock, self.budget, self.images,
                           self.status])
        self._layout(w.HBox([controls, self.plot_image]), self.readout, self.cams, self.messages)
        self._update()
        for control in (self.phi, self.alpha, self.beta, self.gamma, self.lock, self.budget, self.images):
            control.observe(self._update, names="value")

    def _update(self, change=None):
        locked = self.lock.value
        self.beta.disabled, self.budget.disabled = locked, not locked
        if not self.guard(lambda: self._show(locked)):
            self.status.value = "not updated: see the message below"

    def _show(self, locked: bool):
        start = time.perf_counter()
        s = lab_state(self.phi.value, self.alpha.value, self.beta.value, self.gamma.value,
                      self.budget.value if locked else None)
        if locked and abs(self.beta.value - s.coefficients.beta) > 1e-9:
            self.beta.unobserve(self._update, names="value")
            try:
                self.beta.value = round(s.coefficients.beta, 4)
            finally:
                self.beta.observe(self._update, names="value")
        p = s.point
        head = (f"<b>w</b> = beta^phi = {p.width:g}, <b>d</b> = alpha^phi = {p.depth:g}, <b>r</b> = 64 gamma^phi = "
                f"{p.resolution} px &nbsp; <b>params</b> {s.params:,} &nbsp; <b>MACs</b> {s.macs:,}<br>"
                f"<b>alpha * beta^2 * gamma^2</b> = {constraint_text(s.coefficients)}")
        state = {"point": p, "params": s.params, "macs": s.macs, "inside": s.inside,
                 "constraint": s.coefficients.flops_factor}
        if not s.inside:
            self.readout.value = f"{head}<br><b>{escape(s.message)}</b>"
            self.cams.value = b""
            self.plot_image.value = self.plot.render(None)
            self.state = {**state, "accuracy": None}
            self.status.value = "outside the trained box: counts only"
            return
        self.status.value = "<i>computing&hellip;</i>"  # reaches the browser before the work starts
        self.state = {**state, "accuracy": None}
        try:
            result = E.evaluate(p, E.LIVE_TEST, self.folder)
        except FileNotFoundError as exc:  # no trained weights there: the user's setting, not a bug
            self.readout.value = head
            raise ValueError(str(exc)) from None
        strip, images = cam_strip(p, IMAGE_SETS[self.images.value], self.folder)
        self.cams.value = strip
        self.plot_image.value = self.plot.render((s.macs, result["accuracy"]))
        self.readout.value = (
            f"{head}<br><b>test accuracy</b> {result['accuracy']:.1f}% (first {result['test_images']} test images; "
            f"standard error about 2 points) &nbsp; <b>CAM localisation</b>: pointing game {result['pointing']:.1f}%, "
            f"energy on the object {result['energy']:.1f}%, IoU {result['iou']:.1f}% &nbsp; feature map "
            f"{-(-p.resolution // 32)}x{-(-p.resolution // 32)}")
        self.state = {**state, **result, "images": images}
        self.status.value = f"ready ({(time.perf_counter() - start) * 1e3:.0f} ms)"
