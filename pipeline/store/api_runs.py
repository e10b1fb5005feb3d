"""Batch API runs: one row per uploaded file and batch (`api_batches`), one per request line (`api_requests`).

Every step of a Batch API run commits what it learnt before the next one starts; each method
here is one such transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.store.connection import Connection, dicts, insert_rows, scalar
from pipeline.store.ledger import Ledger
from pipeline.store.records import LedgerEntry
from pipeline.text import utc_now

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

# (custom_id, status, records JSON ('[]': unchanged), answer)
Status = tuple[str, str, str, str]
# (custom_id, round, pair_key, cache_key, invocation_id, records JSON, answer JSON)
RequestRow = tuple[str, int, str, str, str, str, str]
# (custom_id, pair_key, cache_key, invocation_id, records JSON, request line)
FollowUp = tuple[str, str, str, str, str, str]
# api_batches row for a request file: (round, part, path, requests, bytes)
PartRow = tuple[int, int, str, int, int]


def _batch_rows(run_id: str, parts: Sequence[PartRow], now: str) -> list[list[Any]]:
    return [[run_id, round_, part, path, requests, size, None, None, "prepared", None, None, 0, 0, now, now, None]
            for round_, part, path, requests, size in parts]  # fmt: skip


@dataclass(frozen=True)
class ApiRun:
    """A run submitted to the Batch API, as the ledger has it; `spec` is the run's stored spec (JSON)."""

    run_id: str
    name: str
    spec: dict[str, Any]
    status: str

    @property
    def profile(self) -> str:
        return str(self.spec["profile"])

    @property
    def model(self) -> str:
        return str(self.spec["model"])


