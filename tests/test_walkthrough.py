"""What a new user hits following the README (issue #34): each test fails on the code before the fix."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.catalogue import load_catalogue
from pipeline.overrides import Override, shown
from tests.conftest import FIXTURE, PAIR, REFERENCE_DATA, cli, db, make, make_workspace, refused
from tests.fakeserver import FakeLLM

KEY = PAIR.key
REPORT = Path("reports/computer-vision/image-classification-vs-image-segmentation.json")


def published_id(ws: Path) -> str:
    return json.loads((ws / REPORT).read_text())["provenance"]["generation_id"]


# -- 1. the published generation is the one the inputs' cache key names ----------------------------


def test_a_reverted_brief_publishes_the_generation_of_those_inputs_again(workspace: Path) -> None:
    brief = workspace / "config/sources/image-classification.md"
    original = brief.read_text()
    assert cli(workspace, "run", "--pair", KEY).returncode == 0
    first = published_id(workspace)
    brief.write_text(original.replace("\n## Strengths", "\nA broken sentence was added here.\n\n## Strengths", 1))
    assert cli(workspace, "run", "--pair", KEY).returncode == 0
    second = published_id(workspace)
    assert second != first
    brief.write_text(original)
    again = cli(workspace, "run", "--pair", KEY)
    assert "cache hit" in again.stdout
    assert published_id(workspace) == first, "the report must show the generation of the reverted inputs"
    # `batch` and `render` agree with `run`: alternating them no longer flips the page
    for args in (("batch", "--category", "computer-vision"), ("render",), ("run", "--pair", KEY)):
        assert cli(workspace, *args).returncode == 0
        assert published_id(workspace) == first, args
    # and the page's "previous version" is the one shown before it (the broken brief's)
    report = json.loads((workspace / REPORT).read_text())
    assert report["previous_generated_at"] is not None


# -- 2. an override is applied before everything computed from the ratings --------------------------


def test_a_pinned_rating_changes_header_verdict_index_and_feed_together(workspace: Path) -> None:
    (workspace / "config/overrides").mkdir()
    (workspace / "config/overrides/review.toml").write_text(
        '[[override]]\nsubject = "image-segmentation"\npath = "dimensions.Complexity.value"\nset = "High"\n'
        'reason = "reviewed"\n\n'
        '[[override]]\nsubject = "image-segmentation"\npath = "dimensions.Complexity.rating"\nset = 8\n'
        'reason = "reviewed"\n'
    )
    assert cli(workspace, "run", "--pair", KEY).returncode == 0  # the test server's answer is a tie
    report = json.loads((workspace / REPORT).read_text())
    assert report["computed"]["winner_name"] == "Image Classification"
    assert report["data"]["verdict"]["winner"] == "Image Classification"
    md = (workspace / REPORT.with_suffix(".md")).read_text()
    assert "**Winner: Image Classification**" in md
    assert "Written before a reviewer's override" in md  # the model's tie reasoning is marked, not hidden
    index = (workspace / "reports/index.md").read_text()
    row = next(line for line in index.splitlines() if "Image Classification vs Image Segmentation" in line)
    assert "| Image Classification |" in row and "Tie" not in row
    feed = (workspace / "reports/feed.xml").read_text()
    assert "Tie" not in feed.split("<entry>")[1]
    quality = cli(workspace, "quality")
    assert quality.returncode == 0, quality.stdout
    assert "predates a reviewer's override" in quality.stdout


def test_code_written_verdict_and_faq_are_written_again_from_pinned_ratings() -> None:
    # Selection mode: code wrote the verdict and FAQ, so they follow the pinned ratings.
    data = json.loads(json.dumps(REFERENCE_DATA))
    pin = Override(KEY, "a.dimensions.Accuracy.rating", 10, False, "", "r.toml")
    low = [Override(KEY, f"b.dimensions.{d}.rating", 1, False, "", "r.toml")
           for d in ("Accuracy", "Applications", "Real-world Impact")]  # fmt: skip
    seen = shown(data, {"mode": "select"}, [pin, *low], PAIR)
    assert seen.data["verdict"]["winner"] == "Image Classification"
    assert "Image Classification comes out ahead" in seen.data["verdict"]["reasoning"]
    assert "Image Classification scores" in seen.data["faq"][0]["answer"] and not seen.stale_verdict
    assert data == REFERENCE_DATA  # the stored data is never changed


# -- 3. files are written with the mode the umask gives ---------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_reports_get_the_mode_the_umask_gives(workspace: Path, umask: int, mode: int) -> None:
    argv = ["pipeline", "--workspace", str(workspace), "run", "--pair", KEY]
    code = f"import os, sys; os.umask({umask}); from pipeline.cli import main; sys.argv = {argv!r}; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for path in (workspace / "reports").rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert stat.S_IMODE(path.stat().st_mode) == mode, path


# -- 4. batch and render write the same bytes --------------------------------------------------------


def test_render_after_a_batch_changes_no_file_and_doctor_agrees(workspace: Path, fake: FakeLLM) -> None:
    assert cli(workspace, "batch", "--category", "computer-vision").returncode == 0
    fake.mutate = _speed(5)  # a second generation of every pair: the changes sections and feed lines fill up
    assert cli(workspace, "batch", "--category", "computer-vision", "--force").returncode == 0
    before = {p: p.read_bytes() for p in (workspace / "reports").rglob("*") if p.is_file() and ".render" not in p.name}
    assert "Speed / Image Classification: rating 6 → 5" in (workspace / REPORT.with_suffix(".md")).read_text()
    assert "Speed / Image Classification: rating 6 → 5 (-1)." in (workspace / "reports/feed.xml").read_text()
    doctor = cli(workspace, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert cli(workspace, "render").returncode == 0
    after = {p: p.read_bytes() for p in (workspace / "reports").rglob("*") if p.is_file() and ".render" not in p.name}
    assert [p for p in after if after[p] != before.get(p)] == []


def _speed(rating: int):
    """Image Classification's profile with Speed rated `rating`."""

    def mutate(data: dict, _request: dict) -> dict:
        if data.get("subject") == "Image Classification":
            data["dimensions"]["Speed"]["rating"] = rating
        return data

    return mutate


