"""Store: the DuckDB file that holds the cache, every generation and every attempt.

DuckDB lets one process open a file for writing at a time, so every access
takes a cross-process file lock with a bounded wait and holds the connection
only for a short transaction. Migrations are append-only and named, recorded
in `_migrations`, so a new file and an old one reach the same schema.
Timestamps are stored as ISO 8601 UTC text so that they read back byte-exact.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.errors import StoreBusyError, StoreError
from pipeline.models import AttemptRecord, Comparison, Usage
from pipeline.text import utc_now
from pipeline.untrusted import storable

MIGRATIONS: list[tuple[str, str]] = [
    (
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
    ),
    (
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
    ),
]

MIGRATIONS.append(
    (
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
    )
)

MIGRATIONS.append(
    (
        "004_schemas",
        """
        CREATE TABLE schemas (
            sha256 VARCHAR PRIMARY KEY,
            body VARCHAR NOT NULL
        );
        """,
    )
)

MIGRATIONS.append(
    (
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
    )
)

MIGRATIONS.append(
    (
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
    )
)

MIGRATIONS.append(
    (
        "007_token_details",
        # DuckDB cannot alter a table that has indexes: they are dropped and made again around it.
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
    )
)

_COLUMNS = (
    "id, pair_key, category, cache_key, provider, model, params, prompt_sha256, schema_sha256, "
    "sources, data, attempts, prompt_tokens, completion_tokens, generated_at, cached_tokens, reasoning_tokens"
)
# Inserts name their columns: a store with more columns (a newer release's) is not written out of place.
_GENERATION_COLUMNS = (
    "generations (id, pair_key, category, cache_key, provider, model, params, prompt_sha256, schema_sha256, "
    "sources, request, raw_response, data, attempts, prompt_tokens, completion_tokens, latency_ms, generated_at, "
    "cached_tokens, reasoning_tokens)"
)
_ATTEMPT_COLUMNS = (
    "attempts (invocation_id, generation_id, pair_key, cache_key, number, outcome, finish_reason, raw_response, "
    "problems, error, prompt_tokens, completion_tokens, latency_ms, created_at, cached_tokens, reasoning_tokens)"
)
_ITEM_COLUMNS = (
    "run_items (run_id, pair_key, status, attempts, prompt_tokens, completion_tokens, cost, latency_ms, error, "
    "generation_id, updated_at, cached_tokens, reasoning_tokens)"
)


class _NoLock:
    """The lock of a read-only store: there is nothing to guard."""

    def release(self) -> None:
        pass


class Store:
    def __init__(self, path: Path, lock_timeout_s: float = 30.0, holder: str = "pipeline"):
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self.holder = holder
        self._migrated = False
        self._hold_max_s = 0.0  # > 0 inside `holding()`: keep the file open between sessions
        self._held: tuple[Any, Any, float] | None = None  # (file lock, connection, acquired at)

    @contextmanager
    def holding(self, max_hold_s: float = 2.0) -> Iterator[None]:
        """Keep the store open across sessions (a batch writer's many short commits).

        Opening and closing a DuckDB file costs about 30 ms, far more than a commit. Inside this
        block the connection and the file lock are kept between sessions, and given up after each
        commit when another process is waiting (it leaves a marker file) or after `max_hold_s`.
        """
        self._hold_max_s = max_hold_s
        try:
            yield
        finally:
            self._hold_max_s = 0.0
            self._release()

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A connection under the cross-process lock, committed on success, rolled back on error."""
        import duckdb

        _lock, con = self._open()
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            self._release()
            if self.read_only():
                raise StoreError(f"the store {self.path} is read-only here ({_first_line(exc)})") from exc
            raise StoreError(f"store {self.path}: {_first_line(exc)}") from exc
        except BaseException:
            self._release()
            raise
        if not self._hold_max_s or self._someone_waits():
            self._release()

    def _open(self) -> tuple[Any, Any]:
        import duckdb
        from filelock import FileLock, Timeout

        if self._held is not None:
            return self._held[0], self._held[1]
        if self.read_only():
            return self._open_read_only()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent} for the store: {exc.strerror}") from None
        lock = FileLock(str(self.path) + ".lock")
        owner_file = Path(str(self.path) + ".owner")
        try:
            lock.acquire(timeout=0)
        except Timeout:  # (a TimeoutError, so an OSError: caught first)
            marker = Path(f"{self.path}.waiting.{os.getpid()}")
            marker.touch()
            try:
                lock.acquire(timeout=self.lock_timeout_s)
            except Timeout:
                who = _read_owner(owner_file)
                raise StoreBusyError(
                    f"the store {self.path} is busy{who}; waited {self.lock_timeout_s:g} s. "
                    "Try again later or raise PIPELINE_LOCK_TIMEOUT"
                ) from None
            finally:
                marker.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot lock the store {self.path}: {exc.strerror}; is the workspace writable?") from None
        try:
            owner_file.write_text(f"pid {os.getpid()} ({self.holder}) since {utc_now()}", encoding="utf-8")
            con = duckdb.connect(str(self.path))
            if not self._migrated:
                self._migrate(con)
        except duckdb.Error as exc:
            lock.release()
            raise StoreError(f"cannot open the store {self.path}: {_first_line(exc)}") from exc
        except OSError as exc:
            lock.release()
            raise StoreError(f"cannot open the store {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            lock.release()
            raise
        self._held = (lock, con, time.monotonic())
        return lock, con

    def require_writable(self, what: str) -> None:
        """Refuse a writing command on a read-only store before it does anything (or pays for a call)."""
        if self.read_only():
            raise StoreError(
                f"{what} writes the store {self.path}, which is read-only here; run it from a writable workspace "
                "(reading commands — show, history, diff, doctor, quality, runs — work read-only)"
            )
        with self.session():
            pass  # opens and migrates it now: a store of a newer release is refused before any model call

    def read_only(self) -> bool:
        """Whether this store can only be read: its folder (or the file itself) is not writable.

        Reading commands then open it read-only, without the cross-process lock (which needs a
        file next to it): nobody can write it from this workspace anyway.
        """
        folder = self.path.parent
        if self.path.exists():
            return not (os.access(folder, os.W_OK) and os.access(self.path, os.W_OK))
        return folder.exists() and not os.access(folder, os.W_OK)

    def _open_read_only(self) -> tuple[Any, Any]:
        import duckdb

        if not self.path.exists():
            raise StoreError(f"there is no store at {self.path}, and the workspace is read-only")
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the read-only store {self.path}: {_first_line(exc)}") from exc
        try:
            if not self._migrated:
                self._migrate(con, read_only=True)
                self._migrated = True
        except BaseException:
            con.close()
            raise
        self._held = (_NoLock(), con, time.monotonic())
        return self._held[0], con

    def _someone_waits(self) -> bool:
        if self._held is None or time.monotonic() - self._held[2] > self._hold_max_s:
            return True
        return any(self.path.parent.glob(f"{self.path.name}.waiting.*"))

    def _release(self) -> None:
        if self._held is None:
            return
        lock, con, _ = self._held
        self._held = None
        try:
            con.close()
        finally:
            lock.release()

    def _migrate(self, con: Any, *, read_only: bool = False) -> None:
        if read_only:
            tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            rows = con.execute("SELECT name FROM _migrations").fetchall() if "_migrations" in tables else []
            done = {row[0] for row in rows}
        else:
            con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at VARCHAR)")
            done = {row[0] for row in con.execute("SELECT name FROM _migrations").fetchall()}
        newer = sorted(done - {name for name, _ in MIGRATIONS})
        if newer:
            raise StoreError(
                f"the store {self.path} was written by a newer release of comparison-pipeline (migrations "
                f"{', '.join(newer)}); upgrade this one, or point --store at another file"
            )
        pending = [name for name, _ in MIGRATIONS if name not in done]
        if read_only and pending:
            raise StoreError(
                f"the store {self.path} needs upgrading ({', '.join(pending)}) and the workspace is read-only; "
                "run any command once with write access"
            )
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            con.execute("BEGIN TRANSACTION")
            for statement in filter(str.strip, sql.split(";")):
                con.execute(statement)
            con.execute("INSERT INTO _migrations VALUES (?, ?)", [name, utc_now()])
            con.execute("COMMIT")
        self._migrated = True

    # -- reads -------------------------------------------------------------------------------

    def find_cached(self, cache_key: str) -> Comparison | None:
        with self.session() as con:
            row = con.execute(
                f"SELECT {_COLUMNS} FROM generations WHERE cache_key = ? "
                "ORDER BY generated_at DESC, rowid DESC LIMIT 1",
                [cache_key],
            ).fetchone()
        return _comparison(row) if row else None

    def history(self, pair_key: str) -> list[Comparison]:
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM generations WHERE pair_key = ? ORDER BY generated_at, rowid", [pair_key]
            ).fetchall()
        return [_comparison(r) for r in rows]

    def latest_all(self) -> list[Comparison]:
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM generations QUALIFY row_number() OVER "
                "(PARTITION BY pair_key ORDER BY generated_at DESC, rowid DESC) = 1 ORDER BY pair_key"
            ).fetchall()
        return [_comparison(r) for r in rows]

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
            comparison = _comparison(row[:-1])
            if row[-1] == 1:
                out.append((comparison, None))
            else:
                out[-1] = (out[-1][0], comparison)
        return out

    def latest_by_cache_key(self, cache_keys: Sequence[str]) -> dict[str, Comparison]:
        """For each cache key that has a generation, its latest one (one query for a whole batch)."""
        return self._latest_by("cache_key", cache_keys)

    def latest_for_pairs(self, pair_keys: Sequence[str]) -> dict[str, Comparison]:
        """Each of these pairs' latest generation, if it has one (one query)."""
        return self._latest_by("pair_key", pair_keys)

    def _latest_by(self, column: str, keys: Sequence[str]) -> dict[str, Comparison]:
        if not keys:
            return {}
        with self.session() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM generations WHERE {column} IN (SELECT unnest(?)) "
                f"QUALIFY row_number() OVER (PARTITION BY {column} ORDER BY generated_at DESC, rowid DESC) = 1",
                [list(keys)],
            ).fetchall()
        found = list(map(_comparison, rows))
        return {(c.cache_key if column == "cache_key" else c.pair_key): c for c in found}

    def attempts(self, pair_key: str) -> list[dict[str, Any]]:
        with self.session() as con:
            cur = con.execute(
                "SELECT invocation_id, generation_id, number, outcome, finish_reason, problems, error, "
                "prompt_tokens, completion_tokens, latency_ms, created_at, cached_tokens, reasoning_tokens "
                "FROM attempts "
                "WHERE pair_key = ? ORDER BY created_at, invocation_id, number",
                [pair_key],
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- writes ------------------------------------------------------------------------------

    # -- snapshots of URL sources ------------------------------------------------------------

    def last_snapshot(self, url: str) -> Any:
        from pipeline.fetch import Snapshot

        with self.session() as con:
            row = con.execute(
                "SELECT url, final_url, checked_at, status, etag, last_modified, content_type, sha256, text "
                "FROM snapshots WHERE url = ? ORDER BY checked_at DESC, fetched_at DESC LIMIT 1",
                [url],
            ).fetchone()
        return Snapshot(*row) if row else None

    def save_snapshot(self, snap: Any) -> None:
        """A fetched text; fetching the same text again only records when it was seen."""
        with self.session() as con:
            con.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url, sha256) DO UPDATE "
                "SET checked_at = excluded.checked_at, final_url = excluded.final_url, status = excluded.status, "
                "etag = excluded.etag, last_modified = excluded.last_modified",
                [snap.url, snap.final_url, snap.fetched_at, snap.fetched_at, snap.status, snap.etag,
                 snap.last_modified, snap.content_type, snap.sha256, snap.text],
            )  # fmt: skip

    def touch_snapshot(self, url: str, sha256: str) -> None:
        """A conditional request answered 304: the snapshot is still current."""
        with self.session() as con:
            con.execute("UPDATE snapshots SET checked_at = ? WHERE url = ? AND sha256 = ?", [utc_now(), url, sha256])

    def save_generation(
        self,
        comparison: Comparison,
        *,
        request: dict[str, Any],
        raw_response: str,
        latency_ms: int,
        invocation_id: str,
        attempts: Sequence[AttemptRecord],
        schema_body: str = "",
    ) -> None:
        c = comparison
        with self.session() as con:
            _write_rows(
                con,
                [_generation_row(c, request, raw_response, latency_ms)],
                _attempt_rows(invocation_id, c.generation_id, c.pair_key, c.cache_key, attempts),
                {c.schema_sha256: schema_body} if schema_body else {},
            )

    def save_failed_attempts(
        self, invocation_id: str, pair_key: str, cache_key: str, attempts: Sequence[AttemptRecord]
    ) -> None:
        if attempts:
            with self.session() as con:
                _write_rows(con, [], _attempt_rows(invocation_id, None, pair_key, cache_key, attempts), {})


