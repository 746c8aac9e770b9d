"""Diagrams drawn from the library's own description of the network (matplotlib; nothing is hand-drawn).

- ``mbconv_diagram(spec)``: one MBConv block (expand, depthwise, SE, project, skip) with the shapes of a real
  ``effnet_edu.BlockSpec`` (what ``effnet_edu.blocks(config)`` returns);
- ``figure2(panels)``: the paper's Figure 2 (Section 3): baseline, width, depth, resolution and compound scaling,
  each panel drawn layer by layer from ``effnet_edu.stages()`` of a scaled config.

The pure parts (``mbconv_parts``, ``layer_bars``) return plain data, so tests can check a diagram's content
without looking at pixels. matplotlib is imported only when something is drawn.
"""

from __future__ import annotations

import math

import effnet_edu as ee

# Table 7 / Figure 7 (Section 6) scale B0 by one dimension (d=4, w=2, r=2) or by the compound point
# (d=1.4, w=1.2, r=1.3): the same points make Figure 2's five panels here.
FIGURE2_POINTS = (
    ("(a) baseline", dict(width=1.0, depth=1.0, resolution=224)),
    ("(b) width", dict(width=2.0, depth=1.0, resolution=224)),
    ("(c) depth", dict(width=1.0, depth=4.0, resolution=224)),
    ("(d) resolution", dict(width=1.0, depth=1.0, resolution=448)),
    ("(e) compound", dict(width=1.2, depth=1.4, resolution=291)),  # 224 x 1.3 = 291.2
)


def mbconv_parts(spec: ee.BlockSpec) -> list[tuple[str, str, int, int]]:
    """The block's sub-layers in order: (name, operation, channels out, resolution out)."""
    c_in, hid, c_out, k = spec.in_channels, spec.hidden_channels, spec.out_channels, spec.kernel_size
    r_in, r_out = spec.in_resolution, spec.out_resolution
    parts = [("input", f"{c_in}x{r_in}x{r_in}", c_in, r_in)]
    if spec.expand_ratio != 1:
        parts.append(("expand", f"1x1 conv {c_in}->{hid}, BN, SiLU", hid, r_in))
    parts.append(("depthwise", f"{k}x{k} depthwise, stride {spec.stride}, BN, SiLU", hid, r_out))
    if spec.se_channels:
        parts.append(("SE", f"pool, {hid}->{spec.se_channels}->{hid}, sigmoid, x", hid, r_out))
    parts.append(("project", f"1x1 conv {hid}->{c_out}, BN (linear)", c_out, r_out))
    parts.append(("output", f"{c_out}x{r_out}x{r_out}" + (" (+ input)" if spec.residual else ""), c_out, r_out))
    return parts


def mbconv_diagram(spec: ee.BlockSpec, ax=None):
    """Draw one block bottom-up; each box's width is proportional to its channels (the inverted bottleneck:
    narrow -> wide -> narrow), the skip connection is drawn when the block has one."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    parts = mbconv_parts(spec)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.9 * len(parts) + 0.6))
    widest = max(c for _, _, c, _ in parts)
    colours = {"input": "0.85", "expand": "#9ecae1", "depthwise": "#fdae6b", "SE": "#a1d99b", "project": "#9ecae1",
               "output": "0.85"}
    for i, (name, text, channels, resolution) in enumerate(parts):
        w = 0.15 + 0.85 * channels / widest
        ax.add_patch(Rectangle((-w / 2, i), w, 0.6, facecolor=colours[name], edgecolor="0.3"))
        ax.text(0, i + 0.3, name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(0.56, i + 0.3, f"{text}   -> {channels}x{resolution}x{resolution}", va="center", fontsize=8)
        if i:
            ax.add_patch(FancyArrowPatch((0, i - 0.4), (0, i), arrowstyle="-|>", mutation_scale=10, color="0.3"))
    if spec.residual:
        top = len(parts) - 1
        ax.add_patch(FancyArrowPatch((-0.52, 0.3), (-0.52, top + 0.3), connectionstyle="arc3,rad=0.25",
                                     arrowstyle="-|>", mutation_scale=10, color="C3"))
        ax.text(-0.62, top / 2 + 0.3, "skip\n(+ stochastic depth\non the branch)", ha="right", va="center",
                fontsize=8, color="C3")
    ax.set(xlim=(-1.25, 2.2), ylim=(-0.3, len(parts)), title=f"{spec.name}: MBConv{spec.expand_ratio}, "
           f"k{spec.kernel_size}x{spec.kernel_size} (box width ~ channels)")
    ax.axis("off")
    return ax


def layer_bars(config: ee.EfficientNetConfig) -> list[tuple[int, int]]:
    """One (channels out, stage) pair per layer, bottom-up: the stem, every MBConv block, the head."""
    bars = []
    for row in ee.stages(config):
        bars += [(row.out_channels, row.stage)] * row.layers
    return bars


def figure2(panels=None, fig=None):
    """The paper's Figure 2 from real configs: each layer is a bar whose width grows with sqrt(channels), the
    square below is the input image (side proportional to the resolution); panels share one scale.

    ``panels``: (title, config or ``resolve`` keywords) pairs; default: B0 and Table 7's four scaled models."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    panels = [(t, c if isinstance(c, ee.EfficientNetConfig) else ee.resolve(**c))
              for t, c in (panels or FIGURE2_POINTS)]
    fig = fig or plt.figure(figsize=(2.3 * len(panels), 6.5))
    axes = fig.subplots(1, len(panels), sharey=True)
    tallest = max(len(layer_bars(c)) for _, c in panels)
    widest = max(math.sqrt(ch) for _, c in panels for ch, _ in layer_bars(c))
    biggest = max(c.resolution for _, c in panels)
    unit = 40 / tallest  # bar height: the deepest network fills the panel
    cmap = plt.get_cmap("viridis")
    for ax, (title, config) in zip(axes, panels):
        ax.set(xlim=(-0.6, 0.6), ylim=(-24, 45), title=title)
        box = ax.get_position()  # keep the input image square on screen: x units per y unit of this axes
        aspect = (1.2 / 69) * (box.height * fig.get_figheight()) / (box.width * fig.get_figwidth())
        side = 18 * config.resolution / biggest
        ax.add_patch(Rectangle((-side * aspect / 2, -side - 1), side * aspect, side, facecolor="0.75",
                               edgecolor="0.3"))
        ax.text(0, -side - 2.5, f"{config.resolution}x{config.resolution} input", ha="center", va="top", fontsize=8)
        for i, (channels, stage) in enumerate(layer_bars(config)):
            w = math.sqrt(channels) / widest
            ax.add_patch(Rectangle((-w / 2, i * unit), w, unit * 0.8, facecolor=cmap((stage - 1) / 8),
                                   edgecolor="none"))
        ax.text(0, 41, f"{len(layer_bars(config))} layers\nw {config.width:g}, d {config.depth:g}", ha="center",
                fontsize=8)
        ax.axis("off")
    fig.suptitle("Figure 2, redrawn from effnet_edu.stages(): bar width ~ sqrt(channels), colour = stage")
    return fig
