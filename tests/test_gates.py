"""Content gates: each rejects what the issue found in published reports, and passes what a capable model writes."""

from __future__ import annotations

import copy
import itertools

import pytest

from pipeline.catalogue import load_catalogue
from pipeline.generation.gates import level_band, percent_band
from pipeline.generation.schema import load_canonical, specialise
from pipeline.generation.validate import validate
from tests.conftest import FIXTURE, REFERENCE_DATA, REPO
from tests.fakeserver import FakeLLM, synthesise

CAT = load_catalogue(FIXTURE / "config")
PAIR = CAT.pair("image-classification,image-segmentation")
CANONICAL, _ = load_canonical(REPO / "schemas")
SCOPES = (("P1", "P2", "P3", "P4"), ("P5", "P6", "P7", "P8"))


def problems(data: dict, scopes: tuple | None = SCOPES) -> list[str]:
    return [str(p) for p in validate(data, PAIR, CANONICAL, scopes)]


def with_(change) -> dict:
    data = copy.deepcopy(REFERENCE_DATA)
    change(data)
    return data


def test_a_consistent_answer_passes_every_gate() -> None:
    assert problems(REFERENCE_DATA) == []
    assert problems(synthesise(specialise(CANONICAL, PAIR, SCOPES))) == []


def test_level_and_percent_bands() -> None:
    # each level its own ratings, lowest first, none shared: a higher level is never rated lower
    assert [level_band(i, 3) for i in range(3)] == [(1, 3), (4, 6), (7, 10)]
    assert [level_band(i, 2) for i in range(2)] == [(1, 5), (6, 10)]
    assert [level_band(i, 4) for i in range(4)] == [(1, 2), (3, 5), (6, 7), (8, 10)]
    for count in range(2, 11):
        bands = [level_band(i, count) for i in range(count)]
        assert bands[0][0] == 1 and bands[-1][1] == 10
        assert all(lo <= hi for lo, hi in bands) and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(bands))
    # a percentage has one rating, its tenth rounded half up
    assert percent_band(0) == (1, 1) and percent_band(14) == (1, 1) and percent_band(15) == (2, 2)
    assert percent_band(91) == (9, 9) and percent_band(95) == (10, 10)


def test_a_generation_is_checked_on_the_bands_of_the_gates_it_was_made_under() -> None:
    from pipeline.generation import gates

    profile = copy.deepcopy(REFERENCE_DATA["a"])
    profile["dimensions"]["Complexity"]["rating"] = 5  # 'Low': in 1-5 under version 2, outside 1-3 since 3
    now = gates.check_profile(profile, PAIR.category, version=gates.VERSION)
    assert [p.path for p in now if p.rule == "value-rating"] == ["dimensions.Complexity.rating"]
    assert not [p for p in gates.check_profile(profile, PAIR.category, version=2) if p.rule == "value-rating"]


@pytest.mark.parametrize(
    ("side", "dim", "value", "rating"),
    [
        ("b", "Accuracy", 7, 9),  # "7%" rated 9/10
        ("a", "Complexity", "Low", 6),  # "Low" rated 6/10
        ("b", "Data Requirements", "Large", 5),  # "Large" rated 5
    ],
)
def test_value_rating_rejects_the_reported_contradictions(side: str, dim: str, value, rating: int) -> None:
    found = problems(with_(lambda d: d[side]["dimensions"][dim].update(value=value, rating=rating)))
    assert any(p.startswith(f"{side}.dimensions.{dim}.rating:") and "[rule: value-rating]" in p for p in found), found


def test_a_higher_value_may_not_have_a_lower_rating() -> None:
    def flip(d: dict) -> None:
        d["a"]["dimensions"]["Accuracy"].update(value=96, rating=8)  # above b's 95%, rated below b's 10

    found = problems(with_(flip))
    assert any("is above" in p and "rated lower (8 vs 10)" in p for p in found), found


@pytest.mark.parametrize(
    ("path", "text", "message"),
    [
        (("a", "dimensions", "Speed", "rationale"), "The use of Artificial Intelligence has been increasing overthe",
         "does not end with . ! or ?"),
        (("b", "pros", 0, "text"), "This is due to its ability to help people who cannot affordto implement this,l",
         "does not end with . ! or ?"),
        (("verdict", "reasoning"), "x" * 399 + ".", "the limit for this field"),
    ],
)  # fmt: skip
def test_cut_texts_are_rejected(path: tuple, text: str, message: str) -> None:
    def cut(d: dict) -> None:
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = text

    found = problems(with_(cut))
    assert any(message in p and "[rule: complete-text]" in p for p in found), found


