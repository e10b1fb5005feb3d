from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.errors import StoreBusyError
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
        assert err.value.exit_code == 75
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    assert Store(path, lock_timeout_s=5).find_cached("x") is None  # usable after the holder died
