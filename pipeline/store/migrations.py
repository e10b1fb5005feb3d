"""The store's schema as a registry of append-only, named migrations (in the style of llm's).

Each migration names the tables it creates and their natural keys, so that export and import
(`exchange`) take their table list from here: a new table cannot be forgotten. `apply` runs
what a store lacks, each migration in its own transaction, and records it in `_migrations`;
a store with migrations this release does not know (a newer release's) is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import StoreError
from pipeline.text import utc_now
from pipeline.untrusted import storable

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection


@dataclass(frozen=True)
class Table:
    """How a table moves between stores: its natural key, and which row wins when both have it.

    `newer=None`: a row whose key is present is kept (immutable records); `newer="col"`: the row
    with the later `col` wins (ledger state that changes over time).
    """

    key: tuple[str, ...]
    newer: str | None = None


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str
    tables: dict[str, Table] = field(default_factory=dict)
    python: Callable[[Any], None] | None = None  # a step SQL cannot say, run after `sql` on the same connection

    def statements(self) -> list[str]:
        return [s for s in self.sql.split(";") if s.strip()]


MIGRATIONS: list[Migration] = []


def register(
    name: str, sql: str, tables: dict[str, Table] | None = None, python: Callable[[Any], None] | None = None
) -> Migration:
    """Append a migration. Every `CREATE TABLE` in its SQL must be declared in `tables`."""
    created = set(re.findall(r"CREATE TABLE (\w+)", sql))
    declared = set(tables or {})
    if created != declared:
        raise AssertionError(f"migration {name}: creates {sorted(created)} but declares {sorted(declared)}")
    if MIGRATIONS and name <= MIGRATIONS[-1].name:
        raise AssertionError(f"migration {name} must sort after {MIGRATIONS[-1].name}")
    migration = Migration(name, sql, dict(tables or {}), python)
    MIGRATIONS.append(migration)
    return migration


register(
    "001_generations",
    """
        CREATE TABLE generations (
            id VARCHAR PRIMARY KEY,
            pair_key VARCHAR NOT NULL,
            category VARCHAR NOT NULL,
            cache_key VARCHAR NOT NULL,
            provider VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            params VARCHAR NOT NULL,
            prompt_sha256 VARCHAR NOT NULL,
            schema_sha256 VARCHAR NOT NULL,
            sources VARCHAR NOT NULL,
            request VARCHAR NOT NULL,
            raw_response VARCHAR NOT NULL,
            data VARCHAR NOT NULL,
            attempts INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            latency_ms INTEGER NOT NULL,
            generated_at VARCHAR NOT NULL
        );
        CREATE INDEX generations_cache ON generations (cache_key);
        CREATE INDEX generations_pair ON generations (pair_key);
        """,
    {"generations": Table(("id",))},
)

register(
    "002_attempts",
    """
        CREATE TABLE attempts (
            invocation_id VARCHAR NOT NULL,
            generation_id VARCHAR,
            pair_key VARCHAR NOT NULL,
            cache_key VARCHAR NOT NULL,
            number INTEGER NOT NULL,
            outcome VARCHAR NOT NULL,
            finish_reason VARCHAR NOT NULL,
            raw_response VARCHAR NOT NULL,
            problems VARCHAR NOT NULL,
            error VARCHAR NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            latency_ms INTEGER NOT NULL,
            created_at VARCHAR NOT NULL
        );
        """,
    {"attempts": Table(("invocation_id", "number"))},
)

register(
    "003_runs",
    """
        CREATE TABLE runs (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            spec VARCHAR NOT NULL,
            provider VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            started_at VARCHAR NOT NULL,
            finished_at VARCHAR,
            status VARCHAR NOT NULL,
            resumed_from VARCHAR
        );
        CREATE TABLE run_items (
            run_id VARCHAR NOT NULL,
            pair_key VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost DOUBLE NOT NULL DEFAULT 0,
            latency_ms INTEGER NOT NULL DEFAULT 0,
            error VARCHAR NOT NULL DEFAULT '',
            generation_id VARCHAR,
            updated_at VARCHAR NOT NULL,
            PRIMARY KEY (run_id, pair_key)
        );
        """,
    {"runs": Table(("id",), newer="finished_at"), "run_items": Table(("run_id", "pair_key"), newer="updated_at")},
)

register(
    "004_schemas",
    """
        CREATE TABLE schemas (
            sha256 VARCHAR PRIMARY KEY,
            body VARCHAR NOT NULL
        );
        """,
    {"schemas": Table(("sha256",))},
)

register(
    "005_snapshots",
    """
        CREATE TABLE snapshots (
            url VARCHAR NOT NULL,
            final_url VARCHAR NOT NULL,
            fetched_at VARCHAR NOT NULL,
            checked_at VARCHAR NOT NULL,
            status INTEGER NOT NULL,
            etag VARCHAR NOT NULL,
            last_modified VARCHAR NOT NULL,
            content_type VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            PRIMARY KEY (url, sha256)
        );
        """,
    {"snapshots": Table(("url", "sha256"), newer="checked_at")},
)

register(
    "006_batch_api",
    """
        CREATE TABLE api_batches (
            run_id VARCHAR NOT NULL,
            round INTEGER NOT NULL,
            part INTEGER NOT NULL,
            path VARCHAR NOT NULL,
            requests INTEGER NOT NULL,
            bytes BIGINT NOT NULL,
            input_file_id VARCHAR,
            batch_id VARCHAR,
            status VARCHAR NOT NULL,
            output_file_id VARCHAR,
            error_file_id VARCHAR,
            completed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            created_at VARCHAR NOT NULL,
            updated_at VARCHAR NOT NULL,
            collected_at VARCHAR,
            PRIMARY KEY (run_id, round, part)
        );
        CREATE TABLE api_requests (
            run_id VARCHAR NOT NULL,
            custom_id VARCHAR NOT NULL,
            round INTEGER NOT NULL,
            part INTEGER NOT NULL,
            pair_key VARCHAR NOT NULL,
            cache_key VARCHAR NOT NULL,
            invocation_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            records VARCHAR NOT NULL,
            answer VARCHAR NOT NULL,
            updated_at VARCHAR NOT NULL,
            PRIMARY KEY (run_id, custom_id)
        );
        """,
    {
        "api_batches": Table(("run_id", "round", "part"), newer="updated_at"),
        "api_requests": Table(("run_id", "custom_id"), newer="updated_at"),
    },
)

# DuckDB cannot alter a table that has indexes: they are dropped and made again around it.
register(
    "007_token_details",
    """
        DROP INDEX generations_cache;
        DROP INDEX generations_pair;
        ALTER TABLE generations ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE generations ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
        CREATE INDEX generations_cache ON generations (cache_key);
        CREATE INDEX generations_pair ON generations (pair_key);
        ALTER TABLE attempts ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE attempts ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE run_items ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE run_items ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
        """,
    {},
)


def _prompt_and_model_as_columns(con: DuckDBPyConnection) -> None:
    """Move `template_sha256` and `answered_by` out of each generation's params JSON into their columns.

    DuckDB cannot alter a table that has indexes, and rewrites rows of an indexed table as delete
    plus insert: the indexes are dropped first and made again after the rows are moved.
    """
    con.execute("DROP INDEX generations_cache")
    con.execute("DROP INDEX generations_pair")
    con.execute("ALTER TABLE generations ADD COLUMN template_sha256 VARCHAR NOT NULL DEFAULT ''")
    con.execute("ALTER TABLE generations ADD COLUMN answered_by VARCHAR NOT NULL DEFAULT ''")
    moved: list[list[str]] = []
    for gid, params in con.execute("SELECT id, params FROM generations").fetchall():
        values = json.loads(params)
        if isinstance(values, dict) and ("template_sha256" in values or "answered_by" in values):
            template, model = str(values.pop("template_sha256", "")), str(values.pop("answered_by", ""))
            moved.append([gid, storable(json.dumps(values, sort_keys=True, ensure_ascii=False)), template, model])
    if moved:
        columns = [list(c) for c in zip(*moved, strict=True)]
        con.execute(
            "UPDATE generations SET params = m.params, template_sha256 = m.template, answered_by = m.model "
            "FROM (SELECT unnest(?) AS id, unnest(?) AS params, unnest(?) AS template, unnest(?) AS model) m "
            "WHERE generations.id = m.id",
            columns,
        )
    con.execute("CREATE INDEX generations_cache ON generations (cache_key)")
    con.execute("CREATE INDEX generations_pair ON generations (pair_key)")


register("008_prompt_and_model_columns", "", {}, _prompt_and_model_as_columns)


# Generations with samples > 1 (pipeline.generation.consensus): which sample each attempt was for.
register("009_attempt_sample", "ALTER TABLE attempts ADD COLUMN sample INTEGER NOT NULL DEFAULT 1;", {})


# Which generation of each pair is published (pipeline.store.published). Stores from before it
# published each pair's newest generation: that history is what the log starts from.
register(
    "010_publications",
    """
        CREATE TABLE publications (
            pair_key VARCHAR NOT NULL,
            generation_id VARCHAR NOT NULL,
            published_at VARCHAR NOT NULL,
            PRIMARY KEY (pair_key, published_at, generation_id)
        );
        INSERT INTO publications SELECT pair_key, id, generated_at FROM generations;
        """,
    {"publications": Table(("pair_key", "published_at", "generation_id"))},
)


# Profiles (a subject in its category) and a pair's own texts are generations too (pipeline.generation.job):
# `kind` tells them apart, and `pair_key` holds the unit ("databases/postgresql", or "a,b" as before).
# Rows of earlier releases are whole pairs ("comparison"), kept readable and diffable as they were.
register(
    "011_generation_kinds",
    """
        DROP INDEX generations_cache;
        DROP INDEX generations_pair;
        ALTER TABLE generations ADD COLUMN kind VARCHAR NOT NULL DEFAULT 'comparison';
        CREATE INDEX generations_cache ON generations (cache_key);
        CREATE INDEX generations_pair ON generations (pair_key);
        """,
    {},
)


def tables() -> dict[str, Table]:
    """Every table the migrations create, in the order they were created."""
    return {name: table for m in MIGRATIONS for name, table in m.tables.items()}


def names() -> list[str]:
    return [m.name for m in MIGRATIONS]


def created_by(migration_names: list[str]) -> dict[str, Table]:
    """The tables that a store with these migrations applied has."""
    applied = set(migration_names)
    return {name: table for m in MIGRATIONS if m.name in applied for name, table in m.tables.items()}


def apply(con: DuckDBPyConnection, path: Path, *, read_only: bool = False) -> None:
    """Bring the store at `path` (open on `con`) up to this release's schema, or refuse."""
    if read_only:
        listed = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        rows = con.execute("SELECT name FROM _migrations").fetchall() if "_migrations" in listed else []
        done = {row[0] for row in rows}
    else:
        con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at VARCHAR)")
        done = {row[0] for row in con.execute("SELECT name FROM _migrations").fetchall()}
    newer = sorted(done - set(names()))
    if newer:
        raise StoreError(
            f"the store {path} was written by a newer release of comparison-pipeline (migrations "
            f"{', '.join(newer)}); upgrade this one, or point --store at another file"
        )
    pending = [m for m in MIGRATIONS if m.name not in done]
    if read_only and pending:
        raise StoreError(
            f"the store {path} needs upgrading ({', '.join(m.name for m in pending)}) and the workspace is "
            "read-only; run any command once with write access"
        )
    for migration in pending:
        con.execute("BEGIN TRANSACTION")
        for statement in migration.statements():
            con.execute(statement)
        if migration.python is not None:
            migration.python(con)
        con.execute("INSERT INTO _migrations VALUES (?, ?)", [migration.name, utc_now()])
        con.execute("COMMIT")