# -- 5. Ctrl-C in run answers at once and keeps what was paid for ----------------------------------


def test_ctrl_c_in_run_stops_at_once_and_keeps_the_attempts_already_made(workspace: Path, fake: FakeLLM) -> None:
    fake.push({"kind": "schema_invalid"}, {"kind": "valid", "delay": 60})
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace", str(workspace), "run", "--pair", KEY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while fake.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    _out, err = proc.communicate(timeout=30)
    assert time.monotonic() - stopped < 10, "run must not wait for the call in flight"
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "1 attempt(s) already made" in err and "run the same command again" in err
    assert db(workspace, "SELECT outcome FROM attempts") == [("invalid",)]


# -- 6. catalogue typos are refused with the line and the right name --------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("higher_is_better = false", "higher_is_beter = false",
         r"computer-vision\.toml:\d+: category\.dimensions\[1\]: unknown key `higher_is_beter`; did you mean "
         r"`higher_is_better`\?"),
        ('brief = "sources/image-classification.md"', 'breif = "sources/image-classification.md"',
         r"computer-vision\.toml:\d+: subject image-classification: unknown key `breif`; did you mean `brief`\?"),
    ],
)  # fmt: skip
def test_catalogue_typos_are_refused_with_line_and_suggestion(tmp_path: Path, old: str, new: str, message: str) -> None:
    import shutil

    shutil.copytree(FIXTURE / "config", tmp_path / "config")
    path = tmp_path / "config/catalogue/computer-vision.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    found = refused(tmp_path / "config")
    assert re.search(message, found), found
    line = int(re.search(r"computer-vision\.toml:(\d+):", found).group(1))  # type: ignore[union-attr]
    assert new.split(" =")[0] in path.read_text().splitlines()[line - 1]