def test_faq_questions_must_be_questions_about_the_pair() -> None:
    found = problems(with_(lambda d: d["faq"].append(
        {"question": "What makes you think that there is no difference between using AI and other ways",
         "answer": "It depends on the problem."})))  # fmt: skip
    assert any("faq[2].question" in p and "end it with ?" in p for p in found)
    assert any("faq[2].question" in p and "names neither" in p for p in found)
    # "more accurate" names Accuracy; an alias names a subject
    ok = with_(lambda d: d["faq"].append({"question": "Is segmentation slower?", "answer": "Yes, it is slower."}))
    assert problems(ok) == []


@pytest.mark.parametrize(
    ("alt", "message"),
    [
        ("A lot of times when we talk about the benefits of AI, we don", "is a sentence, not a name"),
        ("Image Segmentation", "one of the two compared subjects"),
        ("Zero-shot classification models", "one of the two compared subjects"),  # an alias inside the name
    ],
)
def test_alternatives_are_names_of_other_things(alt: str, message: str) -> None:
    found = problems(with_(lambda d: d["alternatives"].append(alt)))
    assert any(message in p and "[rule: alternative-names]" in p for p in found), found


def test_no_text_appears_in_two_fields() -> None:
    def copy_pro(d: dict) -> None:
        d["verdict"]["reasoning"] = "Image Segmentation wins. " + d["b"]["pros"][0]["text"]

    assert any("verdict.reasoning: repeats the text of b.pros[0]" in p for p in problems(with_(copy_pro)))

    def pro_is_a_rationale(d: dict) -> None:
        d["b"]["pros"][1]["text"] = d["b"]["dimensions"]["Speed"]["rationale"]

    found = problems(with_(pro_is_a_rationale))
    assert any("b.pros[1]: repeats the text of b.dimensions.Speed.rationale" in p for p in found), found

    def same_pros(d: dict) -> None:  # two profiles are rated apart: the same fact in the same words is no copy
        d["b"]["pros"][1]["text"] = d["a"]["pros"][0]["text"]

    assert not any("no-copies" in p for p in problems(with_(same_pros)))


def test_verdict_names_the_winner_and_where_it_leads() -> None:
    found = problems(with_(lambda d: d["verdict"].update(reasoning="Good 2.0 3.5 6.9 8.2 10.")))
    assert any("does not name the winner, Image Segmentation" in p for p in found)
    assert any("names no dimension where Image Segmentation leads" in p for p in found)
    where = problems(with_(lambda d: d["verdict"].update(reasoning="Image Segmentation wins, although it is slow.")))
    assert any("names no dimension where" in p and "[rule: verdict]" in p for p in where)  # Speed: a leads


@pytest.mark.parametrize("value", [["BREAKING THE ROAD TO SANTA CONADOZA"], ["EQUIPED"], ["N/A"], ["Applications"]])
def test_list_and_text_values_are_plausible(value: list[str]) -> None:
    found = problems(with_(lambda d: d["a"]["dimensions"]["Applications"].update(value=value)))
    assert any("a.dimensions.Applications.value[0]" in p and "[rule: plausible-values]" in p for p in found), found
    assert problems(with_(lambda d: d["a"]["dimensions"]["Applications"].update(value=["OCR", "REST APIs"]))) == []


def test_citations_of_the_other_subject_are_rejected_when_no_schema_enforced_them() -> None:
    # json_object endpoints do not enforce the per-side enum while decoding: validation still does.
    found = problems(with_(lambda d: d["a"]["dimensions"]["Accuracy"].update(sources=["P6"])))
    assert any("a.dimensions.Accuracy.sources" in p and "'P6' is not one of" in p for p in found), found
    from pipeline.generation import gates

    scopes = (frozenset(SCOPES[0]), frozenset(SCOPES[1]))
    data = with_(lambda d: d["a"]["dimensions"]["Accuracy"].update(sources=["P6"]))
    scoped = [p for p in gates.check(data, PAIR, scopes) if p.rule == "citation-scope"]
    assert [p.path for p in scoped] == ["a.dimensions.Accuracy.sources"]
    assert "passages of Image Segmentation's sources" in scoped[0].message


