from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pipeline.catalogue import load_catalogue
from tests.conftest import FIXTURE, refused


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE / "config", tmp_path / "config")
    return tmp_path / "config"


def test_shipped_catalogue_has_reference_pair_and_enough_material() -> None:
    cat = load_catalogue(FIXTURE / "config")
    pair = cat.pair("image-segmentation,image-classification")
    assert (pair.a.id, pair.b.id) == ("image-classification", "image-segmentation")
    assert (pair.a.vendor, pair.b.vendor) == ("Google", "Facebook")
    assert [d.name for d in pair.category.dimensions] == [
        "Accuracy", "Complexity", "Speed", "Applications", "Data Requirements", "Real-world Impact"
    ]  # fmt: skip
    others = [c for c in cat.categories if c != "computer-vision"]
    assert len(others) >= 2
    for cid in others:
        assert sum(1 for s in cat.subjects.values() if s.category == cid) >= 4


def test_aliases_and_related_pairs() -> None:
    cat = load_catalogue(FIXTURE / "config")
    assert cat.pair("Segmentation,classification").key == "image-classification,image-segmentation"
    related = [p.key for p in cat.related_pairs(cat.pair("image-classification,image-segmentation"))]
    assert "image-classification,object-detection" in related
    assert "image-classification,image-segmentation" not in related


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "nul\x00id", "x" * 300, "Upper", "-lead"])
def test_hostile_subject_ids_are_refused(config: Path, bad_id: str) -> None:
    path = config / "catalogue/databases.toml"
    escaped = bad_id.replace("\x00", "\\u0000")
    path.write_text(path.read_text().replace('id = "mysql"', f'id = "{escaped}"'))
    assert "is not a valid id" in refused(config)


def test_duplicate_ids_across_files(config: Path) -> None:
    path = config / "catalogue/web-frameworks.toml"
    path.write_text(path.read_text().replace('id = "flask"', 'id = "mysql"'))
    assert re.search("already defined in .*databases.toml", refused(config))
    assert "databases" in load_catalogue(config).categories  # the file read first keeps its category


def test_category_without_dimensions(config: Path) -> None:
    (config / "catalogue/empty.toml").write_text('[category]\nid = "empty"\nname = "Empty"\n')
    assert "has no dimensions" in refused(config)


def test_empty_description(config: Path) -> None:
    path = config / "catalogue/databases.toml"
    text = path.read_text()
    start = text.index('description = "MySQL')
    end = text.index("\n", start)
    path.write_text(text[:start] + 'description = "  "' + text[end:])
    assert "subject mysql: `description` must be a non-empty string" in refused(config)


def test_malformed_toml_reports_file_line_and_column(config: Path) -> None:
    path = config / "catalogue/databases.toml"
    path.write_text('[category]\nid = "databases"\nname = oops\n')
    assert re.search(r"databases\.toml:3:\d+: malformed TOML", refused(config))


def test_unicode_names_work(config: Path) -> None:
    path = config / "catalogue/databases.toml"
    path.write_text(path.read_text().replace('name = "MySQL"', 'name = "数据库 מסד 🚀"'))
    assert load_catalogue(config).subject("mysql").name == "数据库 מסד 🚀"
