"""The Batch API transport: submit a batch as JSONL files now, collect the answers later.

`pipeline batch FILE --via openai-batch` plans the batch as usual (fresh items stay
fresh), writes one request line per item to be generated, uploads the file(s) and
creates the batch(es), and returns. `pipeline batch --collect` downloads what has
finished, validates every answer like a direct call would, stores the valid ones with
their usage and the discounted cost, and re-asks the rest (at once, or in a follow-up
batch). `--cancel` asks the provider to stop.

All state lives in the store (`store.api_runs`), and every step commits what it learnt
before the next one starts, so any command can be stopped and run again:
- a batch created but whose id was not recorded yet is found again by its metadata
  (`pipeline_run`, `pipeline_part`) before another is created;
- a collected answer and the request's status change are one transaction, so an
  answer is never stored twice and never lost.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.batch.collector import Collector, folder_of
from pipeline.batch.context import BatchContext
from pipeline.batch.files import PartWriter, custom_id, request_line
from pipeline.batch.plan import PlanItem, new_run_id
from pipeline.batch.records import settled
from pipeline.batch.spec import BatchSpec
from pipeline.errors import ConfigError
from pipeline.exitcodes import Verdict
from pipeline.models import Usage
from pipeline.pricing import load_price
from pipeline.providers.base import Provider
from pipeline.providers.batch_client import TERMINAL, BatchClient
from pipeline.settings import BatchAPIPolicy
from pipeline.store import Store
from pipeline.store.api_runs import ApiRun
from pipeline.text import utc_seconds

log = logging.getLogger("pipeline")

OPEN_RUN = ("submitted", "cancelling")
Say = Callable[[str], None]


def require_batchable(provider: Provider) -> None:
    BatchClient.of(provider)


@dataclass
class Submitted:
    run_id: str
    generate: int
    fresh: int
    batches: list[tuple[str, str]]  # (batch id, status)
    files: int
    bytes: int


def submit(
    ctx: BatchContext, spec: BatchSpec, items: list[PlanItem], provider: Provider, *, policy: BatchAPIPolicy,
    resumed_from: str | None, concurrency: int,
) -> Submitted:  # fmt: skip
    """Write, upload and create; returns once the provider has the batches (or nothing to do)."""
    client = BatchClient.of(provider)
    run_id = new_run_id()
    # The profiles go to the Batch API; a pair's texts are written from two profiles, so they are asked
    # directly once the run's profiles are collected (`Collector.pair_stage`).
    todo = [i for i in items if i.action == "generate" and not i.is_pair]
    writer = PartWriter(folder_of(ctx, run_id), 1, policy)
    for item in todo:
        job = item.job
        assert job is not None
        cid = custom_id(item.unit, job.cache_key, 1)
        body = client.provider.request_body(job.messages.as_list(), job.schema(), job.params)
        writer.add(cid, item.unit, job.cache_key, request_line(cid, body))
    parts = writer.close()
    spec_row = {**spec.as_dict(), "via": "openai-batch", "profile": provider.profile.name, "model": provider.model,
                "reask": policy.reask, "concurrency": concurrency}  # fmt: skip
    done = [settled(i.unit, "fresh", generation_id=i.cached.generation_id) for i in items
            if i.action == "fresh" and i.cached is not None]  # fmt: skip
    done += [settled(i.unit, "failed", error=i.reason) for i in items if i.action == "failed"]
    requests = [(cid, part.part, pair_key, cache_key, uuid.uuid4().hex)
                for part in parts for cid, pair_key, cache_key in part.keys]  # fmt: skip
    ctx.store.submit_run(run_id, spec.name, spec_row, provider.identity(), [i.unit for i in items],
                         resumed_from, done, [p.row() for p in parts], requests)  # fmt: skip
    advance(ctx.store, client, run_id, policy)
    batches = ctx.store.batches(run_id)
    fresh_count = sum(1 for i in items if i.action == "fresh")
    return Submitted(run_id, len(todo), fresh_count, [(b["batch_id"], b["status"]) for b in batches],
                     len(parts), sum(p.size for p in parts))  # fmt: skip


def advance(store: Store, client: BatchClient, run_id: str, policy: BatchAPIPolicy) -> None:
    """Upload and create every batch of the run that the provider does not have yet (idempotent)."""
    for row in store.batches(run_id):
        if row["batch_id"] or row["status"] not in ("prepared", "uploaded"):
            continue
        key = (run_id, row["round"], row["part"])
        tag = f"{row['round']}.{row['part']}"
        metadata = {"pipeline_run": run_id, "pipeline_part": tag}
        # Uploaded but no batch id recorded: the last process may have created the batch and stopped
        # before writing its id down. Creating another would pay for every request twice.
        since = utc_seconds(row["created_at"]) - 60
        existing = client.find(metadata, since) if row["input_file_id"] else None
        if existing is not None:
            log.warning("batch %s of run %s was created before the last stop; adopting it", existing.id, run_id)
            store.set_batch(*key, input_file_id=existing.input_file_id, batch_id=existing.id, status=existing.status)
            continue
        if not row["input_file_id"]:
            path = Path(row["path"])
            if not path.is_file():
                raise ConfigError(f"the request file {path} of run {run_id} is gone; cancel the run with "
                                  f"`pipeline batch --cancel --run {run_id}` and submit again")  # fmt: skip
            row["input_file_id"] = client.upload(path)
            store.set_batch(*key, input_file_id=row["input_file_id"], status="uploaded")
        created = client.create(row["input_file_id"], policy.completion_window, metadata)
        store.set_batch(*key, batch_id=created.id, status=created.status)


@dataclass
class RunState:
    run_id: str
    name: str
    status: str  # submitted | cancelling | finished | cancelled
    counts: dict[str, int]  # run_items by status
    batches: list[dict[str, Any]]
    cost: float = 0.0
    usage: Usage = field(default_factory=Usage)

    @property
    def open(self) -> bool:
        return self.status in OPEN_RUN

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "name": self.name, "status": self.status, "counts": self.counts,
            "cost": round(self.cost, 6), "tokens": {"prompt": self.usage.prompt_tokens,
                                                    "completion": self.usage.completion_tokens},
            "batches": [{k: b[k] for k in ("round", "part", "batch_id", "status", "requests", "completed", "failed")}
                        for b in self.batches],
        }  # fmt: skip


def open_runs(store: Store, run_id: str | None = None) -> list[ApiRun]:
    """Batch API runs still waiting for answers (or the one named)."""
    rows = store.api_runs(run_id)
    if run_id and not rows:
        raise ConfigError(f"no run {run_id!r} in the store; `pipeline runs` lists them")
    out = []
    for rid, name, spec, status in rows:
        if spec.get("via") != "openai-batch":
            raise ConfigError(f"run {rid} was not submitted to the Batch API; nothing to collect")
        out.append(ApiRun(rid, name, spec, status))
    return out


def state(store: Store, run: ApiRun) -> RunState:
    status, counts, p, c, cost = store.run_totals(run.run_id)
    return RunState(run.run_id, run.name, status, counts, store.batches(run.run_id), cost, Usage(p, c))


def cancel(ctx: BatchContext, run: ApiRun) -> RunState:
    """Ask the provider to stop every batch of the run; what it already answered is still collected."""
    client = BatchClient.of(ctx.provider_for(run.profile, run.model))
    ctx.store.mark_cancelling(run.run_id)
    for row in ctx.store.batches(run.run_id):
        key = (run.run_id, row["round"], row["part"])
        if row["collected_at"] or row["status"] in TERMINAL:
            continue
        if not row["batch_id"]:
            ctx.store.set_batch(*key, status="cancelled")  # never created: nothing to stop
            continue
        ctx.store.set_batch(*key, status=client.cancel(row["batch_id"]))
    return state(ctx.store, replace(run, status="cancelling"))


def collect_until_done(
    ctx: BatchContext, runs: list[ApiRun], *, wait: bool, poll_s: float | None, say: Say
) -> list[RunState]:
    """Collect every run once, or (`wait`) again every `poll_s` seconds until none is still open."""
    states: dict[str, RunState] = {}
    pending = list(runs)
    while True:
        for run in pending:
            states[run.run_id] = collect(ctx, run, say)
        pending = [r for r in pending if states[r.run_id].open]
        if not pending or not wait:
            return list(states.values())
        time.sleep(poll_s or ctx.policy.poll_s)


def verdict_of(states: list[RunState]) -> Verdict:
    """Still running somewhere: waiting; any item failed, pending or skipped: failed; else done."""
    if any(st.open for st in states):
        return Verdict.WAITING
    bad = any(st.counts.get(s, 0) for st in states for s in ("failed", "pending", "skipped"))
    return Verdict.FAILED if bad else Verdict.DONE


def collect(ctx: BatchContext, run: ApiRun, say: Say) -> RunState:
    """One pass: finish any interrupted submission, download what has finished, store, re-ask."""
    with ctx.store.holding():  # many short transactions: keep the file open between them
        return _collect(ctx, run, say)


def _collect(ctx: BatchContext, run: ApiRun, say: Say) -> RunState:
    store, policy = ctx.store, ctx.policy
    provider = ctx.provider_for(run.profile, run.model)
    client = BatchClient.of(provider)
    run_id = run.run_id
    if store.run_status(run_id) != "cancelling":
        advance(store, client, run_id, policy)
    price = load_price(ctx.config_dir, run.model)
    collector = Collector(ctx, run, client, price)
    for row in store.batches(run_id):
        if row["collected_at"]:
            continue
        key = (run_id, row["round"], row["part"])
        if row["batch_id"]:
            batch = client.retrieve(row["batch_id"])
            row.update(status=batch.status, output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
                       completed=batch.completed, failed=batch.failed)  # fmt: skip
            store.set_batch(*key, **{k: row[k] for k in ("status", "output_file_id", "error_file_id", "completed",
                                                          "failed")})  # fmt: skip
            if batch.status not in TERMINAL:
                say(f"{run_id}: batch {batch.id} {batch.status}, {row['completed'] + row['failed']} of "
                    f"{row['requests']} answered")  # fmt: skip
                continue
            collector.batch(row, batch.errors)
        elif row["status"] == "cancelled":
            collector.batch(row, "")
    collector.reask_now()
    _maybe_finish(ctx, run_id, collector, client)
    return state(store, run)


def _maybe_finish(ctx: BatchContext, run_id: str, collector: Collector, client: BatchClient) -> None:
    store = ctx.store
    if any(not r["collected_at"] for r in store.batches(run_id)):
        if store.run_status(run_id) != "cancelling":
            advance(store, client, run_id, ctx.policy)  # a follow-up round written by this pass
        return
    status = "cancelled" if store.run_status(run_id) == "cancelling" else "finished"
    if not store.waiting_requests(run_id) and status == "finished":
        collector.pair_stage()
    if not store.finish_if_answered(run_id, status):
        return
    collector.reports.settle()
    folder = folder_of(ctx, run_id)
    for path in folder.glob("*.jsonl"):
        path.unlink()  # every answer is stored and no request will be sent again
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
