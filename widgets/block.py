"""BlockExplorer: one MBConv block (Table 1's operator), sub-layer by sub-layer.

    from effnet_edu_widgets import BlockExplorer
    BlockExplorer()

It shows parameters, multiply-adds and bytes moved per sub-layer (from ``effnet_edu.accounting.block_count``)
and makes one point visible: the depthwise convolution does few multiply-adds (k^2 per output value, where a
1x1 conv does c_in) but reads and writes the whole expanded tensor, so its share of the memory traffic is far
larger than its share of the arithmetic. Low MACs per byte means the layer waits on memory, not on arithmetic.

The computation is the pure function ``block_view`` (HTML from the control values); the widget owns the controls.
The bars are plain HTML, so an update costs well under a millisecond of drawing.
"""

from __future__ import annotations

from effnet_edu.accounting import BlockCount, block_count

from ._base import Explorer

PARTS = ("expand", "depthwise", "se", "project")
COLOURS = {"macs": "#4c72b0", "bytes": "#dd8452"}


def block_view(in_channels, out_channels, expand_ratio, kernel_size, stride, se_ratio, resolution) -> BlockCount:
    """The pure function behind the widget: raises ``ScalingError`` (a ``ValueError``) for impossible blocks."""
    return block_count(in_channels, out_channels, expand_ratio, kernel_size, stride, se_ratio=se_ratio,
                       resolution=resolution)


def _bar(fraction: float, colour: str) -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return (f"<div style='background:#eee;width:160px;height:10px'><div style='background:{colour};"
            f"width:{width:.1f}%;height:10px'></div></div>")


def block_table_html(block: BlockCount) -> str:
    """Per sub-layer: params, MACs, bytes moved, MACs per byte, and each one's share of MACs and of bytes."""
    rows = []
    for r in block.rows:
        part = r.name.rsplit("/", 1)[-1]
        macs_share, bytes_share = r.macs / block.macs, r.bytes_moved / block.bytes_moved
        rows.append(
            f"<tr class='effnet-part-{part}'><td>{part}</td><td>{'x'.join(map(str, r.out_shape))}</td>"
            f"<td>{r.params:,}</td><td>{r.macs:,}</td><td>{r.bytes_moved:,}</td><td>{r.intensity:.2f}</td>"
            f"<td>{_bar(macs_share, COLOURS['macs'])}{macs_share:.1%}</td>"
            f"<td>{_bar(bytes_share, COLOURS['bytes'])}{bytes_share:.1%}</td></tr>"
        )
    total = (f"<tr><th>total</th><th></th><th>{block.params:,}</th><th>{block.macs:,}</th>"
             f"<th>{block.bytes_moved:,}</th><th>{block.macs / block.bytes_moved:.2f}</th><th></th><th></th></tr>")
    return (
        "<table class='effnet-table'><tr><th>part</th><th>output (CxHxW)</th><th>params</th><th>MACs</th>"
        "<th>bytes moved (fp32)</th><th>MACs/byte</th><th>share of MACs</th><th>share of bytes</th></tr>"
        + "".join(rows) + total + "</table>"
    )


def summary_html(block: BlockCount) -> str:
    """One sentence on the depthwise conv against the 1x1 convs, with this block's numbers."""
    dw, k = block.part("depthwise"), block.spec.kernel_size
    assert dw is not None  # every MBConv block has its depthwise conv
    pointwise = [p for p in (block.part("expand"), block.part("project")) if p is not None]
    pw_macs = sum(p.macs for p in pointwise)
    pw_bytes = sum(p.bytes_moved for p in pointwise)
    return (
        f"Depthwise k{k}x{k}: <b>{dw.macs / block.macs:.1%}</b> of the MACs but "
        f"<b>{dw.bytes_moved / block.bytes_moved:.1%}</b> of the bytes moved, "
        f"{dw.intensity:.2f} MACs/byte; the 1x1 convs: {pw_macs / pw_bytes:.2f} MACs/byte. "
        f"Hidden width {block.spec.hidden_channels}, residual: {block.spec.residual}."
    )


class BlockExplorer(Explorer):
    """Controls for one MBConv block; a per-sub-layer table and totals. Bad values (0 channels, even kernels, a
    resolution below 1) show their message in the red label (CSS class ``effnet-error``) and keep the last
    valid view. ``explorer.block`` is the last valid ``BlockCount``."""

    def __init__(self, in_channels: int = 40, out_channels: int = 40, expand_ratio: int = 6, kernel_size: int = 5,
                 stride: int = 1, se_ratio: float = 0.25, resolution: int = 28):
        super().__init__()
        w = self.w
        style = {"description_width": "110px"}
        box = w.Layout(width="260px")
        # Plain IntText (no bounds), so a wrong value reaches the library and its message is shown.
        self.in_channels = w.IntText(in_channels, description="in channels", style=style,
                                     layout=box).add_class("effnet-in-channels")
        self.out_channels = w.IntText(out_channels, description="out channels", style=style,
                                      layout=box).add_class("effnet-out-channels")
        self.expand_ratio = w.Dropdown(options=[1, 2, 3, 4, 6], value=expand_ratio, description="expansion",
                                       style=style, layout=box)
        self.kernel_size = w.Dropdown(options=[1, 3, 5, 7], value=kernel_size, description="kernel size",
                                      style=style, layout=box)
        self.stride = w.ToggleButtons(options=[1, 2], value=stride, description="stride", style=style)
        self.se_ratio = w.FloatSlider(se_ratio, min=0.0, max=1.0, step=0.05, description="SE ratio", style=style,
                                      layout=w.Layout(width="360px"))
        self.resolution = w.IntText(resolution, description="input resolution", style=style,
                                    layout=box).add_class("effnet-in-resolution")
        self.summary = w.HTML("").add_class("effnet-block-summary")
        self.totals = w.HTML("").add_class("effnet-block-totals")
        self.table = w.HTML("").add_class("effnet-block-table")
        self.block: BlockCount | None = None
        self.controls = (self.in_channels, self.out_channels, self.expand_ratio, self.kernel_size, self.stride,
                         self.se_ratio, self.resolution)
        for control in self.controls:
            control.observe(self._update, names="value")
        self._layout(w.HBox([w.VBox(list(self.controls[:4])), w.VBox(list(self.controls[4:]))]),
                     self.messages, self.totals, self.table, self.summary)
        self._update()

    def _update(self, change=None):
        self.guard(self._show, "Cannot count this block: {}. Showing the last valid one.")

    def _show(self):
        block = block_view(*(c.value for c in self.controls))
        self.totals.value = (f"<b>params</b> {block.params:,} &nbsp; <b>MACs</b> {block.macs:,} "
                             f"(FLOPs = 2 x MACs = {block.flops:,}) &nbsp; <b>bytes moved</b> {block.bytes_moved:,}")
        self.table.value = block_table_html(block)
        self.summary.value = summary_html(block)
        self.block = block
