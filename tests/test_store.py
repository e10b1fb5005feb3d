from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.errors import StoreBusyError
from pipeline.exitcodes import ExitCode, exit_code
from pipeline.models import AttemptRecord, Comparison, Problem, Usage
from pipeline.store import MIGRATIONS, Store


def comparison(gid: str, generated_at: str, key: str = "k1") -> Comparison:
    return Comparison(
        generation_id=gid, pair_key="a,b", category="c", data={"x": 1}, generated_at=generated_at,
        provider="openai", model="m", cache_key=key, prompt_sha256="p", schema_sha256="s",
        sources=({"subject": "a", "sha256": "0"},), attempts=2, usage=Usage(10, 5),
    )  # fmt: skip


def test_migrations_are_recorded_once_and_generations_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    attempts = [
        AttemptRecord(1, "invalid", "{bad", (Problem("x", "wrong"),), Usage(5, 2), 10),
        AttemptRecord(2, "accepted", "{}", (), Usage(5, 3), 12),
    ]
    store.save_generation(comparison("g1", "2026-11-01T10:00:00Z"), request={"m": 1}, raw_response="{}",
                          latency_ms=22, invocation_id="inv", attempts=attempts)  # fmt: skip
    store.save_generation(comparison("g2", "2026-11-02T10:00:00Z", "k2"), request={}, raw_response="{}",
                          latency_ms=1, invocation_id="inv2", attempts=[])  # fmt: skip
    again = Store(tmp_path / "s.duckdb")  # a second process/session: migrations already there
    assert again.find_cached("k1") == comparison("g1", "2026-11-01T10:00:00Z")
    assert [c.generation_id for c in again.history("a,b")] == ["g1", "g2"]
    assert [c.generation_id for c in again.latest_all()] == ["g2"]
    assert [a["outcome"] for a in again.attempts("a,b")] == ["invalid", "accepted"]
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    assert con.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_busy_store_exits_75_and_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pipeline.store import Store; s = Store(__import__('pathlib').Path(sys.argv[1]), "
         "holder='pipeline batch nightly'); cm = s.session(); cm.__enter__(); print('held', flush=True); "
         "time.sleep(30)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match=r"busy \(held by pid \d+ \(pipeline batch nightly\)") as err:
            Store(path, lock_timeout_s=0.5).find_cached("x")
        assert exit_code(err.value) == ExitCode.BUSY == 75
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    assert Store(path, lock_timeout_s=5).find_cached("x") is None  # usable after the holder died


def test_a_store_made_by_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file with migrations 001-006 and a generation written the old way reads back after 007."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at VARCHAR)")
    for name, sql in MIGRATIONS[:6]:
        con.execute(sql)
        con.execute("INSERT INTO _migrations VALUES (?, ?)", [name, "2026-11-29T00:00:00Z"])
    con.execute(  # the 18 columns of a release before 007, in their order
        "INSERT INTO generations VALUES ('g0', 'a,b', 'c', 'k0', 'openai', 'm', '{}', 'p', 's', "
        "'[{\"subject\": \"a\", \"sha256\": \"0\"}]', '{}', '{}', '{\"x\": 1}', 1, 10, 5, 3, '2026-11-28T10:00:00Z')"
    )
    con.close()
    store = Store(path)
    old = store.history("a,b")
    assert [c.generation_id for c in old] == ["g0"] and old[0].usage == Usage(10, 5)
    attempt = AttemptRecord(1, "accepted", "{}", (), Usage(7, 3, 4, 2), 5)
    store.save_generation(comparison("g1", "2026-12-01T10:00:00Z"), request={}, raw_response="{}", latency_ms=1,
                          invocation_id="i", attempts=[attempt])  # fmt: skip
    assert [c.generation_id for c in store.history("a,b")] == ["g0", "g1"]
    assert store.attempts("a,b")[0]["cached_tokens"] == 4
    con = duckdb.connect(str(path))
    assert [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY name").fetchall()][
        -1
    ] == "007_token_details"
