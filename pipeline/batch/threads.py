"""The direct transport: each item's calls made now, in worker threads.

Workers only call the model (`generate.produce`); the calling thread is the one writer: it
commits each item's generation and ledger row in one short transaction as results arrive,
so an interrupted batch loses nothing that had arrived and `--resume` picks up the rest.
Items end as `generated`, `fresh`, `failed` (with the reason) or `skipped` (budget reached);
`pending` means the run stopped before the item finished.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from pipeline.batch.context import BatchContext
from pipeline.batch.plan import PlanItem, new_run_id
from pipeline.batch.records import DONE, ItemFn, RunSummary, produced_entry, settled
from pipeline.batch.spec import BatchSpec
from pipeline.generation.run import Produced, produce
from pipeline.models import Comparison
from pipeline.pricing import Price
from pipeline.providers.base import Provider
from pipeline.providers.retry import RateGate
from pipeline.publish import BatchReports, Publisher
from pipeline.store import ItemRecord, Ledger, LedgerEntry

# An entry ready to commit, and the comparison whose report follows the commit (None: no report).
Arrived = tuple[LedgerEntry, Comparison | None]
# Stage two: the pairs that waited for profiles, planned with the profiles settled (unit -> generation)
# and those that failed (unit -> why).
StageTwo = Callable[[list[PlanItem], dict[str, Comparison], dict[str, str]], list[PlanItem]]


class _Spend:
    """Dollars spent so far, counted as answers come back, so the next item a worker takes sees them."""

    def __init__(self, price: Price | None, budget: float):
        self.price, self.budget = price, budget
        self.spent, self.reached = 0.0, False
        self._lock = threading.Lock()

    def cost(self, produced: Produced) -> float:
        return self.price.cost(produced.usage) if self.price else 0.0

    def add(self, produced: Produced) -> None:
        with self._lock:
            self.spent += self.cost(produced)
            self.reached = self.reached or bool(self.budget and self.spent >= self.budget)


class _Writer:
    """The one writer: commits what arrived, then writes its reports and reports progress."""

    def __init__(self, ledger: Ledger, run_id: str, reports: BatchReports, total: int, on_item: ItemFn | None):
        self.ledger, self.run_id, self.reports, self.total, self.on_item = ledger, run_id, reports, total, on_item
        self.items: dict[str, ItemRecord] = {}
        self.arrived: dict[str, Arrived] = {}  # came back, not committed yet
        self.settled: dict[str, Comparison] = {}  # profile units settled so far (generated or fresh)

    def finish(self, entries: list[Arrived]) -> None:
        # A Ctrl-C between the commit and the bookkeeping below would make the interrupt path
        # commit the same items again (duplicate generation ids): it waits until both are done.
        with _interrupts_deferred():
            self.ledger.record(self.run_id, [entry for entry, _ in entries])
            for entry, comparison in entries:
                self.items[entry.item.pair_key] = entry.item
                self.arrived.pop(entry.item.pair_key, None)
                if comparison is not None and comparison.kind == "profile":
                    self.settled[entry.item.pair_key] = comparison
        first = len(self.items) - len(entries)
        for number, (entry, comparison) in enumerate(entries, first + 1):
            if comparison is not None:
                self.reports.write(comparison.pair_key)
            if self.on_item:
                self.on_item(entry.item, number, self.total)

    def profiles(self) -> dict[str, Comparison]:
        return dict(self.settled)

    def uncommitted(self) -> list[Arrived]:
        return [a for key, a in self.arrived.items() if key not in self.items]


def run_batch(
    ctx: BatchContext,
    spec: BatchSpec,
    items: list[PlanItem],
    provider: Provider,
    *,
    price: Price | None,
    max_cost: float,
    resumed_from: str | None,
    on_item: ItemFn | None = None,
    stage_two: StageTwo | None = None,
) -> RunSummary:
    """Stage one: the profiles, and the pairs whose profiles were fresh already. Stage two: the pairs
    that waited for a profile of this batch (`later`), planned by `stage_two` once those are settled."""
    with ctx.store.holding():  # one open store for the whole run, yielded to any waiting process
        ledger = Ledger(ctx.store)
        run_id = new_run_id()
        ident = provider.identity()
        ledger.start(run_id, spec.name, spec.as_dict(), ident["kind"], ident["model"],
                     [i.unit for i in items], resumed_from)  # fmt: skip
        if any(i.action in ("generate", "later") and not (i.job and i.job.by_code) for i in items):
            for backend in (provider, ctx.judge):  # the first import of the SDK would otherwise stall every worker
                if backend is not None:
                    backend.warm_up()
        started = time.monotonic()
        reports = Publisher(ctx.store, ctx.renderer, ctx.catalogue).batch(i.unit for i in items)
        writer = _Writer(ledger, run_id, reports, len(items), on_item)
        interrupted, spend = False, _Spend(price, max_cost)
        gate = RateGate(spec.requests_per_minute or None, spec.tokens_per_minute or None)

        def work(item: PlanItem) -> Produced | None:
            assert item.job is not None
            if spend.reached and not item.job.by_code:
                return None  # the budget is reached: the item is skipped without a call
            produced = produce(item.job, provider, ctx.prompts, ctx.transport, gate=gate, judge=ctx.judge)
            spend.add(produced)
            return produced

        def collect(futures: Iterable[Future[Produced | None]]) -> None:
            for future in list(futures):
                item = running.pop(future)
                produced = future.result()
                if produced is None:
                    reason = f"budget of ${max_cost:g} reached"
                    writer.arrived[item.unit] = (settled(item.unit, "skipped", error=reason), None)
                else:
                    writer.arrived[item.unit] = (produced_entry(produced, spend.cost(produced)), produced.comparison)

        def stage(planned: list[PlanItem]) -> None:
            writer.finish([_already_settled(i) for i in planned if i.action not in ("generate", "later")])
            # Every item is queued in the pool at once: a worker takes the next one the moment its call
            # returns, without waiting for the writer (which commits and renders meanwhile). Once the
            # budget is reached, the items not started yet come back as skipped without a call.
            for item in planned:
                if item.action == "generate":
                    running[pool.submit(work, item)] = item
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                collect(done)
                writer.finish(list(writer.arrived.values()))  # everything that has arrived, in one transaction

        running: dict[Future[Produced | None], PlanItem] = {}
        # An in-process model generates one answer at a time: more workers would only interleave
        # items (each finishing later) and leave more calls in flight when the run is stopped.
        workers = 1 if provider.kind == "local" else spec.concurrency
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch")
        try:
            stage(items)
            waiting = [i for i in items if i.action == "later"]
            if waiting and stage_two is not None:
                failed = {k: f"skipped: {i.error}" if i.status == "skipped" else (i.error or i.status)
                          for k, i in writer.items.items() if i.status not in DONE}  # fmt: skip
                stage(stage_two(waiting, writer.profiles(), failed))
        except KeyboardInterrupt:
            interrupted = True
            # Ctrl-C: keep every result that has come back; calls still in flight are abandoned.
            collect([f for f in running if f.done() and not f.cancelled()])
            writer.finish(writer.uncommitted())
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            for item in items:
                writer.items.setdefault(item.unit, ItemRecord(item.unit, "pending"))
            ledger.finish(run_id, "interrupted" if interrupted else "finished")
            reports.settle()
        return RunSummary(
            run_id, spec.name, ident["kind"], ident["model"], [writer.items[i.unit] for i in items],
            time.monotonic() - started, interrupted, spend.reached,
        )  # fmt: skip


def _already_settled(item: PlanItem) -> Arrived:
    """A fresh item (its report is written again, linking to the batch's pairs), one that failed to
    prepare, or a shard's pair deferred to the merged store."""
    if item.action == "fresh":
        assert item.cached is not None
        return settled(item.unit, "fresh", generation_id=item.cached.generation_id), item.cached
    status = item.action if item.action in ("deferred", "skipped") else "failed"
    return settled(item.unit, status, error=item.reason), None


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
