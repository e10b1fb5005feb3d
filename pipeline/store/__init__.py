"""The store: one DuckDB file that holds the cache, every generation and attempt, URL snapshots,
the run ledger and Batch API state. All SQL of the pipeline lives in this package.

    connection   the file lock, short transactions, read-only stores; shared row helpers
    migrations   the schema as a registry of named migrations, each declaring its tables
    generations  generations, attempts, schemas (the cache)
    snapshots    fetched URL sources
    ledger       batch runs and their items
    published    which generation of each pair is the published one
    api_runs     Batch API files, batches and request lines
    exchange     export to Parquet and idempotent import, table list from the registry
    records      the typed records that writers hand over

Timestamps are stored as ISO 8601 UTC text so that they read back byte-exact.
"""

from __future__ import annotations

from pipeline.store.api_runs import ApiRuns
from pipeline.store.connection import first_line
from pipeline.store.generations import Generations
from pipeline.store.ledger import Ledger
from pipeline.store.migrations import MIGRATIONS, Migration, Table
from pipeline.store.published import Publications
from pipeline.store.records import FailedAttempts, ItemRecord, LedgerEntry, NewGeneration
from pipeline.store.snapshots import Snapshot, Snapshots


class Store(Generations, Publications, Snapshots, ApiRuns):
    """The store file and every query on it."""


__all__ = [
    "MIGRATIONS", "ApiRuns", "FailedAttempts", "ItemRecord", "Ledger", "LedgerEntry", "Migration",
    "NewGeneration", "Snapshot", "Store", "Table", "first_line",
]  # fmt: skip
