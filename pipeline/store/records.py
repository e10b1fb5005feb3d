"""What is written to the store: typed records, one per kind of row group.

A batch (direct calls or the Batch API) ends each item with one `LedgerEntry`: the item's
ledger row, and the generation it produced or the attempts that failed. Both runners build
them with `batch.records`; the ledger writes them with `Ledger.record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.models import AttemptRecord, Comparison, Usage


@dataclass(frozen=True)
class ItemRecord:
    """One batch item's row in the run ledger (`run_items`)."""

    pair_key: str
    status: str  # generated | fresh | failed | skipped | pending
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    latency_ms: int = 0
    error: str = ""
    generation_id: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "pair_key": self.pair_key, "status": self.status, "attempts": self.attempts,
            "prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens,
            "cost": round(self.cost, 10), "latency_ms": self.latency_ms, "error": self.error,
            "generation_id": self.generation_id, "cached_tokens": self.usage.cached_tokens,
            "reasoning_tokens": self.usage.reasoning_tokens,
        }  # fmt: skip


@dataclass(frozen=True)
class NewGeneration:
    """A validated comparison with the request that produced it and every attempt on the way."""

    comparison: Comparison
    request: dict[str, Any]
    raw_response: str
    latency_ms: int
    invocation_id: str
    attempts: Sequence[AttemptRecord]
    schema_body: str = ""


@dataclass(frozen=True)
class FailedAttempts:
    """The attempts of an item that produced no comparison (kept: they were paid for)."""

    invocation_id: str
    pair_key: str
    cache_key: str
    attempts: Sequence[AttemptRecord]


@dataclass(frozen=True)
class LedgerEntry:
    item: ItemRecord
    generation: NewGeneration | None = None
    failed: FailedAttempts | None = None
