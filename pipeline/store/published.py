"""Publications: which generation of each pair is *the* published one, and the one before it.

The newest generation of a pair is not always the one to show: after an input is reverted its
cache key points back at an older generation, and that one is what the pair's inputs say now.
Every command that settles a pair on a generation — `run` (new or cache hit), a batch item
(generated or fresh) and a collected Batch API answer — chose it by its inputs' cache key and
records the choice here; `render`, `show`, `quality`, `doctor`, the index and the feed read it.
The log is append-only, so "the previous version" of a page is the one published before the
current one, whether that generation is older or newer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.models import Comparison
from pipeline.store.connection import Connection, insert_rows
from pipeline.store.generations import SELECT_GENERATION, comparison_of

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection


def publication_time() -> str:
    """UTC with microseconds: two publications of one pair in one second still have an order."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}Z"


class Publications(Connection):
    """Reads and writes of `publications`."""

    def publish(self, choices: Sequence[tuple[str, str]]) -> None:
        """Record (pair key, generation id) choices in one transaction."""
        if choices:
            with self.session() as con:
                publish_in(con, choices)

    def published_with_previous(
        self, pair_keys: Sequence[str] | None = None
    ) -> list[tuple[Comparison, Comparison | None]]:
        """Every pair's published generation (or those of `pair_keys`) and the one published before it."""
        with self.session() as con:
            rows = con.execute(
                _CURRENT_AND_PREVIOUS
                + (" WHERE c.pair_key IN (SELECT unnest(?))" if pair_keys is not None else "")
                + " ORDER BY c.pair_key",
                [list(pair_keys)] if pair_keys is not None else [],
            ).fetchall()
            ids = [gid for _, current, previous in rows for gid in (current, previous) if gid]
            found = {c.generation_id: c for c in map(comparison_of, con.execute(
                f"{SELECT_GENERATION} WHERE id IN (SELECT unnest(?))", [ids]).fetchall())}  # fmt: skip
        return [(found[current], found.get(previous) if previous else None)
                for _, current, previous in rows if current in found]  # fmt: skip

    def published(self, pair_key: str) -> tuple[Comparison, Comparison | None] | None:
        found = self.published_with_previous([pair_key])
        return found[0] if found else None

    def published_keys(self) -> set[str]:
        with self.session() as con:
            return {row[0] for row in con.execute("SELECT DISTINCT pair_key FROM publications").fetchall()}

    def publication_order(self, pair_key: str) -> list[str]:
        """The generation ids a pair has shown, oldest first (a generation shown twice is listed twice)."""
        with self.session() as con:
            rows = con.execute(
                "SELECT generation_id FROM publications WHERE pair_key = ? ORDER BY published_at, generation_id",
                [pair_key],
            ).fetchall()
        return [row[0] for row in rows]


# The newest publication of each pair, and the newest before it that showed another generation.
_CURRENT_AND_PREVIOUS = """
    WITH ranked AS (
        SELECT pair_key, generation_id, published_at,
               row_number() OVER (PARTITION BY pair_key ORDER BY published_at DESC, generation_id DESC) AS rn
        FROM publications
    ), current AS (SELECT pair_key, generation_id, published_at FROM ranked WHERE rn = 1),
    earlier AS (
        SELECT p.pair_key, p.generation_id,
               row_number() OVER (PARTITION BY p.pair_key ORDER BY p.published_at DESC, p.generation_id DESC) AS rn
        FROM publications p JOIN current c ON p.pair_key = c.pair_key
        WHERE p.published_at < c.published_at AND p.generation_id <> c.generation_id
    )
    SELECT c.pair_key, c.generation_id, e.generation_id
    FROM current c LEFT JOIN earlier e ON e.pair_key = c.pair_key AND e.rn = 1
"""


def publish_in(con: DuckDBPyConnection, choices: Sequence[tuple[str, str]]) -> None:
    """Record choices inside the caller's transaction; a pair already showing that generation gets no new row."""
    wanted = dict(choices)
    current = dict(
        con.execute(
            "SELECT pair_key, arg_max(generation_id, published_at) FROM publications "
            "WHERE pair_key IN (SELECT unnest(?)) GROUP BY pair_key",
            [list(wanted)],
        ).fetchall()
    )
    at = publication_time()
    insert_rows(con, "publications (pair_key, generation_id, published_at)",
                [[key, gid, at] for key, gid in sorted(wanted.items()) if current.get(key) != gid])  # fmt: skip
