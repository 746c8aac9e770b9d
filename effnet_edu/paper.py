"""The paper's ImageNet results as data: Table 2 (accuracy, parameters, FLOPS) and Table 4 (CPU latency).

Tan & Le, *EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks*, ICML 2019
(arXiv:1905.11946), Section 5.2. The numbers are copied as the paper prints them (rounded: "5.3M", "0.39B"); the
exact counts of our networks come from ``effnet_edu.accounting`` (B0 has 5,288,548 parameters and 0.386B
multiply-adds), and ``docs/paper-facts.md`` shows the same tables for reading (a test keeps the two equal).

The paper's "FLOPS" are multiply-adds (one multiply-add = one FLOP); a profiler that counts 2 FLOPs per
multiply-add reports twice these. Figures 1 and 5 plot Table 2's top-1 against parameters and against FLOPS.

    >>> from effnet_edu.paper import TABLE2
    >>> b7 = TABLE2["EfficientNet-B7"]
    >>> b7.top1, b7.params, b7.flops            # Section 5.2: "84.3% top1 accuracy with 66M parameters and 37B FLOPS"
    (84.3, 66000000.0, 37000000000.0)
"""

from __future__ import annotations

from typing import NamedTuple


class Table2Row(NamedTuple):
    """One row of Table 2: ImageNet top-1 (%), parameters and FLOPS (multiply-adds) as the paper rounds them."""

    model: str
    top1: float  # ImageNet validation top-1, percent
    params: float  # parameters (Table 2 prints "5.3M": 5.3e6)
    flops: float | None  # multiply-adds ("0.39B": 0.39e9); None where the table gives none (GPipe)
    member: str | None = None  # our name for an EfficientNet row ("b0".."b7"), None for the comparison models


# Table 2 of the paper. The comparison rows are those the paper sets beside each EfficientNet at similar accuracy
# (the ones repeated in docs/paper-facts.md). Top-5 is in Table 2 as well; only top-1 is plotted in Figures 1/5.
_ROWS = (
    Table2Row("EfficientNet-B0", 77.1, 5.3e6, 0.39e9, "b0"),
    Table2Row("EfficientNet-B1", 79.1, 7.8e6, 0.70e9, "b1"),
    Table2Row("EfficientNet-B2", 80.1, 9.2e6, 1.0e9, "b2"),
    Table2Row("EfficientNet-B3", 81.6, 12e6, 1.8e9, "b3"),
    Table2Row("EfficientNet-B4", 82.9, 19e6, 4.2e9, "b4"),
    Table2Row("EfficientNet-B5", 83.6, 30e6, 9.9e9, "b5"),
    Table2Row("EfficientNet-B6", 84.0, 43e6, 19e9, "b6"),
    Table2Row("EfficientNet-B7", 84.3, 66e6, 37e9, "b7"),
    Table2Row("ResNet-50", 76.0, 26e6, 4.1e9),
    Table2Row("DenseNet-169", 76.2, 14e6, 3.5e9),
    Table2Row("ResNet-152", 77.8, 60e6, 11e9),
    Table2Row("Inception-v3", 78.8, 24e6, 5.7e9),
    Table2Row("Xception", 79.0, 23e6, 8.4e9),
    Table2Row("ResNeXt-101", 80.9, 84e6, 32e9),
    Table2Row("SENet", 82.7, 146e6, 42e9),
    Table2Row("NASNet-A", 82.7, 89e6, 24e9),
    Table2Row("AmoebaNet-C", 83.5, 155e6, 41e9),
    Table2Row("GPipe", 84.3, 556e6, None),  # the table gives GPipe no FLOPS
)
TABLE2: dict[str, Table2Row] = {row.model: row for row in _ROWS}
EFFICIENTNETS: tuple[Table2Row, ...] = tuple(r for r in _ROWS if r.member)
COMPARISONS: tuple[Table2Row, ...] = tuple(r for r in _ROWS if not r.member)


class Table4Row(NamedTuple):
    """Table 4: mean inference latency over 20 runs, batch 1, on one core of a Xeon CPU (Section 5.2)."""

    model: str
    top1: float
    seconds: float


# Table 4: two pairs at similar accuracy; the speedups the text gives are 5.7x (B1 vs ResNet-152) and 6.1x
# (B7 vs GPipe), i.e. the ratios of these latencies rounded.
TABLE4: dict[str, Table4Row] = {
    r.model: r for r in (
        Table4Row("ResNet-152", 77.8, 0.554),
        Table4Row("EfficientNet-B1", 79.1, 0.098),
        Table4Row("GPipe", 84.3, 19.0),
        Table4Row("EfficientNet-B7", 84.3, 3.1),
    )
}
TABLE4_RUNS = 20  # "average latency over 20 runs"
SPEEDUP_B1_VS_RESNET152 = 5.7  # Section 5.2: "EfficientNet-B1 runs 5.7x faster than the widely used ResNet-152"
SPEEDUP_B7_VS_GPIPE = 6.1  # Section 5.2: "EfficientNet-B7 runs about 6.1x faster than GPipe"
