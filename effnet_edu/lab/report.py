"""The scaling lab's stored results as the paper's tables and figures: plain rows and fixed-format text (the
notebook plots them; nbval checks the text). Every function reads ``store.entries()`` unless given entries.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from .families import BASES
from .store import RESULTS
from .store import entries as stored_entries

ROLES = ("baseline", "depth", "width", "resolution", "compound")


def role(e: dict) -> str:
    """Which dimension a model scales relative to its family's baseline: one name, or "compound"."""
    changed = [k for k in ("depth", "width") if e[k] != 1.0]
    if e["resolution"] != BASES[e["family"]].resolution:
        changed.append("resolution")
    return "baseline" if not changed else changed[0] if len(changed) == 1 else "compound"


def by_point(rows: list[dict]) -> list[dict]:
    """Merge the seeds of each point: mean and standard deviation of the test accuracy, and the seeds' count."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in rows:
        groups[(e["family"], e["width"], e["depth"], e["resolution"])].append(e)
    merged = []
    for group in groups.values():
        acc = [e["accuracy"] for e in group]
        merged.append({**group[0], "seeds": len(group), "accuracy": statistics.fmean(acc),
                       "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                       "val_accuracy": statistics.fmean(e["val_accuracy"] for e in group)})
    return sorted(merged, key=lambda e: e["macs"])


def figure3(folder=RESULTS) -> dict[str, list[dict]]:
    """Figure 3's three curves: C0 and the points that scale one dimension, in order of MACs."""
    base = by_point(stored_entries(folder, "c0"))
    rows = stored_entries(folder, "fig3")
    return {dim: base + [e for e in by_point(rows) if role(e) == dim] for dim in ("width", "depth", "resolution")}


def figure4(folder=RESULTS) -> dict[tuple[float, float], list[dict]]:
    """Figure 4: width curves at each (depth, resolution multiplier) of the experiment."""
    points = {(e["width"], e["depth"], e["resolution"]) for e in stored_entries(folder, "fig4")}
    # every seed of a Figure 4 point (C0 also has the seeds of the c0 experiment)
    rows = by_point([e for e in stored_entries(folder, family="effnet")
                     if (e["width"], e["depth"], e["resolution"]) in points])
    curves: dict[tuple[float, float], list[dict]] = defaultdict(list)
    for e in rows:
        curves[(e["depth"], round(e["resolution"] / BASES["effnet"].resolution, 2))].append(e)
    return dict(sorted(curves.items()))


def comparison(family: str = "effnet", folder=RESULTS) -> dict[str, dict]:
    """Figure 8 / Table 3: baseline, depth-, width-, resolution-only and compound at matched MACs (seeds merged)."""
    experiment = "fig8" if family == "effnet" else "table3"
    rows = by_point(stored_entries(folder, experiment, family))
    return {role(e): e for e in rows}


def grid_search(folder=RESULTS) -> list[dict]:
    """Step 1: the trained grid points, best validation accuracy first."""
    rows = stored_entries(folder, "grid")
    return sorted(rows, key=lambda e: (-e["val_accuracy"], e["macs"]))


def step2(folder=RESULTS) -> list[dict]:
    return sorted(stored_entries(folder, "step2"), key=lambda e: e["macs"])


def _pm(e: dict) -> str:
    return f"{100 * e['accuracy']:5.1f}" + (f" +- {100 * e['std']:.1f}" if e.get("seeds", 1) > 1 else "       ")


def table(rows: list[dict], label=lambda e: e["name"]) -> str:
    head = f"{'model':<28}{'width':>7}{'depth':>7}{'res':>5}{'params':>10}{'MACs':>8}  {'test acc %':<14}"
    lines = [head, "-" * len(head)]
    for e in rows:
        lines.append(f"{label(e):<28}{e['width']:>7.3g}{e['depth']:>7.3g}{e['resolution']:>5}{e['params']:>10,}"
                     f"{e['macs'] / 1e6:>7.2f}M  {_pm(e)}")
    return "\n".join(lines)


def verdicts(folder=RESULTS) -> list[tuple[str, bool, str]]:
    """The paper's claims, each checked against the stored results: (claim, reproduced?, evidence)."""
    out = []
    c0 = by_point(stored_entries(folder, "c0"))[0]
    curves = figure3(folder)
    for dim, curve in curves.items():
        gains = [b["accuracy"] - a["accuracy"] for a, b in zip(curve, curve[1:])]
        rising = curve[-1]["accuracy"] > curve[0]["accuracy"]
        out.append((f"Figure 3: scaling {dim} alone improves accuracy", rising,
                    f"{100 * curve[0]['accuracy']:.1f}% -> {100 * curve[-1]['accuracy']:.1f}% at "
                    f"{curve[-1]['macs'] / c0['macs']:.1f}x MACs; steps "
                    + ", ".join(f"{100 * g:+.1f}" for g in gains)))
    for family in ("effnet", "mobilenetv2", "resnet"):
        rows = comparison(family, folder)
        if "compound" not in rows:
            continue
        best_single = max((rows[d] for d in ("depth", "width", "resolution") if d in rows), key=lambda e: e["accuracy"])
        margin = rows["compound"]["accuracy"] - best_single["accuracy"]
        noise = max(rows["compound"].get("std", 0.0), best_single.get("std", 0.0))
        out.append((f"Figure 8 / Table 3 ({family}): compound beats every single dimension at the same MACs",
                    margin > noise, f"compound {100 * rows['compound']['accuracy']:.1f}% vs best single "
                    f"({role(best_single)}) {100 * best_single['accuracy']:.1f}%: {100 * margin:+.1f} points"
                    + (f" (seed std up to {100 * noise:.1f})" if noise else " (one seed)")))
    best = grid_search(folder)[0]
    out.append(("Step 1: the grid's best point is the paper's (1.2, 1.1, 1.15)",
                tuple(best["coefficients"]) == (1.2, 1.1, 1.15),
                f"best by validation accuracy: alpha, beta, gamma = {tuple(best['coefficients'])}"))
    return out
