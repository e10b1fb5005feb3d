"""Selection mode: the small model's choices, consistent by construction, quoted in the report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from pipeline.cli import cli
from pipeline.errors import SourceError
from pipeline.gather import gather
from pipeline.generation import selection
from pipeline.generation.gates import level_band
from pipeline.grounding import passages
from pipeline.text import md_escape
from pipeline.workspace import Workspace
from tests.conftest import FIXTURE, TEST_KEY, make_workspace
from tests.fakeserver import FakeLLM, synthesise

PAIR = "image-classification,image-segmentation"
MD = "reports/computer-vision/image-classification-vs-image-segmentation.md"


@pytest.fixture
def small(tmp_path: Path, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace whose provider is the test server, marked small: selection mode over real HTTP."""
    monkeypatch.setenv("PIPELINE_TEST_KEY", TEST_KEY)
    ws = make_workspace(tmp_path / "ws", fake.base_url)
    cfg = ws / "config/pipeline.toml"
    cfg.write_text(
        cfg.read_text().replace('api_key_env = "PIPELINE_TEST_KEY"', 'api_key_env = "PIPELINE_TEST_KEY"\nsmall = true')
    )
    return ws


def plan_for(ws: Path, subject: str = "image-classification") -> selection.Plan:
    return job_for(ws, subject).plan  # type: ignore[return-value]


def job_for(ws: Path, subject: str = "image-classification"):
    w = Workspace(str(ws))
    found = w.catalogue.subjects[subject]
    provider = w.provider(w.profile(None, None)[0])
    job = w.units().profile(found, w.catalogue.categories[found.category], provider, w.generation(provider))
    assert job.plan is not None
    return job


def test_the_plan_offers_each_dimension_its_own_passages(small: Path) -> None:
    for subject in ("image-classification", "image-segmentation"):
        plan = plan_for(small, subject)
        side = plan.side
        used = [pid for slot in side.slots for pid in slot.candidates] + list(side.strengths + side.limitations)
        assert len(used) == len(set(used))  # no passage serves twice: no quotation can repeat
        assert len(side.strengths) >= 2 and len(side.limitations) >= 2
    plan = plan_for(small, "image-segmentation")
    speed = {s.dimension.name: s for s in plan.side.slots}["Speed"]
    assert speed.options[0][1] == ("Slow",)  # "Inference is slower than classification ..." states Slow
    plan = plan_for(small)
    texts = dict(plan.texts)
    accuracy = {s.dimension.name: s for s in plan.side.slots}["Accuracy"]
    assert accuracy.options[0][1] == (76, 84, 89, 91)  # the figures the passage states
    assert "ImageNet" in texts[accuracy.candidates[0]]
    assert all(texts[p].startswith(("A classifier", "Accuracy drops", "A single label")) for p in plan.side.limitations)


def test_the_choice_schema_keeps_every_choice_consistent(small: Path) -> None:
    plan = plan_for(small, "image-segmentation")
    schema = plan.schema()
    answer = synthesise(schema)
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors(answer))
    bad = copy.deepcopy(answer)
    bad["dimensions"]["Speed"] = {"value": "Slow", "rating": 9, "source": bad["dimensions"]["Speed"]["source"]}
    assert list(validator.iter_errors(bad))  # Slow is rated 1-5
    bad = copy.deepcopy(answer)
    bad["dimensions"]["Complexity"]["source"] = "P99"  # a passage the plan does not offer
    assert list(validator.iter_errors(bad))
    bad = copy.deepcopy(answer)
    bad["pros"] = [plan.side.strengths[0], plan.side.strengths[0]]  # the same passage twice
    assert list(validator.iter_errors(bad))
    plan = plan_for(small)
    schema, answer = plan.schema(), synthesise(plan.schema())
    validator = Draft202012Validator(schema)
    for i, level in enumerate(("Low", "Moderate", "High")):
        for rating in range(1, 11):
            trial = copy.deepcopy(answer)
            trial["dimensions"]["Real-world Impact"]["value"] = level
            trial["dimensions"]["Real-world Impact"]["rating"] = rating
            ok = not list(validator.iter_errors(trial))
            low, high = level_band(i, 3)
            assert ok == (level == "High" and low <= rating <= high)  # its passage states "high"


def test_a_dimension_that_is_not_rated_asks_for_no_rating(small: Path) -> None:
    plan = plan_for(small, "postgresql")
    answer = synthesise(plan.schema())
    assert all("rating" not in answer["dimensions"][d] for d in ("Data Model", "Typical Use Cases"))
    assert "rating" in answer["dimensions"]["Scalability"]
    data = selection.compose(answer, plan)
    assert "rating" not in data["dimensions"]["Data Model"]


