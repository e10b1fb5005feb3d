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
pair = "{PAIR}"
path = "b.dimensions.Accuracy.rating"
set = 9
reason = "vendor benchmark"

[[override]]
pair = "image-segmentation,image-classification"
strike = "a.pros"
item = "A pros 0 text text."
reason = "not true"

[[override]]
pair = "{PAIR}"
strike = "b.cons"
item = "No such con."
''',
    )
    for args in (("run", "--pair", PAIR), ("run", "--pair", PAIR, "--force")):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
        assert "not applied, its target no longer exists" in caplog.text  # the struck con, on stderr
        caplog.clear()
        md = (workspace / BASE.with_suffix(".md")).read_text()
        assert "| Accuracy | 2 | higher | 6/10 | 9/10 \\* |" in md
        a_section = md.split("## Image Classification Analysis")[1].split("## Image Segmentation Analysis")[0]
        assert "- A pros 0 text text." not in a_section and "- A pros 1 text text." in a_section
        assert "- applied: b.dimensions.Accuracy.rating pinned to 9 (vendor benchmark)" in md
        assert "- NOT applied, target no longer exists: struck 'No such con.' from b.cons" in md
        report = json.loads((workspace / BASE.with_suffix(".json")).read_text())
        # the overall score uses the pinned rating: b gains (9 - 6) * 2 / 7.5 = 0.8
        assert report["computed"]["overall"]["b"] == 6.53
        assert "(override)" in (workspace / BASE.with_suffix(".html")).read_text()


def test_bad_override_file_is_a_clear_error(run_cli, workspace: Path) -> None:
    write(workspace, f'[[override]]\npair = "{PAIR}"\npath = "a.dimensions.Accuracy.rating"\nset = 11\n')
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 2 and "a rating must be a whole number from 1 to 10" in result.stderr
    write(workspace, '[[override]]\npair = "nope,image-classification"\nstrike = "a.pros"\nitem = "x"\n')
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 2 and "review.toml: override[0]: unknown subject 'nope'" in result.stderr


def test_a_misspelt_dimension_level_or_key_is_refused_with_the_line_and_the_right_name(
    run_cli, workspace: Path
) -> None:
    write(workspace, f'[[override]]\npair = "{PAIR}"\npath = "a.dimensions.Acuracy.rating"\nset = 3\n')
    result = run_cli("render")
    assert result.exit_code == 2, result.output
    assert "review.toml:3: override[0]: Computer Vision has no dimension 'Acuracy'; did you mean 'Accuracy'?" in (
        result.stderr
    )
    write(workspace, f'[[override]]\npair = "{PAIR}"\npath = "a.dimensions.Complexity.value"\nset = "Lo"\n')
    result = run_cli("quality")
    assert result.exit_code == 2 and "Complexity takes one of Low, Moderate, High, not 'Lo'; did you mean 'Low'?" in (
        result.stderr
    )
    write(workspace, f'[[override]]\npair = "{PAIR}"\npath = "a.dimensions.Complexity.rating"\nset = 3\nreson = "x"\n')
    result = run_cli("render")
    assert result.exit_code == 2 and "review.toml:5: override[0]: unknown key `reson`; did you mean `reason`?" in (
        result.stderr
    )
