"""The connection to the store file: a cross-process lock with a bounded wait, short transactions.

DuckDB lets one process open a file for writing at a time, so every access takes a file lock
and holds the connection only for a short transaction (or, inside `holding()`, a few of them).
A store whose folder is not writable is opened read-only, without the lock.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import StoreBusyError, StoreError
from pipeline.store import migrations
from pipeline.text import utc_now
from pipeline.untrusted import storable

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection


class _NoLock:
    """The lock of a read-only store: there is nothing to guard."""

    def release(self) -> None:
        pass


class Connection:
    """The store file: one cross-process lock, short transactions, migrations on first open."""

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
        except RuntimeError as exc:
            self._release()
            # DuckDB answers Ctrl-C (SIGINT) during a query itself, as "Query interrupted": the same stop as a
            # KeyboardInterrupt anywhere else (the transaction was rolled back), not a crash.
            if "interrupted" in str(exc).lower():
                raise KeyboardInterrupt from exc
            raise
        except duckdb.Error as exc:
            self._release()
            if isinstance(exc, duckdb.InterruptException):
                raise KeyboardInterrupt from exc
            if self.read_only():
                raise StoreError(f"the store {self.path} is read-only here ({first_line(exc)})") from exc
            raise StoreError(f"store {self.path}: {first_line(exc)}") from exc
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
            raise StoreError(f"cannot open the store {self.path}: {first_line(exc)}") from exc
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
            raise StoreError(f"cannot open the read-only store {self.path}: {first_line(exc)}") from exc
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

    def _migrate(self, con: DuckDBPyConnection, *, read_only: bool = False) -> None:
        migrations.apply(con, self.path, read_only=read_only)
        self._migrated = True


def insert_rows(con: DuckDBPyConnection, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """All rows in one statement, passed column by column (`unnest` of one list per column).

    Binding thousands of single values is what costs in DuckDB: a list per column is bound once.
    """
    if not rows:
        return
    columns = [list(column) for column in zip(*rows, strict=True)]
    con.execute(f"INSERT INTO {table} SELECT {', '.join('unnest(?)' for _ in columns)}", columns)


def dumps(value: Any) -> str:
    return storable(json.dumps(value, sort_keys=True, ensure_ascii=False))


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _read_owner(path: Path) -> str:
    try:
        return f" (held by {path.read_text(encoding='utf-8').strip()})"
    except OSError:
        return ""


def dicts(cursor: Any) -> list[dict[str, Any]]:
    """A cursor's rows as dicts keyed by column name."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def scalar(con: DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The one value of a query that always returns one row (a count, a max)."""
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None, sql
    return row[0]
