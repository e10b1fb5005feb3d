"""`--shard i/n` splits a batch without coordination; `store export` / `store import` merge the shards."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from pipeline.batch import shard_of
from tests.conftest import add_category, cli
from tests.fakeserver import FakeLLM

SUBJECTS = 11  # 11 profiles, 55 pairs
UNITS = SUBJECTS + 55


def planned(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith(("generate ", "fresh ", "later ",
                                                                             "deferred "))]  # fmt: skip


@pytest.mark.parametrize("n", [1, 3, 4])
def test_shards_cover_every_pair_exactly_once(workspace: Path, n: int) -> None:
    add_category(workspace, SUBJECTS)
    everything = planned(cli(workspace, "batch", "--category", "widgets", "--dry-run").stdout)
    assert len(everything) == UNITS
    shares = [planned(cli(workspace, "batch", "--category", "widgets", "--dry-run", "--shard", f"{i}/{n}").stdout)
              for i in range(1, n + 1)]  # fmt: skip
    # every profile (split by subject) and every pair (split by pair) in exactly one shard
    assert sorted(p for share in shares for p in share) == sorted(everything)  # all of them, none twice
    assert all(share for share in shares)  # 66 units over at most 4 shards: none is empty


def test_shard_hash_is_stable_and_spreads_evenly() -> None:
    keys = [f"widget-{a:03d},widget-{b:03d}" for a in range(60) for b in range(a + 1, 60)]  # 1770 pairs
    counts = [0] * 4
    for key in keys:
        counts[shard_of(key, 4) - 1] += 1
    assert all(abs(c - len(keys) / 4) < len(keys) * 0.05 for c in counts), counts
    # Pinned values: a change here would send pairs to other machines after an upgrade.
    assert [shard_of(k, 4) for k in keys[:8]] == [1, 2, 3, 1, 2, 1, 4, 2]
    assert shard_of("image-classification,image-segmentation", 4) == 1


@pytest.mark.parametrize("bad", ["0/4", "5/4", "2", "a/b", "2/0"])
def test_bad_shard_is_a_usage_error(workspace: Path, bad: str) -> None:
    done = cli(workspace, "batch", "--category", "databases", "--dry-run", "--shard", bad)
    assert done.returncode == 2
    assert "must look like i/n" in done.stderr and done.stderr.count("\n") == 1


def test_four_shards_run_apart_and_merge_into_one_store_without_duplicates(
    workspace: Path, fake: FakeLLM, tmp_path: Path
) -> None:
    add_category(workspace, SUBJECTS)
    exports, made = [], 0
    for i in range(1, 5):  # four "machines": each its own store, nothing shared
        store = tmp_path / f"shard-{i}.duckdb"
        done = cli(workspace, "--store", str(store), "batch", "--category", "widgets", "--shard", f"{i}/4")
        assert done.returncode == 0, done.stderr  # pairs needing another shard's profile are deferred, not failed
        folder = tmp_path / f"export-{i}"
        out = cli(workspace, "--store", str(store), "store", "export", str(folder))
        assert out.returncode == 0, out.stderr
        manifest = json.loads((folder / "manifest.json").read_text())["rows"]
        assert manifest["runs"] == 1
        made += manifest["generations"]
        exports.append(str(folder))
    assert fake.calls == made and SUBJECTS <= made < UNITS  # every profile once; the pairs a shard could finish

    merged = tmp_path / "merged.duckdb"
    first = cli(workspace, "--store", str(merged), "store", "import", *exports)
    assert first.returncode == 0, first.stderr
    assert f"added {made} generations, {made} attempts, 4 runs, {UNITS} run_items" in first.stdout
    con = duckdb.connect(str(merged), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT pair_key) FROM generations").fetchone() == (made, made)
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (4,)
        assert con.execute("SELECT count(*), count(DISTINCT pair_key) FROM run_items").fetchone() == (UNITS, UNITS)
        names = sorted(n for (n,) in con.execute("SELECT name FROM runs").fetchall())
        assert names == [f"category-widgets (shard {i}/4)" for i in range(1, 5)]
        tables = ("generations", "attempts", "schemas", "runs", "run_items", "snapshots", "publications")
        before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables}
    finally:
        con.close()

    again = cli(workspace, "--store", str(merged), "store", "import", *exports)  # importing twice adds nothing
    assert again.returncode == 0, again.stderr
    assert "added 0 generations, 0 attempts, 0 runs, 0 run_items, 0 schemas, 0 snapshots" in again.stdout
    con = duckdb.connect(str(merged), read_only=True)
    try:
        assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in before} == before
    finally:
        con.close()

    # A ledger row imported while its run was still going is replaced by the finished one.
    con = duckdb.connect(str(merged))
    con.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE name LIKE '%shard 2/4%'")
    con.execute("UPDATE run_items SET status = 'pending', updated_at = '2000-01-01T00:00:00Z' "
                "WHERE run_id IN (SELECT id FROM runs WHERE name LIKE '%shard 2/4%')")  # fmt: skip
    con.close()
    assert cli(workspace, "--store", str(merged), "store", "import", exports[1]).returncode == 0
    con = duckdb.connect(str(merged), read_only=True)
    try:
        assert con.execute("SELECT status FROM runs WHERE name LIKE '%shard 2/4%'").fetchall() == [("finished",)]
        assert {s for (s,) in con.execute("SELECT DISTINCT status FROM run_items").fetchall()} <= {
            "generated",
            "deferred",
        }
        assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in before} == before
    finally:
        con.close()

    # The merged store runs the batch once more: every profile is fresh, the deferred pairs are written.
    rerun = cli(workspace, "--store", str(merged), "batch", "--category", "widgets")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{UNITS - made} generated, {made} fresh" in rerun.stdout
    assert fake.calls == UNITS
    rendered = cli(workspace, "--store", str(merged), "render")
    assert rendered.returncode == 0, rendered.stderr
    assert "rendered 55 comparisons" in rendered.stdout
    quality = cli(workspace, "--store", str(merged), "quality")
    assert "0 subject-dimensions shown differently on different pages" in quality.stdout


def test_export_and_import_refuse_bad_folders(workspace: Path, fake: FakeLLM, tmp_path: Path) -> None:
    assert cli(workspace, "run", "--pair", "duckdb,mysql").returncode == 0
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    busy = cli(workspace, "store", "export", str(folder))
    assert busy.returncode == 2 and "not empty" in busy.stderr
    assert (folder / "keep.txt").read_text() == "mine"

    good = tmp_path / "good"
    assert cli(workspace, "store", "export", str(good)).returncode == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    target = tmp_path / "target.duckdb"
    for bad, message in ((tmp_path / "missing", "no manifest.json"), (broken, "not valid JSON")):
        done = cli(workspace, "--store", str(target), "store", "import", str(good), str(bad))
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1
    # the good folder before the bad one was not imported either: all or nothing
    if target.exists():
        con = duckdb.connect(str(target), read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM generations").fetchone() == (0,)
        finally:
            con.close()
