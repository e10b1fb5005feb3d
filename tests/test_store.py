from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.errors import ConfigError, StoreBusyError
from pipeline.exitcodes import ExitCode, exit_code
from pipeline.models import AttemptRecord, Comparison, Problem, SourceRecord, Usage
from pipeline.store import MIGRATIONS, NewGeneration, Store, migrations
from pipeline.store.exchange import export, import_
from tests.conftest import REPO


def comparison(gid: str, generated_at: str, key: str = "k1") -> Comparison:
    return Comparison(
        generation_id=gid, pair_key="a,b", category="c", data={"x": 1}, generated_at=generated_at,
        provider="openai", model="m", cache_key=key, prompt_sha256="p", schema_sha256="s",
        sources=(SourceRecord("a", "description", "text", "catalogue", "0"),), attempts=2, usage=Usage(10, 5),
    )  # fmt: skip


def test_migrations_are_recorded_once_and_generations_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    attempts = [
        AttemptRecord(1, "invalid", "{bad", (Problem("x", "wrong"),), Usage(5, 2), 10),
        AttemptRecord(2, "accepted", "{}", (), Usage(5, 3), 12),
    ]
    store.save_generation(NewGeneration(comparison("g1", "2026-11-01T10:00:00Z"), {"m": 1}, "{}", 22, "inv", attempts))
    store.save_generation(NewGeneration(comparison("g2", "2026-11-02T10:00:00Z", "k2"), {}, "{}", 1, "inv2", []))
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
    for migration in MIGRATIONS[:6]:
        for statement in migration.statements():
            con.execute(statement)
        con.execute("INSERT INTO _migrations VALUES (?, ?)", [migration.name, "2026-11-29T00:00:00Z"])
    con.execute(  # the 18 columns of a release before 007, in their order
        "INSERT INTO generations VALUES ('g0', 'a,b', 'c', 'k0', 'openai', 'm', '{}', 'p', 's', "
        "'[{\"subject\": \"a\", \"sha256\": \"0\"}]', '{}', '{}', '{\"x\": 1}', 1, 10, 5, 3, '2026-11-28T10:00:00Z')"
    )
    con.close()
    store = Store(path)
    old = store.history("a,b")
    assert [c.generation_id for c in old] == ["g0"] and old[0].usage == Usage(10, 5)
    attempt = AttemptRecord(1, "accepted", "{}", (), Usage(7, 3, 4, 2), 5)
    store.save_generation(NewGeneration(comparison("g1", "2026-12-01T10:00:00Z"), {}, "{}", 1, "i", [attempt]))
    assert [c.generation_id for c in store.history("a,b")] == ["g0", "g1"]
    assert store.attempts("a,b")[0]["cached_tokens"] == 4
    con = duckdb.connect(str(path))
    applied = [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
    assert applied == [m.name for m in MIGRATIONS]


def _release_1_store(tmp_path: Path) -> Path:
    """The store that the first release (310488a) wrote: see tests/data/stores/make_release_1.py."""
    path = tmp_path / "release-1.duckdb"
    with gzip.open(REPO / "tests/data/stores/release-1.duckdb.gz") as packed, path.open("wb") as out:
        shutil.copyfileobj(packed, out)
    return path


def test_a_store_written_by_the_first_release_is_upgraded_and_reads_back(tmp_path: Path) -> None:
    path = _release_1_store(tmp_path)
    before = duckdb.connect(str(path), read_only=True)
    assert before.execute("SELECT name FROM _migrations ORDER BY name").fetchall() == [
        ("001_generations",), ("002_attempts",)
    ]  # fmt: skip
    old_rows = before.execute("SELECT id, pair_key, data FROM generations ORDER BY id").fetchall()
    before.close()
    store = Store(path)
    history = store.history("image-classification,image-segmentation")
    assert len(history) == 1 and history[0].model == "fake-model" and history[0].provider == "openai"
    # migration 008 moved the prompt templates' hash and the answering model out of params into fields
    old = history[0]
    assert old.answered_by == "fake-model" and len(old.template_sha256) == 64
    assert "template_sha256" not in old.params and "answered_by" not in old.params and old.params["seed"] == 7
    assert old.report_params()["template_sha256"] == old.template_sha256  # the report's format is unchanged
    assert {(c.generation_id, c.pair_key) for c in store.latest_all()} == {(r[0], r[1]) for r in old_rows}
    assert [json.loads(r[2]) for r in sorted(old_rows)] == [
        c.data for c in sorted(store.latest_all(), key=lambda c: c.generation_id)
    ]
    assert [a["outcome"] for a in store.attempts("django,flask")] == ["accepted"]
    con = duckdb.connect(str(path), read_only=True)
    applied = [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()
    assert applied == [m.name for m in MIGRATIONS]
    assert tables == {"_migrations", *migrations.tables()}  # every table the registry declares, no other


def test_export_carries_every_table_of_the_registry(tmp_path: Path) -> None:
    """Export then import into an empty store: every table the registry declares, every row."""
    store = Store(tmp_path / "s.duckdb")
    store.save_generation(NewGeneration(comparison("g1", "2026-12-01T10:00:00Z"), {}, "{}", 1, "i", [],
                                        schema_body='{"type": "object"}'))  # fmt: skip
    exported = export(store, tmp_path / "export")
    assert set(exported.rows) == set(migrations.tables())
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"manifest.json"} | {
        f"{t}.parquet" for t in migrations.tables()
    }
    imported = import_(Store(tmp_path / "fresh.duckdb"), [tmp_path / "export"])
    assert imported.added == exported.rows and exported.rows["generations"] == 1


def test_an_upgraded_first_release_store_exports_but_its_unverifiable_generations_are_refused(tmp_path: Path) -> None:
    """The first release kept no schema bodies, so its generations cannot be checked on import: refused in one line."""
    exported = export(Store(_release_1_store(tmp_path)), tmp_path / "export")
    assert set(exported.rows) == set(migrations.tables()) and exported.rows["generations"] == 2
    fresh = Store(tmp_path / "fresh.duckdb")
    with pytest.raises(ConfigError, match=r"was made with a schema \(\w{12}\) the export does not carry; nothing"):
        import_(fresh, [tmp_path / "export"])
    assert fresh.latest_all() == []


def test_a_migration_must_declare_the_tables_it_creates() -> None:
    with pytest.raises(AssertionError, match="creates \\['extra'\\] but declares \\[\\]"):
        migrations.register("999_extra", "CREATE TABLE extra (id VARCHAR)", {})
    assert MIGRATIONS[-1].name != "999_extra"
