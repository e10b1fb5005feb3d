"""Turning a Batch API run's downloaded answers into generations, failures and re-asks."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.batch.context import BatchContext
from pipeline.batch.files import PartWriter, answer_lines, custom_id, record_from, request_line
from pipeline.batch.records import failed_entry, produced_entry, settled
from pipeline.errors import ConfigError, PipelineError, ProviderError
from pipeline.generation.job import Job, ProfileJob, generation_from
from pipeline.generation.run import Produced, ask_judge, judge, produce
from pipeline.models import AttemptRecord, Comparison, Completion, Pair, Problem, Usage
from pipeline.pricing import Price
from pipeline.providers.batch_client import BatchClient
from pipeline.providers.retry import RateGate
from pipeline.publish import Publisher
from pipeline.settings import GenerationParams
from pipeline.store import LedgerEntry
from pipeline.store.api_runs import ApiRun, Status
from pipeline.text import utc_now

log = logging.getLogger("pipeline")
CHUNK = 1000  # answers judged and committed together


def folder_of(ctx: BatchContext, run_id: str) -> Path:
    """Where a run's request and answer files live (run ids are ours: never from model output)."""
    return ctx.work_dir / "batch-api" / run_id


@dataclass
class _Request:
    custom_id: str
    round: int
    pair_key: str
    cache_key: str
    invocation_id: str
    records: list[dict[str, Any]]
    answer: dict[str, Any] | None = None

    def attempts(self) -> list[AttemptRecord]:
        return [record_from(r) for r in self.records]


