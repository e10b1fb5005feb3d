"""Batch: many pairs with bounded concurrency, rate limits, a budget, freshness and a run ledger.

Workers only call the model (`generate.produce`); the calling thread is the one
writer: it commits each item's generation and ledger row in one short
transaction as results arrive, so an interrupted batch loses nothing that had
arrived and `--resume` picks up the rest. Items end as `generated`, `fresh`,
`failed` (with the reason) or `skipped` (budget reached); `pending` means the
run stopped before the item finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.catalogue import Catalogue, read_toml
from pipeline.errors import CatalogueError, ConfigError, SourceError
from pipeline.exitcodes import Verdict, exit_code
from pipeline.models import Pair, Usage
from pipeline.pricing import Price
from pipeline.text import utc_seconds

DONE = ("generated", "fresh")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


@dataclass(frozen=True)
class BatchSpec:
    name: str
    pairs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    provider: str | None = None
    model: str | None = None
    concurrency: int = 4
    requests_per_minute: float = 0
    tokens_per_minute: float = 0
    max_cost: float = 0
    max_age_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def with_flags(
        self, *, category: str | None = None, concurrency: int | None = None, shard: tuple[int, int] | None = None
    ) -> BatchSpec:
        """The spec as the command line changes it: flags win over the batch file."""
        spec = self
        if category:
            spec = replace(spec, categories=(*spec.categories, category))
        if concurrency:
            spec = replace(spec, concurrency=concurrency)
        if shard:
            spec = replace(spec, name=f"{spec.name} (shard {shard[0]}/{shard[1]})")
        return spec

    def budget(self, max_cost: float | None) -> float:
        """`--max-cost` if given, else the batch file's `[limits] max_cost` (0: none)."""
        return self.max_cost if max_cost is None else max_cost


def parse_age(text: str, where: str) -> float | None:
    if not text:
        return None
    match = _AGE.match(text)
    if not match:
        raise ConfigError(f"{where}: max_age {text!r} must look like 90s, 30m, 12h or 7d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def load_batch(path: Path) -> BatchSpec:
    if not path.is_file():
        raise ConfigError(f"batch file {path} does not exist")
    doc = read_toml(path)
    limits, fresh = doc.get("limits", {}), doc.get("freshness", {})
    known = {"name", "pairs", "select", "limits", "freshness", "provider", "model"}
    unknown = set(doc) - known
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}")
    selects = doc.get("select", [])
    spec = BatchSpec(
        name=str(doc.get("name") or path.stem),
        pairs=tuple(str(p) for p in doc.get("pairs", [])),
        categories=tuple(s["category"] for s in selects if "category" in s),
        subjects=tuple(s["subject"] for s in selects if "subject" in s),
        provider=doc.get("provider"),
        model=doc.get("model"),
        concurrency=int(limits.get("concurrency", 4)),
        requests_per_minute=float(limits.get("requests_per_minute", 0)),
        tokens_per_minute=float(limits.get("tokens_per_minute", 0)),
        max_cost=float(limits.get("max_cost", 0)),
        max_age_s=parse_age(str(fresh.get("max_age", "")), str(path)),
    )
    if spec.concurrency < 1:
        raise ConfigError(f"{path}: limits.concurrency must be at least 1")
    if not (spec.pairs or spec.categories or spec.subjects):
        raise ConfigError(f"{path}: names no pairs; add `pairs = [...]` or [[select]] category/subject entries")
    return spec


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (1 ≤ i ≤ n): this machine's share of a batch split n ways."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ConfigError(f"--shard {text!r} must look like i/n with 1 ≤ i ≤ n, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def shard_of(pair_key: str, shards: int) -> int:
    """Which of `shards` shards (1-based) a pair belongs to: a stable hash of the pair, the same on every machine."""
    return int.from_bytes(hashlib.sha256(pair_key.encode()).digest()[:8], "big") % shards + 1


