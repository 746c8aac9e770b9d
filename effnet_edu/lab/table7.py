"""Figure 7 / Table 7 (Section 6) on the lab's dataset: do compound-scaled models look at the object?

The models are ``fig8``'s phi = 1 set (seed 0): C0, and C0 scaled by depth only, width only, resolution only and
by the compound rule, all at the same multiply-adds. For every test image the classic CAM of the *true* class
(Zhou et al., 2016; ``effnet_edu.cam.class_activation_map``'s formula) is upsampled to the native 128 px and
scored against the object's mask with ``effnet_edu.cam.mean_localisation``: the pointing game (is the maximum on
the object?), the share of the map's energy on the object, and IoU at half the maximum.

**The control.** A model's CAM lives on its last feature map, ceil(r / 32) cells a side: 2x2 at 64 px, 3x3 at
74-96 px. A finer grid alone can localise better, which is not what Figure 7 is about. So every map is scored
twice: as is, and first average-pooled to the coarsest grid of the set (2x2) and then upsampled ("same grid").
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..cam import classic_cam, mean_localisation, scale_maps
from .data import SIZE
from .train import RECIPE, Recipe, normalise, resized, split

ROWS = ("baseline", "depth", "width", "resolution", "compound")


def table7_models(entries: list[dict]) -> dict[str, dict]:
    """The five Table 7 rows among the stored entries (``fig8``, seed 0), by role."""
    fig8 = [e for e in entries if "fig8" in e["experiments"] and e["seed"] == 0 and e["family"] == "effnet"]
    roles = {}
    for e in fig8:
        changed = [k for k in ("width", "depth") if e[k] != 1.0] + (["resolution"] if e["resolution"] != 64 else [])
        role = "baseline" if not changed else changed[0] if len(changed) == 1 else "compound"
        roles[role] = e
    return {r: roles[r] for r in ROWS if r in roles}


@torch.no_grad()
def cam_maps(model, images_uint8: torch.Tensor, labels: torch.Tensor, grid: int | None = None) -> torch.Tensor:
    """Classic CAMs of the true classes, (B, 128, 128) in [0, 1]; ``grid`` pools the raw map to grid x grid first."""
    model.eval()
    features = model.forward_features(normalise(images_uint8))  # (B, C, h, w)
    maps, raw = classic_cam(features, model.classifier, labels.tolist(), (SIZE, SIZE))  # raw: (B, h, w)
    if grid is None or raw.shape[-1] == grid:
        return maps
    return scale_maps(F.adaptive_avg_pool2d(raw[:, None], grid)[:, 0], (SIZE, SIZE))


def score(model, resolution: int, recipe: Recipe = RECIPE, grid: int | None = None, batch: int = 250) -> dict:
    images, labels, masks = resized("test", resolution, recipe), split("test", recipe)[2], split("test", recipe)[1]
    totals = {"pointing": 0.0, "energy": 0.0, "iou": 0.0}
    for i in range(0, len(images), batch):
        part = mean_localisation(cam_maps(model, images[i:i + batch], labels[i:i + batch], grid), masks[i:i + batch])
        for k in totals:
            totals[k] += part[k] * len(images[i:i + batch])
    return {k: round(v / len(images), 4) for k, v in totals.items()}


def score_table7(out: Path, recipe: Recipe = RECIPE) -> list[dict]:
    import json

    from .store import load_model

    entries = [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*.json"))]
    rows = table7_models(entries)
    if not rows:
        return []
    grid = min(-(-e["resolution"] // 32) for e in rows.values())
    table = []
    for role, e in rows.items():
        model = load_model(e["name"], Path(out))
        table.append({"model": role, "name": e["name"], "macs": e["macs"], "accuracy": e["accuracy"],
                      "feature_map": -(-e["resolution"] // 32), **score(model, e["resolution"], recipe),
                      "same_grid": {"grid": grid, **score(model, e["resolution"], recipe, grid)}})
    return table
