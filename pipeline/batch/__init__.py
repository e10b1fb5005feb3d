"""Batch: many pairs with bounded concurrency, rate limits, a budget, freshness and a run ledger.

One core, two transports::

    spec      what is asked for (a batch file and flags) -> the catalogue's pairs, a shard of them
    plan      per pair: generate, fresh, or failed (its sources cannot be gathered)
    threads   transport 1: direct calls in worker threads, one writer thread
    api       transport 2: the provider's Batch API (submit now, collect later), via
              files (request/answer JSONL) and collector (answers -> generations, re-asks)
    records   each item's ledger entry, built once for both transports
    context   what the runners use of a workspace, typed

Reports are written by `pipeline.publish` (the same publisher `run` and `render` use).
"""

from __future__ import annotations

from pipeline.batch.plan import PlanItem, new_run_id, plan, prepare_batch
from pipeline.batch.records import DONE, RunSummary
from pipeline.batch.spec import BatchSpec, load_batch, parse_age, parse_shard, resolve_pairs, shard_of

__all__ = [
    "DONE", "BatchSpec", "PlanItem", "RunSummary", "load_batch", "new_run_id", "parse_age", "parse_shard", "plan",
    "prepare_batch", "resolve_pairs", "shard_of",
]  # fmt: skip
