"""The provider's Batch API: submit a batch as JSONL files now, collect the answers later.

`pipeline batch FILE --via openai-batch` plans the batch as usual (fresh items stay
fresh), writes one request line per item to be generated, uploads the file(s) and
creates the batch(es), and returns. `pipeline batch --collect` downloads what has
finished, validates every answer like a direct call would, stores the valid ones with
their usage and the discounted cost, and re-asks the rest (at once, or in a follow-up
batch). `--cancel` asks the provider to stop.

All state lives in the store (`api_batches`: one row per uploaded file and batch;
`api_requests`: one row per request line), and every step commits what it learnt
before the next one starts, so any command can be stopped and run again:
- a batch created but whose id was not recorded yet is found again by its metadata
  (`pipeline_run`, `pipeline_part`) before another is created;
- a collected answer and the request's status change are one transaction, so an
  answer is never stored twice and never lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.batch import (
    BatchSpec,
    ItemOutcome,
    PlanItem,
    _failed_args,
    _generation_args,
    _one_line,
    new_run_id,
)
from pipeline.errors import ConfigError, PipelineError, ProviderError
from pipeline.exitcodes import Verdict
from pipeline.generate import model_attempts
from pipeline.models import AttemptRecord, Completion, Problem, Usage
from pipeline.pricing import Price, load_price
from pipeline.settings import BatchAPIPolicy
from pipeline.store import Ledger
from pipeline.text import utc_now, utc_seconds

log = logging.getLogger("pipeline")

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "expired", "cancelled", "failed")
OPEN_RUN = ("submitted", "cancelling")
CHUNK = 1000  # answers judged and committed together
Say = Callable[[str], None]


def custom_id(pair_key: str, cache_key: str, round_: int) -> str:
    """Stable across runs: the same pair with the same inputs gets the same id (plus the round)."""
    digest = hashlib.sha256(f"{pair_key}|{cache_key}".encode()).hexdigest()[:24]
    return f"cmp-{digest}-r{round_}"


def require_batchable(provider: Any) -> None:
    if provider.kind != "openai":
        raise ConfigError(
            f"--via openai-batch needs an OpenAI-compatible provider; {provider.profile.name!r} is "
            f'{provider.kind!r}: pass --provider openai (or a profile of kind "openai")'
        )


@dataclass
class Part:
    round: int
    part: int
    path: Path
    keys: list[tuple[str, str, str]] = field(default_factory=list)  # (custom id, pair key, cache key)
    size: int = 0


class PartWriter:
    """Request lines streamed into JSONL files of at most `max_requests` lines and `max_bytes` bytes each.

    Nothing is held in memory but the ids; each file is written under a temporary name and renamed
    when complete, so a file that exists is whole.
    """

    def __init__(self, folder: Path, round_: int, policy: BatchAPIPolicy, first: int = 1):
        self.folder, self.round, self.policy, self.first = folder, round_, policy, first
        self.parts: list[Part] = []
        self._out: Any = None

    def add(self, cid: str, pair_key: str, cache_key: str, line: str) -> None:
        size = len(line.encode()) + 1
        last = self.parts[-1] if self.parts else None
        if last is None or len(last.keys) >= self.policy.max_requests or last.size + size > self.policy.max_bytes:
            self._close_file()
            self.folder.mkdir(parents=True, exist_ok=True)
            number = self.first + len(self.parts)
            last = Part(self.round, number, self.folder / f"requests-r{self.round}-p{number}.jsonl")
            self.parts.append(last)
            self._out = last.path.with_suffix(".tmp").open("w", encoding="utf-8")
        self._out.write(line + "\n")
        last.keys.append((cid, pair_key, cache_key))
        last.size += size

    def close(self) -> list[Part]:
        self._close_file()
        return self.parts

    def _close_file(self) -> None:
        if self._out is not None:
            self._out.close()
            os.replace(self.parts[-1].path.with_suffix(".tmp"), self.parts[-1].path)
            self._out = None


def _line(cid: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False)


def _folder(ws: Any, run_id: str) -> Path:
    return ws.settings.store_path.parent / "batch-api" / run_id


def _part_row(run_id: str, part: Part, now: str) -> list[Any]:
    return [run_id, part.round, part.part, str(part.path), len(part.keys), part.size, None, None, "prepared",
            None, None, 0, 0, now, now, None]  # fmt: skip


@dataclass
class Submitted:
    run_id: str
    generate: int
    fresh: int
    batches: list[tuple[str, str]]  # (batch id, status)
    files: int
    bytes: int


def submit(
    ws: Any,
    spec: BatchSpec,
    items: list[PlanItem],
    provider: Any,
    *,
    policy: BatchAPIPolicy,
    resumed_from: str | None,
    concurrency: int,
) -> Submitted:
    """Write, upload and create; returns once the provider has the batches (or nothing to do)."""
    from pipeline.store import _insert_rows

    require_batchable(provider)
    run_id = new_run_id()
    ident = provider.identity()
    todo = [i for i in items if i.action == "generate"]
    writer = PartWriter(_folder(ws, run_id), 1, policy)
    for item in todo:
        job = item.job
        cid = custom_id(item.pair.key, job.cache_key, 1)
        writer.add(cid, item.pair.key, job.cache_key,
                   _line(cid, provider.request_body(job.messages.as_list(), job.schema, job.params)))  # fmt: skip
        job.__dict__.pop("schema", None)  # computed once for the line; 10,000 of them need not stay in memory
    parts = writer.close()
    spec_row = {**spec.as_dict(), "via": "openai-batch", "profile": provider.profile.name, "model": provider.model,
                "reask": policy.reask, "concurrency": concurrency}  # fmt: skip
    now = utc_now()
    fresh = [(ItemOutcome(i.pair.key, "fresh", generation_id=i.cached.generation_id).row(), None, None)
             for i in items if i.action == "fresh"]  # fmt: skip
    fresh += [(ItemOutcome(i.pair.key, "failed", error=i.reason).row(), None, None)
              for i in items if i.action == "failed"]  # fmt: skip
    with ws.store.session() as con:  # the run, its items and every request line: one transaction
        status = "submitted" if todo else "finished"
        Ledger.start_in(con, run_id, spec.name, spec_row, ident["kind"], ident["model"],
                        [i.pair.key for i in items], resumed_from, status=status)  # fmt: skip
        Ledger.record_in(con, run_id, fresh)
        _insert_rows(con, "api_batches", [_part_row(run_id, p, now) for p in parts])
        _insert_rows(con, "api_requests", [
            [run_id, cid, 1, part.part, pair_key, cache_key, uuid.uuid4().hex, "submitted", "[]", "", now]
            for part in parts for cid, pair_key, cache_key in part.keys
        ])  # fmt: skip
        if not todo:
            con.execute("UPDATE runs SET finished_at = ? WHERE id = ?", [now, run_id])
    advance(ws, provider, run_id, policy)
    batches = _batches(ws, run_id)
    fresh_count = sum(1 for i in items if i.action == "fresh")
    return Submitted(run_id, len(todo), fresh_count, [(b["batch_id"], b["status"]) for b in batches],
                     len(parts), sum(p.size for p in parts))  # fmt: skip


def _batches(ws: Any, run_id: str) -> list[dict[str, Any]]:
    with ws.store.session() as con:
        cur = con.execute("SELECT * FROM api_batches WHERE run_id = ? ORDER BY round, part", [run_id])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _set_batch(ws: Any, run_id: str, round_: int, part: int, **values: Any) -> None:
    values["updated_at"] = utc_now()
    assignments = ", ".join(f"{k} = ?" for k in values)
    with ws.store.session() as con:
        con.execute(
            f"UPDATE api_batches SET {assignments} WHERE run_id = ? AND round = ? AND part = ?",
            [*values.values(), run_id, round_, part],
        )


def advance(ws: Any, provider: Any, run_id: str, policy: BatchAPIPolicy) -> None:
    """Upload and create every batch of the run that the provider does not have yet (idempotent)."""
    client = provider.client
    for row in _batches(ws, run_id):
        if row["batch_id"] or row["status"] not in ("prepared", "uploaded"):
            continue
        key = (run_id, row["round"], row["part"])
        tag = f"{row['round']}.{row['part']}"
        # Uploaded but no batch id recorded: the last process may have created the batch and stopped
        # before writing its id down. Creating another would pay for every request twice.
        existing = _find_batch(provider, run_id, tag, row["created_at"]) if row["input_file_id"] else None
        if existing is not None:
            log.warning("batch %s of run %s was created before the last stop; adopting it", existing["id"], run_id)
            _set_batch(ws, *key, input_file_id=existing.get("input_file_id"), batch_id=existing["id"],
                       status=existing["status"])  # fmt: skip
            continue
        if not row["input_file_id"]:
            path = Path(row["path"])
            if not path.is_file():
                raise ConfigError(f"the request file {path} of run {run_id} is gone; cancel the run with "
                                  f"`pipeline batch --cancel --run {run_id}` and submit again")  # fmt: skip
            uploaded = _call(provider, client.files.create, file=path, purpose="batch")
            _set_batch(ws, *key, input_file_id=uploaded.id, status="uploaded")
            row["input_file_id"] = uploaded.id
        created = _call(provider, client.batches.create, input_file_id=row["input_file_id"], endpoint=ENDPOINT,
                        completion_window=policy.completion_window,
                        metadata={"pipeline_run": run_id, "pipeline_part": tag})  # fmt: skip
        _set_batch(ws, *key, batch_id=created.id, status=created.status)


def _find_batch(provider: Any, run_id: str, tag: str, created_at: str) -> dict[str, Any] | None:
    """A batch this run created whose id was not recorded (the process stopped right after creating it)."""
    since = utc_seconds(created_at) - 60
    for batch in _call(provider, provider.client.batches.list, limit=100):
        meta = batch.metadata or {}
        if meta.get("pipeline_run") == run_id and meta.get("pipeline_part") == tag:
            return {"id": batch.id, "status": batch.status, "input_file_id": batch.input_file_id}
        if batch.created_at and batch.created_at < since:  # the list is newest first
            break
    return None


def _call(provider: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import openai

    try:
        return fn(*args, **kwargs)
    except openai.APIError as exc:
        raise provider._map(exc) from None


# -- collect -----------------------------------------------------------------------------------


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


def open_runs(ws: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """Batch API runs still waiting for answers (or the one named)."""
    with ws.store.session() as con:
        if run_id:
            rows = con.execute("SELECT id, name, spec, status FROM runs WHERE id = ?", [run_id]).fetchall()
            if not rows:
                raise ConfigError(f"no run {run_id!r} in the store; `pipeline runs` lists them")
        else:
            rows = con.execute(
                "SELECT id, name, spec, status FROM runs WHERE status IN ('submitted', 'cancelling') "
                "ORDER BY started_at, id"
            ).fetchall()
    out = []
    for rid, name, spec, status in rows:
        spec = json.loads(spec)
        if spec.get("via") != "openai-batch":
            raise ConfigError(f"run {rid} was not submitted to the Batch API; nothing to collect")
        out.append({"run_id": rid, "name": name, "spec": spec, "status": status})
    return out


def provider_for(ws: Any, run: dict[str, Any]) -> Any:
    profile, _ = ws.profile(run["spec"]["profile"], run["spec"]["model"])
    return ws.provider(profile)


def state(ws: Any, run: dict[str, Any]) -> RunState:
    with ws.store.session() as con:
        status = con.execute("SELECT status FROM runs WHERE id = ?", [run["run_id"]]).fetchone()[0]
        counts = dict(con.execute(
            "SELECT status, count(*) FROM run_items WHERE run_id = ? GROUP BY status", [run["run_id"]]
        ).fetchall())  # fmt: skip
        p, c, cost = con.execute(
            "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(cost), 0) "
            "FROM run_items WHERE run_id = ?", [run["run_id"]]
        ).fetchone()  # fmt: skip
    return RunState(run["run_id"], run["name"], status, counts, _batches(ws, run["run_id"]), float(cost),
                    Usage(int(p), int(c)))  # fmt: skip


def cancel(ws: Any, run: dict[str, Any]) -> RunState:
    """Ask the provider to stop every batch of the run; what it already answered is still collected."""
    provider = provider_for(ws, run)
    with ws.store.session() as con:
        con.execute("UPDATE runs SET status = 'cancelling' WHERE id = ? AND status = 'submitted'", [run["run_id"]])
    for row in _batches(ws, run["run_id"]):
        key = (run["run_id"], row["round"], row["part"])
        if row["collected_at"] or row["status"] in TERMINAL:
            continue
        if not row["batch_id"]:
            _set_batch(ws, *key, status="cancelled")  # never created: nothing to stop
            continue
        done = _call(provider, provider.client.batches.cancel, row["batch_id"])
        _set_batch(ws, *key, status=done.status)
    return state(ws, {**run, "status": "cancelling"})


def collect_until_done(
    ws: Any, runs: list[dict[str, Any]], *, wait: bool, poll_s: float | None, say: Say
) -> list[RunState]:
    """Collect every run once, or (`wait`) again every `poll_s` seconds until none is still open."""
    policy = ws.settings.batch_api
    states: dict[str, RunState] = {}
    pending = list(runs)
    while True:
        for run in pending:
            price = load_price(ws.settings.config_dir, run["spec"]["model"])
            states[run["run_id"]] = collect(ws, run, policy, price, say)
        pending = [r for r in pending if states[r["run_id"]].open]
        if not pending or not wait:
            return list(states.values())
        time.sleep(poll_s or policy.poll_s)


def verdict_of(states: list[RunState]) -> Verdict:
    """Still running somewhere: waiting; any item failed, pending or skipped: failed; else done."""
    if any(st.open for st in states):
        return Verdict.WAITING
    bad = any(st.counts.get(s, 0) for st in states for s in ("failed", "pending", "skipped"))
    return Verdict.FAILED if bad else Verdict.DONE


def collect(ws: Any, run: dict[str, Any], policy: BatchAPIPolicy, price: Price | None, say: Say) -> RunState:
    """One pass: finish any interrupted submission, download what has finished, store, re-ask."""
    with ws.store.holding():  # many short transactions: keep the file open between them
        return _collect(ws, run, policy, price, say)


def _collect(ws: Any, run: dict[str, Any], policy: BatchAPIPolicy, price: Price | None, say: Say) -> RunState:
    provider = provider_for(ws, run)
    run_id = run["run_id"]
    cancelling = _run_status(ws, run_id) == "cancelling"
    if not cancelling:
        advance(ws, provider, run_id, policy)
    collector = _Collector(ws, run, provider, policy, price)
    for row in _batches(ws, run_id):
        if row["collected_at"]:
            continue
        key = (run_id, row["round"], row["part"])
        if row["batch_id"]:
            batch = _call(provider, provider.client.batches.retrieve, row["batch_id"])
            counts = batch.request_counts
            row.update(status=batch.status, output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
                       completed=counts.completed if counts else 0, failed=counts.failed if counts else 0)  # fmt: skip
            _set_batch(ws, *key, **{k: row[k] for k in ("status", "output_file_id", "error_file_id", "completed",
                                                         "failed")})  # fmt: skip
            if batch.status not in TERMINAL:
                say(f"{run_id}: batch {batch.id} {batch.status}, {row['completed'] + row['failed']} of "
                    f"{row['requests']} answered")  # fmt: skip
                continue
            errors = "; ".join(e.message or e.code or "" for e in (batch.errors.data or [])) if batch.errors else ""
            collector.batch(row, errors)
        elif row["status"] == "cancelled":
            collector.batch(row, "")
    collector.reask_now()
    _maybe_finish(ws, run_id, collector, provider, policy)
    return state(ws, run)


def _run_status(ws: Any, run_id: str) -> str:
    with ws.store.session() as con:
        return str(con.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0])


def _maybe_finish(ws: Any, run_id: str, collector: _Collector, provider: Any, policy: BatchAPIPolicy) -> None:
    rows = _batches(ws, run_id)
    if any(not r["collected_at"] for r in rows):
        if _run_status(ws, run_id) != "cancelling":
            advance(ws, provider, run_id, policy)  # a follow-up round written by this pass
        return
    status = "cancelled" if _run_status(ws, run_id) == "cancelling" else "finished"
    with ws.store.session() as con:
        waiting = con.execute(
            "SELECT count(*) FROM api_requests WHERE run_id = ? AND status IN ('submitted', 'reask')", [run_id]
        ).fetchone()[0]
        if waiting:
            return
        con.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", [status, utc_now(), run_id])
    collector.settle()
    folder = _folder(ws, run_id)
    for path in folder.glob("*.jsonl"):
        path.unlink()  # every answer is stored and no request will be sent again
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _download(provider: Any, file_id: str | None, path: Path) -> Path | None:
    """The file streamed to disk (answer files can be hundreds of MB); None when there is no such file."""
    if not file_id:
        return None
    tmp = path.with_suffix(".part")
    streamed = _call(provider, provider.client.files.with_streaming_response.content, file_id)
    with streamed as response, tmp.open("wb") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
    os.replace(tmp, path)
    return path


def _lines(paths: list[Path | None]) -> Iterator[dict[str, Any]]:
    """The JSON objects of JSONL files, one at a time."""
    for path in paths:
        if path is None:
            continue
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    log.warning("%s line %d is not JSON; skipped (its request counts as unanswered)", path.name, number)
                    continue
                if isinstance(value, dict):
                    yield value


@dataclass
class _Request:
    custom_id: str
    round: int
    pair_key: str
    cache_key: str
    invocation_id: str
    records: list[dict[str, Any]]
    answer: dict[str, Any] | None = None


class _Collector:
    """Turns downloaded answers into generations, failures, re-asks; commits per batch file."""

    def __init__(self, ws: Any, run: dict[str, Any], provider: Any, policy: BatchAPIPolicy, price: Price | None):
        self.ws, self.run, self.provider, self.policy, self.price = ws, run, provider, policy, price
        self.run_id = run["run_id"]
        self.reask_mode = run["spec"].get("reask", policy.reask)
        self.concurrency = int(run["spec"].get("concurrency") or 4)
        self.max_attempts = ws.settings.generation.max_attempts
        self.jobs: dict[str, Any] = {}
        self.written: set[str] = set()
        # Pairs whose reports exist or will: links to them are kept ("people also compare").
        with ws.store.session() as con:
            self.expected = frozenset(k for (k,) in con.execute(
                "SELECT DISTINCT pair_key FROM generations UNION SELECT pair_key FROM run_items WHERE run_id = ?",
                [self.run_id]).fetchall())  # fmt: skip

    # -- helpers -------------------------------------------------------------------------------

    def job(self, pair_key: str, cache_key: str) -> Any:
        """The job as it was submitted: rebuilt from the catalogue and stored snapshots (no fetching)."""
        if pair_key not in self.jobs:
            pair = self.ws.pair(pair_key, cross_category=True)
            self.jobs[pair_key] = self.ws.prepare(pair, self.provider, from_snapshots=True)
        job = self.jobs[pair_key]
        if job.cache_key != cache_key:
            raise ConfigError(
                f"{pair_key}: its inputs changed since the batch was submitted (catalogue, sources, prompts, "
                "schema or settings); its answer no longer matches them — submit the pair again"
            )
        return job

    def cost(self, usage: Usage, discounted: bool) -> float:
        if self.price is None:
            return 0.0
        return self.price.cost(usage) * (self.policy.discount if discounted else 1.0)

    def requests(self, round_: int, part: int) -> dict[str, _Request]:
        with self.ws.store.session() as con:
            rows = con.execute(
                "SELECT custom_id, round, pair_key, cache_key, invocation_id, records FROM api_requests "
                "WHERE run_id = ? AND round = ? AND part = ? AND status = 'submitted'",
                [self.run_id, round_, part],
            ).fetchall()
        return {r[0]: _Request(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows}

    # -- one batch file ------------------------------------------------------------------------

    def batch(self, row: dict[str, Any], batch_errors: str) -> None:
        """Judge, store and route every request of one finished batch, in chunks (a batch may be 50,000)."""
        round_, part = row["round"], row["part"]
        waiting = self.requests(round_, part)
        folder = _folder(self.ws, self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        files = [
            _download(self.provider, file_id, folder / f"{name}-r{round_}-p{part}.jsonl")
            for name, file_id in (("output", row["output_file_id"]), ("errors", row["error_file_id"]))
        ]
        cancelled = row["status"] == "cancelled" or _run_status(self.ws, self.run_id) == "cancelling"
        seen: set[str] = set()
        chunk: list[tuple[_Request, dict[str, Any] | None]] = []
        for line in _lines(files):
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
        from pipeline.generate import ask_judge, comparison_from, judge

        done: list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]] = []
        comparisons: list[Any] = []
        statuses: list[tuple[str, str, str, str]] = []  # (custom_id, status, records, answer)
        next_round = row["round"] + 1
        for req, answered in chunk:
            cid = req.custom_id
            number = len(req.records) + 1
            try:
                job = self.job(req.pair_key, req.cache_key)
            except PipelineError as exc:
                done.append(self._failed(req, str(exc)))
                statuses.append((cid, "done", "[]", ""))
                continue
            if row["status"] == "failed":  # the provider rejected the whole file: asking again one by one won't help
                reason = batch_errors or "no reason given"
                done.append(self._failed(req, f"the provider rejected batch {row['batch_id']}: {reason}"))
                statuses.append((cid, "done", "[]", ""))
                continue
            completion, error = self._completion(answered, row["status"], batch_errors)
            problems: list[Problem] = []
            if completion is None:
                record = AttemptRecord(number, "transport_error", "", (), Usage(), 0, error=error)
            else:
                data, problems = judge(completion, job.accept, job.params.max_tokens)
                outcome = "refused" if completion.refusal else ("invalid" if problems else "accepted")
                record = AttemptRecord(number, outcome, completion.text, tuple(problems), completion.usage, 0,
                                       completion.finish_reason, error=completion.refusal)  # fmt: skip
                if completion.refusal and self.provider.profile.reask_refusals < 1:  # no re-ask: the item ends
                    records = [*map(_record_from, req.records), record]
                    done.append(self._failed(req, f"{req.pair_key}: refused: {completion.refusal}", records))
                    statuses.append((cid, "done", "[]", ""))
                    continue
                if data is not None and not problems:
                    records = [*map(_record_from, req.records), record]
                    answered_at = utc_now()
                    verdicts = None
                    if self.ws.judge is not None:  # asked directly: a judge answer cannot wait for another batch
                        verdicts = ask_judge(job, data, self.ws.judge, self.ws.prompts, self.ws.settings.transport,
                                             records)  # fmt: skip
                    comparison = comparison_from(job, data, answered_at, records, completion.model, verdicts)
                    done.append(self._generated(req, job, comparison, records, completion))
                    comparisons.append(comparison)
                    statuses.append((cid, "done", "[]", ""))
                    continue
            records_json = json.dumps([*req.records, asdict(record)])
            if cancelled:
                statuses.append((cid, "cancelled", records_json, ""))
            elif self.reask_mode == "sync":
                answer = {"completion": asdict(completion) if completion else None, "error": error}
                statuses.append((cid, "reask", records_json, json.dumps(answer)))
            elif number < self.max_attempts:  # a follow-up batch: the line is written when the batch is closed
                messages = job.messages.as_list()
                if completion is not None:
                    messages = self.ws.prompts.reask(messages, completion.text, problems)
                params = replace(job.params, seed=None if job.params.seed is None else job.params.seed + number)
                new_id = custom_id(req.pair_key, req.cache_key, next_round)
                line = _line(new_id, self.provider.request_body(messages, job.schema, params))
                statuses.append((cid, "follow", records_json, line))
            else:
                reason = error or "; ".join(str(p) for p in problems[:3])
                records = [*map(_record_from, req.records), record]
                done.append(self._failed(req, f"{req.pair_key}: still invalid after {number} attempts (Batch API): "
                                              f"{reason}", records))  # fmt: skip
                statuses.append((cid, "done", "[]", ""))
        self.jobs.clear()
        previous = self.ws.store.latest_for_pairs([c.pair_key for c in comparisons])
        with self.ws.store.session() as con:  # the answers and the requests' new states: one transaction
            Ledger.record_in(con, self.run_id, done)
            self._set_statuses(con, statuses)
        for comparison in comparisons:
            self.write(comparison, previous.get(comparison.pair_key))

    def _set_statuses(self, con: Any, statuses: list[tuple[str, str, str, str]]) -> None:
        from pipeline.store import _insert_rows

        if not statuses:
            return
        con.execute("CREATE TEMP TABLE IF NOT EXISTS _status (custom_id VARCHAR, status VARCHAR, records VARCHAR, "
                    "answer VARCHAR)")  # fmt: skip
        con.execute("DELETE FROM _status")
        _insert_rows(con, "_status", [list(s) for s in statuses])
        con.execute(
            "UPDATE api_requests SET status = s.status, records = CASE WHEN s.records = '[]' "
            "THEN api_requests.records ELSE s.records END, answer = s.answer, updated_at = ? "
            "FROM _status s WHERE api_requests.run_id = ? AND api_requests.custom_id = s.custom_id",
            [utc_now(), self.run_id],
        )

    def _close(self, row: dict[str, Any]) -> None:
        """The batch is collected: its follow-up round (if any) is written and recorded in one transaction."""
        from pipeline.store import _insert_rows

        round_, next_round = row["round"], row["round"] + 1
        with self.ws.store.session() as con:
            rows = con.execute(
                "SELECT custom_id, pair_key, cache_key, invocation_id, records, answer FROM api_requests "
                "WHERE run_id = ? AND round = ? AND part = ? AND status = 'follow' ORDER BY custom_id",
                [self.run_id, round_, row["part"]],
            ).fetchall()
        carry = {}
        writer = PartWriter(_folder(self.ws, self.run_id), next_round, self.policy, first=self._next_part(next_round))
        for _cid, pair_key, cache_key, invocation, records, line in rows:
            new_id = custom_id(pair_key, cache_key, next_round)
            carry[new_id] = (invocation, records)
            writer.add(new_id, pair_key, cache_key, line)
        parts = writer.close()
        now = utc_now()
        with self.ws.store.session() as con:
            for part in parts:
                _insert_rows(con, "api_batches", [_part_row(self.run_id, part, now)])
                _insert_rows(con, "api_requests", [
                    [self.run_id, cid, next_round, part.part, pair_key, cache_key, carry[cid][0], "submitted",
                     carry[cid][1], "", now]
                    for cid, pair_key, cache_key in part.keys
                ])  # fmt: skip
            con.execute(
                "UPDATE api_requests SET status = 'done', answer = '', updated_at = ? "
                "WHERE run_id = ? AND round = ? AND part = ? AND status = 'follow'",
                [now, self.run_id, round_, row["part"]],
            )
            con.execute(
                "UPDATE api_batches SET collected_at = ?, updated_at = ? WHERE run_id = ? AND round = ? AND part = ?",
                [now, now, self.run_id, round_, row["part"]],
            )
            self._pending_cancelled(con)

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

    def _generated(self, req: _Request, job: Any, comparison: Any, records: list[AttemptRecord],
                   completion: Completion) -> tuple[dict[str, Any], dict[str, Any], None]:  # fmt: skip
        usage = sum((r.usage for r in records), Usage())
        outcome = ItemOutcome(req.pair_key, "generated", model_attempts(records), usage, self.cost(usage, True), 0,
                              generation_id=comparison.generation_id)  # fmt: skip
        args = {"c": comparison, "request": {"messages": job.messages.as_list(), "params": job.params.for_cache(),
                                             "provider": job.provider_identity, "via": "openai-batch"},
                "raw_response": completion.text, "latency_ms": 0, "invocation_id": req.invocation_id,
                "attempts": records, "schema_body": job.canonical_schema}  # fmt: skip
        return outcome.row(), args, None

    def _failed(self, req: _Request, error: str, records: list[AttemptRecord] | None = None
                ) -> tuple[dict[str, Any], None, dict[str, Any]]:  # fmt: skip
        records = records or [*map(_record_from, req.records)]
        usage = sum((r.usage for r in records), Usage())
        outcome = ItemOutcome(req.pair_key, "failed", model_attempts(records), usage, self.cost(usage, True),
                              error=" ".join(error.split())[:500])  # fmt: skip
        args = {"invocation_id": req.invocation_id, "generation_id": None, "pair_key": req.pair_key,
                "cache_key": req.cache_key, "attempts": records}  # fmt: skip
        return outcome.row(), None, args

    def _pending_cancelled(self, con: Any) -> None:
        """Items whose request was cancelled stay `pending` in the ledger (resume with --resume)."""
        con.execute(
            "UPDATE run_items SET status = 'pending', error = 'Batch API run cancelled before it was answered', "
            "updated_at = ? WHERE run_id = ? AND pair_key IN (SELECT pair_key FROM api_requests "
            "WHERE run_id = ? AND status = 'cancelled')",
            [utc_now(), self.run_id, self.run_id],
        )

    def _next_part(self, round_: int) -> int:
        with self.ws.store.session() as con:
            n = con.execute("SELECT coalesce(max(part), 0) FROM api_batches WHERE run_id = ? AND round = ?",
                            [self.run_id, round_]).fetchone()[0]  # fmt: skip
        return int(n) + 1

    # -- synchronous re-asks -------------------------------------------------------------------

    def reask_now(self) -> None:
        """Items whose batch answer was invalid or missing, asked again directly (full price)."""
        from pipeline.generate import produce
        from pipeline.providers.retry import RateGate

        with self.ws.store.session() as con:
            rows = con.execute(
                "SELECT custom_id, round, pair_key, cache_key, invocation_id, records, answer FROM api_requests "
                "WHERE run_id = ? AND status = 'reask' ORDER BY custom_id",
                [self.run_id],
            ).fetchall()
        if not rows:
            return
        if _run_status(self.ws, self.run_id) == "cancelling":
            with self.ws.store.session() as con:
                con.execute("UPDATE api_requests SET status = 'cancelled' WHERE run_id = ? AND status = 'reask'",
                            [self.run_id])  # fmt: skip
                self._pending_cancelled(con)
            return
        spec = self.run["spec"]
        gate = RateGate(spec.get("requests_per_minute") or None, spec.get("tokens_per_minute") or None)
        transport = self.ws.settings.transport

        def work(req: _Request, job: Any) -> Any:  # calls the model only: the store stays on this thread
            answer = req.answer or {}
            first = Completion(**{**answer["completion"], "usage": Usage(**answer["completion"]["usage"])}) \
                if answer.get("completion") else None  # fmt: skip
            return produce(job, self.provider, self.ws.prompts, transport, gate=gate, first=first, judge=self.ws.judge,
                           invocation=req.invocation_id)  # fmt: skip

        requests = [_Request(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6] or "{}")) for r in rows]
        self.provider.warm_up()
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="reask") as pool:
            futures = {}
            for req in requests:
                try:
                    job = self.job(req.pair_key, req.cache_key)  # sources come from the store: prepared here
                except PipelineError as exc:
                    self._commit_one(req, self._failed(req, str(exc)), None)
                    continue
                futures[pool.submit(work, req, job)] = req
            self.jobs.clear()
            for future in as_completed(futures):
                req = futures[future]
                try:
                    produced = future.result()
                except PipelineError as exc:
                    self._commit_one(req, self._failed(req, str(exc)), None)
                    continue
                self._commit_one(req, self._produced_entry(req, produced), produced.comparison)

    def _produced_entry(self, req: _Request, produced: Any) -> tuple[dict[str, Any], Any, Any]:
        # The batch answer is attempt 1 when there was one; a missing answer is kept as a failed attempt.
        prior = [] if (req.answer or {}).get("completion") else [*map(_record_from, req.records)]
        records = [replace(r, number=i) for i, r in enumerate([*prior, *produced.records], 1)]
        usage = sum((r.usage for r in records), Usage())
        later = sum((r.usage for r in produced.records[0 if prior else 1 :]), Usage())  # direct calls: full price
        cost = self.cost(usage, True) + self.cost(later, False) - self.cost(later, True)
        outcome = ItemOutcome(req.pair_key, "generated" if produced.comparison else "failed", model_attempts(records),
                              usage, cost, sum(r.latency_ms for r in records))  # fmt: skip
        if produced.comparison is not None:
            outcome.generation_id = produced.comparison.generation_id
            args = {**_generation_args(produced), "attempts": records}
            return outcome.row(), args, None
        outcome.error = _one_line(produced.error)
        return outcome.row(), None, {**_failed_args(produced), "attempts": records}

    def _commit_one(self, req: _Request, entry: Any, comparison: Any) -> None:
        previous = self.ws.store.latest_for_pairs([comparison.pair_key] if comparison is not None else [])
        with self.ws.store.session() as con:
            Ledger.record_in(con, self.run_id, [entry])
            con.execute("UPDATE api_requests SET status = 'done', updated_at = ? WHERE run_id = ? AND custom_id = ?",
                        [utc_now(), self.run_id, req.custom_id])  # fmt: skip
        if comparison is not None:
            self.write(comparison, previous.get(comparison.pair_key))

    # -- reports -------------------------------------------------------------------------------

    def write(self, comparison: Any, previous: Any) -> None:
        """A new generation's reports; `previous` is the pair's latest generation before it was stored."""
        self.ws.renderer.write(comparison, self.expected, previous)
        self.written.add(comparison.pair_key)

    def settle(self) -> None:
        """Rewrite the reports that linked to a pair which did not arrive after all; then the index."""
        latest = self.ws.store.latest_all()
        present = frozenset(c.pair_key for c in latest)
        missing = self.expected - present
        for c in latest if missing else ():
            if c.pair_key in self.written:
                related = {
                    p.key for p in self.ws.catalogue.related_pairs(self.ws.pair(c.pair_key, cross_category=True))
                }
                if related & missing:
                    self.ws.renderer.write(c, present, self.ws.previous_of(c))
        self.ws.renderer.write_index(latest)


def _record_from(value: dict[str, Any]) -> AttemptRecord:
    """An attempt record kept as JSON in `api_requests.records`."""
    problems = tuple(Problem(**p) for p in value.get("problems", ()))
    return AttemptRecord(**{**value, "problems": problems, "usage": Usage(**value["usage"])})
