"""Regenerate and execute paired notebooks, one way: the jupytext .py is the source, the .ipynb the result.

    python tools/nbexec.py notebooks/02_baseline.py [more.py ...]

Why not ``jupytext --sync``: it picks the side by modification time and silently overwrote edits after a git
checkout (see shared/notebook-testing.md). Why not plain ``nbconvert --execute``: nbclient can wait forever on
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


def canonical_widget_ids(text: str) -> str:
    """Replace random 32-hex widget model ids with stable ones, numbered in order of first appearance."""
    ids: dict[str, str] = {}

    def sub(match):
        return ids.setdefault(match.group(0), f"{len(ids) + 1:032x}")

    return re.sub(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", sub, text)


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
    text = nbformat.writes(nb)
    out.write_text(canonical_widget_ids(text) + ("" if text.endswith("\n") else "\n"))
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
