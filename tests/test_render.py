"""Render: a golden Markdown report for the reference pair, determinism, and escaping."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from pipeline.generation.schema import load_canonical
from pipeline.generation.validate import validate
from pipeline.models import Comparison
from pipeline.render import Renderer
from pipeline.text import md_escape
from tests.conftest import CAT, EXISTING, GOLDEN, PAIR, REFERENCE_DATA, REPO, make


def test_reference_data_is_valid() -> None:
    scopes = (("P1", "P2", "P3", "P4"), ("P5", "P6", "P7", "P8"))
    assert validate(REFERENCE_DATA, PAIR, load_canonical(REPO / "schemas")[0], scopes) == []


@pytest.mark.parametrize("ext", ["md", "html"])
def test_golden_reports_for_the_reference_pair(tmp_path: Path, ext: str) -> None:
    rendered = Renderer(CAT, tmp_path).render(make(), EXISTING)
    golden = GOLDEN / f"image-classification-vs-image-segmentation.{ext}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered.files[ext], encoding="utf-8")
    assert rendered.files[ext] == golden.read_text(encoding="utf-8")


def test_reference_report_content(tmp_path: Path) -> None:
    rendered = Renderer(CAT, tmp_path).render(make(), EXISTING)
    assert "as of June 2026" in rendered.files["md"]
    md = rendered.files["md"]
    scores = "Image Segmentation 7.27, Image Classification 6.80 (overall, out of 10)"
    assert f"**Winner: Image Segmentation** — {scores}." in md
    assert "Image Segmentation wins, 7.27 to 6.80 out of 10 for Image Classification." in md
    assert md.startswith("[All reports](../index.md) › [Computer Vision](index.md)\n")
    assert "| Generation id | `0123456789abcdef` |" in md and "generated 2026-06-15 09:30:00 UTC" in md
    assert (
        "- [Image Classification vs Object Detection](image-classification-vs-object-detection.md)"
        in (rendered.files["md"])
    )
    assert "- Image Classification vs Optical Character Recognition (not generated yet)" in rendered.files["md"]


def test_rendering_twice_is_byte_identical_and_written_atomically(tmp_path: Path) -> None:
    renderer = Renderer(CAT, tmp_path)
    first = [p.read_bytes() for p in renderer.write(make())]
    second = [p.read_bytes() for p in renderer.write(make())]
    assert first == second
    assert sorted(p.name for p in (tmp_path / "computer-vision").iterdir()) == [
        "image-classification-vs-image-segmentation.html",
        "image-classification-vs-image-segmentation.json",
        "image-classification-vs-image-segmentation.md",
    ]  # fmt: skip — and no temporary files left behind
    report = json.loads(second[1])
    computed = {k: v for k, v in report["computed"].items() if k not in ("dimensions", "headline")}
    assert computed == {
        "overall": {"a": 6.8, "b": 7.27}, "winner": "b", "winner_name": "Image Segmentation", "tie_band": 0.25,
        "people_also_compare": [p.key for p in CAT.related_pairs(PAIR)],
    }  # fmt: skip
    assert [d["name"] for d in report["computed"]["dimensions"]] == [d.name for d in PAIR.category.dimensions]


def test_demo_model_reports_are_labelled(tmp_path: Path) -> None:
    md = Renderer(CAT, tmp_path).render(make(provider="local", model="smollm2-135m-instruct")).files["md"]
    assert md.index("**Demonstration output.**") < md.index("## Comparison Matrix")
    assert "bundled demonstration model" in md.split("## Methodology and Disclosure")[1]


@pytest.mark.parametrize(
    "hostile",
    ["<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "[click](javascript:alert(1))",
     "</svg><script>x</script>", "| broken | table |", "line\nbreak"],
)  # fmt: skip
def test_markdown_neutralises_hostile_model_text(tmp_path: Path, hostile: str) -> None:
    data = copy.deepcopy(REFERENCE_DATA)
    data["a"]["pros"][0] = {"text": hostile, "sources": []}
    data["alternatives"][0] = hostile
    data["a"]["dimensions"]["Speed"]["rationale"] = hostile
    md = Renderer(CAT, tmp_path).render(make(data)).files["md"]
    assert "<script" not in md and "<img" not in md and "</svg" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # link syntax only survives escaped
    assert md_escape(hostile) in md
    rows = [line for line in md.splitlines() if line.startswith("| Speed |") and md_escape(hostile) in line]
    assert len(rows) == 1
    assert len(re.findall(r"(?<!\\)\|", rows[0])) == 4  # the row keeps its three cells


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "</svg><script>alert(2)</script><svg>",
    '"><svg onload=alert(3)>',
]


def hostile_comparison() -> Comparison:
    data = copy.deepcopy(REFERENCE_DATA)
    for side in ("a", "b"):
        data[side]["pros"] = [{"text": h, "sources": ["P2"]} for h in HOSTILE[:3]]
        data[side]["cons"] = [{"text": h, "sources": ["P2"]} for h in HOSTILE[3:]]
        for dim in data[side]["dimensions"].values():
            dim["rationale"] = HOSTILE[4]
        data[side]["dimensions"]["Applications"]["value"] = HOSTILE[:4]
    data["verdict"]["reasoning"] = " ".join(HOSTILE)
    data["faq"] = [{"question": h, "answer": h} for h in HOSTILE[:5]]
    data["alternatives"] = HOSTILE[:5]
    return make(data)


def test_html_contains_no_script_handler_or_unsafe_link(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    page = Renderer(CAT, tmp_path).render(hostile_comparison(), EXISTING).files["html"]
    found: dict[str, list[str]] = {"tags": [], "handlers": [], "links": []}

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found["tags"].append(tag)
            for name, value in attrs:
                if name.startswith("on"):
                    found["handlers"].append(name)
                if name in ("href", "src", "xlink:href", "action") and value is not None:
                    found["links"].append(value)

    Collect().feed(page)
    assert "script" not in found["tags"] and "img" not in found["tags"] and "iframe" not in found["tags"]
    assert found["handlers"] == []
    assert found["tags"].count("svg") == 2  # the two charts; no injected <svg>
    # Our only links: relative report and index links built from catalogue slugs, the table of contents,
    # and citations to passages in the page (ids checked against P<number>); never javascript:, data: or remote.
    pattern = r"(\.\./)?[a-z0-9-]+\.html|#passage-P[0-9]{1,3}|#[a-z]+"
    assert found["links"] and all(re.fullmatch(pattern, h) for h in found["links"]), found["links"]
    assert "&lt;script&gt;" in page  # the text is shown, escaped


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(x: str, y: str) -> float:
    """WCAG 2.x contrast ratio of two sRGB colours."""
    light, dark = sorted((_luminance(x), _luminance(y)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_chart_series_colours_meet_wcag_non_text_contrast(tmp_path: Path) -> None:
    """WCAG 1.4.11: graphics need 3:1 against the background and, to tell the series apart, each other."""
    html = Renderer(CAT, tmp_path).render(make(), EXISTING).files["html"]
    series_a = set(re.findall(r'class="bar bar-a"[^>]* fill="(#[0-9A-Fa-f]{6})"', html))
    hatch = set(re.findall(r'<pattern id="ratings-chart-hatch"[^>]*><rect [^>]*fill="(#[0-9A-Fa-f]{6})"', html))
    assert len(series_a) == 1 and len(hatch) == 1
    (a,), (b,) = series_a, hatch
    assert contrast(a, "#FFFFFF") >= 3 and contrast(b, "#FFFFFF") >= 3 and contrast(a, b) >= 3
    assert round(contrast("#E69F00", "#FFFFFF"), 2) == 2.25  # the old orange, as the issue measured it
