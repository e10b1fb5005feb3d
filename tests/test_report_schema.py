"""The JSON report checked on its own: it validates against schemas/report.schema.json, and its
overall scores and winner recompute from the file alone (ratings, weights, directions)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from pipeline.render import Renderer
from tests.conftest import CAT, EXISTING, REPO, make

SCHEMA = json.loads((REPO / "schemas" / "report.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())


def recompute(report: dict) -> tuple[dict[str, float], str, dict[str, list[int]]]:
    """Overall scores, winner and feature scores from the file: the weighted mean of each feature
    score, where a feature score is the rating, or 11 - rating where lower is better."""
    dims = report["computed"]["dimensions"]
    total = sum(d["weight"] for d in dims)
    overall, features = {}, {}
    for side in ("a", "b"):
        ratings = report["data"][side]["dimensions"]
        scores = [(r if d["higher_is_better"] else 11 - r) for d in dims for r in [ratings[d["name"]]["rating"]]]
        features[side] = scores
        overall[side] = round(sum(d["weight"] * s for d, s in zip(dims, scores, strict=True)) / total, 2)
    band = report["computed"]["tie_band"]
    won = "tie" if abs(overall["a"] - overall["b"]) <= band else ("a" if overall["a"] > overall["b"] else "b")
    return overall, won, features


def rendered_reports(tmp_path: Path) -> list[dict]:
    reports = [json.loads(Renderer(CAT, tmp_path).render(make(), EXISTING).files["json"])]
    reports += [json.loads(p.read_text(encoding="utf-8")) for p in sorted((REPO / "reports").glob("*/*-vs-*.json"))]
    return reports


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_every_rendered_report_validates_and_its_scores_recompute(tmp_path: Path) -> None:
    reports = rendered_reports(tmp_path)
    assert len(reports) >= 2  # the fixture and the committed reference report
    for report in reports:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(report)]
        assert errors == [], report["pair"]
        overall, won, features = recompute(report)
        assert overall == report["computed"]["overall"]
        for side in ("a", "b"):
            assert features[side] == [d["feature_score"][side] for d in report["computed"]["dimensions"]]
        assert won == report["computed"]["winner"]
        # the rated dimensions in the category's order, the same ones the data rates
        names = [d["name"] for d in report["computed"]["dimensions"]]
        assert names == [d.name for d in CAT.categories[report["category"]["id"]].rated]
        for side in ("a", "b"):
            cells = report["data"][side]["dimensions"]
            assert {n for n, cell in cells.items() if "rating" in cell} >= set(names)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r["computed"]["dimensions"][0].pop("weight"),
        lambda r: r["computed"].pop("dimensions"),
        lambda r: r["computed"]["overall"].update(a="high"),
        lambda r: r["provenance"].update(generated_at="yesterday"),
        lambda r: r["data"]["a"]["dimensions"]["Speed"].update(rating=11),
        lambda r: r.update(extra=1),
    ],
)
def test_the_schema_rejects_a_broken_report(tmp_path: Path, tamper) -> None:
    report = copy.deepcopy(rendered_reports(tmp_path)[0])
    tamper(report)
    assert list(VALIDATOR.iter_errors(report))


def test_a_changed_rating_no_longer_recomputes_to_the_stated_score(tmp_path: Path) -> None:
    report = copy.deepcopy(rendered_reports(tmp_path)[0])
    assert recompute(report)[0] == report["computed"]["overall"]
    report["data"]["a"]["dimensions"]["Accuracy"]["rating"] = 1
    assert recompute(report)[0] != report["computed"]["overall"]
