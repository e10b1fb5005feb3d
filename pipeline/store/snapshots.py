"""Snapshots of URL sources: every distinct text fetched, and when it was last seen."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.store.connection import Connection
from pipeline.text import utc_now


@dataclass(frozen=True)
class Snapshot:
    url: str
    final_url: str
    fetched_at: str
    status: int
    etag: str
    last_modified: str
    content_type: str
    sha256: str
    text: str


class Snapshots(Connection):
    def last_snapshot(self, url: str) -> Snapshot | None:
        with self.session() as con:
            row = con.execute(
                "SELECT url, final_url, checked_at, status, etag, last_modified, content_type, sha256, text "
                "FROM snapshots WHERE url = ? ORDER BY checked_at DESC, fetched_at DESC LIMIT 1",
                [url],
            ).fetchone()
        return Snapshot(*row) if row else None

    def save_snapshot(self, snap: Snapshot) -> None:
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
