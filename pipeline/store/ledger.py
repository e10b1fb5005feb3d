"""The run ledger: batch runs and their items, in the same DuckDB file."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.store.connection import Connection, dicts, dumps, insert_rows
from pipeline.store.generations import write_generations
from pipeline.store.published import publish_in
from pipeline.store.records import LedgerEntry
from pipeline.text import utc_now

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

_ITEM_COLUMNS = (
    "run_items (run_id, pair_key, status, attempts, prompt_tokens, completion_tokens, cost, latency_ms, error, "
    "generation_id, updated_at, cached_tokens, reasoning_tokens)"
)


class Ledger:
    """The run ledger: batch runs and their items, in the same DuckDB file."""

    def __init__(self, store: Connection):
        self.store = store

    def start(self, run_id: str, name: str, spec: dict[str, Any], provider: str, model: str,
              pair_keys: Sequence[str], resumed_from: str | None) -> None:  # fmt: skip
        with self.store.session() as con:
            self.start_in(con, run_id, name, spec, provider, model, pair_keys, resumed_from)

    @staticmethod
    def start_in(con: DuckDBPyConnection, run_id: str, name: str, spec: dict[str, Any], provider: str, model: str,
                 pair_keys: Sequence[str], resumed_from: str | None, status: str = "running") -> None:  # fmt: skip
        """`start` inside a transaction the caller holds."""
        now = utc_now()
        # Which process runs it: a run whose process was killed (SIGKILL, a lost machine) is shown as
        # interrupted instead of running forever.
        spec = {**spec, "_process": {"pid": os.getpid(), "host": socket.gethostname()}}
        con.execute(
            "INSERT INTO runs (id, name, spec, provider, model, started_at, finished_at, status, resumed_from) "
            "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            [run_id, name, dumps(spec), provider, model, now, status, resumed_from],
        )
        if pair_keys:
            insert_rows(con, "run_items (run_id, pair_key, status, updated_at)",
                         [[run_id, key, "pending", now] for key in pair_keys])  # fmt: skip

    def record(self, run_id: str, entries: Sequence[LedgerEntry]) -> None:
        """Items' outcomes with their generations or failed attempts, all in one short transaction.

        Grouping matters: opening and closing the DuckDB file costs far more than the inserts.
        """
        if entries:
            with self.store.session() as con:
                self.record_in(con, run_id, entries)

    @staticmethod
    def record_in(con: DuckDBPyConnection, run_id: str, entries: Sequence[LedgerEntry]) -> None:
        """`record` inside a transaction the caller holds."""
        if not entries:
            return
        now = utc_now()
        write_generations(
            con,
            [e.generation for e in entries if e.generation is not None],
            [e.failed for e in entries if e.failed is not None],
        )
        items = [
            [run_id, i.pair_key, i.status, i.attempts, i.usage.prompt_tokens, i.usage.completion_tokens,
             round(i.cost, 10), i.latency_ms, i.error, i.generation_id, now, i.usage.cached_tokens,
             i.usage.reasoning_tokens]
            for i in (e.item for e in entries)
        ]  # fmt: skip
        con.execute(
            "DELETE FROM run_items WHERE (run_id, pair_key) IN (SELECT (k[1], k[2]) FROM (SELECT unnest(?) AS k))",
            [[[run_id, row[1]] for row in items]],
        )
        insert_rows(con, _ITEM_COLUMNS, items)
        # An item settled on a generation (new, or fresh: its inputs' cache key has it) publishes it.
        publish_in(con, [(i.pair_key, i.generation_id) for i in (e.item for e in entries)
                         if i.status in ("generated", "fresh") and i.generation_id])  # fmt: skip

    def finish(self, run_id: str, status: str) -> None:
        with self.store.session() as con:
            con.execute("UPDATE runs SET finished_at = ?, status = ? WHERE id = ?", [utc_now(), status, run_id])

    def last_run(self, name: str) -> tuple[str, dict[str, str]] | None:
        """The latest run of a batch name and each item's status in it."""
        with self.store.session() as con:
            row = con.execute(
                "SELECT id FROM runs WHERE name = ? ORDER BY started_at DESC, id DESC LIMIT 1", [name]
            ).fetchone()
            if row is None:
                return None
            items = con.execute("SELECT pair_key, status FROM run_items WHERE run_id = ?", [row[0]]).fetchall()
        return row[0], dict(items)

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.store.session() as con:
            cur = con.execute(
                """
                SELECT r.id, r.name, r.started_at, r.finished_at, r.status, r.provider, r.model,
                       count(i.pair_key) AS items,
                       count(*) FILTER (WHERE i.status = 'generated') AS generated,
                       count(*) FILTER (WHERE i.status = 'fresh') AS fresh,
                       count(*) FILTER (WHERE i.status = 'failed') AS failed,
                       count(*) FILTER (WHERE i.status = 'skipped') AS skipped,
                       count(*) FILTER (WHERE i.status = 'pending') AS pending,
                       coalesce(sum(i.prompt_tokens + i.completion_tokens), 0) AS tokens,
                       coalesce(sum(i.cost), 0) AS cost
                FROM runs r LEFT JOIN run_items i ON i.run_id = r.id
                GROUP BY ALL ORDER BY r.started_at DESC, r.id DESC LIMIT ?
                """,
                [limit],
            )
            rows = dicts(cur)
            specs = dict(con.execute(
                "SELECT id, spec FROM runs WHERE id IN (SELECT unnest(?)) AND status = 'running'",
                [[r["id"] for r in rows]],
            ).fetchall())  # fmt: skip
        for row in rows:
            if row["id"] in specs and _process_gone(specs[row["id"]]):
                row["status"] = "interrupted"
        return rows

    def items(self, run_id: str) -> list[dict[str, Any]]:
        with self.store.session() as con:
            return dicts(con.execute("SELECT * FROM run_items WHERE run_id = ? ORDER BY pair_key", [run_id]))


def _process_gone(spec_json: str) -> bool:
    """Whether the process that runs a 'running' run is gone (only knowable on the machine it ran on)."""
    try:
        process = json.loads(spec_json).get("_process") or {}
        pid, host = int(process.get("pid", 0)), str(process.get("host", ""))
    except (ValueError, TypeError, AttributeError):
        return False
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
