"""What the fast loop leaves out: every notebook cell run by nbval (a notebook runs as a whole, and together they
take minutes) and the real-browser tests (they start JupyterLab and Voila) are marked ``slow``, like the single
tests marked in their files. ``./dev test -m "not slow"`` is the fast loop; CI (``./dev test``) runs everything."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if ".ipynb::" in item.nodeid or item.nodeid.startswith("tests/browser/"):
            item.add_marker(pytest.mark.slow)