def resolve_pairs(spec: BatchSpec, catalogue: Catalogue) -> list[Pair]:
    found: dict[str, Pair] = {}
    for ref in spec.pairs:
        pair = catalogue.pair(ref)
        found[pair.key] = pair
    for category in spec.categories:
        for pair in catalogue.pairs_in_category(category):
            found[pair.key] = pair
    for ref in spec.subjects:
        subject = catalogue.subject(ref)
        for pair in catalogue.pairs_in_category(subject.category):
            if subject.id in (pair.a.id, pair.b.id):
                found[pair.key] = pair
    if not found:
        raise CatalogueError(f"batch {spec.name!r} selects no pairs")
    return [found[k] for k in sorted(found)]


@dataclass
class ItemOutcome:
    pair_key: str
    status: str
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


@dataclass
class RunSummary:
    run_id: str
    name: str
    provider: str
    model: str
    items: list[ItemOutcome]
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
        return Verdict.DONE if all(i.status in DONE for i in self.items) else Verdict.FAILED

    def as_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "run_id": self.run_id, "name": self.name, "provider": self.provider, "model": self.model,
            "wall_s": round(self.wall_s, 2), "interrupted": self.interrupted,
            "stopped_by_budget": self.stopped_by_budget,
            "counts": {s: self.count(s) for s in ("generated", "fresh", "failed", "skipped", "pending")},
            "tokens": {"prompt": u.prompt_tokens, "completion": u.completion_tokens},
            "cost": round(self.cost, 6), "exit_code": int(exit_code(self.verdict)),
            "items": [i.row() for i in self.items],
        }  # fmt: skip


ItemFn = Callable[[ItemOutcome, int, int], None]  # (outcome, done, total)


@dataclass(frozen=True)
class PlanItem:
    pair: Pair
    job: Any
    action: str  # "generate", "fresh", or "failed" (it could not even be prepared: a bad source)
    reason: str
    cached: Any = None  # the stored Comparison for fresh items


def plan(ws: Any, pairs: list[Pair], provider: Any, *, max_age_s: float | None, force: bool,
         done_before: set[str]) -> list[PlanItem]:  # fmt: skip
    """Decide per pair: generate, fresh (its cache key has a recent enough generation), or failed
    (its sources cannot be gathered: that item fails, the others go on)."""
    jobs: list[Any] = []
    for pair in pairs:
        try:
            jobs.append(ws.prepare(pair, provider))
        except (SourceError, CatalogueError) as exc:
            jobs.append(exc)  # that item fails; the others go on
    stored = ws.store.latest_by_cache_key([j.cache_key for j in jobs if not isinstance(j, Exception)])
    now = time.time()
    items = []
    for pair, job in zip(pairs, jobs, strict=True):
        if isinstance(job, Exception):
            items.append(PlanItem(pair, None, "failed", _one_line(job)))
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