def test_composed_data_is_quoted_and_passes_validation(small: Path) -> None:
    job = job_for(small)
    plan = job.plan
    data = selection.compose(synthesise(plan.schema()), plan)
    texts = dict(plan.texts)
    for entry in data["dimensions"].values():
        assert entry["rationale"] == texts[entry["sources"][0]]
    for point in data["pros"] + data["cons"]:
        assert point["text"] == texts[point["sources"][0]]
    assert job.check(data) == []


def test_selection_mode_over_http_renders_quotations_with_their_passage_ids(small: Path, fake: FakeLLM) -> None:
    result = CliRunner().invoke(cli, ["--workspace", str(small), "run", "--pair", PAIR])
    assert result.exit_code == 0, result.output
    request = fake.requests[0]
    assert "anyOf" in json.dumps(request["response_format"])  # the choices, not free text
    assert "Possible pros:" in request["messages"][1]["content"]
    md = (small / MD).read_text()
    report = json.loads((small / MD.replace(".md", ".json")).read_text())
    quote = report["data"]["a"]["dimensions"]["Accuracy"]["rationale"]
    pid = report["data"]["a"]["dimensions"]["Accuracy"]["sources"][0]
    assert f"“{md_escape(quote)}” \\[{pid}\\]" in md
    assert "Each rating is shown with the source passage the model chose to support it, quoted." in md
    assert "No sentence in this report was written by the model." in md
    assert report["provenance"]["params"]["mode"] == "select"
    assert report["quality"]["failed"] == {} and report["quality"]["claims"]["uncited"] == 0
    html = (small / MD.replace(".md", ".html")).read_text()
    escaped = quote.replace("'", "&#39;")
    assert f'<q>{escaped}</q> <a class="cite" href="#passage-{pid}">' in html


def test_too_few_passages_for_selection_is_a_clear_error(small: Path) -> None:
    cat = small / "config/catalogue/computer-vision.toml"
    cat.write_text(cat.read_text().replace('brief = "sources/image-classification.md"\n', ""))
    result = CliRunner().invoke(cli, ["--workspace", str(small), "run", "--pair", PAIR])
    assert result.exit_code == 2
    assert (
        "image-classification has 0 quotable source sentences" in result.stderr and "give it a brief" in result.stderr
    )


def test_items_and_phrases_come_from_the_passage() -> None:
    from pipeline.models import Dimension

    listing = Dimension("Uses", "list")
    assert selection._values("Typical uses include photo and video editing, robotics, and mapping.", listing) == (
        "Photo and video editing", "Robotics", "Mapping")  # fmt: skip
    assert selection._values("Its ecosystem includes Flask-Login, pgvector and Celery.", listing) == (
        "Flask-Login", "pgvector", "Celery")  # fmt: skip
    text = Dimension("Data Model", "text")
    assert selection._values("Data model: JSON-like documents stored as BSON, with schemas.", text) == (
        "JSON-like documents stored as BSON",)  # fmt: skip
    level = Dimension("Scalability", "level", levels=("Single node", "Replicated", "Distributed"))
    assert selection._values("Scalability comes from streaming replication to replicas.", level) == ("Replicated",)
    assert selection._values("Throughput is moderate: high volumes need many queues.", Dimension(
        "Throughput", "level", levels=("Low", "Moderate", "High"))) == ("Moderate",)  # fmt: skip
    percent = Dimension("Accuracy", "percent")
    assert selection._values("CNNs exceed 99.7% accuracy, and ViT reaches 88.55%.", percent) == (99, 89)


def test_every_catalogue_subject_can_be_planned() -> None:
    w = Workspace(str(FIXTURE))
    for subject in w.catalogue.subjects.values():
        category = w.catalogue.categories[subject.category]
        plan = selection.plan(subject, category, passages([gather(subject, w.root, 6000)]))
        assert not list(Draft202012Validator(plan.schema()).iter_errors(synthesise(plan.schema())))
    pair = w.pair(PAIR)
    with pytest.raises(SourceError, match="quotable source sentences"):
        selection.plan(pair.a, pair.category, [])


def test_the_selection_prompt_names_the_values_and_is_the_same_every_time(small: Path) -> None:
    """The prompt once printed "value: <built-in method values of dict object at 0x...>" (a
    template key named like a dict method): the model never saw the levels, and the address in
    the prompt changed the cache key on every run, so the bundled model's cache never hit."""
    first, again = (job_for(small).messages for _ in range(2))
    assert first.sha256 == again.sha256
    user = first.messages[1]["content"]
    assert " at 0x" not in user and "built-in method" not in user
    levels = {s.dimension.name: s.dimension for s in plan_for(small).side.slots}["Speed"].levels
    assert f"value: {', '.join(levels)}; rating: 1 = seconds per image on a GPU" in user
    assert "value: a percentage stated in the passage" in user
