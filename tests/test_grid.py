"""Grid mode (issue #29, item 4): a capable model rates a category's subjects together, in calls
of a bounded size; each subject still gets its own profile generation, published and shown as in
per-subject mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.generation.grid import chunks
from pipeline.models import Source, SourceBundle, Subject
from tests.conftest import add_category, cli, db
from tests.fakeserver import FakeLLM

GRID_SYSTEM = "You rate several subjects of one category together"


def grid_mode(ws: Path, grid_chars: int = 24_000, extra: str = "") -> None:
    config = ws / "config/pipeline.toml"
    text = config.read_text(encoding="utf-8")
    line = 'api_key_env = "PIPELINE_TEST_KEY"\n'
    config.write_text(text.replace(line, f'{line}profiles = "grid"\ngrid_chars = {grid_chars}\n{extra}'),
                      encoding="utf-8")  # fmt: skip


def grid_calls(fake: FakeLLM) -> list[dict]:
    return [r for r in fake.requests if r["messages"][0]["content"].startswith(GRID_SYSTEM)]


def subjects_in(request: dict) -> list[str]:
    return sorted(request["response_format"]["json_schema"]["schema"]["properties"])


def test_a_category_is_rated_in_one_call_and_each_subject_gets_its_own_profile(workspace: Path, fake: FakeLLM) -> None:
    add_category(workspace)
    grid_mode(workspace)
    result = cli(workspace, "batch", "--category", "widgets", "--concurrency", "4", "--json", "-")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["counts"]["generated"] == 11 + 55
    calls = grid_calls(fake)
    assert len(calls) == 1 and subjects_in(calls[0]) == [f"widget-{i:02d}" for i in range(11)]
    assert len(fake.requests) == 1 + 55  # the texts of each pair, from the two profiles
    rows = db(workspace, "SELECT pair_key, cache_key, params FROM generations WHERE kind = 'profile'")
    assert len(rows) == 11 and len({r[1] for r in rows}) == 11
    grids = {json.dumps(json.loads(r[2])["grid"], sort_keys=True) for r in rows}
    assert len(grids) == 1 and all(json.loads(r[2])["mode"] == "grid" for r in rows)
    # one answer, one set of attempts: the call is counted once, on the first member
    attempts = db(workspace, "SELECT count(*) FROM attempts a JOIN generations g ON g.id = a.generation_id "
                             "WHERE g.kind = 'profile'")  # fmt: skip
    assert attempts[0][0] == 1
    again = cli(workspace, "batch", "--category", "widgets", "--json", "-")
    assert again.returncode == 0 and len(fake.requests) == 56  # nothing changed: no call
    assert cli(workspace, "quality").returncode == 0


def test_chunks_keep_to_the_budget_and_a_brief_change_asks_its_chunk_again(workspace: Path, fake: FakeLLM) -> None:
    add_category(workspace)
    catalogue = workspace / "config/catalogue/widgets.toml"
    long = "is a test subject. " + "It has a long description sentence. " * 14
    catalogue.write_text(catalogue.read_text().replace('is a test subject."', f'{long.strip()}"'))
    grid_mode(workspace, grid_chars=2_000)
    assert cli(workspace, "batch", "--category", "widgets").returncode == 0
    calls = grid_calls(fake)
    members = [subjects_in(c) for c in calls]
    assert len(calls) >= 2 and all(len(m) >= 2 for m in members)
    assert sorted(s for m in members for s in m) == [f"widget-{i:02d}" for i in range(11)]
    for call in calls:  # the sources in one call stay within half again the budget
        sources = call["messages"][1]["content"].split("Sources of", 1)[1]
        assert len(sources) < 3_000 + 600 * len(subjects_in(call))
    # one subject's description changes: its chunk is asked again (calibrated together), the others are not
    catalogue.write_text(catalogue.read_text().replace("Widget number 4 is", "Widget number 4, now faster, is"))
    before = len(fake.requests)
    assert cli(workspace, "batch", "--category", "widgets").returncode == 0
    again = grid_calls(fake)[len(calls) :]
    chunk = next(m for m in members if "widget-04" in m)
    assert [subjects_in(c) for c in again] == [chunk]
    texts = len(fake.requests) - before - 1
    showing = {f"widget-{i:02d}" for i in range(11)}
    pairs_of_chunk = sum(1 for a in showing for b in showing if a < b and (a in chunk or b in chunk))
    assert texts == pairs_of_chunk  # the texts of pages showing a re-rated subject, no others


def test_run_pair_asks_the_grid_once_and_keeps_every_members_profile(workspace: Path, fake: FakeLLM) -> None:
    add_category(workspace, subjects=5)
    grid_mode(workspace)
    first = cli(workspace, "run", "--pair", "widget-00,widget-01")
    assert first.returncode == 0, first.stderr
    assert len(grid_calls(fake)) == 1 and len(fake.requests) == 2  # the grid, then the pair's texts
    assert db(workspace, "SELECT count(*) FROM generations WHERE kind = 'profile'")[0][0] == 5
    published = {r[0] for r in db(workspace, "SELECT pair_key FROM publications")}
    assert {"widgets/widget-00", "widgets/widget-01"} <= published and "widgets/widget-02" not in published
    second = cli(workspace, "run", "--pair", "widget-02,widget-03")
    assert second.returncode == 0, second.stderr
    assert len(grid_calls(fake)) == 1 and len(fake.requests) == 3  # the profiles came from that call


def test_a_members_broken_profile_is_named_in_the_reask(workspace: Path, fake: FakeLLM) -> None:
    add_category(workspace, subjects=3)
    grid_mode(workspace)
    broken = {"done": False}

    def mutate(data: dict, request: dict) -> dict:
        if "widget-01" in data and not broken["done"]:
            broken["done"] = True
            data["widget-01"]["pros"] = data["widget-01"]["pros"][:1] * 2  # the same pro twice
        return data

    fake.mutate = mutate
    result = cli(workspace, "run", "--pair", "widget-00,widget-02")
    assert result.returncode == 0, result.stderr
    calls = grid_calls(fake)
    assert len(calls) == 2
    assert "widget-01.pros" in calls[1]["messages"][-1]["content"]
    outcomes = db(workspace, "SELECT outcome FROM attempts ORDER BY created_at, number")
    assert [o[0] for o in outcomes][:2] == ["invalid", "accepted"]


def test_what_grid_mode_refuses(workspace: Path, fake: FakeLLM) -> None:
    add_category(workspace, subjects=3)
    grid_mode(workspace, extra="small = true\n")
    result = cli(workspace, "run", "--pair", "widget-00,widget-01")
    assert result.returncode == 2 and "grid mode is for capable models" in result.stderr
    grid_mode_off = (workspace / "config/pipeline.toml").read_text().replace("small = true\n", "")
    (workspace / "config/pipeline.toml").write_text(grid_mode_off)
    result = cli(workspace, "run", "--pair", "widget-00,widget-01", "--samples", "3")
    assert result.returncode == 2 and "not supported in grid mode" in result.stderr
    result = cli(workspace, "batch", "--category", "widgets", "--via", "openai-batch", "--dry-run")
    assert result.returncode == 2 and "--via openai-batch does not support" in result.stderr
    assert fake.calls == 0


def _member(i: int, chars: int) -> tuple[Subject, SourceBundle]:
    subject = Subject(id=f"s{i}", name=f"S{i}", vendor="V", category="c", description="d")
    source = Source(subject.id, "description", "text", "catalogue", "x" * chars, "sha")
    return subject, SourceBundle(subject.id, (source,))


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        ([100] * 5, 1_000, [5]),
        ([400] * 5, 1_000, [2, 3]),  # the last one alone joins the chunk before (1,200 ≤ 1,500)
        ([400, 400, 900], 1_000, [2, 1]),  # 1,700 is more than half again the budget: it stays alone
        ([2_000, 100, 100], 1_000, [1, 2]),  # larger than the budget: a chunk of its own
    ],
)
def test_chunks(sizes: list[int], budget: int, expected: list[int]) -> None:
    found = chunks([_member(i, n) for i, n in enumerate(sizes)], budget)
    assert [len(c) for c in found] == expected
    assert [s.id for c in found for s, _ in c] == [f"s{i}" for i in range(len(sizes))]
