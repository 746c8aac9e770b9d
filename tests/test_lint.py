"""The library and the widgets pass the linter (ruff) and the type checker (mypy) as configured in pyproject.toml.

Both are in the ``test`` extra; where one is not installed its test is skipped (say so, do not pass silently)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["effnet_edu", "widgets"]


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install -e '.[test]'")
    return subprocess.run([sys.executable, "-m", module, *args, *CHECKED], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ruff():
    result = run("ruff", "check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy():
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_version_string():
    """pyproject.toml declares no version of its own: setuptools reads effnet_edu.__version__."""
    import importlib.metadata
    import re

    import effnet_edu

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M) and 'attr = "effnet_edu.__version__"' in pyproject
    assert importlib.metadata.version("effnet-edu") == effnet_edu.__version__
