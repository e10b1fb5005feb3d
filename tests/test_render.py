"""Render: a golden Markdown report for the reference pair, determinism, and escaping."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from pipeline.catalogue import load_catalogue
from pipeline.models import Comparison, Usage
from pipeline.render import Renderer, md_escape
from pipeline.schema import load_canonical
from pipeline.validate import validate
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
CAT = load_catalogue(REPO / "config")
PAIR = CAT.pair("image-classification,image-segmentation")


def rating(value, r: int, why: str) -> dict:
    return {"value": value, "rating": r, "rationale": why, "sources": ["P1"]}


# The reference page's own content, as a model would return it.
REFERENCE_DATA = {
    "a": {
        "subject": "Image Classification",
        "dimensions": {
            "Accuracy": rating(90, 7, "Good accuracy on standard benchmarks."),
            "Complexity": rating("Low", 3, "Simple to implement with standard models."),
            "Speed": rating("Fast", 8, "One label per image is quick to compute."),
            "Applications": rating(["Object Detection", "Facial Recognition"], 6, "Used in many simple tasks."),
            "Data Requirements": rating("Small", 3, "Needs relatively little labelled data."),
            "Real-world Impact": rating("Moderate", 6, "Common in products but limited in depth."),
        },
        "pros": ["Easy to implement", "Requires less computational power",
                 "Can be used for simple object detection tasks"],
        "cons": ["Less accurate than image segmentation", "Limited applications", "May not provide detailed results"],
    },
    "b": {
        "subject": "Image Segmentation",
        "dimensions": {
            "Accuracy": rating(95, 9, "Pixel-level output gives more precise results."),
            "Complexity": rating("High", 6, "Harder to build and tune."),
            "Speed": rating("Slow", 5, "Dense per-pixel predictions take longer."),
            "Applications": rating(["Medical Imaging", "Autonomous Vehicles"], 9, "Suits complex applications."),
            "Data Requirements": rating("Large", 6, "Needs pixel-level annotations."),
            "Real-world Impact": rating("High", 9, "Enables medical and driving systems."),
        },
        "pros": ["Provides more detailed and accurate results", "Can be used in complex applications",
                 "Allows for more precise analysis and understanding of images"],
        "cons": ["More complex to implement", "Requires more computational power",
                 "May require large amounts of data"],
    },
    "verdict": {
        "winner": "Image Segmentation",
        "reasoning": "Image segmentation is the winner due to its ability to provide more detailed and accurate "
        "results, making it a better choice for complex applications such as medical imaging and autonomous vehicles.",
    },
    "faq": [
        {"question": "What is the main difference between image classification and image segmentation?",
         "answer": "Image classification assigns a label to an input image, while image segmentation divides an "
         "image into its constituent parts or objects."},
        {"question": "Which one is more accurate?",
         "answer": "Image segmentation is more accurate than image classification, as it provides more detailed "
         "results."},
    ],
    "alternatives": ["Object Detection", "Instance Segmentation"],
}  # fmt: skip
for _side in ("a", "b"):  # pros and cons cite passage P1 (the subject's description in these tests)
    for _kind in ("pros", "cons"):
        REFERENCE_DATA[_side][_kind] = [{"text": t, "sources": ["P1"]} for t in REFERENCE_DATA[_side][_kind]]


def make(data: dict = REFERENCE_DATA, provider: str = "openai", model: str = "gpt-4o-mini") -> Comparison:
    return Comparison(
        generation_id="0123456789abcdef", pair_key=PAIR.key, category=PAIR.category.id, data=data,
        generated_at="2026-06-15T09:30:00Z", provider=provider, model=model, cache_key="c" * 64,
        prompt_sha256="p" * 64, schema_sha256="s" * 64,
        sources=({"subject": "image-classification", "label": "description", "kind": "text",
                  "location": "catalogue", "sha256": "a" * 64, "truncated": False,
                  "passages": [{"id": "P1", "text": "Image classification assigns a label to a whole image; it is "
                                "fast, easy to implement and accurate on standard benchmarks."}]},),
        attempts=1, usage=Usage(1200, 800), params={"template_sha256": "t" * 64, "dialect": "json_schema"},
    )  # fmt: skip


def test_reference_data_is_valid() -> None:
    assert validate(REFERENCE_DATA, PAIR, load_canonical(REPO / "schemas")[0]) == []


EXISTING = frozenset({PAIR.key, "image-classification,object-detection"})


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
    assert "**Winner: Image Segmentation** — overall 7.07 vs 7.40." in rendered.files["md"]
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
    assert report["computed"] == {
        "overall": {"a": 7.07, "b": 7.4}, "winner": "b", "winner_name": "Image Segmentation", "tie_band": 0.25,
        "people_also_compare": [p.key for p in CAT.related_pairs(PAIR)],
    }  # fmt: skip


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
        data[side]["pros"] = [{"text": h, "sources": ["P1"]} for h in HOSTILE[:3]]
        data[side]["cons"] = [{"text": h, "sources": ["P1"]} for h in HOSTILE[3:]]
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
    # Our only links: relative report links built from catalogue slugs, and citations to passages in the
    # page (ids checked against P<number>); never javascript:, data: or remote.
    assert found["links"] and all(re.fullmatch(r"[a-z0-9-]+\.html|#passage-P[0-9]{1,3}", h) for h in found["links"])
    assert "&lt;script&gt;" in page  # the text is shown, escaped
