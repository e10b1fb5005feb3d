"""Grounding: sentence passages, the graded support measure against a hand-labelled set, the judge, quality."""

from __future__ import annotations

import json
from pathlib import Path

from bench.support import evaluate
from pipeline.grounding import MAX_PASSAGES, passages_by_source, split, support
from pipeline.models import Source, SourceBundle
from tests.conftest import FIXTURE
from tests.fakeserver import FakeLLM

PAIR = "image-classification,image-segmentation"
JS = Path("reports/computer-vision/image-classification-vs-image-segmentation.json")
MD = JS.with_suffix(".md")


def test_passages_are_sentences_capped_per_subject() -> None:
    assert split("One is here. Two is there!\n\nThree? 4 more.") == [
        "One is here.",
        "Two is there!",
        "Three?",
        "4 more.",
    ]
    long = "word " * 80 + "end."
    assert all(len(chunk) <= 280 for chunk in split(long))
    many = " ".join(f"Sentence {i} is here." for i in range(40))
    bundles = tuple(SourceBundle(s, (Source(s, "notes", "text", "catalogue", many, "x"),)) for s in ("a", "b"))
    groups = passages_by_source(bundles)
    assert [len(g) for g in groups] == [MAX_PASSAGES, MAX_PASSAGES]  # b keeps its share even when a's are long
    assert groups[1][0].id == f"P{MAX_PASSAGES + 1}" and groups[1][0].subject_id == "b"


def test_support_is_graded_and_numbers_must_be_stated() -> None:
    passage = "YOLOv8n reaches 37.3% mAP on COCO and takes about 1 ms per image on an A100 GPU."
    assert support("YOLOv8n reaches 37.3% mAP on COCO.", [passage])[0] == "supported"
    assert support("It reaches 37% mAP.", [passage])[0] == "supported"  # a rounded figure counts
    assert support("YOLOv8n reaches 45% mAP on COCO.", [passage])[0] == "unsupported"  # a figure not stated
    assert support("Detection on COCO needs careful tuning of anchors and losses.", [passage])[0] == "unsupported"
    assert support("Inference on an A100 GPU is quick for many models.", [passage])[0] == "weak"


def test_measure_against_the_hand_labelled_set() -> None:
    """Floors under the measured precision and recall (bench/support.py prints the table)."""
    result = evaluate(config=FIXTURE / "config")
    strict = result["supported"]
    assert strict["tp"] + strict["fp"] + strict["fn"] + strict["tn"] >= 60
    assert strict["precision"] >= 0.75 and strict["recall"] >= 0.8, strict
    assert result["supported or weak"]["recall"] >= 0.95


def judge_workspace(workspace: Path) -> None:
    cfg = workspace / "config/pipeline.toml"
    cfg.write_text(cfg.read_text().replace('provider = "fake"', 'provider = "fake"\n\n[grounding]\njudge = "fake"', 1))


def test_the_judge_is_one_costed_cached_call_shown_beside_the_lexical_measure(run_cli, workspace: Path,
                                                                            fake: FakeLLM) -> None:  # fmt: skip
    judge_workspace(workspace)
    first = run_cli("run", "--pair", PAIR)
    assert first.exit_code == 0, first.output
    # each profile is judged once, its judge's tokens counted with it; the pair's texts cite nothing
    assert fake.calls == 5 and first.stdout.count("1 attempt, 300 tokens") == 2
    judged = fake.requests[1]
    assert "Claim id: dimensions.Accuracy" in judged["messages"][1]["content"]
    required = judged["response_format"]["json_schema"]["schema"]["properties"]["verdicts"]["required"]
    assert required[0].startswith("dimensions.")
    report = json.loads((workspace / JS).read_text())
    judge = report["provenance"]["params"]["judge"]
    assert judge["model"] == "fake-model" and set(judge["verdicts"].values()) == {"partly"}
    assert all(c["judge"] == "partly" for c in report["grounding"]["claims"] if c["cites"])
    assert (
        "(judge: partly)" in (workspace / MD).read_text()
        and "judge fake-model: 0 supported" in report["quality"]["line"]
    )
    attempts = run_cli("show", PAIR, "--attempts").stdout
    assert "judge:accepted" in attempts
    again = run_cli("run", "--pair", PAIR)
    assert again.stdout.count("cache hit") == 3 and fake.calls == 5


def test_a_failing_judge_does_not_fail_the_generation(run_cli, workspace: Path, fake: FakeLLM) -> None:
    judge_workspace(workspace)
    refuse = {"kind": "status", "status": 400, "message": "judge refuses"}
    fake.push({"kind": "valid"}, refuse, {"kind": "valid"}, refuse)  # each profile, then its judge
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0, result.output
    report = json.loads((workspace / JS).read_text())
    assert "judge refuses" in report["provenance"]["params"]["judge"]["error"]
    assert "no verdict" in report["quality"]["line"]


def test_quality_command_lists_reports_and_fails_only_gated_ones(run_cli, workspace: Path) -> None:
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    ok = run_cli("quality", "--json", "-")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"ok   {PAIR}") and "9 of 9 content gates passed" in ok.stdout
    totals = json.loads(ok.stdout[ok.stdout.index("{") :])["totals"]
    assert totals["reports"] == 1 and totals["failing"] == 0 and sum(totals["claims"].values()) == 20

    # A reviewer pins a rating that contradicts its value: the published report now fails a gate.
    (workspace / "config/overrides").mkdir()
    (workspace / "config/overrides/r.toml").write_text(
        '[[override]]\nsubject = "image-classification"\npath = "dimensions.Accuracy.rating"\nset = 10\n'
    )
    bad = run_cli("quality")
    assert bad.exit_code == 1 and bad.stdout.startswith(f"FAIL {PAIR}") and "[rule: value-rating]" in bad.stdout

    # A generation made before the gates existed is listed, not failed.
    (workspace / "config/overrides/r.toml").unlink()
    import duckdb

    con = duckdb.connect(str(workspace / ".pipeline/store.duckdb"))
    con.execute("UPDATE generations SET params = json_remove(params, '$.gates')")
    con.close()
    old = run_cli("quality")
    assert old.exit_code == 0 and old.stdout.startswith(f"old  {PAIR}") and "made before the gates" in old.stdout
