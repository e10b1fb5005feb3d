from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from pipeline.errors import SourceError
from pipeline.gather import gather
from pipeline.models import SourceSpec, Subject


def subject(*sources: SourceSpec, description: str = "A database.") -> Subject:
    return Subject("db", "DB", "Vendor", "databases", description, sources=sources)


def test_sources_are_normalised_and_hashed(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_bytes(b"Line one  \r\nLine two\x07\r\n")
    bundle = gather(subject(SourceSpec("file", "notes", path="notes.md")), tmp_path, 1000)
    assert [s.label for s in bundle.sources] == ["description", "notes"]
    notes = bundle.sources[1]
    assert notes.text == "Line one\nLine two"
    assert notes.sha256 == hashlib.sha256(b"Line one\nLine two").hexdigest()
    assert notes.location == "notes.md"


def test_long_source_is_cut_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    big = "word " * 1_000_000  # 5 MB description
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        bundle = gather(subject(description=big), tmp_path, 6000)
    assert bundle.sources[0].truncated and len(bundle.sources[0].text) == 6000
    assert "cut to 6000" in caplog.text


def test_file_sources_stay_inside_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(outside, ws / "link.txt")
    for path in ("link.txt", "../secret.txt", str(outside)):
        with pytest.raises(SourceError, match="outside the workspace|relative to the workspace"):
            gather(subject(SourceSpec("file", "x", path=path)), ws, 1000)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        gather(subject(SourceSpec("file", "x", path="missing.txt")), tmp_path, 1000)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8 .* convert it to UTF-8"):
        gather(subject(SourceSpec("file", "x", path="latin1.txt")), tmp_path, 1000)
