"""Checks for the notebooks' exercises and predictions: each computes the answer from ``effnet_edu`` (never a
stored number), compares it with the student's and prints one line. They return True/False and never raise,
so a notebook runs top to bottom before anyone has answered (``answer=None`` prints "not answered yet").

    >>> from effnet_edu_widgets.checks import check_most_params_block
    >>> check_most_params_block("stage7/block1")
"""

from __future__ import annotations

import functools
import math

import effnet_edu as ee
from effnet_edu.accounting import block_count, count


def _report(ok: bool | None, what: str, hint: str = "") -> bool:
    if ok is None:
        print(f"not answered yet: {what}")
        return False
    print(("correct: " if ok else "not yet: ") + what + ("" if ok or not hint else f" (hint: {hint})"))
    return bool(ok)


def _reveal(ok: bool | None, truth: str) -> bool:
    """For predictions: always show the answer (the student wrote theirs down first)."""
    verdict = {None: "no prediction written", True: "your prediction was right", False: "your prediction was off"}
    print(f"{verdict[ok]}. {truth}")
    return bool(ok)


def _close(answer, expected: float, rel: float) -> bool | None:
    if answer is None:
        return None
    try:
        return math.isclose(float(answer), expected, rel_tol=rel)
    except (TypeError, ValueError):
        return False


# -- predictions before the explorers -----------------------------------------------------------------------------

def check_bytes_prediction(answer: str | None, **block) -> bool:
    """Notebook 01: which sub-layer of the default block moves the most bytes? ("expand", "depthwise", "se",
    "project"). ``block``: ``block_count`` arguments (default: B0's stage4/block1 at 28 px)."""
    b = block_count(**({"in_channels": 40, "out_channels": 40, "kernel_size": 5, "resolution": 28} | block))
    parts = {r.name.rsplit("/", 1)[-1]: r for r in b.rows}
    most = max(parts, key=lambda n: parts[n].bytes_moved)
    share = parts[most].bytes_moved / b.bytes_moved
    ok = None if answer is None else str(answer).strip().lower() == most
    return _reveal(ok, f"{most!r} moves the most bytes: {share:.0%} of the block's bytes for "
                       f"{parts[most].macs / b.macs:.2%} of its MACs")


def check_scaling_prediction(answer: float | None) -> bool:
    """Notebook 03: by how many times do B0's MACs grow at phi = 1 with the paper's alpha, beta, gamma?"""
    growth = count(phi=1).macs / count("b0").macs
    ok = _close(answer, growth, 0.1)
    return _reveal(ok, f"phi = 1 multiplies B0's MACs by {growth:.2f} (the formula says 1.92, the constraint 2)")


# -- exercises ------------------------------------------------------------------------------------------------------

def check_most_params_block(answer: str | None, model: str = "b0") -> bool:
    """Notebook 01, exercise 1: the name of the block with the most parameters ("stageS/blockB")."""
    params = {}
    for spec in ee.blocks(ee.resolve(model)):
        b = block_count(spec.in_channels, spec.out_channels, spec.expand_ratio, spec.kernel_size, spec.stride,
                        se_channels=spec.se_channels, resolution=spec.in_resolution)
        params[spec.name] = b.params
    best = max(params, key=lambda n: params[n])
    ok = None if answer is None else str(answer).strip() == best
    return _report(ok, f"{best} has the most parameters ({params[best]:,})" if ok else
                   "which block has the most parameters?", "1x1 convs cost C_in x C_out: look for wide in and out")


def _part_macs(block, part: str) -> int:
    row = block.part(part)
    assert row is not None, f"the block has no {part}"
    return row.macs


def check_depthwise_kernel_ratio(answer: float | None, kernel_from: int = 3, kernel_to: int = 5) -> bool:
    """Notebook 01, exercise 3: how many times the depthwise conv's MACs grow from k=3 to k=5."""
    a = _part_macs(block_count(40, 40, 6, kernel_from, resolution=28), "depthwise")
    b = _part_macs(block_count(40, 40, 6, kernel_to, resolution=28), "depthwise")
    ok = _close(answer, b / a, 0.01)
    return _report(ok, f"depthwise MACs grow {b / a:.3f}x = ({kernel_to}/{kernel_from})^2" if ok else
                   f"depthwise MACs from k={kernel_from} to k={kernel_to}?", "k x k multiply-adds per output value")


