"""ScalingExplorer: compound scaling (Section 3.3) with sliders for phi, alpha, beta and gamma.

    from effnet_edu_widgets import ScalingExplorer
    ScalingExplorer()                      # in a notebook or a Voila dashboard

With the FLOPs budget locked, alpha * beta^2 * gamma^2 stays at the budget (default 2): alpha and gamma move and
beta follows, beta = sqrt(budget / (alpha * gamma^2)). That is the design space of the paper's step-1 grid search
(Section 3.3), which found alpha = 1.2, beta = 1.1, gamma = 1.15 in it.

The computation is a set of pure functions of the slider values (``scaling_state``, ``budget_beta``, ``readouts``,
``stage_table_html``, ``comparison_html``, ``macs_curve``): tests call them directly, and the widget only owns
the controls and the redraw. Counting uses ``effnet_edu.accounting`` (nothing is built), so a slider move costs
about a millisecond of arithmetic; the plots are redrawn by blitting (only the moving artists are drawn onto a
cached background), which keeps a whole update well under 100 ms.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from html import escape

from effnet_edu.accounting import Report, count
from effnet_edu.arch import B_SERIES, resolve
from effnet_edu.paper import COMPARISONS
from effnet_edu.scaling import (
    BASE_RESOLUTION,
    FLOPS_BUDGET,
    FLOPS_TOLERANCE,
    PAPER_ALPHA,
    PAPER_BETA,
    PAPER_GAMMA,
    CompoundPoint,
    ScalingError,
    compound,
)

from ._base import Explorer

RELEASED = B_SERIES  # B<n> is the released member at phi = n
RELEASED_LABEL = f"{RELEASED[0].upper()}-{RELEASED[-1].upper()}"  # "B0-B7"
MODES = ("paper formula", f"released {RELEASED_LABEL}")
MAX_PHI = float(len(RELEASED) - 1)

# Table 2's comparison rows (effnet_edu.paper): name, params, multiply-adds ("FLOPS"), top-1. GPipe has no FLOPs.
PAPER_TABLE2 = tuple((r.model, r.params, r.flops, r.top1) for r in COMPARISONS if r.flops is not None)
LABEL_OFFSETS = {"ResNet-50": (-4, 2, "right"), "Inception-v3": (-4, -9, "right"), "Xception": (4, -7, "left"),
                 "SENet": (4, -7, "left"), "NASNet-A": (-4, 2, "right")}


@dataclass(frozen=True)
class ScalingState:
    """Everything the explorer shows for one position of the controls."""

    mode: str  # one of MODES
    phi: float  # as used: snapped to a whole number in "released" mode
    point: CompoundPoint  # the compound rule at phi (alpha^phi, beta^phi, gamma^phi)
    formula: Report  # the network the formula gives
    released: Report | None  # the released member b<phi> ("released" mode only)
    budget: float | None = None  # alpha * beta^2 * gamma^2 when locked (beta then follows alpha and gamma)

    @property
    def shown(self) -> Report:
        """The network whose numbers the readouts show."""
        return self.released if self.released is not None else self.formula


def budget_beta(alpha: float, gamma: float, budget: float = FLOPS_BUDGET) -> float:
    """The beta that holds alpha * beta^2 * gamma^2 = budget: sqrt(budget / (alpha * gamma^2)).

    Raises ``ScalingError`` when that beta would be below 1 (the paper's constraint beta >= 1): alpha * gamma^2
    alone already exceeds the budget."""
    point = compound(1.0, alpha, 1.0, gamma)  # validates alpha, gamma >= 1
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget >= 1:
        raise ScalingError(f"the FLOPs budget must be a number >= 1, got {budget!r}")
    spent = point.alpha * point.gamma**2
    beta = math.sqrt(budget / spent)
    if beta < 1 - 1e-12:
        raise ScalingError(
            f"cannot hold alpha * beta^2 * gamma^2 = {budget:g} with beta >= 1: alpha * gamma^2 = "
            f"{point.alpha:g} * {point.gamma:g}^2 = {spent:.4f} is already above it; lower alpha or gamma"
        )
    return max(beta, 1.0)


def scaling_state(phi, alpha=PAPER_ALPHA, beta=PAPER_BETA, gamma=PAPER_GAMMA, mode=MODES[0],
                  budget: float | None = None) -> ScalingState:
    """The pure function behind the widget. Raises ``ScalingError`` (a ``ValueError``) for impossible values.
    With ``budget``, ``beta`` is ignored and follows from alpha and gamma (``budget_beta``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if budget is not None:
        beta = budget_beta(alpha, gamma, budget)
    point = compound(phi, alpha, beta, gamma)  # validates phi >= 0 and alpha, beta, gamma >= 1
    if point.phi > MAX_PHI:
        raise ValueError(f"phi must be between 0 and {MAX_PHI:g} ({RELEASED_LABEL.replace('-', '..')}), "
                         f"got {point.phi:g}")
    released = None
    if mode == MODES[1]:
        n = int(math.floor(point.phi + 0.5))  # snap to the released member with that phi
        point = compound(n, alpha, beta, gamma)
        released = count(RELEASED[n])
    formula = count(resolve(phi=point.phi, alpha=point.alpha, beta=point.beta, gamma=point.gamma))
    return ScalingState(mode, point.phi, point, formula, released, budget)


def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def constraint_text(point: CompoundPoint) -> str:
    factor = point.flops_factor
    ok = abs(factor - FLOPS_BUDGET) <= FLOPS_TOLERANCE
    mark = (f"&#x2713; meets ~{FLOPS_BUDGET:g}" if ok else f"&#x2717; misses ~{FLOPS_BUDGET:g} (allowed "
            f"{FLOPS_BUDGET - FLOPS_TOLERANCE:g}..{FLOPS_BUDGET + FLOPS_TOLERANCE:g})")
    return f"{factor:.4f} {mark}"


def budget_text(state: ScalingState) -> str:
    p = state.point
    if state.budget is None:
        return "<b>budget</b> free: alpha, beta and gamma move independently"
    return (f"<b>budget locked</b> at {state.budget:g}: beta = sqrt({state.budget:g} / (alpha * gamma^2)) = "
            f"sqrt({state.budget:g} / ({p.alpha:g} * {p.gamma:g}^2)) = {p.beta:.4f}")


def readouts(state: ScalingState) -> dict[str, str]:
    """The readouts as HTML snippets, keyed by name (each becomes a widget with CSS class ``effnet-<name>``).
    Exact integers are printed in full, so a test can compare them with the library's counts."""
    r, p = state.shown, state.point
    c = r.config
    source = f"released {c.name.upper()}" if state.released is not None else f"formula, phi = {state.phi:g}"
    return {
        "model": f"<b>network</b>: {escape(source)}",
        "depth": f"<b>depth</b> d = {c.depth:.3f}" + ("" if state.released else f" (alpha^phi = {p.depth:.4f})"),
        "width": f"<b>width</b> w = {c.width:.3f}" + ("" if state.released else f" (beta^phi = {p.width:.4f})"),
        "resolution": f"<b>resolution</b> r = {c.resolution} px"
                      + ("" if state.released else f" ({BASE_RESOLUTION} * gamma^phi = {p.resolution_exact:.1f})"),
        "constraint": f"<b>alpha * beta^2 * gamma^2</b> = {constraint_text(p)}",
        "budget": budget_text(state),
        "params": f"<b>params</b> {r.params:,} ({_si(r.params)})",
        "macs": f"<b>MACs</b> (the paper's FLOPS) {r.macs:,} ({_si(r.macs)})",
        "flops": f"<b>FLOPs</b> = 2 x MACs = {r.flops:,} ({_si(r.flops)})",
        "activations": f"<b>activation memory</b> {r.activation_bytes / 2**20:,.1f} MiB "
                       f"(all layer outputs, batch 1, fp32)",
    }


def stage_table_html(state: ScalingState) -> str:
    """The scaled Table 1 (channels, layers, resolution per stage) as an HTML table."""
    r = state.shown
    rows = "".join(
        f"<tr><td>{s.stage}</td><td>{escape(s.operator)}</td><td>{s.resolution}x{s.resolution}</td>"
        f"<td>{s.out_shape[0]}</td><td>{s.layers}</td><td>{s.params:,}</td><td>{s.macs:,}</td></tr>"
        for s in r.stages
    )
    return (
        f"<table class='effnet-table'><caption>Table 1 scaled: {escape(r.config.name)} "
        f"(input {r.config.resolution}px)</caption>"
        "<tr><th>stage</th><th>operator</th><th>resolution</th><th>channels</th><th>layers</th>"
        f"<th>params</th><th>MACs</th></tr>{rows}</table>"
    )


def comparison_html(state: ScalingState) -> str:
    """Released member next to the formula at the same phi: the mismatch users ask about most."""
    if state.released is None:
        return ""
    rel, form = state.released, state.formula
    n = int(state.phi)
    rows = [
        ("depth", f"{rel.config.depth:g}", f"{form.config.depth:.3f}"),
        ("width", f"{rel.config.width:g}", f"{form.config.width:.3f}"),
        ("resolution", f"{rel.config.resolution}", f"{form.config.resolution}"),
        ("params", f"{rel.params:,}", f"{form.params:,}"),
        ("MACs", f"{rel.macs:,}", f"{form.macs:,}"),
    ]
    body = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
    ratio = rel.macs / form.macs
    return (
        f"<table class='effnet-table'><caption>released B{n} vs the formula at phi = {n} "
        f"(alpha={state.point.alpha:g}, beta={state.point.beta:g}, gamma={state.point.gamma:g}): "
        f"MACs ratio {ratio:.3f}</caption><tr><th></th><th>released B{n}</th><th>formula</th></tr>{body}</table>"
    )


_CURVES: dict[tuple[float, float, float], tuple[list[float], list[int], bool]] = {}


def macs_curve(alpha: float, beta: float, gamma: float, step: float = 0.25, limit: float = 1e12,
               budget_s: float | None = None) -> tuple[list[float], list[int], bool]:
    """Counted MACs of the formula's network for phi = 0, step, ..., 7: (phis, macs, complete).

    Stops past ``limit`` (the top of the plot). With ``budget_s``, stops after that much time and resumes on the
    next call: with alpha near 2 the network at phi = 7 has thousands of blocks, and a slider move must stay fast.
    """
    key = (float(alpha), float(beta), float(gamma))
    phis, macs, complete = _CURVES.get(key, ([], [], False))
    start = time.perf_counter()
    n = int(round(MAX_PHI / step)) + 1
    while not complete and len(phis) < n:
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
        phi = len(phis) * step
        phis.append(phi)
        macs.append(count(resolve(phi=phi, alpha=alpha, beta=beta, gamma=gamma)).macs)
        complete = macs[-1] > limit or len(phis) == n
    if len(_CURVES) > 64:
        _CURVES.clear()
    _CURVES[key] = (phis, macs, complete)
    return list(phis), list(macs), complete


class ScalingPlot:
    """Two panels kept between updates: MACs against phi, and params against MACs.

    The static parts (the 2^phi line, B0-B7, Table 2's models, axes, legends) are drawn once into a cached
    background; an update only draws the moving artists on top of it and encodes a PNG (a few ms instead of
    ~150 ms for a full matplotlib redraw on 2 cores)."""

    def __init__(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(10, 3.8), dpi=80)
        self.canvas = FigureCanvasAgg(self.figure)
        left, right = self.figure.subplots(1, 2)
        b0 = count("b0").macs
        released = [count(name) for name in RELEASED]

        phis = [i / 20 for i in range(int(MAX_PHI * 20) + 1)]
        left.plot(phis, [b0 * 2**p / 1e9 for p in phis], "k--", lw=1, label="B0 x 2^phi")
        left.plot(range(len(released)), [r.macs / 1e9 for r in released], "o", color="tab:green",
                  label=MODES[1])
        (self.curve,) = left.plot([], [], "-", color="tab:blue", lw=1.5, animated=True,
                                  label="formula (counted)")
        (self.marker,) = left.plot([], [], "o", color="tab:red", ms=9, animated=True, label="current")
        left.set(yscale="log", xlim=(-0.15, MAX_PHI + 0.15), ylim=(0.2, 500), xlabel="phi",
                 ylabel="MACs (billions)", title="MACs against phi")
        left.grid(True, which="major", alpha=0.3)
        left.legend(loc="upper left", fontsize=8)

        for name, params, macs, _top1 in PAPER_TABLE2:
            right.plot(macs / 1e9, params / 1e6, "s", color="0.6")
            dx, dy, ha = LABEL_OFFSETS.get(name, (4, 2, "left"))  # a few labels moved apart so none overlap
            right.annotate(name, (macs / 1e9, params / 1e6), fontsize=7, color="0.4", ha=ha,
                           xytext=(dx, dy), textcoords="offset points")
        right.plot([r.macs / 1e9 for r in released], [r.params / 1e6 for r in released], "o-", color="tab:green",
                   label=MODES[1])
        right.plot([], [], "s", color="0.6", label="Table 2 comparisons")
        (self.point,) = right.plot([], [], "*", color="tab:red", ms=14, animated=True, label="current")
        right.set(xscale="log", yscale="log", xlim=(0.2, 200), ylim=(2, 400), xlabel="MACs (billions)",
                  ylabel="params (millions)", title="params against MACs")
        right.grid(True, which="major", alpha=0.3)
        right.legend(loc="lower right", fontsize=8)
        self.figure.tight_layout()
        self.canvas.draw()  # animated artists are skipped here: this is the background
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)

    def render(self, state: ScalingState) -> bytes:
        from PIL import Image

        p = state.point
        phis, macs, _ = macs_curve(p.alpha, p.beta, p.gamma, budget_s=0.03)  # finishes over a few moves
        self.curve.set_data(phis, [m / 1e9 for m in macs])
        shown = state.shown
        self.marker.set_data([state.phi], [shown.macs / 1e9])
        self.point.set_data([shown.macs / 1e9], [shown.params / 1e6])
        self.canvas.restore_region(self.background)
        for artist in (self.curve, self.marker, self.point):
            artist.axes.draw_artist(artist)
        image = Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba(), "raw",
                                 "RGBA", 0, 1)
        out = io.BytesIO()
        image.save(out, format="png", compress_level=1)  # fast; the image is small
        return out.getvalue()


