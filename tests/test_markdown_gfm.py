"""The Markdown report as GitHub shows it: rendered by cmark-gfm (GitHub's own renderer, through the
`cmarkgfm` binding) with GitHub's options, then read back as HTML and compared with our HTML report.

What GitHub must show: citation labels exactly as in the HTML report ([P2], [P3], ... in the same
order), no footnotes (GFM renumbers those by first use), a header row with text on every table, no
backtick showing where a code span was meant, and the same facts (generation id and time) as the HTML.
"""

from __future__ import annotations

import re
from pathlib import Path

import cmarkgfm
import lxml.html
from cmarkgfm.cmark import Options

from pipeline.render import Renderer
from tests.conftest import CAT, EXISTING, GOLDEN, make

GITHUB = Options.CMARK_OPT_FOOTNOTES | Options.CMARK_OPT_GITHUB_PRE_LANG  # as github.com renders .md files
LABEL = re.compile(r"\[P\d{1,3}\]")


def gfm(markdown: str) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(f"<div>{cmarkgfm.github_flavored_markdown_to_html(markdown, options=GITHUB)}</div>")


def text(tree: lxml.html.HtmlElement) -> str:
    return " ".join(tree.text_content().split())


def test_footnotes_would_be_renumbered_which_is_why_the_report_uses_none() -> None:
    """The check below can fail: GFM footnotes show the first-used one as "1", whatever its label."""
    tree = gfm("Cited.[^P2] Then.[^P1]\n\n[^P1]: one\n\n[^P2]: two\n")
    assert [a.text for a in tree.iter("a") if a.get("data-footnote-ref") is not None] == ["1", "2"]
    assert LABEL.findall(text(tree)) == []


def test_golden_markdown_on_github_shows_what_the_html_shows(tmp_path: Path) -> None:
    rendered = Renderer(CAT, tmp_path).render(make(), EXISTING)
    md = (GOLDEN / "image-classification-vs-image-segmentation.md").read_text(encoding="utf-8")
    assert md == rendered.files["md"]
    github = gfm(md)
    html = lxml.html.fromstring(rendered.files["html"])
    body = html.find("body")

    # citation labels: the same ones, in the same order, at least two passages cited
    shown = LABEL.findall(text(github))
    assert shown == LABEL.findall(text(body))
    assert len(set(shown)) >= 2
    assert not github.xpath("//sup | //*[@data-footnote-ref] | //section[@data-footnotes]")

    # every table has a header row with text in each header cell
    tables = github.findall(".//table")
    assert len(tables) >= 5
    for table in tables:
        header = table.findall("./thead/tr/th")
        assert header and all(text(th) for th in header), lxml.html.tostring(table)[:200]

    # code spans come out as code, never as literal backticks
    assert "`" not in text(github)
    codes = {c.text for c in github.iter("code")}
    assert {"0123456789abcdef", "c" * 64} <= codes

    # the same facts in both formats: generation id and time
    for fact in ("0123456789abcdef", "2026-06-15 09:30:00 UTC", "2026-06-15T09:30:00Z"):
        assert fact in text(github) and fact in text(body), fact
    # the headline and the contents links
    assert "Winner: Image Segmentation — Image Segmentation 7.27, Image Classification 6.80" in text(github)
    anchors = {a.get("href") for a in github.iter("a")}
    assert {"../index.md", "index.md", "#comparison-matrix", "#comparison-audit-summary"} <= anchors


def test_contents_links_match_githubs_heading_anchors(tmp_path: Path) -> None:
    """GitHub's anchors: the heading lowercased, punctuation dropped, spaces to hyphens."""
    md = Renderer(CAT, tmp_path).render(make(), EXISTING).files["md"]
    headings = {
        re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", md, flags=re.M)
    }  # fmt: skip
    contents = next(line for line in md.splitlines() if line.startswith("Contents:"))
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert links and set(links) <= headings