def check_stage_costs(most_params: str | None, most_macs: str | None, model: str = "b0") -> bool:
    """Notebook 02, exercise 1: the stages ("stage1".."stage9") with the most parameters and the most MACs."""
    stages = count(model).stages
    p = max(stages, key=lambda s: s.params).name
    m = max(stages, key=lambda s: s.macs).name
    if most_params is None or most_macs is None:
        return _report(None, "the stages with the most parameters and the most MACs")
    ok = (most_params, most_macs) == (p, m)
    return _report(ok, f"most parameters: {p}; most MACs: {m}",
                   "parameters grow with channels^2, MACs with channels^2 x resolution^2")


def check_rows_changed(answer, resolution: int = 256) -> bool:
    """Notebook 02, exercise 2: which Table 1 rows (stage numbers 1-9) change at another input resolution?"""
    base = ee.stages(ee.resolve("b0"))
    other = ee.stages(ee.resolve("b0", resolution=resolution))
    changed = {a.stage for a, b in zip(base, other) if a != b}
    ok = None if answer is None else set(answer) == changed
    return _report(ok, f"stages {sorted(changed)} change (only their resolution column)" if ok else
                   "which rows change?", "every stage sees a scaled copy of the input")


def check_head_share(answer: float | None) -> bool:
    """Notebook 02, exercise 3: the fraction of B0's parameters in the head (stage 9 conv) plus the classifier."""
    model = ee.build("b0")
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for m in (model.head, model.classifier) for p in m.parameters())
    ok = _close(answer, head / total, 0.02)
    return _report(ok, f"head + classifier hold {head:,} of {total:,} parameters ({head / total:.1%})" if ok else
                   "what fraction of B0's parameters sit in the head and the classifier?",
                   "320 x 1280 + 1280 x 1000, plus BN and bias")


def check_gpipe_ratio(answer: float | None) -> bool:
    """Notebook 03, exercise 5: GPipe's parameters (Table 2: 556M) over B7's exact count."""
    ratio = 556e6 / count("b7").params
    ok = _close(answer, ratio, 0.02)
    return _report(ok, f"GPipe has {ratio:.1f}x B7's parameters (the paper: 8.4x fewer)" if ok else
                   "how many times B7's parameters does GPipe have?", "Table 2: GPipe 556M")


def check_furthest_member(answer: str | None) -> bool:
    """Notebook 03, exercise 3: the released member (b1..b7) with the smallest MACs ratio released / formula."""
    ratios = {f"b{n}": count(f"b{n}").macs / count(phi=n).macs for n in range(1, 8)}
    worst = min(ratios, key=lambda n: ratios[n])
    ok = None if answer is None else str(answer).strip().lower() == worst
    return _report(ok, f"{worst.upper()} is furthest below the formula ({ratios[worst]:.2f} of its MACs)" if ok else
                   "which released member is furthest from the formula?", "the 'MACs ratio' column")


def check_initial_loss(answer: float | None, classes: int = 4) -> bool:
    """Notebook 05: the cross-entropy of an untrained classifier over ``classes`` classes (uniform guess)."""
    expected = math.log(classes)
    ok = _close(answer, expected, 0.02)
    return _report(ok, f"a uniform guess over {classes} classes has loss ln {classes} = {expected:.3f}" if ok else
                   f"what loss does an untrained {classes}-class model start at?", "-log of the probability of the "
                   "right class")


