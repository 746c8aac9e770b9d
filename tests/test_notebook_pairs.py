"""Every stored notebook is executed, paired with its jupytext .py, and in sync with it.

nbval never compares a cell that has no stored output, so an unexecuted notebook would "pass" while proving
nothing (nbval compares only cells that have a stored output). These checks make that impossible.

The pairs sit in a subfolder (``notebooks/jupytext.toml``: ``ipynb,scripts//py:percent``, so
``notebooks/NAME.ipynb`` <-> ``notebooks/scripts/NAME.py``): with the .py beside it, JupyterLab (which opens a
jupytext .py as a notebook) listed every notebook twice. The pairing is computed here by jupytext itself, from the
same configuration file and with the same functions its JupyterLab contents manager uses."""

import functools
import importlib.util
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file
from jupytext.paired_paths import paired_paths

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "notebooks" / "jupytext.toml"
# course/dist/ is `python -m course build`'s output (student and autograder notebooks, no pairs), not a source.
NOTEBOOKS = sorted(p for folder in ("notebooks", "course") for p in (ROOT / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and "dist" not in p.relative_to(ROOT / folder).parts)
SOURCES = sorted((ROOT / "notebooks" / "scripts").glob("*.py"))


def _config_formats(path: Path = ROOT / "notebooks" / "00_example.ipynb") -> str | None:
    """The paired formats ``notebooks/jupytext.toml`` gives a file at ``path``."""
    return load_jupytext_configuration_file(str(CONFIG)).default_formats(str(path))


def _nearest_formats(path: Path) -> str | None:
    """The formats of the configuration file jupytext finds for ``path`` (nearest above it), as JupyterLab does."""
    found = find_jupytext_configuration_file(path.parent)
    return load_jupytext_configuration_file(found).default_formats(str(path)) if found else None


def _declared_formats(path: Path) -> str | None:
    return jupytext.read(path).metadata.get("jupytext", {}).get("formats")


def _pair(path: Path, formats: str) -> Path:
    """The .py that jupytext pairs with the notebook ``path`` under ``formats``."""
    return Path(next(p for p, fmt in paired_paths(str(path), "ipynb", formats) if fmt["extension"] == ".py"))


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@functools.cache
def _nbexec():
    spec = importlib.util.spec_from_file_location("nbexec", ROOT / "tools" / "nbexec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jupytext_config_pairs_notebooks_with_scripts_in_a_subfolder():
    formats = _config_formats()
    assert formats, f"{CONFIG.name} sets no formats"
    notebook = ROOT / "notebooks" / "00_example.ipynb"
    py = _pair(notebook, formats)
    assert py == ROOT / "notebooks" / "scripts" / "00_example.py", f"{formats!r} pairs {notebook.name} with {py}"
    assert dict(paired_paths(str(py), "py:percent", formats))[str(py)]["format_name"] == "percent"
    assert _config_formats(py) == formats  # the source's side finds the same pairing
    # JupyterLab's jupytext finds the nearest configuration file above a file: this one, for both sides of a pair
    # (not a pyproject.toml section or a user-wide file that would pair them differently)
    for folder in (ROOT / "notebooks", ROOT / "notebooks" / "scripts"):
        assert find_jupytext_configuration_file(folder) == str(CONFIG)


def test_no_notebook_source_sits_beside_the_notebooks():
    beside = sorted(p.name for p in (ROOT / "notebooks").glob("*.py"))
    assert not beside, (
        f"jupytext sources beside the notebooks ({beside}): JupyterLab lists each such notebook twice; "
        f"move them with git mv notebooks/NAME.py notebooks/scripts/NAME.py"
    )


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_every_source_has_its_notebook(py):
    notebook = ROOT / "notebooks" / f"{py.stem}.ipynb"
    source = py.relative_to(ROOT)
    assert notebook.exists(), f"{source} has no notebook: run python tools/nbexec.py {source}"
    # what tools/nbexec.py writes, by the same pairing
    assert _nbexec().pairing(py)[1] == notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_paired_and_in_sync(path):
    config = _nearest_formats(path)
    assert config, f"no jupytext configuration applies to {path.relative_to(ROOT)}"
    assert _declared_formats(path) == config, (
        f"{path.name} pairs {_declared_formats(path)!r}, the jupytext config {config!r}: run python tools/nbexec.py"
    )
    py = _pair(path, config)
    assert py.parent != path.parent, f"{path.name}'s pair would sit beside it, and JupyterLab would list it twice"
    assert py.exists(), f"{path.name} has no jupytext pair {py.relative_to(ROOT)}"
    assert _declared_formats(py) == config, (
        f"{py.relative_to(ROOT)}'s header pairs {_declared_formats(py)!r}, not {config!r} (the header wins over the "
        f"config, so JupyterLab would pair it elsewhere): fix its '#     formats:' line"
    )
    stored = nbformat.read(path, as_version=4)
    assert _sources(jupytext.read(py)) == _sources(stored), (
        f"{path.name} is out of sync with {py.name}: run python tools/nbexec.py {py.relative_to(ROOT)}"
    )


def _run_nbexec(path: Path, cwd: Path, monkeypatch, capsys) -> tuple[int, str]:
    """tools/nbexec.py's command line, run in this process (its checks come before any kernel starts)."""
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_:
        _nbexec().main([str(path.relative_to(cwd))])
    return exit_.value.code, capsys.readouterr().err


def test_nbexec_refuses_a_source_beside_its_notebook(tmp_path, monkeypatch, capsys):
    """A source in the old place (other branches still add notebooks/NAME.py) fails at once, with the move."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(CONFIG, tmp_path / "notebooks" / CONFIG.name)
    misplaced = tmp_path / "notebooks" / "07_new.py"
    shutil.copy(SOURCES[0], misplaced)
    code, err = _run_nbexec(misplaced, tmp_path, monkeypatch, capsys)
    assert code == 2 and "git mv notebooks/07_new.py notebooks/scripts/07_new.py" in err, err
    assert not (tmp_path / "notebooks" / "07_new.ipynb").exists()
    # the old path of a source that has moved: point at the new one
    code, err = _run_nbexec(tmp_path / "notebooks" / "08_gone.py", tmp_path, monkeypatch, capsys)
    assert code == 2 and "no such file; did you mean notebooks/scripts/08_gone.py?" in err, err


def test_nbexec_refuses_a_source_whose_header_pairs_elsewhere(tmp_path, monkeypatch, capsys):
    (tmp_path / "notebooks" / "scripts").mkdir(parents=True)
    shutil.copy(CONFIG, tmp_path / "notebooks" / CONFIG.name)
    moved = tmp_path / "notebooks" / "scripts" / "07_new.py"
    moved.write_text(SOURCES[0].read_text().replace(f"formats: {_config_formats()}", "formats: ipynb,py:percent"))
    code, err = _run_nbexec(moved, tmp_path, monkeypatch, capsys)
    assert code == 2 and "its header pairs 'ipynb,py:percent'" in err and "sed -i" in err, err


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
