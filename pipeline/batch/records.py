"""Each batch item ends as one ledger entry, built here for both transports (threads and the Batch API)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.exitcodes import Verdict, exit_code
from pipeline.generation.run import Produced
from pipeline.models import AttemptRecord, Usage, model_attempts
from pipeline.store import FailedAttempts, ItemRecord, LedgerEntry, NewGeneration

DONE = ("generated", "fresh")
ItemFn = Callable[[ItemRecord, int, int], None]  # (item, done, total): progress as items settle


def one_line(error: BaseException | str | None) -> str:
    """An error as one ledger line of at most 500 characters."""
    return " ".join(str(error).split())[:500] if error else ""


def settled(pair_key: str, status: str, *, generation_id: str | None = None, error: str = "") -> LedgerEntry:
    """An item that made no call: fresh, failed before a call, skipped by the budget, or pending."""
    return LedgerEntry(ItemRecord(pair_key, status, error=one_line(error), generation_id=generation_id))


def produced_entry(produced: Produced, cost: float, records: Sequence[AttemptRecord] | None = None) -> LedgerEntry:
    """The entry of an item the model was asked for: its generation, or its failed attempts and the reason.

    `records` are the attempts to count when they are more than the produced ones (a Batch API item:
    its batch answer, then direct re-asks); `cost` is what they cost.
    """
    attempts = tuple(produced.records if records is None else records)
    usage = sum((r.usage for r in attempts), Usage())
    written = produced.written(attempts)
    latency = sum(r.latency_ms for r in attempts)
    key = produced.job.unit
    if isinstance(written, NewGeneration):
        item = ItemRecord(key, "generated", model_attempts(attempts), usage, cost, latency,
                          generation_id=written.comparison.generation_id)  # fmt: skip
        return LedgerEntry(item, generation=written)
    item = ItemRecord(key, "failed", model_attempts(attempts), usage, cost, latency, one_line(produced.error))
    return LedgerEntry(item, failed=written)


def failed_entry(pair_key: str, cache_key: str, invocation: str, records: Sequence[AttemptRecord], cost: float,
                 error: str) -> LedgerEntry:  # fmt: skip
    """An item that failed after attempts that produced no `Produced` (a Batch API answer judged here)."""
    usage = sum((r.usage for r in records), Usage())
    item = ItemRecord(pair_key, "failed", model_attempts(records), usage, cost, error=one_line(error))
    return LedgerEntry(item, failed=FailedAttempts(invocation, pair_key, cache_key, tuple(records)))


@dataclass
class RunSummary:
    run_id: str
    name: str
    provider: str
    model: str
    items: list[ItemRecord]
    wall_s: float
    interrupted: bool = False
    stopped_by_budget: bool = False

    def count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    @property
    def usage(self) -> Usage:
        return sum((i.usage for i in self.items), Usage())

    @property
    def cost(self) -> float:
        return sum(i.cost for i in self.items)

    @property
    def verdict(self) -> Verdict:
        if self.interrupted:
            return Verdict.INTERRUPTED
        # A shard's pair deferred to the merged store is not a failure of this shard.
        return Verdict.DONE if all(i.status in (*DONE, "deferred") for i in self.items) else Verdict.FAILED

    def as_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "run_id": self.run_id, "name": self.name, "provider": self.provider, "model": self.model,
            "wall_s": round(self.wall_s, 2), "interrupted": self.interrupted,
            "stopped_by_budget": self.stopped_by_budget,
            "counts": {s: self.count(s) for s in ("generated", "fresh", "failed", "skipped", "pending")}
            | ({"deferred": self.count("deferred")} if self.count("deferred") else {}),
            "tokens": {"prompt": u.prompt_tokens, "completion": u.completion_tokens},
            "cost": round(self.cost, 6), "exit_code": int(exit_code(self.verdict)),
            "items": [i.row() for i in self.items],
        }  # fmt: skip
