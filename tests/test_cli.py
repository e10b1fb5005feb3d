"""End-to-end: the CLI over real HTTP to the scriptable server, real DuckDB files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.conftest import REPO, TEST_KEY
from tests.fakeserver import FakeLLM

PAIR = "image-classification,image-segmentation"
MD = Path("reports/computer-vision/image-classification-vs-image-segmentation.md")
JS = MD.with_suffix(".json")


def generations(ws: Path) -> int:
    con = duckdb.connect(str(ws / ".pipeline/store.duckdb"))
    try:
        return con.execute("SELECT count(*) FROM generations").fetchone()[0]
    finally:
        con.close()


def test_run_writes_reports_then_second_run_is_a_cache_hit(run_cli, workspace: Path, fake: FakeLLM) -> None:
    first = run_cli("run", "--pair", PAIR)
    assert first.exit_code == 0, first.output
    # two profiles, then the pair's own texts from them: three calls, three generations
    assert "image-classification (computer-vision): model called, 1 attempt, 150 tokens" in first.stdout
    assert "image-segmentation (computer-vision): model called, 1 attempt, 150 tokens" in first.stdout
    assert f"{PAIR} texts: model called, 1 attempt, 150 tokens" in first.stdout
    assert str(MD) in first.stdout and str(JS) in first.stdout
    md1, js1 = (workspace / MD).read_bytes(), (workspace / JS).read_bytes()
    assert fake.calls == 3

    second = run_cli("run", "--pair", "image-segmentation,image-classification")  # b,a is the same pair
    assert second.exit_code == 0, second.output
    assert second.stdout.count("cache hit, no model call") == 3
    assert fake.calls == 3
    assert (workspace / MD).read_bytes() == md1 and (workspace / JS).read_bytes() == js1
    assert generations(workspace) == 3


def test_report_content_and_computed_fields(run_cli, workspace: Path) -> None:
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    report = json.loads((workspace / JS).read_text())
    assert report["computed"]["winner"] == "tie"  # the fake server rates both 6 everywhere
    # rating 6 everywhere: (2*6 + (11-6) + 6 + 6 + (11-6) + 1.5*6) / 7.5 = 5.73 for both
    assert report["computed"]["overall"] == {"a": 5.73, "b": 5.73}
    assert report["provenance"]["attempts"] == 3  # a profile each, and the pair's texts
    sources = [(s["subject"], s["kind"], s["location"]) for s in report["provenance"]["sources"]]
    assert sources == [
        ("image-classification", "text", "catalogue"),
        ("image-classification", "brief", "config/sources/image-classification.md"),
        ("image-segmentation", "text", "catalogue"),
        ("image-segmentation", "brief", "config/sources/image-segmentation.md"),
    ]
    brief = report["provenance"]["sources"][1]
    assert "ImageNet" in brief["passages"][1]["text"] and any("arXiv:1512.03385" in r for r in brief["references"])
    assert brief["alternatives"] == ["Amazon Rekognition", "Azure AI Vision", "Clarifai"]
    md = (workspace / MD).read_text()
    for heading in (
        "## Comparison Matrix",
        "## Overall Score Comparison",
        "## Feature Benchmark Ratings",
        "## Image Classification Analysis",
        "## AI Verdict",
        "## Frequently Asked Questions",
        "## People Also Compare",
        "## Market Alternatives",
        "## Methodology and Disclosure",
        "## Comparison Audit Summary",
    ):
        assert heading in md
    assert "as of " in md and "By Google" in md and "By Facebook" in md
    assert "- Image Classification vs Object Detection (not generated yet)" in md
    assert run_cli("run", "--pair", "object-detection,image-classification").exit_code == 0
    assert run_cli("render").exit_code == 0
    md = (workspace / MD).read_text()
    assert "- [Image Classification vs Object Detection](image-classification-vs-object-detection.md)" in md
    index = (workspace / "reports/index.md").read_text()
    assert (
        "[Image Classification vs Image Segmentation](computer-vision/image-classification-vs-image-segmentation.md)"
        in index
    )
    assert "| Tie | Image Classification 5.73 · Object Detection 5.73 |" in index
    cat = (workspace / "reports/computer-vision/index.md").read_text()
    assert "[Image Classification vs Image Segmentation](image-classification-vs-image-segmentation.md)" in cat


def test_changing_description_prompt_or_schema_makes_exactly_one_new_generation(
    run_cli, workspace: Path, fake: FakeLLM
) -> None:
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    assert generations(workspace) == 3  # two profiles and the pair's texts
    # One subject's description: its profile, then the texts written for the new profile.
    cat = workspace / "config/catalogue/computer-vision.toml"
    cat.write_text(cat.read_text().replace("predefined set of categories", "fixed set of categories"))
    for _ in range(2):
        assert run_cli("run", "--pair", PAIR).exit_code == 0
    assert generations(workspace) == 5 and fake.calls == 5

    prompt = workspace / "prompts/profile_user.j2"  # every profile, then the texts
    prompt.write_text(prompt.read_text() + "\nBe precise.\n")
    for _ in range(2):
        assert run_cli("run", "--pair", PAIR).exit_code == 0
    assert generations(workspace) == 8

    schema_path = workspace / "schemas/pair.schema.json"  # the texts only: the profiles stay
    schema = json.loads(schema_path.read_text())
    schema["description"] = "changed"
    schema_path.write_text(json.dumps(schema))
    for _ in range(2):
        assert run_cli("run", "--pair", PAIR).exit_code == 0
    assert generations(workspace) == 9
    assert fake.calls == 9


def test_reask_on_invalid_output_then_success(run_cli, workspace: Path, fake: FakeLLM) -> None:
    fake.push({"kind": "invalid_json"}, {"kind": "schema_invalid"})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0, result.output
    assert "image-classification (computer-vision): model called, 3 attempts" in result.stdout
    reask = fake.requests[2]["messages"]
    assert reask[-1]["role"] == "user" and "dimensions" in reask[-1]["content"]
    assert len(fake.requests[0]["messages"]) == 2  # the caller's list was not appended to


def test_invalid_after_all_attempts_exits_1_and_keeps_attempts(run_cli, workspace: Path, fake: FakeLLM) -> None:
    fake.default = {"kind": "schema_invalid"}
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 1
    assert "still invalid after 3 attempts" in result.stderr and "dimensions" in result.stderr
    assert not (workspace / MD).exists()
    shown = run_cli("show", PAIR, "--attempts")
    assert shown.stdout.count("invalid") == 3


def test_transport_retries_honour_retry_after_and_5xx(run_cli, workspace: Path, fake: FakeLLM) -> None:
    fake.push({"kind": "status", "status": 429, "headers": {"retry-after": "1"}}, {"kind": "status", "status": 500})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0, result.output
    assert fake.calls == 5  # the first profile's call was tried three times; then one call each
    assert fake.times[1] - fake.times[0] >= 1.0  # waited the Retry-After
    assert "image-classification (computer-vision): model called, 1 attempt" in result.stdout  # not re-asks


def test_auth_error_is_not_retried_and_key_never_printed(run_cli, workspace: Path, fake: FakeLLM) -> None:
    fake.push({"kind": "status", "status": 401, "message": f"Incorrect API key provided: {TEST_KEY}"})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 2
    assert fake.calls == 1
    assert "rejected the credentials (HTTP 401)" in result.stderr
    assert TEST_KEY not in result.output
    assert not (workspace / MD).exists()


def test_capability_error_names_the_dialect_and_is_not_retried(run_cli, fake: FakeLLM) -> None:
    fake.push({"kind": "status", "status": 400, "message": "response_format json_schema is not supported"})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 2
    assert fake.calls == 1
    assert 'set dialect = "json_object_schema"' in result.stderr


def test_bad_input_gives_one_line_and_exit_2(run_cli, workspace: Path, fake: FakeLLM) -> None:
    cases = {
        "image-clasification,image-segmentation": "Did you mean: image-classification",
        "image-classification,image-classification": "two different subjects",
        "image-classification,postgresql": "--cross-category",
        "image-classification": "separated by a comma",
    }
    for pair, expected in cases.items():
        result = run_cli("run", "--pair", pair)
        assert result.exit_code == 2, pair
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert fake.calls == 0
    assert not (workspace / "reports").exists()


def test_malformed_toml_names_file_and_line(run_cli, workspace: Path) -> None:
    bad = workspace / "config/catalogue/databases.toml"
    bad.write_text(bad.read_text() + "\n[[subjects]\nid = 'x'\n")
    result = run_cli("list")
    assert result.exit_code == 2
    assert f"{bad}:" in result.stderr and "malformed TOML" in result.stderr


def test_missing_api_key(workspace: Path, monkeypatch) -> None:
    monkeypatch.delenv("PIPELINE_TEST_KEY")
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["--workspace", str(workspace), "run", "--pair", PAIR])
    assert result.exit_code == 2
    assert "PIPELINE_TEST_KEY is not set" in result.stderr


def test_list_and_show(run_cli) -> None:
    listed = run_cli("list")
    assert listed.exit_code == 0
    assert "computer-vision" in listed.stdout and "image-segmentation" in listed.stdout
    assert run_cli("show", PAIR).exit_code == 2  # nothing stored yet
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    shown = run_cli("show", PAIR)
    assert shown.exit_code == 0 and "\n# Image Classification vs Image Segmentation\n" in shown.stdout


def test_render_rebuilds_from_store_without_calls(run_cli, workspace: Path, fake: FakeLLM) -> None:
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    before = (workspace / MD).read_bytes()
    (workspace / MD).unlink()
    calls = fake.calls
    result = run_cli("render")
    assert result.exit_code == 0 and "rendered 1 comparison and the index" in result.stdout
    assert (workspace / MD).read_bytes() == before
    assert fake.calls == calls


def test_python_dash_m_entry_point(workspace: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--workspace", str(workspace), "list"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "databases" in result.stdout
