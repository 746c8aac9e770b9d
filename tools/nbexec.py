"""Regenerate and execute paired notebooks, one way: the jupytext .py is the source, the .ipynb the result.

    python tools/nbexec.py notebooks/02_baseline.py [more.py ...]

Why not ``jupytext --sync``: it picks the side by modification time and silently overwrote edits after a git
checkout (it compares modification times, which git does not preserve). Why not plain ``nbconvert --execute``: nbclient can wait forever on
cells that draw into an Output widget, so every cell gets a finite timeout. Timing metadata is not recorded and
widget model ids are renumbered in order, so re-executing an unchanged notebook gives identical bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def canonicalize(nb) -> str:
    """Stable bytes for an executed notebook: cell ids numbered in order; random 32-hex widget model ids
    renumbered by a walk that starts at the models the outputs display and follows each model's references
    (children, layout, style) in a fixed order; the stored widget state sorted by the new ids."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    text = nbformat.writes(nb)
    data = json.loads(text)
    state = data.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = state.get("state", {})
    ids: dict[str, str] = {}
    queue = HEX_ID.findall(json.dumps([c.get("outputs", []) for c in data["cells"]]))
    # models nothing displays (closed or orphaned) come last, in the order of their content
    leftovers = sorted(models, key=lambda k: json.dumps(models[k], sort_keys=True))
    while queue or leftovers:
        model_id = queue.pop(0) if queue else leftovers.pop(0)
        if model_id in ids:
            continue
        ids[model_id] = f"{len(ids) + 1:032x}"
        queue += HEX_ID.findall(json.dumps(models.get(model_id, {}), sort_keys=True))
    data = json.loads(HEX_ID.sub(lambda m: ids.get(m.group(0), m.group(0)), text))
    state = data.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    if "state" in state:
        state["state"] = dict(sorted(state["state"].items()))
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def execute(py_path: Path, timeout: int = 600) -> Path:
    py_path = py_path.resolve()
    nb = jupytext.read(py_path)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(py_path.parent)}},
    )
    client.execute()
    out = py_path.with_suffix(".ipynb")
    out.write_text(canonicalize(nb))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="jupytext py:percent files")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if path.suffix != ".py":
            parser.error(f"{path}: give the paired .py file (the source); the .ipynb is regenerated from it")
        print(f"executing {path} ...", flush=True)
        print(f"  wrote {execute(path, args.timeout)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
