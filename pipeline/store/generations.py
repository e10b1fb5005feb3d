"""Generations and their attempts: the cache and every comparison ever made, as rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pipeline.models import AttemptRecord, Comparison, SourceRecord, Usage
from pipeline.store.connection import Connection, dicts, dumps, insert_rows
from pipeline.store.records import FailedAttempts, NewGeneration
from pipeline.text import utc_now

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

_COLUMNS = (
    "id, pair_key, category, cache_key, provider, model, params, prompt_sha256, schema_sha256, "
    "sources, data, attempts, prompt_tokens, completion_tokens, generated_at, cached_tokens, reasoning_tokens, "
    "template_sha256, answered_by, kind"
)
SELECT_GENERATION = f"SELECT {_COLUMNS} FROM generations"
# Inserts name their columns: a store with more columns (a newer release's) is not written out of place.
_GENERATION_COLUMNS = (
    "generations (id, pair_key, category, cache_key, provider, model, params, prompt_sha256, schema_sha256, "
    "sources, request, raw_response, data, attempts, prompt_tokens, completion_tokens, latency_ms, generated_at, "
    "cached_tokens, reasoning_tokens, template_sha256, answered_by, kind)"
)
_ATTEMPT_COLUMNS = (
    "attempts (invocation_id, generation_id, pair_key, cache_key, number, outcome, finish_reason, raw_response, "
    "problems, error, prompt_tokens, completion_tokens, latency_ms, created_at, cached_tokens, reasoning_tokens, "
    "sample)"
)


class Generations(Connection):
    """Reads and writes of `generations` and `attempts` (and the `schemas` they were made with)."""

    def find_cached(self, cache_key: str) -> Comparison | None:
        with self.session() as con:
            row = con.execute(
                f"SELECT {_COLUMNS} FROM generations WHERE cache_key = ? "
                "ORDER BY generated_at DESC, rowid DESC LIMIT 1",
                [cache_key],
            ).fetchone()
        return comparison_of(row) if row else None

    def history(self, pair_key: str) -> list[Comparison]:
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM generations WHERE pair_key = ? ORDER BY generated_at, rowid", [pair_key]
            ).fetchall()
        return [comparison_of(r) for r in rows]

    def latest_all(self) -> list[Comparison]:
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM generations QUALIFY row_number() OVER "
                "(PARTITION BY pair_key ORDER BY generated_at DESC, rowid DESC) = 1 ORDER BY pair_key"
            ).fetchall()
        return [comparison_of(r) for r in rows]

    def latest_with_previous(self) -> list[tuple[Comparison, Comparison | None]]:
        """Every pair's latest generation and the one before it (for the changes section)."""
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS}, rn FROM (SELECT *, row_number() OVER "
                "(PARTITION BY pair_key ORDER BY generated_at DESC, rowid DESC) AS rn FROM generations) "
                "WHERE rn <= 2 ORDER BY pair_key, rn"
            ).fetchall()
        out: list[tuple[Comparison, Comparison | None]] = []
        for row in rows:
            comparison = comparison_of(row[:-1])
            if row[-1] == 1:
                out.append((comparison, None))
            else:
                out[-1] = (out[-1][0], comparison)
        return out

    def previous_of(self, comparison: Comparison) -> Comparison | None:
        """The generation of the same pair stored just before this one (None for the first)."""
        history = self.history(comparison.pair_key)
        ids = [c.generation_id for c in history]
        index = ids.index(comparison.generation_id) if comparison.generation_id in ids else len(ids)
        return history[index - 1] if index > 0 else None

    def latest_by_cache_key(self, cache_keys: Sequence[str]) -> dict[str, Comparison]:
        """For each cache key that has a generation, its latest one (one query for a whole batch)."""
        if not cache_keys:
            return {}
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM generations WHERE cache_key IN (SELECT unnest(?)) "
                "QUALIFY row_number() OVER (PARTITION BY cache_key ORDER BY generated_at DESC, rowid DESC) = 1",
                [list(cache_keys)],
            ).fetchall()
        return {c.cache_key: c for c in map(comparison_of, rows)}

    def attempts(self, pair_key: str) -> list[dict[str, Any]]:
        with self.session() as con:
            return dicts(con.execute(
                "SELECT invocation_id, generation_id, number, outcome, finish_reason, problems, error, "
                "prompt_tokens, completion_tokens, latency_ms, created_at, cached_tokens, reasoning_tokens, sample "
                "FROM attempts WHERE pair_key = ? ORDER BY created_at, invocation_id, number",
                [pair_key],
            ))  # fmt: skip

    def save_generation(self, new: NewGeneration) -> None:
        with self.session() as con:
            write_generations(con, [new], [])

    def save_failed_attempts(self, failed: FailedAttempts) -> None:
        if failed.attempts:
            with self.session() as con:
                write_generations(con, [], [failed])

    def by_ids(self, ids: Sequence[str]) -> dict[str, Comparison]:
        """Generations by id (one query)."""
        if not ids:
            return {}
        with self.session() as con:
            rows = con.execute(f"SELECT {_COLUMNS} FROM generations WHERE id IN (SELECT unnest(?))", [list(ids)])
            return {c.generation_id: c for c in map(comparison_of, rows.fetchall())}

    def checked_rows(self) -> tuple[set[str], dict[str, str], list[tuple[Any, ...]]]:
        """For `pipeline doctor`: applied migrations, stored schemas, and every generation's checked fields."""
        with self.session() as con:
            applied = {row[0] for row in con.execute("SELECT name FROM _migrations").fetchall()}
            schemas = dict(con.execute("SELECT sha256, body FROM schemas").fetchall())
            rows = con.execute(
                "SELECT id, pair_key, schema_sha256, data, params, sources, kind FROM generations ORDER BY pair_key, id"
            ).fetchall()
        return applied, schemas, rows

    def schemas(self) -> dict[str, str]:
        """Every canonical schema a stored generation was made with, by its sha256."""
        with self.session() as con:
            return dict(con.execute("SELECT sha256, body FROM schemas").fetchall())


