"""History, semantic diff (text, markdown, json), exit codes, the changes section and clean git diffs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.fakeserver import FakeLLM

PAIR = "image-classification,image-segmentation"
MD = Path("reports/computer-vision/image-classification-vs-image-segmentation.md")


def set_speed(rating: int, pro: str | None = None):
    """Image Classification's profile with Speed rated `rating` (and its first pro reworded)."""

    def mutate(data: dict, _request: dict) -> dict:
        if data.get("subject") == "Image Classification":
            data["dimensions"]["Speed"]["rating"] = rating
            if pro:
                data["pros"][0]["text"] = pro
        return data

    return mutate


def test_history_names_the_inputs_that_changed(run_cli, workspace: Path) -> None:
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    cat = workspace / "config/catalogue/computer-vision.toml"
    cat.write_text(cat.read_text().replace("predefined set", "fixed set"))
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    prompt = workspace / "prompts/profile_user.j2"
    prompt.write_text(prompt.read_text() + "\nBe brief.\n")
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    out = run_cli("history", PAIR).stdout.splitlines()
    assert len(out) == 3
    assert out[0].endswith("inputs: first generation")
    assert out[1].endswith(
        "inputs: profile of image-classification: description of image-classification: 1 sentence reworded ('…input "
        "image from a predefined set of categories.' → '…input image from a fixed set of categories.')"
    ), out[1]
    assert out[2].endswith(
        "inputs: profile of image-classification: prompt templates changed; profile of image-segmentation: prompt "
        "templates changed; texts: prompt templates changed"  # (one hash covers every template)
    ), out[2]
    assert "[published]" in out[2]
    assert "openai/fake-model  overall 5.73-5.73 (tie)" in out[0]


def test_diff_formats_and_exit_codes(run_cli, workspace: Path, fake: FakeLLM) -> None:
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    fake.mutate = set_speed(5, "Pros 0 text text reworded.")
    assert run_cli("run", "--pair", PAIR, "--force").exit_code == 0

    text = run_cli("diff", PAIR)
    assert text.exit_code == 1  # a rating moved by 1 = the default threshold: material
    assert "* rating   Speed / Image Classification: 6 → 5 (-1)" in text.stdout
    assert "overall  Image Classification: 5.73 → 5.6 (-0.13)" in text.stdout
    assert (
        "item     Image Classification pros: Pros 0 text text. → Pros 0 text text reworded. (reworded)" in text.stdout
    )

    md = run_cli("diff", PAIR, "--format", "markdown")
    assert md.exit_code == 1 and "| **!** | rating | Speed / Image Classification | 6 → 5 (-1) |" in md.stdout
    js = json.loads(run_cli("diff", PAIR, "--format", "json").stdout)
    assert js["material"] is True
    assert {"kind": "rating", "where": "Speed / Image Classification", "old": 6, "new": 5, "material": True,
            "note": "-1"} in js["changes"]  # fmt: skip

    assert run_cli("diff", PAIR, "--threshold", "2").exit_code == 0  # below the threshold: not material
    assert run_cli("diff", PAIR, "--from", "latest", "--to", "latest").stdout.count("no changes") == 1
    bad = run_cli("diff", PAIR, "--from", "nonsense")
    assert bad.exit_code == 2 and "unique generation id prefix" in bad.stderr


def test_diff_of_two_report_files(run_cli, workspace: Path, fake: FakeLLM, tmp_path: Path) -> None:
    js = workspace / MD.with_suffix(".json")
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    shutil.copy(js, tmp_path / "old.json")
    fake.mutate = set_speed(6, "Entirely different advantage.")
    assert run_cli("run", "--pair", PAIR, "--force").exit_code == 0
    result = run_cli("diff", str(tmp_path / "old.json"), str(js))
    assert result.exit_code == 1
    assert "removed Pros 0 text text." in result.stdout and "added Entirely different advantage." in result.stdout
    (tmp_path / "junk.json").write_text("{}")
    assert run_cli("diff", str(tmp_path / "junk.json"), str(js)).exit_code == 2


def test_report_changes_section_and_clean_git_diff(run_cli, workspace: Path, fake: FakeLLM) -> None:
    git = ["git", "-C", str(workspace), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    assert run_cli("run", "--pair", PAIR).exit_code == 0
    first = (workspace / MD).read_text()
    assert "## Changes since the previous generation" not in first
    assert "| Previous generation | none (first generation) |" in first
    subprocess.run([*git, "add", "reports"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)

    fake.mutate = set_speed(5)
    assert run_cli("run", "--pair", PAIR, "--force").exit_code == 0
    diff = subprocess.run([*git, "diff", "-U0", "--", str(MD)], capture_output=True, text=True, check=True).stdout
    changed = [line[1:] for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    allowed = (
        "| Speed | 1 | higher |",  # the rating row
        "| Overall score (out of 10) |",  # the overall score
        "**Tie** — Image Classification",  # the headline and verdict lines quote the overall scores
        "| Overall (out of 10) |",
        "| Speed | Moderate",  # the matrix row gains its "(leads)" mark
        "Contents: ",  # the table of contents gains "Changes"
        "Computer Vision · as of",  # dates
        "This side-by-side report for",
        "| Generated at |",
        "| Generation id |",
        "| Previous generation |",
        "## Changes since the previous generation",  # the changes section
        "Compared with the generation of",
        "- Speed / Image Classification: rating 6 → 5 (-1)",
        "- Overall / Image Classification: 5.73 → 5.6 (-0.13)",
        # the audit: the page is made of a new profile of Image Classification and texts written for it
        "| Cache key |",
        "| Prompt sha256 |",
        "| Profile of Image ",  # (--force made both profiles again)
        "| Pair texts | generation",
    )
    assert changed, diff
    unexpected = [line for line in changed if line.strip() and not line.startswith(allowed)]
    assert unexpected == [], (unexpected, diff)
    assert any(line.startswith("| Speed | 1 | higher | 5/10 | 6/10 |") for line in changed)