def run_batch(
    ws: Any,
    spec: BatchSpec,
    items: list[PlanItem],
    provider: Any,
    *,
    price: Price | None,
    max_cost: float,
    resumed_from: str | None,
    on_item: ItemFn | None = None,
) -> RunSummary:
    from pipeline.generate import produce
    from pipeline.providers.retry import RateGate
    from pipeline.store import Ledger

    with ws.store.holding():  # one open store for the whole run, yielded to any waiting process
        ledger = Ledger(ws.store)
        run_id = new_run_id()
        ident = provider.identity()
        ledger.start(run_id, spec.name, spec.as_dict(), ident["kind"], ident["model"],
                     [i.pair.key for i in items], resumed_from)  # fmt: skip
        gate = RateGate(spec.requests_per_minute or None, spec.tokens_per_minute or None)
        transport = ws.settings.transport
        outcomes: dict[str, ItemOutcome] = {}
        judge = ws.judge
        if any(i.action == "generate" for i in items):
            for backend in (provider, judge):  # the first import of the SDK would otherwise stall every worker
                if backend is not None and hasattr(backend, "warm_up"):
                    backend.warm_up()
        started = time.monotonic()
        spent = 0.0
        budget_hit = False
        total = len(items)
        # Reports are written as items arrive, linking to every pair expected to exist at the end;
        # the few whose links change because an item failed are rewritten at the end.
        before = {c.pair_key: (c, prev) for c, prev in ws.store.latest_with_previous()}
        expected = frozenset(before) | {i.pair.key for i in items}
        rendered: dict[str, str] = {}  # pair -> generation whose report was written (ids only: memory stays flat)

        Entry = tuple[ItemOutcome, dict[str, Any] | None, dict[str, Any] | None, Any]
        arrived: dict[str, Entry] = {}  # results that came back and are not committed yet

        def finish(entries: list[Entry]) -> None:
            # A Ctrl-C between the commit and the bookkeeping below would make the interrupt path
            # commit the same items again (duplicate generation ids): it waits until both are done.
            with _interrupts_deferred():
                ledger.record(run_id, [(o.row(), g, f) for o, g, f, _c in entries])
                for outcome, _g, _f, _c in entries:
                    outcomes[outcome.pair_key] = outcome
                    arrived.pop(outcome.pair_key, None)
            first = len(outcomes) - len(entries)
            for number, (outcome, _g, _f, comparison) in enumerate(entries, first + 1):
                if comparison is not None:
                    _write(ws, comparison, expected, before)
                    rendered[outcome.pair_key] = comparison.generation_id
                if on_item:
                    on_item(outcome, number, total)

        spend_lock = threading.Lock()

        def work(item: PlanItem) -> Any:
            nonlocal spent, budget_hit
            if budget_hit:
                return None
            produced = produce(item.job, provider, ws.prompts, transport, gate=gate, judge=judge)
            item.job.__dict__.pop("schema", None)  # the pair's schema: large, and not needed after its calls
            with spend_lock:  # counted here, so the next item a worker takes already sees the spend
                spent += price.cost(produced.usage) if price else 0.0
                budget_hit = budget_hit or bool(max_cost and spent >= max_cost)
            return produced

        def skipped(item: PlanItem) -> Entry:
            return ItemOutcome(item.pair.key, "skipped", error=f"budget of ${max_cost:g} reached"), None, None, None

        def collect(futures: Any) -> None:
            for future in list(futures):
                item = running.pop(future)
                produced = future.result()
                if produced is None:
                    arrived[item.pair.key] = skipped(item)
                    continue
                cost = price.cost(produced.usage) if price else 0.0
                outcome = ItemOutcome(
                    item.pair.key, "generated" if produced.comparison else "failed", produced.attempts,
                    produced.usage, cost, sum(r.latency_ms for r in produced.records),
                )  # fmt: skip
                if produced.comparison is not None:
                    outcome.generation_id = produced.comparison.generation_id
                    arrived[item.pair.key] = (outcome, _generation_args(produced), None, produced.comparison)
                else:
                    outcome.error = _one_line(produced.error)
                    arrived[item.pair.key] = (outcome, None, _failed_args(produced), None)

        interrupted = False
        running: dict[Future[Any], PlanItem] = {}
        # An in-process model generates one answer at a time: more workers would only interleave
        # items (each finishing later) and leave more calls in flight when the run is stopped.
        workers = 1 if provider.kind == "local" else spec.concurrency
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch")
        try:
            settled: list[Entry] = [
                (ItemOutcome(i.pair.key, "fresh", generation_id=i.cached.generation_id), None, None, i.cached)
                for i in items if i.action == "fresh"
            ]  # fmt: skip
            settled += [(ItemOutcome(i.pair.key, "failed", error=i.reason), None, None, None)
                        for i in items if i.action == "failed"]  # fmt: skip
            finish(settled)
            # Every item is queued in the pool at once: a worker takes the next one the moment its call
            # returns, without waiting for the writer (which commits and renders meanwhile). Once the
            # budget is reached, the items not started yet come back as skipped without a call.
            for item in items:
                if item.action == "generate":
                    running[pool.submit(work, item)] = item
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                collect(done)
                finish(list(arrived.values()))  # everything that has arrived, in one transaction
        except KeyboardInterrupt:
            interrupted = True
            # Ctrl-C: keep every result that has come back; calls still in flight are abandoned.
            collect([f for f in running if f.done() and not f.cancelled()])
            finish([e for key, e in arrived.items() if key not in outcomes])
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            for item in items:
                outcomes.setdefault(item.pair.key, ItemOutcome(item.pair.key, "pending"))
            ledger.finish(run_id, "interrupted" if interrupted else "finished")
            _settle(ws, rendered, expected, before)
        return RunSummary(
            run_id, spec.name, ident["kind"], ident["model"], [outcomes[i.pair.key] for i in items],
            time.monotonic() - started, interrupted, budget_hit,
        )  # fmt: skip


