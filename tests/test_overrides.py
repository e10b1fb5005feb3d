"""Reviewer overrides: pinned ratings and values, struck items, unresolved targets reported."""

from __future__ import annotations

import json
from pathlib import Path

PAIR = "image-classification,image-segmentation"
BASE = Path("reports/computer-vision/image-classification-vs-image-segmentation")


def write(ws: Path, text: str) -> None:
    (ws / "config/overrides").mkdir(exist_ok=True)
    (ws / "config/overrides/review.toml").write_text(text)


def test_overrides_apply_after_validation_and_survive_regeneration(run_cli, workspace: Path, caplog) -> None:
    write(
        workspace,
        f'''
[[override]]
subject = "image-segmentation"
path = "dimensions.Accuracy.rating"
set = 9
reason = "vendor benchmark"

[[override]]
subject = "image-classification"
strike = "pros"
item = "Pros 0 text text."
reason = "not true"

[[override]]
pair = "{PAIR}"
strike = "alternatives"
item = "No such alternative"
''',
    )
    for args in (("run", "--pair", PAIR), ("run", "--pair", PAIR, "--force")):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
        assert "not applied, nothing on the page matches it" in caplog.text  # the struck alternative, on stderr
        caplog.clear()
        md = (workspace / BASE.with_suffix(".md")).read_text()
        assert "| Accuracy | 2 | higher | 6/10 | 9/10 \\* |" in md
        a_section = md.split("## Image Classification Analysis")[1].split("## Image Segmentation Analysis")[0]
        assert "- Pros 0 text text." not in a_section and "- Pros 1 text text." in a_section
        assert "- applied: image-segmentation: dimensions.Accuracy.rating pinned to 9 (vendor benchmark)" in md
        assert (
            f"- NOT applied, nothing on the page matches it: struck 'No such alternative' from {PAIR}: alternatives"
            in md
        )
        report = json.loads((workspace / BASE.with_suffix(".json")).read_text())
        # the overall score uses the pinned rating: b gains (9 - 6) * 2 / 7.5 = 0.8
        assert report["computed"]["overall"]["b"] == 6.53
        assert "(override)" in (workspace / BASE.with_suffix(".html")).read_text()


def test_a_subjects_override_shows_on_every_page_of_the_subject(run_cli, workspace: Path) -> None:
    write(workspace, '[[override]]\nsubject = "image-classification"\npath = "dimensions.Speed.value"\nset = "Slow"\n')
    for pair in (PAIR, "image-classification,object-detection"):
        assert run_cli("run", "--pair", pair).exit_code == 0
    for page in ("image-classification-vs-image-segmentation", "image-classification-vs-object-detection"):
        report = json.loads((workspace / f"reports/computer-vision/{page}.json").read_text())
        assert report["data"]["a"]["dimensions"]["Speed"]["value"] == "Slow"
    assert run_cli("quality").exit_code == 1  # "Slow" rated 6 breaks value-rating: the reviewer sees it


def test_bad_override_file_is_a_clear_error(run_cli, workspace: Path) -> None:
    write(workspace, '[[override]]\nsubject = "image-classification"\npath = "dimensions.Accuracy.rating"\nset = 11\n')
    result = run_cli("doctor")
    assert result.exit_code == 1 and "a rating must be a whole number from 1 to 10" in result.stdout
    write(workspace, '[[override]]\nsubject = "nope"\nstrike = "pros"\nitem = "x"\n')
    result = run_cli("doctor")
    assert result.exit_code == 1 and "review.toml: override[0]: unknown subject 'nope'" in result.stdout
    write(workspace, f'[[override]]\npair = "{PAIR}"\npath = "a.dimensions.Accuracy.rating"\nset = 3\n')
    result = run_cli("doctor")
    assert 'write subject = "image-classification" and path = "dimensions.Accuracy.rating"' in result.stdout


def test_a_misspelt_dimension_level_or_key_is_refused_with_the_line_and_the_right_name(
    run_cli, workspace: Path
) -> None:
    write(workspace, '[[override]]\nsubject = "image-classification"\npath = "dimensions.Acuracy.rating"\nset = 3\n')
    result = run_cli("render")
    assert result.exit_code == 0  # the other files (none here) still apply: a warning names the mistake
    assert "review.toml:3: override[0]: Computer Vision has no dimension 'Acuracy'; did you mean 'Accuracy'?" in (
        result.stderr
    )
    write(
        workspace, '[[override]]\nsubject = "image-classification"\npath = "dimensions.Complexity.value"\nset = "Lo"\n'
    )
    result = run_cli("doctor")
    assert "Complexity takes one of Low, Moderate, High, not 'Lo'; did you mean 'Low'?" in result.stdout
    write(workspace, '[[override]]\nsubject = "image-classification"\npath = "dimensions.Complexity.rating"\nset = 3\n'
                     'reson = "x"\n')  # fmt: skip
    result = run_cli("doctor")
    assert "review.toml:5: override[0]: unknown key `reson`; did you mean `reason`?" in result.stdout


def test_one_bad_override_file_leaves_the_others_and_every_pair_working(run_cli, workspace: Path) -> None:
    (workspace / "config/overrides").mkdir()
    (workspace / "config/overrides/good.toml").write_text(
        '[[override]]\nsubject = "mysql"\npath = "dimensions.Scalability.rating"\nset = 8\n'
    )
    (workspace / "config/overrides/bad.toml").write_text('[[override]]\nsubject = "image-classification"\nbogus = 1\n')
    result = run_cli("run", "--pair", "mysql,postgresql")
    assert result.exit_code == 0 and "bad.toml" in result.stderr
    report = json.loads((workspace / "reports/databases/mysql-vs-postgresql.json").read_text())
    assert report["data"]["a"]["dimensions"]["Scalability"]["rating"] == 8
