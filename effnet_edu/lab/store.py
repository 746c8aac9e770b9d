"""Reading the lab's stored results and checkpoints (what notebooks, widgets and assignments use)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .data import CLASSES
from .families import Point, build_point

# The stored results shipped with the package; EFFNET_EDU_LAB_RESULTS points notebooks and widgets at a folder
# written by `effnet-edu lab reproduce --out DIR` instead (your own reproduction).
RESULTS = Path(os.environ.get("EFFNET_EDU_LAB_RESULTS") or Path(__file__).resolve().parent / "results")


def results(folder: Path = RESULTS) -> dict:
    """The whole stored ``results.json``: recipe, environment, per-model entries, Table 7 scores."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no lab results in {folder}: run `effnet-edu lab reproduce` to make them")
    return json.loads(path.read_text())


def entries(folder: Path = RESULTS, experiment: str | None = None, family: str | None = None) -> list[dict]:
    """The per-model entries, optionally only one experiment's ("fig3", "grid", ...) or one family's."""
    rows = results(folder)["models"]
    return [e for e in rows if (experiment is None or experiment in e["experiments"])
            and (family is None or e["family"] == family)]


def load_model(name: str, folder: Path = RESULTS) -> torch.nn.Module:
    """A stored lab model by its name (``effnet-w1-d1-r64-s0``), float32, eval mode; ``model.entry`` is its row."""
    path = Path(folder) / "checkpoints" / f"{name}.pt"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.pt"))[:5]
        raise FileNotFoundError(f"no stored lab model {name!r} in {path.parent}; names look like {', '.join(known)}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    entry = blob["entry"]
    point = Point(entry["family"], entry["width"], entry["depth"], entry["resolution"])
    model = build_point(point, len(CLASSES))
    model.load_state_dict(blob["state_dict"])  # float16 on disk -> float32 parameters
    model.entry = entry
    return model.eval()
