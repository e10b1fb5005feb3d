"""Briefs: the facts, strengths, limitations, alternatives and references of a subject, from Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.briefs import parse_brief
from pipeline.catalogue import load_catalogue
from pipeline.errors import SourceError
from pipeline.gather import gather
from pipeline.grounding import content_words, split
from tests.conftest import FIXTURE, refused

BRIEF = """# Widget

Widget renders dashboards. It is written in Go.

## Strengths

Plugins extend it without forking.

## Limitations

It has no clustering.

## Alternatives

- Grafana
- Kibana

## References

- Widget docs, https://widget.example/docs
"""


def test_a_brief_is_parsed_into_facts_and_lists() -> None:
    brief = parse_brief(BRIEF, "widget.md")
    assert split(brief.text) == [
        "Widget renders dashboards.", "It is written in Go.", "Plugins extend it without forking.",
        "It has no clustering.",
    ]  # fmt: skip
    assert brief.strengths == ("Plugins extend it without forking.",)
    assert brief.limitations == ("It has no clustering.",)
    assert brief.alternatives == ("Grafana", "Kibana")
    assert brief.references == ("Widget docs, https://widget.example/docs",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BRIEF.replace("- Kibana", "Kibana is another one."), "widget.md:16: the alternatives section takes one '- '"),
        (BRIEF.replace("- Kibana", "- Kibana is another tool for logs."), "is not a name"),
        ("## References\n\n- x\n", "the brief has no facts"),
    ],
)
def test_a_malformed_brief_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_brief(text, "widget.md")


def test_every_catalogue_subject_has_a_brief_covering_its_dimensions() -> None:
    catalogue = load_catalogue(FIXTURE / "config")
    for subject in catalogue.subjects.values():
        assert subject.brief == f"sources/{subject.id}.md"
        source = gather(subject, FIXTURE, 6000).sources[1]
        sentences = split(source.text)
        assert 8 <= len(sentences) <= 15, (subject.id, len(sentences))
        assert all(s.endswith(".") and len(s) <= 280 for s in sentences), subject.id
        assert len(source.strengths) >= 2 and len(source.limitations) >= 2, subject.id
        assert source.references and source.alternatives, subject.id
        words = content_words(source.text)
        for dim in catalogue.categories[subject.category].dimensions:  # every dimension is spoken to
            assert content_words(f"{dim.name} {dim.description}") & words, (subject.id, dim.name)


def test_a_missing_brief_fails_its_subject_and_an_escaping_one_its_file(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(FIXTURE / "config", tmp_path / "config")
    cat = tmp_path / "config/catalogue/computer-vision.toml"
    original = cat.read_text()
    cat.write_text(original.replace('brief = "sources/image-classification.md"', 'brief = "sources/nope.md"'))
    catalogue = load_catalogue(tmp_path / "config")  # the catalogue loads: only that subject's pairs fail
    assert not catalogue.broken
    with pytest.raises(SourceError, match=r"the brief config/sources/nope\.md of image-classification does not exist"):
        gather(catalogue.subjects["image-classification"], tmp_path, 6000)
    gather(catalogue.subjects["image-segmentation"], tmp_path, 6000)
    cat.write_text(original.replace('brief = "sources/image-classification.md"', 'brief = "../../etc/passwd.md"'))
    assert "points outside" in refused(tmp_path / "config")


def test_list_shows_which_subjects_have_briefs(run_cli, workspace: Path) -> None:
    cat = workspace / "config/catalogue/databases.toml"
    cat.write_text(cat.read_text().replace('brief = "sources/mysql.md"\n', ""))
    out = run_cli("list").stdout
    assert "[brief: config/sources/postgresql.md]" in out
    assert next(line for line in out.splitlines() if line.strip().startswith("mysql")).endswith("[no brief]")
