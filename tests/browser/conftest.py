"""Fixtures for the real-browser tests: Debian's Chromium driven by Playwright, JupyterLab and Voila servers.

Facts these fixtures design around (measured on this project's 2-core CI machines, Debian 12, November 2026):
- Playwright's own browser download does not work offline: we launch /usr/bin/chromium (``./dev test`` installs
  it with apt-get) and skip, saying why, only when it is absent.
- Each server runs on loopback with a token, on a temporary copy of notebooks/, in its own process session and
  with its own JUPYTER_* directories (no user settings or workspaces leak in), the news toast turned off.
- Cleanup always happens, even on failure: POST /api/shutdown (that also stops the kernels), then kill the
  process group.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT = 30  # seconds; Lab is ready in ~2 s, Voila in ~1.3 s on 2 cores


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so a fixture can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options, pointed at Debian's Chromium (never ``playwright install``)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's Chromium (apt-get install -y chromium; ./dev test does)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS, "timeout": 30_000}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def page(page):
    page.set_default_timeout(30_000)  # every wait is bounded
    return page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str  # base URL, no trailing slash
    token: str
    process: subprocess.Popen
    log: Path
    root: Path  # the temporary notebook folder it serves

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request(f"{self.url}{path}{sep}token={self.token}", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _environment(home: Path) -> dict:
    """Private Jupyter directories, so the test never reads or writes the user's config, workspaces or runtime."""
    env = dict(os.environ)
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTERLAB_WORKSPACES_DIR": home / "workspaces",
        "JUPYTERLAB_SETTINGS_DIR": home / "settings",
        "IPYTHONDIR": home / "ipython",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    # The venv's kernelspec and labextensions live under sys.prefix; keep them visible.
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    # The news/update toast covers the notebook otherwise.
    notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.pop("JUPYTER_TOKEN", None)
    return env


def _wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if path:
                server.api(path, timeout=2)
            else:  # Voila: each GET of a page runs the notebook, so only wait for the port
                socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=1).close()
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise TimeoutError(f"server not ready after {SERVER_START_TIMEOUT} s:\n{server.log_tail()}")


def _stop(server: Server, shutdown_api: bool) -> None:
    """Polite shutdown first (it also stops the kernels), then the whole process group, whatever happened."""
    if shutdown_api and server.process.poll() is None:
        try:
            server.api("/api/shutdown", method="POST", timeout=5)
        except (OSError, urllib.error.URLError):
            pass
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.process.pid, sig)  # the server and its kernels share this group (start_new_session)
        except ProcessLookupError:
            break
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    # Kernels started by the server are in its session too; give the group a moment to vanish.
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def notebook_copy(tmp_path_factory) -> Path:
    """A temporary copy of notebooks/, so servers never write checkpoints or outputs into the repository."""
    root = tmp_path_factory.mktemp("notebooks")
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(path, root / path.name)
    return root


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _start(cmd: list[str], home: Path, root: Path, token: str, port: int) -> Server:
    log = home / "server.log"
    env = _environment(home)
    handle = log.open("w")
    process = subprocess.Popen(cmd, cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    handle.close()
    return Server(f"http://127.0.0.1:{port}", token, process, log, root)


@pytest.fixture
def lab(notebook_copy, tmp_path):
    token, port = secrets.token_hex(16), free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_copy}",
           "--ServerApp.port_retries=0", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    server = _start(cmd, tmp_path / "lab", notebook_copy, token, port)
    try:
        _wait_ready(server, "/api/status")
        yield server
    finally:
        _stop(server, shutdown_api=True)


def _voila(notebook_copy: Path, tmp_path: Path, name: str, source: str):
    """Voila serving a one-cell dashboard, written at test time into the temporary folder (so it is not one more
    notebook to keep executed and in sync)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook_copy / name)
    token, port = secrets.token_hex(16), free_port()
    cmd = [sys.executable, "-m", "voila", name, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--VoilaExecutor.timeout=60", f"--token={token}", "--Voila.port_retries=0"]
    server = _start(cmd, tmp_path / "voila", notebook_copy, token, port)
    try:
        _wait_ready(server, "")
        yield server
    finally:
        _stop(server, shutdown_api=False)


@pytest.fixture
def voila(notebook_copy, tmp_path):
    """The ScalingExplorer as a Voila dashboard."""
    yield from _voila(notebook_copy, tmp_path, "scaling_dashboard.ipynb",
                      "from effnet_edu_widgets import ScalingExplorer\nScalingExplorer(phi=1.0)")


@pytest.fixture
def voila_cam(notebook_copy, tmp_path):
    """The CamExplorer (real Lite weights, a bundled photo) as a Voila dashboard."""
    yield from _voila(notebook_copy, tmp_path, "cam_dashboard.ipynb",
                      "import torch\ntorch.set_num_threads(1)\n"
                      "from effnet_edu_widgets import CamExplorer\nCamExplorer(photo='chelsea')")