class ApiRuns(Connection):
    def submit_run(
        self, run_id: str, name: str, spec: dict[str, Any], ident: dict[str, str], pair_keys: Sequence[str],
        resumed_from: str | None, settled: Sequence[LedgerEntry], parts: Sequence[PartRow],
        requests: Sequence[tuple[str, int, str, str, str]],
    ) -> None:  # fmt: skip
        """The run, its items, its request files and every request line (custom id, part, pair, cache key,
        invocation): one transaction. A run with nothing to send is finished at once."""
        now = utc_now()
        with self.session() as con:
            Ledger.start_in(con, run_id, name, spec, ident["kind"], ident["model"], pair_keys, resumed_from,
                            status="submitted" if requests else "finished")  # fmt: skip
            Ledger.record_in(con, run_id, settled)
            insert_rows(con, "api_batches", _batch_rows(run_id, parts, now))
            insert_rows(con, "api_requests", [[run_id, cid, 1, part, pair_key, cache_key, inv, "submitted", "[]", "",
                                               now] for cid, part, pair_key, cache_key, inv in requests])  # fmt: skip
            if not requests:
                con.execute("UPDATE runs SET finished_at = ? WHERE id = ?", [now, run_id])

    def batches(self, run_id: str) -> list[dict[str, Any]]:
        with self.session() as con:
            return dicts(con.execute("SELECT * FROM api_batches WHERE run_id = ? ORDER BY round, part", [run_id]))

    def set_batch(self, run_id: str, round_: int, part: int, **values: Any) -> None:
        values["updated_at"] = utc_now()
        assignments = ", ".join(f"{k} = ?" for k in values)  # keys are this module's callers' literals
        with self.session() as con:
            con.execute(
                f"UPDATE api_batches SET {assignments} WHERE run_id = ? AND round = ? AND part = ?",
                [*values.values(), run_id, round_, part],
            )

    def api_runs(self, run_id: str | None) -> list[tuple[str, str, dict[str, Any], str]]:
        """(id, name, spec, status) of the named run, or of every run still waiting for answers."""
        with self.session() as con:
            if run_id:
                rows = con.execute("SELECT id, name, spec, status FROM runs WHERE id = ?", [run_id]).fetchall()
            else:
                rows = con.execute(
                    "SELECT id, name, spec, status FROM runs WHERE status IN ('submitted', 'cancelling') "
                    "ORDER BY started_at, id"
                ).fetchall()
        return [(rid, name, json.loads(spec), status) for rid, name, spec, status in rows]

    def run_totals(self, run_id: str) -> tuple[str, dict[str, int], int, int, float]:
        """(status, item counts by status, prompt tokens, completion tokens, cost) of a run."""
        with self.session() as con:
            status = con.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0]
            counts = dict(con.execute(
                "SELECT status, count(*) FROM run_items WHERE run_id = ? GROUP BY status", [run_id]
            ).fetchall())  # fmt: skip
            p, c, cost = con.execute(
                "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
                "coalesce(sum(cost), 0) FROM run_items WHERE run_id = ?", [run_id]
            ).fetchone()  # fmt: skip
        return str(status), counts, int(p), int(c), float(cost)

    def run_status(self, run_id: str) -> str:
        with self.session() as con:
            return str(con.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0])

    def mark_cancelling(self, run_id: str) -> None:
        with self.session() as con:
            con.execute("UPDATE runs SET status = 'cancelling' WHERE id = ? AND status = 'submitted'", [run_id])

    def waiting_requests(self, run_id: str) -> int:
        """Requests of a run still waiting for an answer or a re-ask."""
        with self.session() as con:
            return int(scalar(con, "SELECT count(*) FROM api_requests WHERE run_id = ? AND status IN "
                                   "('submitted', 'reask')", [run_id]))  # fmt: skip

    def run_item_statuses(self, run_id: str) -> dict[str, tuple[str, str]]:
        """Each item of a run: its status and error."""
        with self.session() as con:
            rows = con.execute("SELECT pair_key, status, error FROM run_items WHERE run_id = ?", [run_id]).fetchall()
        return {key: (status, error) for key, status, error in rows}

    def record_items(self, run_id: str, entries: Sequence[LedgerEntry]) -> None:
        """Ledger entries of a run's items settled outside its batches (a pair's texts asked directly)."""
        with self.session() as con:
            Ledger.record_in(con, run_id, entries)

    def finish_if_answered(self, run_id: str, status: str) -> bool:
        """Finish the run unless requests still wait for an answer or a re-ask; whether it finished."""
        with self.session() as con:
            waiting = con.execute(
                "SELECT count(*) FROM api_requests WHERE run_id = ? AND status IN ('submitted', 'reask')", [run_id]
            ).fetchone()[0]
            if waiting:
                return False
            con.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", [status, utc_now(), run_id])
        return True

    def run_pairs(self, run_id: str) -> list[str]:
        """The pairs of a run's items."""
        with self.session() as con:
            return [k for (k,) in con.execute("SELECT pair_key FROM run_items WHERE run_id = ?", [run_id]).fetchall()]

    def submitted_requests(self, run_id: str, round_: int, part: int) -> list[tuple[str, int, str, str, str, str]]:
        """(custom_id, round, pair_key, cache_key, invocation_id, records JSON) of one file still waiting."""
        with self.session() as con:
            rows: list[tuple[str, int, str, str, str, str]] = con.execute(
                "SELECT custom_id, round, pair_key, cache_key, invocation_id, records FROM api_requests "
                "WHERE run_id = ? AND round = ? AND part = ? AND status = 'submitted'",
                [run_id, round_, part],
            ).fetchall()
        return rows

    def record_answers(self, run_id: str, entries: Sequence[LedgerEntry], statuses: Sequence[Status]) -> None:
        """Answers and their requests' new states: one transaction (an answer is never stored twice)."""
        with self.session() as con:
            Ledger.record_in(con, run_id, entries)
            if not statuses:
                return
            con.execute("CREATE TEMP TABLE IF NOT EXISTS _status (custom_id VARCHAR, status VARCHAR, "
                        "records VARCHAR, answer VARCHAR)")  # fmt: skip
            con.execute("DELETE FROM _status")
            insert_rows(con, "_status", [list(s) for s in statuses])
            con.execute(
                "UPDATE api_requests SET status = s.status, records = CASE WHEN s.records = '[]' "
                "THEN api_requests.records ELSE s.records END, answer = s.answer, updated_at = ? "
                "FROM _status s WHERE api_requests.run_id = ? AND api_requests.custom_id = s.custom_id",
                [utc_now(), run_id],
            )

    def record_answer(self, run_id: str, entry: LedgerEntry, custom_id: str) -> None:
        with self.session() as con:
            Ledger.record_in(con, run_id, [entry])
            con.execute("UPDATE api_requests SET status = 'done', updated_at = ? WHERE run_id = ? AND custom_id = ?",
                        [utc_now(), run_id, custom_id])  # fmt: skip

    def follow_ups(self, run_id: str, round_: int, part: int) -> list[FollowUp]:
        with self.session() as con:
            rows: list[FollowUp] = con.execute(
                "SELECT custom_id, pair_key, cache_key, invocation_id, records, answer FROM api_requests "
                "WHERE run_id = ? AND round = ? AND part = ? AND status = 'follow' ORDER BY custom_id",
                [run_id, round_, part],
            ).fetchall()
        return rows

    def close_batch(
        self, run_id: str, round_: int, part: int, parts: Sequence[PartRow],
        requests: Sequence[tuple[str, int, str, str, str, str]],
    ) -> None:  # fmt: skip
        """A collected batch: its follow-up round's files and request lines (custom id, part, pair, cache key,
        invocation, records) recorded, its own follow-ups done, the batch marked collected."""
        now = utc_now()
        with self.session() as con:
            insert_rows(con, "api_batches", _batch_rows(run_id, parts, now))
            insert_rows(con, "api_requests", [[run_id, cid, round_ + 1, p, pair_key, cache_key, inv, "submitted",
                                               records, "", now]
                                              for cid, p, pair_key, cache_key, inv, records in requests])  # fmt: skip
            con.execute(
                "UPDATE api_requests SET status = 'done', answer = '', updated_at = ? "
                "WHERE run_id = ? AND round = ? AND part = ? AND status = 'follow'",
                [now, run_id, round_, part],
            )
            con.execute(
                "UPDATE api_batches SET collected_at = ?, updated_at = ? WHERE run_id = ? AND round = ? AND part = ?",
                [now, now, run_id, round_, part],
            )
            _pending_cancelled(con, run_id)

    def next_part(self, run_id: str, round_: int) -> int:
        with self.session() as con:
            n = con.execute("SELECT coalesce(max(part), 0) FROM api_batches WHERE run_id = ? AND round = ?",
                            [run_id, round_]).fetchone()[0]  # fmt: skip
        return int(n) + 1

    def reask_requests(self, run_id: str) -> list[RequestRow]:
        with self.session() as con:
            rows: list[RequestRow] = con.execute(
                "SELECT custom_id, round, pair_key, cache_key, invocation_id, records, answer FROM api_requests "
                "WHERE run_id = ? AND status = 'reask' ORDER BY custom_id",
                [run_id],
            ).fetchall()
        return rows

    def cancel_reasks(self, run_id: str) -> None:
        with self.session() as con:
            con.execute("UPDATE api_requests SET status = 'cancelled' WHERE run_id = ? AND status = 'reask'",
                        [run_id])  # fmt: skip
            _pending_cancelled(con, run_id)


def _pending_cancelled(con: DuckDBPyConnection, run_id: str) -> None:
    """Items whose request was cancelled stay `pending` in the ledger (resume with --resume)."""
    con.execute(
        "UPDATE run_items SET status = 'pending', error = 'Batch API run cancelled before it was answered', "
        "updated_at = ? WHERE run_id = ? AND pair_key IN (SELECT pair_key FROM api_requests "
        "WHERE run_id = ? AND status = 'cancelled')",
        [utc_now(), run_id, run_id],
    )