# -- 7. one bad file fails only its category; the tests use their own catalogue ---------------------


def test_a_malformed_category_file_fails_only_its_category(workspace: Path) -> None:
    (workspace / "config/catalogue/computer-vision.toml").write_text("[category\n")
    ok = cli(workspace, "run", "--pair", "mysql,postgresql")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.count("computer-vision.toml:1") == 1  # a warning names the broken file
    bad = cli(workspace, "run", "--pair", KEY)
    assert bad.returncode == 2 and "computer-vision.toml, which cannot be read" in bad.stderr
    listed = cli(workspace, "list")
    assert listed.returncode == 2 and "databases  Databases" in listed.stdout


def test_no_test_reads_the_live_catalogue() -> None:
    tests = Path(__file__).parent
    live = "REPO / " + '"config'  # (spelt in two parts so that this file is not an offender itself)
    offenders = [p.name for p in tests.glob("*.py") if live in p.read_text(encoding="utf-8")]
    assert offenders == [], "tests must use the fixture catalogue (tests/data/workspace), not the live one"
    assert load_catalogue(FIXTURE / "config").categories  # and the fixture is a working catalogue


# -- 8. brief mistakes are warned about, and the advice fits ---------------------------------------


def test_brief_without_strengths_or_with_a_misspelt_heading_is_warned_about(workspace: Path) -> None:
    brief = workspace / "config/sources/image-classification.md"
    text = brief.read_text()
    brief.write_text(text.replace("## Strengths", "## Strength").replace("## Limitations", "## Weaknesses"))
    result = cli(workspace, "run", "--pair", KEY)
    assert result.returncode == 0
    assert "'## Strength' is not a section the pipeline knows" in result.stderr
    assert "did you mean '## Strengths'?" in result.stderr and "did you mean '## Limitations'?" in result.stderr
    assert "no '## Strengths' or '## Limitations' section" in result.stderr


def test_a_short_brief_gets_advice_to_add_sentences_not_to_write_one() -> None:
    from pipeline.errors import SourceError
    from pipeline.generation.selection import plan
    from pipeline.grounding import Passage

    passages = [Passage(f"P{i}", PAIR.a.id, "brief", f"A fact about {PAIR.a.name} number {i}.") for i in (1, 2)]
    with pytest.raises(SourceError, match=r"add sentences to its brief config/sources/image-classification\.md"):
        plan(PAIR.a, PAIR.category, passages)


# -- 9. the diff says why ----------------------------------------------------------------------------


def test_history_and_diff_name_parameters_and_brief_sentences(workspace: Path) -> None:
    assert cli(workspace, "run", "--pair", KEY).returncode == 0
    first = cli(workspace, "diff", KEY)
    assert first.returncode == 0 and "only one generation" in first.stdout
    assert cli(workspace, "run", "--pair", KEY, "--seed", "8").returncode == 0
    history = cli(workspace, "history", KEY).stdout.splitlines()
    assert history[1].endswith(
        "inputs: profile of image-classification: seed 7 → 8; profile of image-segmentation: seed 7 → 8; "
        "texts: seed 7 → 8"
    ), history
    brief = workspace / "config/sources/image-segmentation.md"
    brief.write_text(brief.read_text().replace("\n## Strengths", "\nSegmentation masks can be exported.\n\n"
                                                                 "## Strengths", 1))  # fmt: skip
    assert cli(workspace, "run", "--pair", KEY, "--seed", "8").returncode == 0
    out = cli(workspace, "diff", KEY).stdout
    assert "brief of image-segmentation (config/sources/image-segmentation.md): 1 sentence added " in out
    assert "'Segmentation masks can be exported.'" in out


