"""The published pages in a real browser and under checkers nobody here wrote.

- Debian's headless Chromium, driven by Playwright, at 1280, 390 and 320 px: no errors, no failed
  requests, no horizontal page scroll, charts that fit with readable text;
- axe-core (npm `axe-core`, injected into the page) at 1280 and 390 px: 0 violations of any impact;
- the W3C Nu HTML Checker (npm `vnu-jar`, run by Debian's Java) on a report, a category page and the
  index: 0 errors and 0 warnings.

`python3 tasks.py check` installs the npm packages into `.venv/checkers`; `.ci/run` installs Chromium,
npm and Java. Screenshots of every page at every width are kept in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.render import Renderer
from tests.conftest import CAT, PAIR, REPO, make

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
CHECKERS = Path(os.environ.get("PIPELINE_CHECKERS", REPO / ".venv" / "checkers")) / "node_modules"
AXE = CHECKERS / "axe-core" / "axe.min.js"
VNU = CHECKERS / "vnu-jar" / "build" / "dist" / "vnu.jar"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
WIDTHS = {"desktop": 1280, "phone": 390, "narrow": 320}


def missing(what: str, how: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; {how}")
    pytest.skip(f"{what} is not installed ({how})")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, Path]:
    """Two reports in one category, their category page and the index, as `pipeline render` writes them."""
    root = tmp_path_factory.mktemp("reports")
    renderer = Renderer(CAT, root)
    first = make()
    # a brief with references: long URLs must wrap on a phone
    refs = ["https://example.org/a/very/long/path/that/does/not/break/at/any/space/image-classification-benchmarks"]
    with_refs = dataclasses.replace(first.sources[1], references=tuple(refs))
    first = dataclasses.replace(first, sources=(*first.sources[:1], with_refs, *first.sources[2:]))
    second = dataclasses.replace(
        make(), generation_id="fedcba9876543210", pair_key="image-classification,object-detection",
        generated_at="2026-06-16T10:00:00Z",
    )  # fmt: skip
    existing = frozenset({first.pair_key, second.pair_key})
    renderer.write(first, existing)
    renderer.write(second, existing)
    renderer.write_index([first, second])
    cat = root / PAIR.category.id
    return {
        "report": cat / f"{PAIR.slug}.html", "category": cat / "index.html", "index": root / "index.html",
        # the committed reference report: the bundled model's, with its banner and quoted rationales
        "committed": REPO / "reports" / PAIR.category.id / f"{PAIR.slug}.html",
    }  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        missing("chromium", ".ci/run installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, path: Path, width: int):
    # bypass_csp: the pages forbid scripts, axe-core has to be injected all the same
    page = browser.new_page(viewport={"width": width, "height": 900}, bypass_csp=True)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("requestfailed", lambda req: problems.append(f"failed request {req.url}"))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


@pytest.mark.parametrize("width", WIDTHS.keys())
@pytest.mark.parametrize("which", ["report", "category", "index", "committed"])
def test_pages_fit_every_width_without_errors(browser, site, which: str, width: str) -> None:
    page, problems = open_page(browser, site[which], WIDTHS[width])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{which}-{width}.png"), full_page=True)
    scroll = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    # every element inside the viewport horizontally, and no text overflowing its box (a long URL)
    outside = page.evaluate(
        """() => [...document.querySelectorAll('body *')].filter(e => {
             const r = e.getBoundingClientRect();
             const hidden = e.closest('thead') && getComputedStyle(e.closest('thead')).position === 'absolute';
             const spills = !hidden && e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible';
             return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5 || spills);
           }).map(e => e.tagName + '.' + e.className + ' ' + (e.textContent || '').slice(0, 40))"""
    )
    page.close()
    assert problems == []
    assert scroll[0] <= scroll[1], f"{which} scrolls sideways at {WIDTHS[width]} px: {scroll}"
    assert outside == []


@pytest.mark.parametrize("width", WIDTHS.keys())
def test_charts_fit_plot_feature_scores_and_stay_readable(browser, site, width: str) -> None:
    page, problems = open_page(browser, site["report"], WIDTHS[width])
    charts = page.locator("svg.chart").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.height]; })"
    )
    # rendered size of chart text: its font size times the SVG's scale on screen
    text = page.evaluate(
        """() => [...document.querySelectorAll('svg.chart text')].map(
             t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)"""
    )
    small = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.why')).fontSize)")
    heading = page.evaluate("parseFloat(getComputedStyle(document.querySelector('h2')).fontSize)")
    bars = page.locator("svg.chart rect.bar").evaluate_all(
        "els => els.map(e => [e.getAttribute('data-score'), e.getBoundingClientRect().width])"
    )
    page.close()
    assert problems == []
    assert len(charts) == 2 and all(left >= 0 and right <= WIDTHS[width] and h > 50 for left, right, h in charts)
    assert text and min(text) >= small - 0.5, (min(text), small)
    assert max(text) < heading, (max(text), heading)
    assert len(bars) == 2 + 2 * 6
    # bar lengths follow the scores they carry, so a lower-is-better rating of 3 (score 8) is a long bar
    per_unit = {round(w / float(s), 1) for s, w in bars if float(s) > 0}
    assert max(per_unit) - min(per_unit) <= 0.2 * max(per_unit), bars
    scores = sorted(float(s) for s, _ in bars[2:])
    assert scores == sorted([9, 8, 7, 4, 8, 4, 10, 4, 3, 10, 4, 9])  # feature scores of the reference data


@pytest.mark.parametrize("width", ["desktop", "phone"])
@pytest.mark.parametrize("which", ["report", "category", "index", "committed"])
def test_axe_core_finds_nothing(browser, site, which: str, width: str) -> None:
    if not AXE.exists():
        missing("axe-core", "python3 tasks.py check installs it with npm")
    page, _ = open_page(browser, site[which], WIDTHS[width])
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    page.close()
    violations = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
    ]  # fmt: skip
    assert violations == []
    assert result["passes"], "axe-core ran no checks"


def test_nu_html_checker_finds_no_errors_or_warnings(site) -> None:
    java = shutil.which("java")
    if java is None:
        missing("java", "apt-get install default-jre-headless; .ci/run does")
    if not VNU.exists():
        missing("vnu.jar", "python3 tasks.py check installs npm's vnu-jar")
    # the fixture's pages, and the committed reference report (the bundled model's, with its banner)
    files = [site["report"], site["category"], site["index"], *sorted((REPO / "reports").rglob("*.html"))]
    assert site["committed"] in files
    done = subprocess.run(
        [java, "-jar", str(VNU), "--format", "json", "--also-check-css", "--also-check-svg", *map(str, files)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    messages = json.loads(done.stderr)["messages"]
    found = [(Path(m.get("url", "")).name, m["type"], m.get("subType"), m["message"]) for m in messages]
    assert found == []


def test_the_checker_sees_errors(tmp_path: Path) -> None:
    """The Nu checker run as above reports a broken page: the test above can fail."""
    java = shutil.which("java")
    if java is None or not VNU.exists():
        missing("java and vnu.jar", "see test_nu_html_checker_finds_no_errors_or_warnings")
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><html lang=en><title>x</title><p><div></p><img src=a.png>", encoding="utf-8")
    done = subprocess.run([java, "-jar", str(VNU), "--format", "json", str(broken)], capture_output=True, text=True)
    assert any(m["type"] == "error" for m in json.loads(done.stderr)["messages"])
