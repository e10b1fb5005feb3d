"""The plan of a batch: its profiles first, then its pairs' texts.

Each unit is `generate` (its cache key has no recent enough generation), `fresh` (it has one),
`failed` (its sources cannot be gathered, or a profile it needs failed: that item fails, the others
go on) or `later`: a pair whose texts are written from profiles this batch is about to make, so its
job (and its cache key) exists only once they are settled (`plan_pairs`, the batch's second stage).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.batch.records import DONE, one_line
from pipeline.batch.spec import BatchSpec, resolve_pairs, shard_of
from pipeline.catalogue import Catalogue
from pipeline.errors import CatalogueError, ConfigError, PipelineError, SourceError
from pipeline.generation.job import Job
from pipeline.models import Category, Comparison, Pair, Subject
from pipeline.store import Ledger, Store
from pipeline.text import utc_seconds
from pipeline.units import profile_units, units_of

ProfileOf = Callable[[Subject, Category], Job]  # a subject's profile job for the batch's provider
TextsOf = Callable[[Pair, tuple[Comparison, Comparison]], Job]  # a pair's texts job, for two profiles


@dataclass(frozen=True)
class PlanItem:
    unit: str  # "databases/postgresql" (a profile) or "mysql,postgresql" (a pair's texts)
    job: Job | None  # None for "failed" and "later"
    action: (
        str  # "generate", "fresh", "failed", "later", or "deferred" (a shard's pair needing another shard's profile)
    )
    reason: str
    cached: Comparison | None = None  # the stored generation of a fresh item
    pair: Pair | None = None  # pair items

    @property
    def is_pair(self) -> bool:
        return self.pair is not None


@dataclass(frozen=True)
class Freshness:
    max_age_s: float | None
    force: bool
    done_before: frozenset[str]  # units the run being resumed finished

    def action(self, unit: str, cached: Comparison | None) -> tuple[str, str]:
        if cached is None:
            return "generate", "new inputs (cache key not in the store)"
        age = time.time() - utc_seconds(cached.generated_at)
        if unit in self.done_before:
            return "fresh", "finished by the run being resumed"
        if self.force:
            return "generate", "--force"
        if self.max_age_s is not None and age > self.max_age_s:
            return "generate", f"older than max_age ({age / 86400:.1f} days)"
        return "fresh", "unchanged inputs"


def plan(store: Store, profile_of: ProfileOf, texts_of: TextsOf, pairs: list[Pair], fresh: Freshness,
         profile_subjects: frozenset[str] | None = None, profile_pairs: list[Pair] | None = None
         ) -> list[PlanItem]:  # fmt: skip
    """The profiles the pairs need (for a shard: those of `profile_subjects` that any of `profile_pairs`,
    the whole batch's, needs), then the pairs.

    A pair whose two profiles are fresh is planned now (fresh or generate, by its texts' cache key);
    a pair waiting for a profile of this batch is `later`."""
    pool = profile_units(pairs if profile_pairs is None else profile_pairs)
    wanted = [(u, s, c) for u, s, c in pool if profile_subjects is None or s.id in profile_subjects]
    jobs: dict[str, Job | PipelineError] = {}
    for unit, subject, category in wanted:
        try:
            jobs[unit] = profile_of(subject, category)
        except (SourceError, CatalogueError) as exc:
            jobs[unit] = exc  # that profile fails, and the pairs that need it; the others go on
    stored = store.latest_by_cache_key([j.cache_key for j in jobs.values() if not isinstance(j, Exception)])
    items: list[PlanItem] = []
    ready: dict[str, Comparison] = {}
    for unit, _subject, _category in wanted:
        job = jobs[unit]
        if isinstance(job, PipelineError):
            items.append(PlanItem(unit, None, "failed", one_line(job)))
            continue
        action, reason = fresh.action(unit, stored.get(job.cache_key))
        items.append(PlanItem(unit, job, action, reason, stored.get(job.cache_key) if action == "fresh" else None))
        if action == "fresh":
            ready[unit] = stored[job.cache_key]
    return items + plan_pairs(
        store, texts_of, pairs, fresh, ready, {i.unit: i.reason for i in items if i.action == "failed"}
    )


def plan_pairs(store: Store, texts_of: TextsOf, pairs: Iterable[Pair], fresh: Freshness,
               profiles: dict[str, Comparison], failed: dict[str, str] | None = None,
               later: bool = True) -> list[PlanItem]:  # fmt: skip
    """The pairs' texts, for the profiles now settled (`profiles`: unit -> generation). A pair missing a
    profile is `later` (or, with `later=False`, failed: its profile did not come)."""
    failed = failed or {}
    items: list[PlanItem] = []
    jobs: dict[str, Job] = {}
    for pair in pairs:
        ua, ub = units_of(pair)
        broken = next((u for u in (ua, ub) if u in failed), None)
        if broken is not None:
            why = failed[broken]
            skipped = why.startswith("skipped: ")  # a profile the budget stopped: the pair waits for it too
            action, what = ("skipped", why.removeprefix("skipped: ")) if skipped else ("failed", f"failed: {why}")
            items.append(PlanItem(pair.key, None, action, f"its profile {broken} {what}"[:500], pair=pair))
            continue
        if ua not in profiles or ub not in profiles:
            missing = ua if ua not in profiles else ub
            if later:
                items.append(PlanItem(pair.key, None, "later", f"written once the profile {missing} is settled",
                                      pair=pair))  # fmt: skip
            else:
                items.append(PlanItem(pair.key, None, "failed", f"its profile {missing} is not settled", pair=pair))
            continue
        try:
            jobs[pair.key] = texts_of(pair, (profiles[ua], profiles[ub]))
        except (SourceError, CatalogueError) as exc:
            items.append(PlanItem(pair.key, None, "failed", one_line(exc), pair=pair))
    stored = store.latest_by_cache_key([j.cache_key for j in jobs.values()])
    placed = {i.unit for i in items}
    for pair in pairs:
        if pair.key in placed:
            continue
        job = jobs[pair.key]
        action, reason = fresh.action(pair.key, stored.get(job.cache_key))
        if job.by_code and action == "generate":
            reason = f"{reason}; written by code, no model call"
        items.append(PlanItem(pair.key, job, action, reason, stored.get(job.cache_key) if action == "fresh" else None,
                              pair=pair))  # fmt: skip
    order = {p.key: i for i, p in enumerate(pairs)}
    return sorted(items, key=lambda i: order[i.unit])


def prepare_batch(
    catalogue: Catalogue, store: Store, profile_of: ProfileOf, texts_of: TextsOf, spec: BatchSpec, *, force: bool,
    resume: bool, shard: tuple[int, int] | None = None,
) -> tuple[list[PlanItem], str | None, Freshness]:  # fmt: skip
    """The plan for a batch; with `resume`, what the last run of this batch finished counts as fresh.

    With a shard (`--shard i/n`) the profiles are split by subject and the pairs by pair; a pair
    whose profiles were made by other shards is written when the merged store runs the batch again."""
    everything = pairs = resolve_pairs(spec, catalogue)
    subjects = None
    if shard is not None:
        index, count = shard
        subjects = frozenset(s.id for s in catalogue.subjects.values() if shard_of(s.id, count) == index)
        pairs = [p for p in pairs if shard_of(p.key, count) == index]
    done_before: set[str] = set()
    resumed_from = None
    if resume:
        last = Ledger(store).last_run(spec.name)
        if last is None:
            raise ConfigError(f"no earlier run of batch {spec.name!r} to resume; run it without --resume")
        resumed_from, statuses = last
        done_before = {key for key, status in statuses.items() if status in DONE}
    fresh = Freshness(spec.max_age_s, force, frozenset(done_before))
    items = plan(store, profile_of, texts_of, pairs, fresh, subjects, everything)
    if subjects is not None:  # profiles made by other shards: what this store publishes, if anything
        here = {i.unit for i in items if not i.is_pair}
        items = [_elsewhere(store, texts_of, i, fresh) if i.action == "later" and not _all_here(i, here) else i
                 for i in items]  # fmt: skip
    return items, resumed_from, fresh


def _all_here(item: PlanItem, here: set[str]) -> bool:
    assert item.pair is not None
    return all(u in here for u in units_of(item.pair))


def _elsewhere(store: Store, texts_of: TextsOf, item: PlanItem, fresh: Freshness) -> PlanItem:
    """A shard's pair whose profile is another shard's: planned from this store's published profiles, if any."""
    assert item.pair is not None
    found = {u: c for u in units_of(item.pair) if (got := store.published(u)) is not None for c in (got[0],)}
    planned = plan_pairs(store, texts_of, [item.pair], fresh, found, later=False)[0]
    if planned.action == "failed":
        reason = "a profile it needs is another shard's: run the batch once more on the merged store"
        return PlanItem(item.unit, None, "deferred", reason, pair=item.pair)
    return planned


def new_run_id() -> str:
    """Sortable by start time, unique across machines (shards merge their ledgers)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
