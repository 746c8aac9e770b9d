"""The explorers in a real browser: the ScalingExplorer in JupyterLab (notebook 03, Run All) and in Voila (a
one-cell dashboard), and the CamExplorer in Voila.

A key press on the phi slider must change what the page shows to the library's numbers for the new phi. The
expected numbers come from an independent oracle: the network ``effnet_edu.build`` makes for that phi, on the
meta device, its parameters counted with ``numel`` and its multiply-adds with PyTorch's ``FlopCounterMode``.
The key-press-to-update latency is measured and printed (not asserted: timings belong in benchmarks), and a
screenshot of each page is saved under artifacts/ (gitignored).

Run: ``pytest tests/browser -s`` (needs /usr/bin/chromium; ``./dev test`` installs it).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import effnet_edu as ee

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent: install Debian's Chromium (apt-get install -y chromium; ./dev test does)"),
]

PARAMS, MACS, RESOLUTION = ".effnet-params", ".effnet-macs", ".effnet-resolution"
PHI_HANDLE = ".effnet-phi .noUi-handle"
RENDER_TIMEOUT = 60_000  # ms: Run All imports torch and counts Table 2 (~10-25 s on 2 busy cores)


def oracle(phi: float) -> tuple[int, int]:
    """Params and multiply-adds of the network the library builds for phi (meta tensors: shapes only)."""
    with torch.device("meta"):
        model = ee.build(phi=phi).eval()
        r = model.config.resolution
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty(1, 3, r, r))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def shown(page, selector: str) -> int:
    """The exact integer a readout shows ("params 9,109,994 (9.11M)" -> 9109994)."""
    text = page.locator(selector).inner_text()
    match = re.search(r"\d{1,3}(?:,\d{3})+", text)
    assert match, f"no number in {selector}: {text!r}"
    return int(match.group(0).replace(",", ""))


def phi_shown(page) -> float:
    return float(page.locator(".effnet-phi .widget-readout").inner_text())


def press_and_time(page, key: str) -> float:
    """Press a key on the focused phi handle; seconds until the resolution readout (which changes at every phi
    step: it shows 224 * gamma^phi unrounded) shows a new value."""
    before = page.locator(RESOLUTION).inner_text()
    start = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText !== old; }",
        arg=[RESOLUTION, before], polling="raf", timeout=15_000,
    )
    return time.perf_counter() - start


def move_and_check(page, artifacts, name: str) -> dict:
    """The common part: check the first view, press ArrowRight (phi + 0.05) and End (phi = 7), check each time."""
    page.locator(PARAMS).filter(has_text=re.compile(r"\d,\d{3}")).wait_for(timeout=RENDER_TIMEOUT)
    phi = phi_shown(page)
    assert (shown(page, PARAMS), shown(page, MACS)) == oracle(phi)

    page.locator(PHI_HANDLE).focus()
    latencies = []
    for key in ("ArrowRight", "ArrowRight", "ArrowLeft", "ArrowRight"):
        latencies.append(press_and_time(page, key))
    phi = phi_shown(page)
    assert phi == pytest.approx(1.10)
    page.wait_for_timeout(200)  # let any in-flight update settle before reading both readouts
    assert (shown(page, PARAMS), shown(page, MACS)) == oracle(phi)

    latencies.append(press_and_time(page, "End"))
    assert phi_shown(page) == 7.0
    page.wait_for_timeout(200)
    assert (shown(page, PARAMS), shown(page, MACS)) == oracle(7.0)
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    ms = [round(1e3 * t) for t in latencies]
    print(f"\n{name}: key press to updated readout, ms: {ms} (median {sorted(ms)[len(ms) // 2]})")
    result = {"latency_ms": ms}
    (artifacts / f"{name}_latency.json").write_text(json.dumps(result))
    return result


@pytest.fixture
def screenshot_on_failure(page, artifacts, request):
    """Save what the page showed when a test failed (the screenshots diagnose most browser failures)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        page.screenshot(path=str(artifacts / f"{request.node.name}-failure.png"), full_page=True)


def test_jupyterlab_run_all_and_slider(page, lab, artifacts, screenshot_on_failure):
    start = time.perf_counter()
    page.goto(f"{lab.url}/lab/tree/03_compound_scaling.ipynb?reset&token={lab.token}")
    page.locator(".jp-NotebookPanel").first.wait_for()
    # Kernel ready: the status bar says Idle (Run All before that can be queued behind kernel start-up).
    page.locator(".jp-StatusBar-Item", has_text="Idle").first.wait_for(timeout=RENDER_TIMEOUT)
    assert page.locator(".jp-NotebookPanel").count() == 1
    # Clear the stored outputs first, so every readout and table seen below comes from this run's kernel.
    page.get_by_role("menuitem", name="Edit", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Clear Outputs of All Cells")).click()
    page.locator(PARAMS).wait_for(state="detached")
    assert page.get_by_text("12,233,232").count() == 0
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    move_and_check(page, artifacts, "jupyterlab_scaling_explorer")
    # The tagged Table 2 cell ran too: B3's exact parameter count (torchvision; docs/paper-facts.md) is on the page again.
    assert page.get_by_text("12,233,232").count() >= 1
    print(f"JupyterLab test body: {time.perf_counter() - start:.1f} s")


def test_voila_dashboard_slider(page, voila, artifacts, screenshot_on_failure):
    start = time.perf_counter()
    page.goto(f"{voila.url}/?token={voila.token}", wait_until="commit")
    move_and_check(page, artifacts, "voila_scaling_explorer")
    print(f"Voila test body: {time.perf_counter() - start:.1f} s")


def test_voila_cam_explorer(page, voila_cam, artifacts, screenshot_on_failure):
    """The CamExplorer in a real browser: the real Lite0 weights name the cat in scikit-image's photo, and
    changing the method, then the photo, redraws the map and the prediction without an error."""
    page.goto(f"{voila_cam.url}/?token={voila_cam.token}", wait_until="commit")
    image, info = page.locator(".effnet-cam-image"), page.locator(".effnet-cam-info")
    image.wait_for(timeout=RENDER_TIMEOUT)
    page.wait_for_function("() => { const e = document.querySelector('.effnet-cam-image'); return e && e.src; }",
                           timeout=RENDER_TIMEOUT)  # the first picture has arrived
    assert re.search(r"tabby|tiger cat|Egyptian cat", info.inner_text()), info.inner_text()

    def redrawn(select: str, value: str) -> None:
        before = image.get_attribute("src")
        page.locator(f"{select} select").select_option(value)
        page.wait_for_function(
            "([old]) => { const e = document.querySelector('.effnet-cam-image'); return e && e.src !== old; }",
            arg=[before], timeout=30_000)
        assert page.locator(".effnet-error").inner_text() == ""

    redrawn(".effnet-cam-method", "eigencam")
    redrawn(".effnet-cam-photo", "coffee")
    page.wait_for_function("() => /espresso/.test(document.querySelector('.effnet-cam-info').innerText)",
                           timeout=30_000)
    page.screenshot(path=str(artifacts / "voila_cam_explorer.png"), full_page=True)
