"""The scaling lab: what scaling *buys*, measured at classroom scale (Sections 3.2, 3.3, 5.1 and 6 of the paper).

A generated dataset where depth, width and resolution each matter (``data``), three small network families and
the scaling multipliers that address them (``families``), one short training recipe (``train``), the paper's
experiments as data (``experiments``), the reproduction command (``run``), Table 7's CAM scores (``table7``),
the stored results (``store``), and transfer learning from the ImageNet Lite0 weights against training from
scratch (``transfer``: Section 5.3, Tables 5-6, in miniature).

    >>> from effnet_edu import lab
    >>> rows = lab.entries(experiment="fig3")        # the stored results of Figure 3's models
    >>> model = lab.load_model("effnet-w1-d1-r64-s0")  # C0, seed 0, from its stored checkpoint

Multipliers in the lab are relative to each family's baseline (C0 for EfficientNet: B0 x (0.25 width,
0.25 depth) at 64 px), so "width 2" means twice C0's width, as "w = 2" in Figure 3 means twice B0's.
"""

from .data import CLASSES, SIZE, make_dataset
from .experiments import Run, compound_point, grid, grid_points, match_macs, plan, scaled
from .families import BASES, Point, build_point, macs, params
from .store import RESULTS, entries, load_model, results
from .train import QUICK, RECIPE, Recipe, accuracy, resized, split, train_model

__all__ = [
    "BASES", "CLASSES", "QUICK", "RECIPE", "RESULTS", "SIZE", "Point", "Recipe", "Run", "accuracy", "build_point",
    "compound_point", "entries", "grid", "grid_points", "load_model", "macs", "make_dataset", "match_macs",
    "params", "plan", "resized", "results", "scaled", "split", "train_model",
]