def test_each_gate_violation_is_re_asked_naming_field_and_rule(run_cli, fake: FakeLLM) -> None:
    """Through the real SDK: a profile's contradiction, then its cut text, then a corrected profile."""

    def mutate(data: dict, _request: dict) -> dict:
        if fake.calls == 1:
            data["dimensions"]["Complexity"]["rating"] = 10  # "Moderate" rated 10
        elif fake.calls == 2:
            data["cons"][0]["text"] = "It needs a lot of compute and"
        return data

    fake.mutate = mutate
    result = run_cli("run", "--pair", PAIR.key)
    assert result.exit_code == 0, result.output
    assert "image-classification (computer-vision): model called, 3 attempts" in result.stdout and fake.calls == 5
    second = fake.requests[1]["messages"][-1]["content"]
    assert "dimensions.Complexity.rating:" in second and "must be 4-6, not 10" in second
    assert "[rule: value-rating]" in second
    third = fake.requests[2]["messages"][-1]["content"]
    assert "cons[0]:" in third and "[rule: complete-text]" in third
    shown = run_cli("show", PAIR.key, "--attempts").stdout
    assert shown.count(" invalid ") == 2 and shown.count(" accepted ") == 3


def test_an_answer_still_breaking_a_gate_fails_with_its_attempts(run_cli, fake: FakeLLM, workspace) -> None:
    fake.mutate = lambda d, _r: {**d, "alternatives": ["Image Segmentation"]} if "verdict" in d else d
    result = run_cli("run", "--pair", PAIR.key)
    assert result.exit_code == 1 and fake.calls == 5  # two profiles, then three tries at the texts
    assert "still invalid after 3 attempts" in result.stderr and "[rule: alternative-names]" in result.stderr
    report = workspace / "reports/computer-vision/image-classification-vs-image-segmentation.json"
    assert not report.exists()  # nothing half-made is published
    attempts = run_cli("show", PAIR.key, "--attempts").stdout
    assert attempts.count(" invalid ") == 3 and "alternative-names" in attempts


# Each gate broken once, in the unit it belongs to: a profile's (its cells, pros and cons) or a pair's texts.
MUTATIONS = {
    "value-rating": ("profile", lambda d: d["dimensions"]["Complexity"].update(rating=10),
                     "dimensions.Complexity.rating"),
    "complete-text": ("profile", lambda d: d["cons"][0].update(text="It needs a lot of compute and"), "cons[0]"),
    "faq-questions": ("texts", lambda d: d["faq"][0].update(question="Tell me about the weather"), "faq[0].question"),
    "alternative-names": ("texts", lambda d: d["alternatives"].__setitem__(0, "Image Segmentation"), "alternatives[0]"),
    "no-copies": ("texts", lambda d: d["faq"][0].update(answer="Pros 0 text text."), "faq[0].answer"),
    "verdict": ("texts", lambda d: d["verdict"].update(reasoning="Both are good choices for many projects."),
                "verdict.reasoning"),
    "plausible-values": ("profile", lambda d: d["dimensions"]["Applications"].update(value=["EQUIPED"]),
                         "dimensions.Applications.value[0]"),
    "consistency": ("profile", lambda d: d["pros"][1].update(text=d["pros"][0]["text"]), "pros[1]"),
    "citation-scope": ("profile", lambda d: d["pros"][0].update(sources=["P99"]), "pros[0].sources[0]"),
}  # fmt: skip


@pytest.mark.parametrize("gate", sorted(MUTATIONS))
def test_every_gate_is_re_asked_and_the_corrected_answer_accepted(run_cli, fake: FakeLLM, gate: str) -> None:
    unit, breaks, path = MUTATIONS[gate]
    broken: list[int] = []

    def mutate(data: dict, _request: dict) -> dict:
        if not broken and ("verdict" in data) == (unit == "texts"):
            broken.append(fake.calls)
            breaks(data)
        return data

    fake.mutate = mutate
    result = run_cli("run", "--pair", PAIR.key)
    assert result.exit_code == 0, result.output
    assert fake.calls == 4 and "2 attempts" in result.stdout  # three units, one of them asked twice
    reask = fake.requests[broken[0]]["messages"][-1]["content"]
    line = next(line for line in reask.splitlines() if line.startswith(f"- {path}:"))
    # the schema enforces citation scope first (an enum of the subject's passages); every other rule is named
    assert (f"[rule: {gate}]" in line) if gate != "citation-scope" else ("is not one of" in line), line
