"""Every stored notebook is executed, paired with its jupytext .py, and in sync with it.

nbval never compares a cell that has no stored output, so an unexecuted notebook would "pass" while proving
nothing (nbval compares only cells that have a stored output). These checks make that impossible."""

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# course/dist/ is `python -m course build`'s output (student and autograder notebooks, no pairs), not a source.
NOTEBOOKS = sorted(p for folder in ("notebooks", "course") for p in (ROOT / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and "dist" not in p.relative_to(ROOT / folder).parts)


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_paired_and_in_sync(path):
    py = path.with_suffix(".py")
    assert py.exists(), f"{path.name} has no jupytext pair {py.name}: create it with jupytext --set-formats ipynb,py:percent"
    stored = nbformat.read(path, as_version=4)
    assert _sources(jupytext.read(py)) == _sources(stored), (
        f"{path.name} is out of sync with {py.name}: run python tools/nbexec.py {py.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_executed(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code"
    unexecuted = [c.source.splitlines()[0] for c in code if c.get("execution_count") is None]
    assert not unexecuted, f"{path.name} has unexecuted cells (first lines: {unexecuted[:3]}): run tools/nbexec.py"
    checked = [c for c in code if "nbval-check-output" in c.metadata.get("tags", [])
               or "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, f"{path.name} checks no cell output: tag deterministic cells nbval-check-output"
    empty = [c.source.splitlines()[0] for c in checked if not c.outputs]
    assert not empty, f"{path.name}: checked cells without stored output: {empty[:3]}"