def _write_rows(
    con: Any, generations: Sequence[Sequence[Any]], attempts: Sequence[Sequence[Any]], schemas: dict[str, str]
) -> None:
    for sha, body in schemas.items():
        con.execute("INSERT OR IGNORE INTO schemas VALUES (?, ?)", [sha, body])
    _insert_rows(con, _GENERATION_COLUMNS, generations)
    _insert_rows(con, _ATTEMPT_COLUMNS, attempts)


def _generation_row(c: Comparison, request: dict[str, Any], raw_response: str, latency_ms: int) -> list[Any]:
    return [
        c.generation_id, c.pair_key, c.category, c.cache_key, c.provider, c.model, _dumps(c.params),
        c.prompt_sha256, c.schema_sha256, _dumps(list(c.sources)), _dumps(request), raw_response,
        _dumps(c.data), c.attempts, c.usage.prompt_tokens, c.usage.completion_tokens, latency_ms, c.generated_at,
        c.usage.cached_tokens, c.usage.reasoning_tokens,
    ]  # fmt: skip


def _attempt_rows(
    invocation_id: str, generation_id: str | None, pair_key: str, cache_key: str, attempts: Sequence[AttemptRecord]
) -> list[list[Any]]:
    now = utc_now()
    return [
        [
            invocation_id, generation_id, pair_key, cache_key, a.number, a.outcome, a.finish_reason, a.raw,
            _dumps([asdict(p) for p in a.problems]), a.error, a.usage.prompt_tokens, a.usage.completion_tokens,
            a.latency_ms, now, a.usage.cached_tokens, a.usage.reasoning_tokens,
        ]
        for a in attempts
    ]  # fmt: skip


