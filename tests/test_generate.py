"""Generate, called as a library (no CLI): a job is prepared, produced with re-asks, and committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import OutputInvalidError
from pipeline.generation.run import commit, produce
from pipeline.store import FailedAttempts, NewGeneration
from pipeline.workspace import Workspace
from tests.fakeserver import FakeLLM

PAIR = "image-classification,image-segmentation"


@pytest.fixture
def ws(workspace: Path) -> Workspace:
    return Workspace(str(workspace))


def _job(ws: Workspace, model: str | None = None):
    """The profile job of the pair's first subject."""
    provider = ws.provider(ws.profile(None, model)[0])
    pair = ws.pair(PAIR)
    return ws.units().profile(pair.a, pair.category, provider, ws.generation(provider)), provider


def test_an_invalid_answer_is_re_asked_and_the_valid_one_committed(ws: Workspace, fake: FakeLLM) -> None:
    fake.push({"kind": "schema_invalid"})
    job, provider = _job(ws)
    produced = produce(job, provider, ws.prompts, ws.settings.transport)
    assert [r.outcome for r in produced.records] == ["invalid", "accepted"] and produced.attempts == 2
    assert len(fake.requests[1]["messages"]) > len(fake.requests[0]["messages"])  # the re-ask carries the problems
    written = produced.written()
    assert isinstance(written, NewGeneration) and written.comparison is produced.comparison
    assert written.comparison.template_sha256 == job.messages.template_sha256
    assert written.comparison.answered_by == "fake-model"
    result = commit(produced, ws.store)
    stored = ws.store.find_cached(job.cache_key)
    assert stored is not None and stored.generation_id == result.comparison.generation_id
    assert [a["outcome"] for a in ws.store.attempts("computer-vision/image-classification")] == ["invalid", "accepted"]


def test_output_that_stays_invalid_keeps_its_attempts_and_raises(ws: Workspace, fake: FakeLLM) -> None:
    fake.default = {"kind": "schema_invalid"}
    job, provider = _job(ws)
    produced = produce(job, provider, ws.prompts, ws.settings.transport)
    assert produced.comparison is None and isinstance(produced.error, OutputInvalidError)
    assert isinstance(produced.written(), FailedAttempts)
    with pytest.raises(OutputInvalidError):
        commit(produced, ws.store)
    assert ws.store.find_cached(job.cache_key) is None
    assert len(ws.store.attempts("computer-vision/image-classification")) == ws.settings.generation.max_attempts


def test_the_cache_key_changes_with_the_inputs_and_only_with_them(ws: Workspace) -> None:
    job, _ = _job(ws)
    again, _ = _job(Workspace(str(ws.root)))
    assert job.cache_key == again.cache_key
    assert _job(ws, "another-model")[0].cache_key != job.cache_key