class Collector:
    """Judges, stores and routes every answer of a run's finished batches; commits per chunk."""

    def __init__(self, ctx: BatchContext, run: ApiRun, client: BatchClient, price: Price | None):
        self.ctx, self.store, self.run, self.client, self.price = ctx, ctx.store, run, client, price
        self.provider = client.provider
        self.run_id = run.run_id
        self.reask_mode = run.spec.get("reask", ctx.policy.reask)
        self.concurrency = int(run.spec.get("concurrency") or 4)
        self.jobs: dict[str, Job] = {}
        self.reports = Publisher(ctx.store, ctx.renderer, ctx.catalogue).batch(ctx.store.run_pairs(self.run_id))

    def job(self, unit: str, cache_key: str) -> Job:
        """A profile's job as it was submitted: rebuilt from the catalogue and stored snapshots (no fetching)."""
        if unit not in self.jobs:
            category_id, _, subject_id = unit.partition("/")
            subject = self.ctx.catalogue.subjects.get(subject_id)
            category = self.ctx.catalogue.categories.get(category_id)
            if subject is None or category is None:
                raise ConfigError(f"{unit}: no longer in the catalogue; its answer is not stored")
            self.jobs[unit] = self.ctx.units.profile(subject, category, self.provider, self.params())
        job = self.jobs[unit]
        if job.cache_key != cache_key:
            raise ConfigError(
                f"{unit}: its inputs changed since the batch was submitted (catalogue, sources, prompts, "
                "schema or settings); its answer no longer matches them — submit it again"
            )
        return job

    def params(self) -> GenerationParams:
        """The parameters the run was submitted with (its seed, one sample)."""
        seed = self.run.spec.get("seed")
        return replace(self.ctx.params, samples=1, **({"seed": int(seed)} if seed is not None else {}))

    def pair_stage(self) -> None:
        """Once every profile of the run is in: the run's pairs' texts, asked directly (they are written from
        two profiles, so they could not be submitted with them), at full price."""
        from pipeline.batch.plan import Freshness, plan_pairs
        from pipeline.units import units_of

        items_now = self.store.run_item_statuses(self.run_id)
        pending = sorted(k for k, (status, _) in items_now.items() if status == "pending" and "," in k)
        pairs = [self.ctx.catalogue.pair(k, allow_cross_category=True) for k in pending]
        if not pairs:
            return
        failed = {k: error or status for k, (status, error) in items_now.items() if status == "failed"}
        profiles = {
            u: found[0] for p in pairs for u in units_of(p) if u not in failed and (found := self.store.published(u))
        }
        params = self.params()

        def texts_of(pair: Pair, both: tuple[Comparison, Comparison]) -> Job:
            return self.ctx.units.pair(pair, both, self.provider, params)

        fresh = Freshness(None, False, frozenset())
        items = plan_pairs(self.store, texts_of, pairs, fresh, profiles, failed, later=False)
        for item in items:
            if item.action == "fresh" and item.cached is not None:
                entry = settled(item.unit, "fresh", generation_id=item.cached.generation_id)
            elif item.action == "generate" and item.job is not None:
                produced = produce(item.job, self.provider, self.ctx.prompts, self.ctx.transport)
                entry = produced_entry(produced, self.cost(produced.usage, False))
            else:
                entry = settled(item.unit, "failed", error=item.reason)
            self.store.record_items(self.run_id, [entry])
            self.reports.write(item.unit)

    def cost(self, usage: Usage, discounted: bool) -> float:
        if self.price is None:
            return 0.0
        return self.price.cost(usage) * (self.ctx.policy.discount if discounted else 1.0)

    def _failed(self, req: _Request, error: str, records: list[AttemptRecord] | None = None) -> LedgerEntry:
        records = records or req.attempts()
        cost = self.cost(sum((r.usage for r in records), Usage()), True)
        return failed_entry(req.pair_key, req.cache_key, req.invocation_id, records, cost, error)

    # -- one batch file ------------------------------------------------------------------------

    def batch(self, row: dict[str, Any], batch_errors: str) -> None:
        """Judge, store and route every request of one finished batch, in chunks (a batch may be 50,000)."""
        round_, part = row["round"], row["part"]
        waiting = {r[0]: _Request(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))
                   for r in self.store.submitted_requests(self.run_id, round_, part)}  # fmt: skip
        folder = folder_of(self.ctx, self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        files = [
            self.client.download(file_id, folder / f"{name}-r{round_}-p{part}.jsonl")
            for name, file_id in (("output", row["output_file_id"]), ("errors", row["error_file_id"]))
        ]
        cancelled = row["status"] == "cancelled" or self.store.run_status(self.run_id) == "cancelling"
        seen: set[str] = set()
        chunk: list[tuple[_Request, dict[str, Any] | None]] = []
        for line in answer_lines(files):
            cid = line.get("custom_id")
            if not isinstance(cid, str) or cid not in waiting or cid in seen:
                log.warning("run %s: answer for unknown or already collected request %r ignored", self.run_id,
                            str(cid)[:80])  # fmt: skip
                continue
            seen.add(cid)
            chunk.append((waiting[cid], line))
            if len(chunk) >= CHUNK:
                self._chunk(row, chunk, batch_errors, cancelled)
                chunk = []
        chunk += [(req, None) for cid, req in waiting.items() if cid not in seen]  # never answered
        for i in range(0, len(chunk), CHUNK):
            self._chunk(row, chunk[i : i + CHUNK], batch_errors, cancelled)
        self._close(row)

    def _chunk(self, row: dict[str, Any], chunk: list[tuple[_Request, dict[str, Any] | None]], batch_errors: str,
               cancelled: bool) -> None:  # fmt: skip
        done: list[LedgerEntry] = []
        comparisons: list[Comparison] = []
        statuses: list[Status] = []
        for req, answered in chunk:
            entry, status = self._judge(row, req, answered, batch_errors, cancelled)
            if entry is not None:
                done.append(entry)
                if entry.generation is not None:
                    comparisons.append(entry.generation.comparison)
            statuses.append(status)
        self.jobs.clear()
        self.store.record_answers(self.run_id, done, statuses)
        for comparison in comparisons:
            self.reports.write(comparison.pair_key)

    def _judge(self, row: dict[str, Any], req: _Request, answered: dict[str, Any] | None, batch_errors: str,
               cancelled: bool) -> tuple[LedgerEntry | None, Status]:  # fmt: skip
        """One answer: stored (an entry, request done), or routed to a re-ask or a follow-up batch."""
        cid, number = req.custom_id, len(req.records) + 1
        try:
            job = self.job(req.pair_key, req.cache_key)
        except PipelineError as exc:
            return self._failed(req, str(exc)), (cid, "done", "[]", "")
        if row["status"] == "failed":  # the provider rejected the whole file: asking again one by one won't help
            reason = batch_errors or "no reason given"
            message = f"the provider rejected batch {row['batch_id']}: {reason}"
            return self._failed(req, message), (cid, "done", "[]", "")
        completion, error = self._completion(answered, row["status"], batch_errors)
        problems: list[Problem] = []
        if completion is None:
            record = AttemptRecord(number, "transport_error", "", (), Usage(), 0, error=error)
        else:
            data, problems = judge(completion, job.accept, job.params.max_tokens)
            outcome = "refused" if completion.refusal else ("invalid" if problems else "accepted")
            record = AttemptRecord(number, outcome, completion.text, tuple(problems), completion.usage, 0,
                                   completion.finish_reason, error=completion.refusal)  # fmt: skip
            records = [*req.attempts(), record]
            if completion.refusal and self.provider.profile.reask_refusals < 1:  # no re-ask: the item ends
                return self._failed(req, f"{req.pair_key}: refused: {completion.refusal}", records), \
                    (cid, "done", "[]", "")  # fmt: skip
            if data is not None and not problems:
                return self._generated(req, job, data, records, completion), (cid, "done", "[]", "")
        records_json = json.dumps([*req.records, asdict(record)])
        if cancelled:
            return None, (cid, "cancelled", records_json, "")
        if self.reask_mode == "sync":
            answer = {"completion": asdict(completion) if completion else None, "error": error}
            return None, (cid, "reask", records_json, json.dumps(answer))
        if number < self.ctx.max_attempts:  # a follow-up batch: the line is written when the batch is closed
            messages = job.messages.as_list()
            if completion is not None:
                messages = self.ctx.prompts.reask(messages, completion.text, problems)
            params = replace(job.params, seed=None if job.params.seed is None else job.params.seed + number)
            new_id = custom_id(req.pair_key, req.cache_key, row["round"] + 1)
            line = request_line(new_id, self.provider.request_body(messages, job.schema(), params))
            return None, (cid, "follow", records_json, line)
        reason = error or "; ".join(str(p) for p in problems[:3])
        message = f"{req.pair_key}: still invalid after {number} attempts (Batch API): {reason}"
        return self._failed(req, message, [*req.attempts(), record]), (cid, "done", "[]", "")

    def _generated(self, req: _Request, job: Job, data: dict[str, Any], records: list[AttemptRecord],
                   completion: Completion) -> LedgerEntry:  # fmt: skip
        verdicts = None
        if self.ctx.judge is not None and isinstance(job, ProfileJob):  # asked directly: it cannot wait
            verdicts = ask_judge(job, data, self.ctx.judge, self.ctx.prompts, self.ctx.transport, records)
        comparison = generation_from(job, data, utc_now(), records, completion.model, verdicts)
        request = {"messages": job.messages.as_list(), "params": job.params.for_cache(),
                   "provider": job.provider_identity, "via": "openai-batch"}  # fmt: skip
        produced = Produced(job, req.invocation_id, tuple(records), comparison, request, completion.text, None)
        return produced_entry(produced, self.cost(produced.usage, True))

    def _close(self, row: dict[str, Any]) -> None:
        """The batch is collected: its follow-up round (if any) is written and recorded in one transaction."""
        round_, next_round = row["round"], row["round"] + 1
        carry = {}
        first = self.store.next_part(self.run_id, next_round)
        writer = PartWriter(folder_of(self.ctx, self.run_id), next_round, self.ctx.policy, first=first)
        for _cid, pair_key, cache_key, invocation, records, line in self.store.follow_ups(self.run_id, round_,
                                                                                          row["part"]):  # fmt: skip
            new_id = custom_id(pair_key, cache_key, next_round)
            carry[new_id] = (invocation, records)
            writer.add(new_id, pair_key, cache_key, line)
        parts = writer.close()
        requests = [(cid, part.part, pair_key, cache_key, carry[cid][0], carry[cid][1])
                    for part in parts for cid, pair_key, cache_key in part.keys]  # fmt: skip
        self.store.close_batch(self.run_id, round_, row["part"], [p.row() for p in parts], requests)

    def _completion(self, line: dict[str, Any] | None, batch_status: str, batch_errors: str
                    ) -> tuple[Completion | None, str]:  # fmt: skip
        if line is None:
            why = f"batch {batch_status}" + (f": {batch_errors}" if batch_errors else "")
            return None, f"no answer from the Batch API ({why})"
        error = line.get("error")
        response: dict[str, Any] = line["response"] if isinstance(line.get("response"), dict) else {}
        status = response.get("status_code")
        if error or status != 200:
            detail = ""
            if isinstance(error, dict):
                detail = f"{error.get('code') or ''}: {error.get('message') or ''}"
            elif isinstance(response.get("body"), dict):
                inner = response["body"].get("error")
                detail = str(inner.get("message") if isinstance(inner, dict) else inner)
            return None, " ".join(f"Batch API request failed (HTTP {status}) {detail}".split())[:300]
        try:
            return self.provider.completion_from(response.get("body")), ""
        except ProviderError as exc:
            return None, str(exc)

    # -- synchronous re-asks -------------------------------------------------------------------

    def reask_now(self) -> None:
        """Items whose batch answer was invalid or missing, asked again directly (full price)."""
        rows = self.store.reask_requests(self.run_id)
        if not rows:
            return
        if self.store.run_status(self.run_id) == "cancelling":
            self.store.cancel_reasks(self.run_id)
            return
        spec = self.run.spec
        gate = RateGate(spec.get("requests_per_minute") or None, spec.get("tokens_per_minute") or None)

        def work(req: _Request, job: Job) -> Produced:  # calls the model only: the store stays on this thread
            answer = req.answer or {}
            first = Completion(**{**answer["completion"], "usage": Usage(**answer["completion"]["usage"])}) \
                if answer.get("completion") else None  # fmt: skip
            return produce(job, self.provider, self.ctx.prompts, self.ctx.transport, gate=gate, first=first,
                           judge=self.ctx.judge, invocation=req.invocation_id)  # fmt: skip

        requests = [_Request(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6] or "{}")) for r in rows]
        self.provider.warm_up()
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="reask") as pool:
            futures = {}
            for req in requests:
                try:
                    job = self.job(req.pair_key, req.cache_key)  # sources come from the store: prepared here
                except PipelineError as exc:
                    self._commit_one(req, self._failed(req, str(exc)))
                    continue
                futures[pool.submit(work, req, job)] = req
            self.jobs.clear()
            for future in as_completed(futures):
                req = futures[future]
                try:
                    produced = future.result()
                except PipelineError as exc:
                    self._commit_one(req, self._failed(req, str(exc)))
                    continue
                self._commit_one(req, self._produced_entry(req, produced))

    def _produced_entry(self, req: _Request, produced: Produced) -> LedgerEntry:
        # The batch answer is attempt 1 when there was one; a missing answer is kept as a failed attempt.
        prior = [] if (req.answer or {}).get("completion") else req.attempts()
        records = [replace(r, number=i) for i, r in enumerate([*prior, *produced.records], 1)]
        usage = sum((r.usage for r in records), Usage())
        later = sum((r.usage for r in produced.records[0 if prior else 1 :]), Usage())  # direct calls: full price
        cost = self.cost(usage, True) + self.cost(later, False) - self.cost(later, True)
        return produced_entry(produced, cost, records)

    def _commit_one(self, req: _Request, entry: LedgerEntry) -> None:
        self.store.record_answer(self.run_id, entry, req.custom_id)
        if entry.generation is not None:
            self.reports.write(entry.generation.comparison.pair_key)