def write_generations(con: DuckDBPyConnection, new: Sequence[NewGeneration], failed: Sequence[FailedAttempts]) -> None:
    """Generations with their attempts and schemas, and failed items' attempts, inside the caller's transaction."""
    schemas = {g.comparison.schema_sha256: g.schema_body for g in new if g.schema_body}
    for sha, body in schemas.items():
        con.execute("INSERT OR IGNORE INTO schemas VALUES (?, ?)", [sha, body])
    insert_rows(con, _GENERATION_COLUMNS, [_generation_row(g) for g in new])
    attempts = [
        row
        for g in new
        for row in _attempt_rows(
            g.invocation_id, g.comparison.generation_id, g.comparison.pair_key, g.comparison.cache_key, g.attempts
        )
    ]
    attempts += [row for f in failed for row in _attempt_rows(f.invocation_id, None, f.pair_key, f.cache_key,
                                                              f.attempts)]  # fmt: skip
    insert_rows(con, _ATTEMPT_COLUMNS, attempts)


def _generation_row(g: NewGeneration) -> list[Any]:
    c, request, raw_response, latency_ms = g.comparison, g.request, g.raw_response, g.latency_ms
    return [
        c.generation_id, c.pair_key, c.category, c.cache_key, c.provider, c.model, dumps(c.params),
        c.prompt_sha256, c.schema_sha256, dumps([s.to_json() for s in c.sources]), dumps(request), raw_response,
        dumps(c.data), c.attempts, c.usage.prompt_tokens, c.usage.completion_tokens, latency_ms, c.generated_at,
        c.usage.cached_tokens, c.usage.reasoning_tokens, c.template_sha256, c.answered_by, c.kind,
    ]  # fmt: skip


def _attempt_rows(
    invocation_id: str, generation_id: str | None, pair_key: str, cache_key: str, attempts: Sequence[AttemptRecord]
) -> list[list[Any]]:
    now = utc_now()
    return [
        [
            invocation_id, generation_id, pair_key, cache_key, a.number, a.outcome, a.finish_reason, a.raw,
            dumps([asdict(p) for p in a.problems]), a.error, a.usage.prompt_tokens, a.usage.completion_tokens,
            a.latency_ms, now, a.usage.cached_tokens, a.usage.reasoning_tokens, a.sample,
        ]
        for a in attempts
    ]  # fmt: skip


def comparison_of(row: Sequence[Any]) -> Comparison:
    (
        gid,
        pair_key,
        category,
        cache_key,
        provider,
        model,
        params,
        prompt_sha,
        schema_sha,
        sources,
        data,
        attempts,
        p_tok,
        c_tok,
        generated_at,
        cached,
        reasoning,
        template_sha,
        answered_by,
        kind,
    ) = row
    return Comparison(
        generation_id=gid,
        pair_key=pair_key,
        category=category,
        data=json.loads(data),
        generated_at=generated_at,
        provider=provider,
        model=model,
        cache_key=cache_key,
        prompt_sha256=prompt_sha,
        schema_sha256=schema_sha,
        sources=tuple(SourceRecord.from_json(s) for s in json.loads(sources) if isinstance(s, dict)),
        attempts=attempts,
        usage=Usage(p_tok, c_tok, cached, reasoning),
        params=json.loads(params),
        template_sha256=template_sha,
        answered_by=answered_by,
        kind=kind,
    )
