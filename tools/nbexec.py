"""Regenerate and execute paired notebooks, one way: the jupytext .py is the source, the .ipynb the result.

    python tools/nbexec.py notebooks/scripts/02_b0_baseline.py [more.py ...]   # writes notebooks/02_b0_baseline.ipynb

Where the .ipynb goes is jupytext's pairing, read the way JupyterLab's jupytext reads it: ``notebooks/jupytext.toml``
says ``ipynb,scripts//py:percent``, so ``notebooks/scripts/NAME.py`` pairs with ``notebooks/NAME.ipynb`` (the sources
sit in a subfolder so that JupyterLab lists each notebook once). A source beside its notebook is refused with the
command that moves it.

Why not ``jupytext --sync``: it picks the side by modification time and silently overwrote edits after a git
checkout (it compares modification times, which git does not preserve). Why not plain ``nbconvert --execute``:
nbclient can wait forever on cells that draw into an Output widget, so every cell gets a finite timeout. Timing
metadata is not recorded and widget model ids are renumbered in order, so re-executing an unchanged notebook gives
identical bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.config import load_jupytext_config, normalize_formats
from jupytext.paired_paths import InconsistentPath, full_path, long_form_multiple_formats, paired_paths
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


class PairingError(ValueError):
    """A source that jupytext would not pair with the notebook we would write (one line, says how to fix it)."""

    def __init__(self, message: str, expected: Path | None = None):
        super().__init__(message)
        self.expected = expected  # where the source belongs, when that is the problem


def pairing(py_path: Path) -> tuple[str, Path]:
    """The jupytext formats that apply to ``py_path`` (the nearest jupytext.toml, as JupyterLab finds it) and the
    .ipynb they pair it with. Refuses a source outside the folder the formats name, or whose own header names
    other formats (jupytext lets the header win, so Lab would pair it elsewhere)."""
    config = load_jupytext_config(str(py_path))
    declared = jupytext.read(py_path).metadata.get("jupytext", {}).get("formats") if py_path.exists() else None
    if config is not None and config.formats:
        # the paired formats that apply at this place; none for a source left beside its notebook: then the first
        # ones, so that the error below says where it belongs
        formats = config.default_formats(str(py_path)) or normalize_formats(config.formats)[0]
    else:
        formats = declared
    if not formats:
        raise PairingError(f"{py_path}: no jupytext pairing applies (no jupytext.toml above it, no formats in its "
                           f"header)")
    long_forms = long_form_multiple_formats(formats)
    if not {".py", ".ipynb"} <= {f["extension"] for f in long_forms}:
        raise PairingError(f"{py_path}: the jupytext formats {formats!r} do not pair a .py with an .ipynb")
    script = next(f for f in long_forms if f["extension"] == ".py")
    try:
        paths = paired_paths(str(py_path), script, formats)  # what jupytext's contents manager computes in Lab
    except InconsistentPath:
        where = Path(full_path(str(py_path.with_suffix("")), script))
        raise PairingError(
            f"{py_path}: sources live in {where.parent}/ ({formats!r}), not beside the notebook; move it with: "
            f"git mv {py_path} {where}", expected=where
        ) from None
    if declared is not None and declared != formats:
        raise PairingError(
            f"{py_path}: its header pairs {declared!r} but the jupytext config says {formats!r}; fix the header with: "
            f"sed -i 's|^#     formats: {declared}$|#     formats: {formats}|' {py_path}"
        )
    ipynb = Path(next(path for path, fmt in paths if fmt["extension"] == ".ipynb"))
    return formats, ipynb


def execute(py_path: Path, timeout: int = 600) -> Path:
    py_path = py_path.resolve()
    formats, out = pairing(py_path)
    nb = jupytext.read(py_path)
    nb.metadata.setdefault("jupytext", {})["formats"] = formats
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(out.parent)}},  # the folder JupyterLab runs the notebook in
    )
    client.execute()
    out.write_text(canonicalize(nb))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="jupytext py:percent files")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    for path in args.notebooks:  # check every path before executing any: a misplaced source fails in a second
        if path.suffix != ".py":
            parser.error(f"{path}: give the paired .py file (the source); the .ipynb is regenerated from it")
        try:
            pairing(path)
        except PairingError as err:
            if not path.is_file():
                parser.error(f"{path}: no such file" + (f"; did you mean {err.expected}?" if err.expected else ""))
            parser.error(str(err))
        if not path.is_file():
            parser.error(f"{path}: no such file")
    for path in args.notebooks:
        print(f"executing {path} ...", flush=True)
        print(f"  wrote {execute(path, args.timeout)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
