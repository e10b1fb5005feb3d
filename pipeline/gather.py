"""Gather: the source texts of one subject, normalised, capped and hashed.

Sources are untrusted text. A file source is a path relative to the workspace
and must stay inside it after symlinks are resolved.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.briefs import parse_brief
from pipeline.errors import SourceError
from pipeline.models import Source, SourceBundle, Subject
from pipeline.text import normalise

if TYPE_CHECKING:
    from pipeline.fetch import Fetcher

log = logging.getLogger("pipeline")


def gather(subject: Subject, workspace: Path, max_chars: int, fetcher: Fetcher | None = None) -> SourceBundle:
    sources = [_make(subject.id, "description", "text", "catalogue", subject.description, max_chars)]
    if subject.brief:
        sources.append(_brief(subject, workspace, max_chars))
    for spec in subject.sources:
        if spec.kind == "text":
            sources.append(_make(subject.id, spec.label, "text", "catalogue", spec.text, max_chars))
        elif spec.kind == "url":
            if fetcher is None:
                raise SourceError(f"source {spec.label!r} of {subject.id} is a URL and fetching is not set up here")
            snap = fetcher.text(spec.path, f"source {spec.label!r} of {subject.id}")
            made = _make(subject.id, spec.label, "url", snap.final_url, snap.text, max_chars)
            sources.append(replace(made, retrieved_at=snap.fetched_at))
        else:
            text = _read_file(workspace, spec.path, subject.id)
            sources.append(_make(subject.id, spec.label, "file", spec.path, text, max_chars))
    return SourceBundle(subject_id=subject.id, sources=tuple(sources))


def _brief(subject: Subject, workspace: Path, max_chars: int) -> Source:
    """The brief's facts as a source; its sha256 covers the whole file, references included."""
    rel = f"config/{subject.brief}"
    if not (workspace / rel).is_file():
        raise SourceError(
            f"the brief {rel} of {subject.id} does not exist ({subject.defined_in} names it); "
            "write it or remove `brief` from the subject"
        )
    raw = normalise(_read_file(workspace, rel, subject.id))
    brief = parse_brief(raw, rel)
    for warning in brief.warnings:
        log.warning("%s", warning)
    made = _make(subject.id, "brief", "brief", rel, brief.text, max_chars)
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    return replace(
        made,
        sha256=digest,
        references=brief.references,
        alternatives=brief.alternatives,
        strengths=brief.strengths,
        limitations=brief.limitations,
    )


def _make(subject_id: str, label: str, kind: str, location: str, text: str, max_chars: int) -> Source:
    text = normalise(text)
    truncated = len(text) > max_chars
    if truncated:
        log.warning(
            "source %r of %s has %d characters; cut to %d (raise [sources] max_chars to keep more)",
            label,
            subject_id,
            len(text),
            max_chars,
        )
        text = text[:max_chars]
    if not text:
        raise SourceError(f"source {label!r} of {subject_id} is empty; give it text or remove it")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Source(subject_id, label, kind, location, text, digest, truncated)


def _read_file(workspace: Path, rel: str, subject_id: str) -> str:
    root = workspace.resolve()
    candidate = Path(rel)
    if candidate.is_absolute() or "\x00" in rel:
        raise SourceError(f"source path {rel!r} of {subject_id} must be relative to the workspace")
    path = (root / candidate).resolve()
    if not path.is_relative_to(root):
        raise SourceError(
            f"source path {rel!r} of {subject_id} points outside the workspace ({root}); "
            "copy the file into the workspace"
        )
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise SourceError(f"source file {rel!r} of {subject_id} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"source file {rel!r} of {subject_id} is not UTF-8 (byte {exc.start}); convert it to UTF-8"
        ) from exc
    except OSError as exc:
        raise SourceError(f"source file {rel!r} of {subject_id} cannot be read: {exc.strerror}") from exc
