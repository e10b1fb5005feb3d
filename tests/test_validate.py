from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from pipeline.catalogue import load_catalogue
from pipeline.generation.schema import load_canonical, specialise
from pipeline.generation.validate import parse, validate
from pipeline.providers.strict import for_dialect
from tests.conftest import FIXTURE, REPO
from tests.fakeserver import synthesise

CAT = load_catalogue(FIXTURE / "config")
PAIR = CAT.pair("image-classification,image-segmentation")
CANONICAL, _ = load_canonical(REPO / "schemas")


@pytest.fixture
def good() -> dict:
    return synthesise(specialise(CANONICAL, PAIR))  # both rated 6 everywhere: a tie


def test_specialised_schema_fixes_dimensions_levels_and_ratings() -> None:
    s = specialise(CANONICAL, PAIR)
    dims = s["properties"]["a"]["properties"]["dimensions"]
    assert dims["required"] == [d.name for d in PAIR.category.dimensions]
    assert dims["properties"]["Complexity"]["properties"]["value"]["enum"] == ["Low", "Moderate", "High"]
    assert dims["properties"]["Accuracy"]["properties"]["rating"]["enum"] == list(range(1, 11))
    assert s["properties"]["verdict"]["properties"]["winner"]["enum"] == [PAIR.a.name, PAIR.b.name, "tie"]


def test_strict_dialect_requires_everything_and_drops_unsupported_keywords() -> None:
    strict = json.dumps(for_dialect(specialise(CANONICAL, PAIR), "json_schema"))
    assert "maxLength" not in strict and "minLength" not in strict
    node = for_dialect(specialise(CANONICAL, PAIR), "json_schema")["properties"]["faq"]["items"]
    assert node["required"] == ["question", "answer"] and node["additionalProperties"] is False


def test_citations_are_scoped_to_their_subject_in_the_schema() -> None:
    scoped = specialise(CANONICAL, PAIR, (("P1", "P2"), ("P3",)))
    good = synthesise(scoped)
    a_cites = scoped["properties"]["a"]["properties"]["pros"]["items"]["properties"]["sources"]["items"]["enum"]
    b_cites = scoped["properties"]["b"]["properties"]["dimensions"]["properties"]["Speed"]["properties"]["sources"]
    assert a_cites == ["P1", "P2"] and b_cites["items"]["enum"] == ["P3"]
    # The strict dialect keeps the per-side enums: OpenAI's structured outputs enforce them while decoding.
    strict = for_dialect(scoped, "json_schema")
    assert strict["properties"]["b"]["properties"]["cons"]["items"]["properties"]["sources"]["items"]["enum"] == ["P3"]
    bad = copy.deepcopy(good)
    bad["a"]["pros"][0]["sources"] = ["P3"]  # a claim about a citing b's passage
    assert list(Draft202012Validator(scoped).iter_errors(bad))
    bad["a"]["pros"][0]["sources"] = ["P2"]
    assert not list(Draft202012Validator(scoped).iter_errors(bad))


def test_valid_answer_passes(good: dict) -> None:
    assert validate(good, PAIR, CANONICAL) == []


def test_lenient_parse_accepts_raw_control_characters_and_fences() -> None:
    data, problems = parse('```json\n{"text": "line one\nline\ttwo  "}\n```')
    assert problems == [] and data == {"text": "line one line two"}
    assert parse("no json here")[1][0].message.startswith("the answer contains no JSON")
    assert "invalid JSON" in parse('{"a": ')[1][0].message


def problems_of(data: dict) -> list[str]:
    return [str(p) for p in validate(data, PAIR, CANONICAL)]


def test_semantic_rules(good: dict) -> None:
    d = copy.deepcopy(good)
    d["a"]["pros"][1]["text"] = d["a"]["pros"][0]["text"].upper()
    assert any("a.pros[1]: duplicate item" in p for p in problems_of(d))

    d = copy.deepcopy(good)
    d["alternatives"][0] = "image segmentation"
    assert any("one of the two compared subjects" in p for p in problems_of(d))

    d = copy.deepcopy(good)
    d["verdict"]["winner"] = PAIR.a.name
    assert any("so the winner is 'tie'" in p for p in problems_of(d))

    d = copy.deepcopy(good)
    d["b"]["cons"][0]["text"] = "very " * 10 + "slow"
    assert any("repeats the same words" in p for p in problems_of(d))

    d = copy.deepcopy(good)
    d["a"]["dimensions"]["Accuracy"]["rating"] = 11
    assert any("Accuracy.rating" in p for p in problems_of(d))

    d = copy.deepcopy(good)
    del d["b"]["dimensions"]["Speed"]
    assert any("'Speed' is a required property" in p for p in problems_of(d))


def test_winner_follows_weights_and_direction(good: dict) -> None:
    d = copy.deepcopy(good)
    # b is far more complex (lower is better): a must win.
    d["b"]["dimensions"]["Complexity"].update(value="High", rating=10)
    d["a"]["dimensions"]["Complexity"].update(value="Low", rating=1)
    d["verdict"] = {"winner": PAIR.a.name, "reasoning": "Image Classification wins: it is far less complex to build."}
    assert problems_of(d) == []