def test_diff_refuses_two_reports_of_different_pairs(workspace: Path, tmp_path: Path) -> None:
    for pair in (KEY, "image-classification,object-detection"):
        assert cli(workspace, "run", "--pair", pair).returncode == 0
    folder = workspace / "reports/computer-vision"
    result = cli(workspace, "diff", str(folder / "image-classification-vs-image-segmentation.json"),
                 str(folder / "image-classification-vs-object-detection.json"))  # fmt: skip
    assert result.returncode == 2 and "diff two reports of the same pair" in result.stderr


def test_diff_of_generations_does_not_apply_todays_overrides(workspace: Path, fake: FakeLLM) -> None:
    assert cli(workspace, "run", "--pair", KEY).returncode == 0
    fake.mutate = _speed(5)
    assert cli(workspace, "run", "--pair", KEY, "--force").returncode == 0
    (workspace / "config/overrides").mkdir()
    (workspace / "config/overrides/review.toml").write_text(
        '[[override]]\nsubject = "image-classification"\npath = "dimensions.Speed.rating"\nset = 6\n'
    )
    out = cli(workspace, "diff", KEY).stdout
    assert "rating   Speed / Image Classification: 6 → 5 (-1)" in out  # the model's change, not hidden


# -- 10. rough edges ---------------------------------------------------------------------------------


def test_commands_find_the_workspace_from_a_subfolder(workspace: Path) -> None:
    (workspace / "reports/deep").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_WORKSPACE"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "list"], cwd=workspace / "reports/deep", env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 and "computer-vision  Computer Vision" in done.stdout, done.stderr


def test_runs_shows_whole_names_and_attempts_show_readable_problems(workspace: Path, fake: FakeLLM) -> None:
    batch = workspace / "config/batches/a-rather-long-nightly-batch-name.toml"
    batch.write_text(f'name = "a rather long nightly batch name (shard 1/1)"\npairs = ["{KEY}"]\n')
    fake.push({"kind": "schema_invalid"})
    assert cli(workspace, "batch", str(batch)).returncode == 0
    assert "a rather long nightly batch name (shard 1/1)" in cli(workspace, "runs").stdout
    attempts = cli(workspace, "show", KEY, "--attempts").stdout
    # the two profiles are asked at once: the invalid answer went to whichever asked first
    invalid = [line for line in attempts.splitlines() if " invalid " in line]
    assert len(invalid) == 1, attempts
    assert '[{"' not in invalid[0] and '"message"' not in invalid[0], invalid[0]


def test_first_render_of_a_fresh_clone_keeps_the_committed_reports(tmp_path: Path, monkeypatch) -> None:
    ws = make_workspace(tmp_path / "ws")
    folder = ws / "reports/computer-vision"
    folder.mkdir(parents=True)
    from pipeline.render import Renderer

    files = Renderer(load_catalogue(ws / "config"), ws / "reports").render(make(), frozenset()).files
    for ext, text in files.items():
        (folder / f"{PAIR.slug}.{ext}").write_text(text)
    result = cli(ws, "render")
    assert result.returncode == 0 and "kept 1 report already on disk" in result.stderr
    index = (ws / "reports/index.md").read_text()
    assert "1 comparison." in index and "Image Classification vs Image Segmentation" in index
    doctor = cli(ws, "doctor")
    assert doctor.returncode == 1 and "the store holds no generation for this report" in doctor.stdout


def test_a_dry_run_needs_no_api_key_but_a_real_run_does(workspace: Path, fake: FakeLLM, monkeypatch) -> None:
    monkeypatch.delenv("PIPELINE_TEST_KEY")
    dry = cli(workspace, "batch", "--category", "computer-vision", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run:" in dry.stdout and "generate" in dry.stdout
    real = cli(workspace, "batch", "--category", "computer-vision")
    assert real.returncode != 0 and "PIPELINE_TEST_KEY is not set" in real.stderr
    assert fake.calls == 0
