"""The HTML report in a real browser: Debian's headless Chromium driven by Playwright.

Screenshots are kept in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.render import Renderer
from tests.conftest import REPO
from tests.test_render import CAT, EXISTING, make

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 900), ("phone", 390, 844)])
def test_report_renders_in_chromium_without_errors(browser, tmp_path: Path, name: str, width: int, height: int):
    paths = Renderer(CAT, tmp_path).write(make(), EXISTING)
    html = next(p for p in paths if p.suffix == ".html")
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
    sizes = page.locator("svg.chart").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })"
    )
    bars = page.locator("svg.chart rect.bar").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    title = page.title()
    page.close()
    assert errors == [] and failed == []
    assert len(sizes) == 2 and all(w > 200 and h > 50 for w, h in sizes)
    assert len(bars) == 2 + 2 * 6 and all(w > 0 for w in bars)
    assert title == "Image Classification vs Image Segmentation — comparison"