def check_elastic_macs_per_param(answer: str | None) -> bool:
    """Notebook 07: which corner of the elastic network's box has the most multiply-adds per parameter?"""
    from effnet_edu.lab.data import CLASSES
    from effnet_edu.lab.families import Point, macs, params

    corners = {"smallest": (1, 1, 64), "largest": (2, 2, 128), "widest at 64 px": (2, 1, 64),
               "deepest at 64 px": (1, 2, 64), "C0 at 128 px": (1, 1, 128)}
    ratio = {name: macs(Point("effnet", w, d, r), len(CLASSES)) / params(Point("effnet", w, d, r), len(CLASSES))
             for name, (w, d, r) in corners.items()}
    best = max(ratio, key=ratio.__getitem__)
    ok = None if answer is None else str(answer).strip().lower() == best.lower()
    if not ok:  # the answer stays hidden until it is found
        return _report(ok, f"which of {', '.join(corners)} has the most MACs per parameter?",
                       "which multiplier adds multiply-adds without adding weights?")
    table = ", ".join(f"{name} {value:.0f}" for name, value in ratio.items())
    return _report(ok, f"{best!r} has the most MACs per parameter ({table})")


# -- notebook 08: latency and cost ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _eager_traffic(network: str) -> tuple[int, int]:
    """(multiply-adds, bytes moved) of one network at its Table 2 / torchvision resolution, counted on meta."""
    import torch
    import torchvision

    from effnet_edu.latency import traffic

    with torch.device("meta"):
        if network.startswith("resnet"):
            model, resolution = getattr(torchvision.models, network)(), 224
        else:
            model, resolution = ee.build(network), ee.resolve(network).resolution
    rows = traffic(model, resolution)
    return sum(r.macs for r in rows), sum(r.bytes_moved for r in rows)


def check_macs_ratio(answer: float | None, big: str = "resnet152", small: str = "b1") -> bool:
    """Notebook 08, exercise 1: how many times the multiply-adds of ``small`` does ``big`` need (one image)?"""
    ratio = _eager_traffic(big)[0] / _eager_traffic(small)[0]
    ok = _close(answer, ratio, 0.05)
    return _report(ok, f"{big} needs {ratio:.1f}x the multiply-adds of {small}" if ok else
                   f"how many times the multiply-adds of {small} does {big} need?",
                   "count(...).macs for ours; torch.utils.flop_counter (halved) or latency.traffic for the ResNet")


def check_bytes_ratio(answer: float | None, big: str = "resnet152", small: str = "b1") -> bool:
    """Notebook 08, exercise 2: how many times the bytes of ``small`` does ``big`` move, as eager PyTorch runs it?"""
    ratio = _eager_traffic(big)[1] / _eager_traffic(small)[1]
    ok = _close(answer, ratio, 0.05)
    return _report(ok, f"{big} moves {ratio:.2f}x the bytes of {small}: far closer to the latency ratio than the "
                       "multiply-adds are" if ok else f"how many times the bytes of {small} does {big} move?",
                   "sum(r.bytes_moved for r in latency.traffic(model, resolution))")


def check_gain_per_doubling(answer: float | None, start: str = "b6", end: str = "b7") -> bool:
    """Notebook 08, exercise 3: Table 2's top-1 gain (points) per doubling of FLOPS from ``start`` to ``end``."""
    from effnet_edu.paper import TABLE2

    a, b = TABLE2[f"EfficientNet-{start.upper()}"], TABLE2[f"EfficientNet-{end.upper()}"]
    assert a.flops and b.flops
    gain = (b.top1 - a.top1) / math.log2(b.flops / a.flops)
    ok = _close(answer, gain, 0.1)
    return _report(ok, f"{start.upper()} -> {end.upper()}: {gain:.2f} points of top-1 per doubling of FLOPS" if ok
                   else f"top-1 points per doubling of FLOPS from {start.upper()} to {end.upper()}?",
                   "(top1_end - top1_start) / log2(FLOPS_end / FLOPS_start)")


# -- notebook 09: transfer learning -----------------------------------------------------------------------------

