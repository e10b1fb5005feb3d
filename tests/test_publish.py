"""The published set: index and category pages, the Atom feed (read by `feedparser`), the sitemap
(validated against the sitemaps.org XSD that npm's `sitemap` package ships), canonical links and
`[publish] base_url` from the configuration."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import feedparser
import lxml.etree
import lxml.html
import pytest

from pipeline.errors import ConfigError
from pipeline.render import Renderer
from pipeline.settings import load_settings
from tests.conftest import CAT, FIXTURE, PAIR, REFERENCE_DATA, REPO, make

BASE = "https://example.org/compare"
XSD = Path(os.environ.get("PIPELINE_CHECKERS", REPO / ".venv" / "checkers")) / "node_modules/sitemap/schema/sitemap.xsd"
OTHER = "image-classification,object-detection"


def two_generations():
    """The reference pair twice (the second with a changed Speed rating) and a second pair."""
    first = make()
    data = {**REFERENCE_DATA, "a": {**REFERENCE_DATA["a"], "dimensions": dict(REFERENCE_DATA["a"]["dimensions"])}}
    data["a"]["dimensions"]["Speed"] = {**data["a"]["dimensions"]["Speed"], "rating": 8}
    second = dataclasses.replace(make(data), generation_id="1111111111111111", generated_at="2026-07-01T08:00:00Z")
    other = dataclasses.replace(make(), generation_id="2222222222222222", pair_key=OTHER,
                                generated_at="2026-06-20T12:00:00Z")  # fmt: skip
    return first, second, other


def publish(tmp_path: Path, base_url: str = BASE) -> Path:
    first, second, other = two_generations()
    renderer = Renderer(CAT, tmp_path, base_url=base_url)
    existing = frozenset({PAIR.key, OTHER})
    renderer.write(second, existing, first)
    renderer.write(other, existing)
    renderer.write_index([second, other], {PAIR.key: first, OTHER: None})
    return tmp_path


def test_feed_parses_as_atom_newest_first_with_what_changed(tmp_path: Path) -> None:
    feed = feedparser.parse((publish(tmp_path) / "feed.xml").read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    titles = [e.title for e in feed.entries]
    assert titles == ["Image Classification vs Image Segmentation", "Image Classification vs Object Detection"]
    newest, older = feed.entries
    assert newest.id == "urn:comparison-pipeline:generation:1111111111111111"
    assert newest.updated == "2026-07-01T08:00:00Z" and older.updated == "2026-06-20T12:00:00Z"
    assert newest.link == f"{BASE}/computer-vision/image-classification-vs-image-segmentation.html"
    assert "Speed / Image Classification: rating 7 → 8 (+1)" in newest.summary
    assert "First generation." in older.summary
    assert feed.feed.updated == "2026-07-01T08:00:00Z"
    assert any(link.rel == "self" and link.href == f"{BASE}/feed.xml" for link in feed.feed.links)


def test_feed_without_base_url_is_still_valid_atom(tmp_path: Path) -> None:
    folder = publish(tmp_path, base_url="")
    feed = feedparser.parse((folder / "feed.xml").read_bytes())
    assert not feed.bozo and feed.version == "atom10" and len(feed.entries) == 2
    assert not (folder / "sitemap.xml").exists()  # no sitemap without absolute URLs


def test_sitemap_validates_against_the_sitemaps_org_schema(tmp_path: Path) -> None:
    if not XSD.exists():
        if os.environ.get("CI"):
            pytest.fail("npm's sitemap package (for its XSD) is missing; python3 tasks.py check installs it")
        pytest.skip("npm's sitemap package is not installed (python3 tasks.py check installs it)")
    schema = lxml.etree.XMLSchema(lxml.etree.parse(str(XSD)))
    sitemap = lxml.etree.parse(str(publish(tmp_path) / "sitemap.xml"))
    assert schema.validate(sitemap), schema.error_log
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = sitemap.xpath("//s:loc/text()", namespaces=ns)
    assert locs == [
        f"{BASE}/index.html", f"{BASE}/computer-vision/index.html",
        f"{BASE}/computer-vision/image-classification-vs-image-segmentation.html",
        f"{BASE}/computer-vision/image-classification-vs-object-detection.html",
    ]  # fmt: skip
    # the schema check can fail: a priority outside 0.0-1.0 is rejected
    broken = lxml.etree.fromstring(
        lxml.etree.tostring(sitemap).replace(b"</loc>", b"</loc><priority>2.0</priority>", 1)
    )
    assert not schema.validate(broken)


def test_reports_link_to_their_category_and_the_index_with_canonical_and_description(tmp_path: Path) -> None:
    folder = publish(tmp_path)
    page = lxml.html.parse(str(folder / "computer-vision/image-classification-vs-image-segmentation.html"))
    hrefs = page.xpath("//nav[@aria-label='Breadcrumb']//a/@href")
    assert hrefs == ["../index.html", "index.html"]
    assert page.xpath("//link[@rel='canonical']/@href") == [
        f"{BASE}/computer-vision/image-classification-vs-image-segmentation.html"
    ]
    description = page.xpath("//meta[@name='description']/@content")[0]
    assert "Image Classification vs Image Segmentation" in description and len(description) <= 300
    toc = page.xpath("//nav[@aria-label='Contents']//a/@href")
    assert all(page.xpath(f"//*[@id='{h[1:]}']") for h in toc) and len(toc) >= 8
    # every relative link in every page leads to a file that exists
    for html in folder.rglob("*.html"):
        for href in lxml.html.parse(str(html)).xpath("//a/@href"):
            if not href.startswith(("#", "https://")):
                assert (html.parent / href).resolve().exists(), (html.name, href)


def test_category_page_and_grouped_index(tmp_path: Path) -> None:
    folder = publish(tmp_path)
    index = lxml.html.parse(str(folder / "index.html"))
    assert index.xpath("//section/h2/a/@href") == ["computer-vision/index.html"]
    rows = index.xpath("//section//tbody/tr")
    assert len(rows) == 2
    cells = [[" ".join(c.text_content().split()) for c in r] for r in rows]
    assert cells[0][:2] == ["Image Classification vs Image Segmentation", "Image Segmentation"]
    assert cells[0][2].startswith("Image Segmentation 7.27 · Image Classification ")
    assert cells[0][3] == "2026-07-01" and cells[1][3] == "2026-06-20"
    category = (folder / "computer-vision/index.md").read_text(encoding="utf-8")
    assert "[Image Classification vs Object Detection](image-classification-vs-object-detection.md)" in category
    assert "[All reports](../index.md)" in category


def test_base_url_is_checked_when_the_configuration_loads(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    text = (FIXTURE / "config/pipeline.toml").read_text(encoding="utf-8")
    (config / "pipeline.toml").write_text(text.replace('base_url = ""', 'base_url = "javascript:alert(1)"', 1))
    assert 'base_url = ""' in text
    with pytest.raises(ConfigError, match=r"\[publish\] base_url must be an http\(s\) URL"):
        load_settings(tmp_path)