def new_run_id() -> str:
    """Sortable by start time, unique across machines (shards merge their ledgers)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """SIGINT/SIGTERM inside the block are raised as KeyboardInterrupt when it ends, not in its middle."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: caught.append(number)) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _write(ws: Any, comparison: Any, existing: frozenset[str], before: dict[str, Any]) -> None:
    latest, prev = before.get(comparison.pair_key, (None, None))
    if latest is None:
        previous = None
    elif latest.generation_id == comparison.generation_id:
        previous = prev  # a fresh item that is its pair's latest generation
    elif comparison.generated_at >= latest.generated_at:
        previous = latest  # a new generation: the one stored before the run is its previous
    else:
        previous = ws.previous_of(comparison)  # an older generation that is fresh again
    ws.renderer.write(comparison, existing, previous)


def _settle(ws: Any, rendered: dict[str, str], expected: frozenset[str], before: dict[str, Any]) -> None:
    """Rewrite the reports whose "people also compare" links assumed an item that did not arrive; the index."""
    latest = ws.store.latest_all()
    existing = frozenset(c.pair_key for c in latest)
    missing = expected - existing
    if missing:
        by_key = {c.pair_key: c for c in latest}
        for key, generation_id in rendered.items():
            related = {p.key for p in ws.catalogue.related_pairs(ws.pair(key, cross_category=True))}
            if related & missing:
                comparison = by_key[key]
                if comparison.generation_id != generation_id:  # a fresh item that is not its pair's latest
                    comparison = next(c for c in ws.store.history(key) if c.generation_id == generation_id)
                _write(ws, comparison, existing, before)
    ws.renderer.write_index(latest)


def _generation_args(produced: Any) -> dict[str, Any]:
    return {
        "c": produced.comparison,
        "request": produced.request,
        "raw_response": produced.raw_response,
        "latency_ms": sum(r.latency_ms for r in produced.records),
        "invocation_id": produced.invocation,
        "attempts": produced.records,
        "schema_body": produced.job.canonical_schema,
    }


def _failed_args(produced: Any) -> dict[str, Any]:
    return {
        "invocation_id": produced.invocation,
        "generation_id": None,
        "pair_key": produced.job.pair.key,
        "cache_key": produced.job.cache_key,
        "attempts": produced.records,
    }


def _one_line(error: BaseException | None) -> str:
    return " ".join(str(error).split())[:500] if error else ""


def prepare_batch(
    ws: Any, spec: BatchSpec, provider: Any, *, force: bool, resume: bool, shard: tuple[int, int] | None = None
) -> tuple[list[PlanItem], str | None]:
    """The plan for a batch; with `resume`, what the last run of this batch finished counts as fresh."""
    from pipeline.store import Ledger

    pairs = resolve_pairs(spec, ws.catalogue)
    if shard is not None:
        index, count = shard
        pairs = [p for p in pairs if shard_of(p.key, count) == index]
    done_before: set[str] = set()
    resumed_from = None
    if resume:
        last = Ledger(ws.store).last_run(spec.name)
        if last is None:
            raise ConfigError(f"no earlier run of batch {spec.name!r} to resume; run it without --resume")
        resumed_from, statuses = last
        done_before = {key for key, status in statuses.items() if status in DONE}
    return plan(ws, pairs, provider, max_age_s=spec.max_age_s, force=force, done_before=done_before), resumed_from