def check_probe_params(answer: float | None, model: str = "lite0", classes: int = 16) -> bool:
    """Notebook 09, exercise 1: how many parameters a linear probe (``--freeze-backbone``) trains: the classifier's
    head_channels x classes weights plus classes biases, counted on the built model with its backbone frozen."""
    from effnet_edu.train.transfer import freeze_backbone

    net = ee.build(model, num_classes=classes)
    freeze_backbone(net)
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in net.parameters())
    ok = _close(answer, trained, 1e-9)  # a count: exact
    return _report(ok, f"the probe trains {trained:,} of {model}'s {total:,} parameters ({trained / total:.2%})" if ok
                   else f"how many parameters does --freeze-backbone train in {model} with {classes} classes?",
                   f"{net.config.head_channels} features x {classes} classes, plus the biases")


def check_transfer_gain(answer: float | None, per_class: int = 10) -> bool:
    """Notebook 09, exercise 2: how many percentage points the ImageNet initialisation adds to the test accuracy
    over training from scratch at ``per_class`` images per class (the stored ``lab transfer`` results)."""
    from effnet_edu.lab.transfer import curves

    table = {init: dict(points) for init, points in curves().items()}
    if per_class not in table.get("imagenet", {}) or per_class not in table.get("scratch", {}):
        sizes = sorted(set(table.get("imagenet", {})) & set(table.get("scratch", {})))
        return _report(False, f"the stored results have no runs at {per_class} images per class (they have "
                              f"{', '.join(map(str, sizes)) or 'none'})")
    gain = 100 * (table["imagenet"][per_class] - table["scratch"][per_class])
    ok = _close(answer, gain, 0.05)
    if ok is False and isinstance(answer, (int, float)):
        ok = abs(answer - gain) <= 0.5  # half a point either way: read off a plot
    return _report(ok, f"at {per_class} images per class, ImageNet weights add {gain:+.1f} points" if ok else
                   f"how many points does ImageNet add at {per_class} images per class?",
                   "imagenet minus scratch, in percentage points")
# -- notebook 10: the baseline search (Section 4) ----------------------------------------------------------------

def check_tie_ratio(answer: float | None, macs_ratio: float = 2.0, w: float = -0.07) -> bool:
    """Notebook 10: how many times as accurate must a network with ``macs_ratio`` times the target's MACs be to
    tie, under Section 4's reward, with one exactly at the target?"""
    from effnet_edu.lab.search import reward

    # reward(a, r T, T) = reward(1, T, T) = 1  <=>  a = 1 / reward(1, r T, T)
    expected = 1.0 / reward(1.0, macs_ratio, 1.0, w)
    ok = _close(answer, expected, 0.002)
    return _report(ok, f"{macs_ratio:g}x the MACs needs {expected:.4f}x the accuracy to tie at w = {w:g}" if ok else
                   f"how much more accurate must a network with {macs_ratio:g}x the MACs be?",
                   "set ACC x (r T / T)^w equal to 1 x (T / T)^w and solve for ACC")


def check_choice_prediction(answer: str | None, target: float | None = None, w: float | None = None,
                            w_above: float | None = None) -> bool:
    """Notebook 10: does the stored search's chosen network get "cheaper", stay the "same" or get "costlier" when
    the reward's T, w (or MnasNet's w above T) change from the paper's?"""
    from effnet_edu.lab import search

    stored = search.load()
    entries = [e for e in stored["candidates"] if not e["c0"]]
    before = search.choose(entries, search.TARGET, search.PAPER_W)
    after = search.choose(entries, search.TARGET if target is None else target,
                          search.PAPER_W if w is None else w, w_above)
    truth = "same" if after["name"] == before["name"] else "cheaper" if after["macs"] < before["macs"] else "costlier"
    if answer is None:  # an exercise: do not give the answer away before a prediction is written
        return _report(None, "write \"cheaper\", \"same\" or \"costlier\" first")
    ok = str(answer).strip().lower() == truth
    return _reveal(ok, f"the choice is the {truth} network: {before['macs'] / 1e6:.2f}M -> {after['macs'] / 1e6:.2f}M "
                       f"MACs, validation accuracy {before['val_accuracy']:.3f} -> {after['val_accuracy']:.3f}")