class ScalingExplorer(Explorer):
    """Sliders for phi, alpha, beta, gamma, a mode toggle and a FLOPs-budget lock; readouts, the scaled Table 1
    and two plots.

    ``explorer.state`` is the last valid ``ScalingState``; a bad value (alpha < 1, a budget that beta >= 1 cannot
    meet, ...) shows its message in the red label (``explorer.error``, CSS class ``effnet-error``) and the rest
    keeps the last valid view. ``explorer.last_update_ms`` is how long the last update took (computation +
    redraw). With ``lock`` on, the beta slider follows alpha and gamma (it is disabled) to hold the budget."""

    def __init__(self, phi: float = 1.0, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
                 gamma: float = PAPER_GAMMA, mode: str = MODES[0], lock: bool = False, budget: float = FLOPS_BUDGET):
        super().__init__()
        w = self.w
        style = {"description_width": "75px"}
        slider = dict(continuous_update=True, style=style, layout=w.Layout(width="420px"))
        self.phi = w.FloatSlider(value=phi, min=0.0, max=MAX_PHI, step=0.05, description="phi", readout_format=".2f",
                                 **slider).add_class("effnet-phi")
        # alpha, beta, gamma may be moved below 1 on purpose: the paper forbids it, and the widget says why.
        self.alpha = w.FloatSlider(value=alpha, min=0.8, max=2.0, step=0.01, description="alpha (d)",
                                   **slider).add_class("effnet-alpha")
        self.beta = w.FloatSlider(value=beta, min=0.8, max=2.0, step=0.01, description="beta (w)",
                                  readout_format=".3f", **slider).add_class("effnet-beta")
        self.gamma = w.FloatSlider(value=gamma, min=0.8, max=2.0, step=0.01, description="gamma (r)",
                                   **slider).add_class("effnet-gamma")
        self.mode = w.ToggleButtons(options=MODES, value=mode, description="network",
                                    style={"description_width": "75px", "button_width": "140px"}).add_class(
            "effnet-mode")
        self.lock = w.Checkbox(value=lock, description="lock alpha * beta^2 * gamma^2 (beta follows)",
                               indent=False).add_class("effnet-lock")
        self.budget = w.FloatSlider(value=budget, min=1.0, max=4.0, step=0.05, description="budget",
                                    **slider).add_class("effnet-budget-slider")
        self.labels = {name: w.HTML("").add_class(f"effnet-{name}") for name in
                       ("model", "depth", "width", "resolution", "constraint", "budget", "params", "macs", "flops",
                        "activations")}
        self.table = w.HTML("").add_class("effnet-stages")
        self.comparison = w.HTML("").add_class("effnet-comparison")
        self.image = w.Image(format="png", layout=w.Layout(width="800px")).add_class("effnet-plot")
        self.state: ScalingState | None = None
        self._plot = ScalingPlot()
        self._following = False  # True while the lock moves the beta slider (that move is not the user's)

        controls = w.VBox([self.phi, self.alpha, self.beta, self.gamma, self.mode, self.lock, self.budget])
        values = w.VBox(list(self.labels.values()), layout=w.Layout(margin="0 0 0 20px"))
        self._layout(w.HBox([controls, values]), self.messages, self.image, w.HBox([self.table, self.comparison]))
        for control in (self.phi, self.alpha, self.beta, self.gamma, self.budget):
            control.observe(self._update, names="value")
        self.mode.observe(self._mode_changed, names="value")
        self.lock.observe(self._update, names="value")
        self._mode_changed()

    def _mode_changed(self, change=None):
        released = self.mode.value == MODES[1]
        # Released members exist only at whole phi: snap the slider (this fires one update on its own).
        self.phi.step = 1.0 if released else 0.05
        if released:
            self.phi.value = float(round(self.phi.value))
        self._update()

    def _update(self, change=None):
        if self._following:
            return
        locked = self.lock.value
        self.beta.disabled, self.budget.disabled = locked, not locked  # only the free parameters can move
        self.guard(lambda: self._show(locked), "Cannot show this point: {}. Showing the last valid one.")

    def _show(self, locked: bool):
        state = scaling_state(self.phi.value, self.alpha.value, self.beta.value, self.gamma.value, self.mode.value,
                              budget=self.budget.value if locked else None)
        png = self._plot.render(state)
        if locked:
            self._following = True
            try:
                self.beta.value = state.point.beta
            finally:
                self._following = False
        for name, text in readouts(state).items():
            self.labels[name].value = text
        self.table.value = stage_table_html(state)
        self.comparison.value = comparison_html(state)
        self.image.value = png
        self.state = state
