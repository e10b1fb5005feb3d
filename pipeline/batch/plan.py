"""The plan of a batch: per pair, generate, fresh (its cache key has a recent enough generation), or
failed (its sources cannot be gathered: that item fails, the others go on)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.batch.records import DONE, one_line
from pipeline.batch.spec import BatchSpec, resolve_pairs, shard_of
from pipeline.catalogue import Catalogue
from pipeline.errors import CatalogueError, ConfigError, PipelineError, SourceError
from pipeline.generation.job import Job
from pipeline.models import Comparison, Pair
from pipeline.store import Ledger, Store
from pipeline.text import utc_seconds

Prepare = Callable[[Pair], Job]  # a pair's job for the batch's provider (sources gathered)


@dataclass(frozen=True)
class PlanItem:
    pair: Pair
    job: Job | None  # None only for "failed"
    action: str  # "generate", "fresh", or "failed" (it could not even be prepared: a bad source)
    reason: str
    cached: Comparison | None = None  # the stored Comparison for fresh items


def plan(store: Store, prepare: Prepare, pairs: list[Pair], *, max_age_s: float | None, force: bool,
         done_before: set[str]) -> list[PlanItem]:  # fmt: skip
    """Decide per pair: generate, fresh (its cache key has a recent enough generation), or failed
    (its sources cannot be gathered: that item fails, the others go on)."""
    jobs: list[Job | PipelineError] = []
    for pair in pairs:
        try:
            jobs.append(prepare(pair))
        except (SourceError, CatalogueError) as exc:
            jobs.append(exc)  # that item fails; the others go on
    stored = store.latest_by_cache_key([j.cache_key for j in jobs if not isinstance(j, Exception)])
    now = time.time()
    items = []
    for pair, job in zip(pairs, jobs, strict=True):
        if isinstance(job, PipelineError):
            items.append(PlanItem(pair, None, "failed", one_line(job)))
            continue
        cached = stored.get(job.cache_key)
        if cached is None:
            items.append(PlanItem(pair, job, "generate", "new inputs (cache key not in the store)"))
            continue
        age = now - utc_seconds(cached.generated_at)
        if pair.key in done_before:
            items.append(PlanItem(pair, job, "fresh", "finished by the run being resumed", cached))
        elif force:
            items.append(PlanItem(pair, job, "generate", "--force"))
        elif max_age_s is not None and age > max_age_s:
            items.append(PlanItem(pair, job, "generate", f"older than max_age ({age / 86400:.1f} days)"))
        else:
            items.append(PlanItem(pair, job, "fresh", "unchanged inputs", cached))
    return items


def prepare_batch(
    catalogue: Catalogue, store: Store, prepare: Prepare, spec: BatchSpec, *, force: bool, resume: bool,
    shard: tuple[int, int] | None = None,
) -> tuple[list[PlanItem], str | None]:  # fmt: skip
    """The plan for a batch; with `resume`, what the last run of this batch finished counts as fresh."""
    pairs = resolve_pairs(spec, catalogue)
    if shard is not None:
        index, count = shard
        pairs = [p for p in pairs if shard_of(p.key, count) == index]
    done_before: set[str] = set()
    resumed_from = None
    if resume:
        last = Ledger(store).last_run(spec.name)
        if last is None:
            raise ConfigError(f"no earlier run of batch {spec.name!r} to resume; run it without --resume")
        resumed_from, statuses = last
        done_before = {key for key, status in statuses.items() if status in DONE}
    items = plan(store, prepare, pairs, max_age_s=spec.max_age_s, force=force, done_before=done_before)
    return items, resumed_from


def new_run_id() -> str:
    """Sortable by start time, unique across machines (shards merge their ledgers)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