def _insert_rows(con: Any, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """All rows in one statement, passed column by column (`unnest` of one list per column).

    Binding thousands of single values is what costs in DuckDB: a list per column is bound once.
    """
    if not rows:
        return
    columns = [list(column) for column in zip(*rows, strict=True)]
    con.execute(f"INSERT INTO {table} SELECT {', '.join('unnest(?)' for _ in columns)}", columns)


def _comparison(row: Sequence[Any]) -> Comparison:
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
        sources=tuple(json.loads(sources)),
        attempts=attempts,
        usage=Usage(p_tok, c_tok, cached, reasoning),
        params=json.loads(params),
    )


def _dumps(value: Any) -> str:
    return storable(json.dumps(value, sort_keys=True, ensure_ascii=False))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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


def _read_owner(path: Path) -> str:
    try:
        return f" (held by {path.read_text(encoding='utf-8').strip()})"
    except OSError:
        return ""


class Ledger:
    """The run ledger: batch runs and their items, in the same DuckDB file."""

    def __init__(self, store: Store):
        self.store = store

    def start(self, run_id: str, name: str, spec: dict[str, Any], provider: str, model: str,
              pair_keys: Sequence[str], resumed_from: str | None) -> None:  # fmt: skip
        with self.store.session() as con:
            self.start_in(con, run_id, name, spec, provider, model, pair_keys, resumed_from)

    @staticmethod
    def start_in(con: Any, run_id: str, name: str, spec: dict[str, Any], provider: str, model: str,
                 pair_keys: Sequence[str], resumed_from: str | None, status: str = "running") -> None:  # fmt: skip
        """`start` inside a transaction the caller holds."""
        now = utc_now()
        # Which process runs it: a run whose process was killed (SIGKILL, a lost machine) is shown as
        # interrupted instead of running forever.
        spec = {**spec, "_process": {"pid": os.getpid(), "host": socket.gethostname()}}
        con.execute(
            "INSERT INTO runs (id, name, spec, provider, model, started_at, finished_at, status, resumed_from) "
            "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            [run_id, name, _dumps(spec), provider, model, now, status, resumed_from],
        )
        if pair_keys:
            _insert_rows(con, "run_items (run_id, pair_key, status, updated_at)",
                         [[run_id, key, "pending", now] for key in pair_keys])  # fmt: skip

    def record(
        self, run_id: str, entries: Sequence[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]]
    ) -> None:
        """Items' outcomes with their generations or failed attempts, all in one short transaction.

        Each entry is (ledger row, generation arguments or None, failed-attempt arguments or None).
        Grouping matters: opening and closing the DuckDB file costs far more than the inserts.
        """
        if entries:
            with self.store.session() as con:
                self.record_in(con, run_id, entries)

    @staticmethod
    def record_in(
        con: Any, run_id: str, entries: Sequence[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]]
    ) -> None:
        """`record` inside a transaction the caller holds."""
        if not entries:
            return
        now = utc_now()
        generations: list[list[Any]] = []
        attempts: list[list[Any]] = []
        items: list[list[Any]] = []
        schemas: dict[str, str] = {}
        for item, g, f in entries:
            if g is not None:
                c = g["c"]
                generations.append(_generation_row(c, g["request"], g["raw_response"], g["latency_ms"]))
                attempts += _attempt_rows(g["invocation_id"], c.generation_id, c.pair_key, c.cache_key, g["attempts"])
                if g.get("schema_body"):
                    schemas[c.schema_sha256] = g["schema_body"]
            if f is not None:
                attempts += _attempt_rows(f["invocation_id"], None, f["pair_key"], f["cache_key"], f["attempts"])
            items.append([
                run_id, item["pair_key"], item["status"], item["attempts"], item["prompt_tokens"],
                item["completion_tokens"], item["cost"], item["latency_ms"], item["error"],
                item.get("generation_id"), now, item.get("cached_tokens", 0), item.get("reasoning_tokens", 0),
            ])  # fmt: skip
        _write_rows(con, generations, attempts, schemas)
        keys = [[run_id, row[1]] for row in items]
        con.execute(
            "DELETE FROM run_items WHERE (run_id, pair_key) IN (SELECT (k[1], k[2]) FROM (SELECT unnest(?) AS k))",
            [keys],
        )
        _insert_rows(con, _ITEM_COLUMNS, items)

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
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
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
            cur = con.execute("SELECT * FROM run_items WHERE run_id = ? ORDER BY pair_key", [run_id])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
