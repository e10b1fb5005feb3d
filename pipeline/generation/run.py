"""Generate: cache lookup → call → parse → validate → re-ask with the problems → store.

Two retry layers that never mix: transport faults are retried inside
`call_with_retries`; invalid output is re-asked here, bounded by
`max_attempts`. Every attempt is recorded, failed ones included, and the
final error carries all of them.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.errors import (
    ContentFilteredError,
    InterruptedRun,
    OutputInvalidError,
    PipelineError,
    ProviderError,
    RefusedError,
    TransientProviderError,
)
from pipeline.generation import consensus
from pipeline.generation import judge as judge_mod
from pipeline.generation.job import Job, PairJob, ProfileJob, generation_from
from pipeline.generation.prompt import PromptBuilder
from pipeline.generation.validate import parse
from pipeline.grounding import profile_claims
from pipeline.models import (
    AttemptRecord,
    Comparison,
    Completion,
    Problem,
    RunResult,
    Usage,
    model_attempts,
)
from pipeline.providers.base import ProgressFn, Provider
from pipeline.providers.retry import RateGate, call_many_with_retries, call_with_retries
from pipeline.settings import GenerationParams, TransportPolicy
from pipeline.store import FailedAttempts, NewGeneration, Store
from pipeline.text import utc_now


def judge(
    completion: Completion, accept: Callable[[dict[str, Any]], tuple[dict[str, Any], list[Problem]]], max_tokens: int
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """An answer's data and its problems (none: accepted); `accept` is the job's `Job.accept`."""
    if completion.refusal:
        return None, [Problem("", f"refused: {completion.refusal}", "refusal")]
    if completion.finish_reason == "content_filter":
        return None, [Problem("", _FILTERED, "content-filter")]
    if completion.finish_reason == "length":
        return None, [Problem("", f"the answer was cut off at {max_tokens} tokens; write less")]
    data, problems = parse(completion.text)
    if data is not None:
        data, problems = accept(data)
    return data, problems


_FILTERED = "the provider's content filter stopped the answer; keep to a neutral, factual comparison of the sources"


SAMPLE_SEED_STEP = 1000


class _StageFailed(Exception):
    def __init__(self, problems: list[Problem], last_raw: str, valid: int = 0):
        super().__init__("stage failed")
        self.problems = problems
        self.last_raw = last_raw
        self.valid = valid  # with samples: how many were valid


@dataclass
class _Asker:
    """Calls the model until a section's answer passes its check, recording every attempt."""

    provider: Provider
    builder: PromptBuilder
    params: GenerationParams
    transport: TransportPolicy
    progress: ProgressFn | None
    records: list[AttemptRecord]
    gate: RateGate | None = None
    label: str = ""  # "judge:" for the grounding judge's calls, so they are told apart from the answer's
    what: str = ""  # the pair, for errors
    sample: int = 1  # which of `params.samples` answers this asker is after (pipeline.generation.consensus)

    def ask(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        accept: Callable[[dict[str, Any]], tuple[dict[str, Any], list[Problem]]],
        first: Completion | None = None,
    ) -> tuple[dict[str, Any], Completion, str]:
        """`first`: an answer that has already come back (a Batch API result), judged as attempt 1."""
        base = messages
        problems: list[Problem] = []
        raw = ""
        refusals = filtered = 0
        for index in range(self.params.max_attempts):
            completion = first if index == 0 and first is not None else self._call(messages, schema, index)
            answered_at = utc_now()
            raw = completion.text
            data, problems = judge(completion, accept, self.params.max_tokens)
            outcome = "invalid" if problems else "accepted"
            if completion.refusal:
                outcome, refusals = "refused", refusals + 1
            elif completion.finish_reason == "content_filter":
                outcome, filtered = "content_filter", filtered + 1
            self.records.append(
                AttemptRecord(
                    number=len(self.records) + 1,
                    outcome=self.label + outcome,
                    raw=completion.text,
                    problems=tuple(problems),
                    usage=completion.usage,
                    latency_ms=completion.latency_ms,
                    finish_reason=completion.finish_reason,
                    error=completion.refusal,
                    sample=self.sample,
                )
            )
            if data is not None and not problems:
                return data, completion, answered_at
            if refusals > self.provider.profile.reask_refusals:
                raise RefusedError(f"{self.what}: refused: {completion.refusal}", attempts=self.records)
            if filtered > 1:
                raise ContentFilteredError(
                    f"{self.what}: the provider's content filter stopped the answer twice; the attempts are kept "
                    f"(`pipeline show {self.what} --attempts`)",
                    attempts=self.records,
                )
            messages = self.builder.reask(base, completion.text, problems, show_previous=not self.provider.small)
        raise _StageFailed(problems, raw)

    def first_answers(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> list[Completion]:
        """Up to `params.samples` first answers from one request (`n`), where the endpoint takes it."""
        return call_many_with_retries(
            self.provider,
            messages,
            schema,
            self.params,
            self.transport,
            n=self.params.samples,
            on_failure=self._transport_failure,
            progress=self.progress,
            gate=self.gate,
        )

    def _call(self, messages: list[dict[str, str]], schema: dict[str, Any], index: int) -> Completion:
        # A re-ask with the same seed tends to reproduce the same mistake; vary it per attempt, and
        # per sample (samples 1, 2, 3 start at seed, seed + 1000, seed + 2000).
        seed = None if self.params.seed is None else self.params.seed + SAMPLE_SEED_STEP * (self.sample - 1) + index
        params = replace(self.params, seed=seed)
        if self.provider.small and index:
            # A small model stuck in a loop needs more randomness, not just another seed.
            params = replace(params, temperature=min(1.0, params.temperature + 0.3 * index))
        return call_with_retries(
            self.provider,
            messages,
            schema,
            params,
            self.transport,
            on_failure=self._transport_failure,
            progress=self.progress,
            gate=self.gate,
        )

    def _transport_failure(self, exc: TransientProviderError, latency_ms: int) -> None:
        self.records.append(
            AttemptRecord(
                len(self.records) + 1,
                self.label + "transport_error",
                "",
                (),
                Usage(),
                latency_ms,
                error=str(exc),
                sample=self.sample,
            )
        )


@dataclass(frozen=True)
class Produced:
    """The outcome of asking the model for one job, before anything is stored."""

    job: Job
    invocation: str
    records: tuple[AttemptRecord, ...]
    comparison: Comparison | None
    request: dict[str, Any]
    raw_response: str
    error: PipelineError | None

    @property
    def usage(self) -> Usage:
        return sum((r.usage for r in self.records), Usage())

    @property
    def attempts(self) -> int:
        return model_attempts(list(self.records))

    def written(self, records: Sequence[AttemptRecord] | None = None) -> NewGeneration | FailedAttempts:
        """What the store keeps of it: the generation with its attempts, or the failed attempts.

        `records` replaces the attempts (a Batch API item counts its batch answer as attempt 1)."""
        attempts = self.records if records is None else tuple(records)
        if self.comparison is None:
            return FailedAttempts(self.invocation, self.job.unit, self.job.cache_key, attempts)
        return NewGeneration(self.comparison, self.request, self.raw_response, sum(r.latency_ms for r in attempts),
                             self.invocation, attempts, self.job.canonical_schema)  # fmt: skip


def produce(
    job: Job,
    provider: Provider,
    builder: PromptBuilder,
    transport: TransportPolicy,
    *,
    progress: ProgressFn | None = None,
    gate: RateGate | None = None,
    first: Completion | None = None,
    invocation: str | None = None,
    judge: Provider | None = None,
    into: list[AttemptRecord] | None = None,
) -> Produced:
    """Call the model until the answer is valid; touches no store, so workers can run it in parallel.

    `into`: the list the attempts are recorded in as they happen (a caller that is interrupted
    keeps what was already paid for).
    `first`: an answer already in hand (from the Batch API) that counts as the first attempt;
    it is judged like any other and re-asked synchronously when it is wrong. `judge`: the
    grounding judge, asked once the answer is valid (pipeline.generation.judge).
    """
    invocation = invocation or uuid.uuid4().hex
    records: list[AttemptRecord] = [] if into is None else into
    asker = _Asker(provider, builder, job.params, transport, progress, records, gate, what=job.what)
    messages = job.messages.as_list()
    request = {"messages": messages, "params": job.params.for_cache(), "provider": job.provider_identity}
    if job.by_code and isinstance(job, PairJob):  # a small model's pair: code writes the texts, nobody is called
        data = job.written_by_code()
        problems = job.check(data)
        if problems:
            error = OutputInvalidError(f"{job.what}: the texts code wrote break a content gate: {problems[0]}",
                                       problems=problems)  # fmt: skip
            return Produced(job, invocation, (), None, request, "", error)
        made = generation_from(job, data, utc_now(), [], "")
        return Produced(job, invocation, (), made, {**request, "written_by": "code"}, "", None)
    samples_meta: dict[str, Any] | None = None
    if isinstance(job, ProfileJob) and job.grid is not None:
        return _from_grid(job, asker, request, invocation, builder, transport, judge, gate, progress)
    try:
        if job.params.samples > 1 and first is None and isinstance(job, ProfileJob):
            data, completion, answered_at, samples_meta = _sampled(job, asker, messages)
        else:
            data, completion, answered_at = asker.ask(messages, job.schema(), job.accept, first=first)
    except ProviderError as exc:
        return Produced(job, invocation, tuple(asker.records), None, request, "", exc)
    except _StageFailed as failed:
        problems = failed.problems
        shown = "; ".join(str(p) for p in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        what = f"after {job.params.max_attempts} attempts"
        if job.params.samples > 1 and isinstance(job, ProfileJob):
            what = f"in too many of {job.params.samples} samples ({failed.valid} valid, a majority needed) {what} each"
        error = OutputInvalidError(
            f"{job.what}: the model's output was still invalid {what}: "
            f"{shown}{more}. The attempts are kept in the store (`pipeline show {_shown_ref(job)} --attempts`)",
            problems=problems,
            attempts=asker.records,
            last_raw=failed.last_raw,
        )
        return Produced(job, invocation, tuple(asker.records), None, request, failed.last_raw, error)
    verdicts = None
    if judge is not None and isinstance(job, ProfileJob):
        verdicts = ask_judge(job, data, judge, builder, transport, asker.records, gate=gate, progress=progress)
    made = generation_from(job, data, answered_at, asker.records, completion.model, verdicts, samples_meta)
    return Produced(job, invocation, tuple(asker.records), made, request, completion.text, None)


def _from_grid(job: ProfileJob, asker: _Asker, request: dict[str, Any], invocation: str, builder: PromptBuilder,
               transport: TransportPolicy, judge: Provider | None, gate: RateGate | None,
               progress: ProgressFn | None) -> Produced:  # fmt: skip
    """A grid member's profile: its part of its grid's answer, which the first member to need it asks for
    (and whose generation carries the call's attempts); the others are answered without a call."""
    assert job.grid is not None
    grid = job.grid
    answer, first = grid.asked(lambda messages, schema, accept: asker.ask(messages, schema, accept))
    records = tuple(asker.records)
    if answer.error is not None:
        exc = answer.error
        if isinstance(exc, ProviderError):
            return Produced(job, invocation, records, None, request, "", exc)
        if not isinstance(exc, _StageFailed):
            raise exc
        shown = "; ".join(str(p) for p in exc.problems[:3])
        where = "its attempts are kept in the store" if first else f"the call was made for {grid.ids[0]}"
        error = OutputInvalidError(
            f"{job.what}: the grid {grid.unit}'s output was still invalid after {job.params.max_attempts} attempts: "
            f"{shown}; {where} (`pipeline show {grid.ids[0] if not first else job.subject.id} --attempts`)",
            problems=exc.problems, attempts=list(records), last_raw=exc.last_raw,
        )  # fmt: skip
        return Produced(job, invocation, records, None, request, exc.last_raw, error)
    data = answer.profiles[job.subject.id]
    verdicts = None
    if judge is not None:
        verdicts = ask_judge(job, data, judge, builder, transport, asker.records, gate=gate, progress=progress)
    made = generation_from(job, data, answer.answered_at, asker.records, answer.model, verdicts)
    raw = answer.raw if first else json.dumps(data, ensure_ascii=False)
    return Produced(job, invocation, tuple(asker.records), made, request, raw, None)


def _shown_ref(job: Job) -> str:
    """What `pipeline show` takes for a unit: the pair, or the subject of a profile."""
    return job.subject.id if isinstance(job, ProfileJob) else job.unit


def _sampled(
    job: ProfileJob, asker: _Asker, messages: list[dict[str, str]]
) -> tuple[dict[str, Any], Completion, str, dict[str, Any]]:
    """`params.samples` answers, each validated and re-asked on its own, and their consensus.

    The first answers come from one request with `n` where the endpoint takes it; the others
    (all but the first elsewhere) from calls with their own seeds. A majority must be valid."""
    k = job.params.samples
    schema = job.schema()
    firsts = asker.first_answers(messages, schema)
    accepted: list[tuple[dict[str, Any], Completion, str]] = []
    failures: list[_StageFailed] = []
    for index in range(k):
        one = replace(asker, sample=index + 1)  # shares the records list
        try:
            accepted.append(one.ask(messages, schema, job.accept, first=firsts[index] if index < len(firsts) else None))
        except _StageFailed as failed:
            failures.append(failed)
    if len(accepted) < k // 2 + 1:
        raise _StageFailed(failures[0].problems, failures[0].last_raw, valid=len(accepted))
    made = consensus.build([a[0] for a in accepted], job.category, k, job.check)
    _, completion, _ = accepted[made.base]
    return made.data, completion, max(a[2] for a in accepted), made.meta


def ask_judge(
    job: ProfileJob,
    data: dict[str, Any],
    judge: Provider,
    builder: PromptBuilder,
    transport: TransportPolicy,
    records: list[AttemptRecord],
    *,
    gate: RateGate | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any] | None:
    """The judge's verdicts on a profile's cited claims (or why there are none); its attempts join `records`."""
    texts = {p.id: p.text for p in job.passages}
    found = judge_mod.to_judge(profile_claims(data, job.subject, texts))
    if not found:
        return None
    who = {"provider": judge.kind, "model": judge.model}
    params = replace(job.params, temperature=0.0)
    judging = _Asker(judge, builder, params, transport, progress, records, gate, "judge:", job.what)
    messages = builder.judge(job.subject.name, found, texts).as_list()
    try:
        answer, _, _ = judging.ask(messages, judge_mod.schema(found), judge_mod.accept(found))
    except (ProviderError, _StageFailed) as exc:
        reason = str(exc) if isinstance(exc, ProviderError) else "; ".join(str(p) for p in exc.problems[:3])
        return {**who, "error": reason[:300]}
    return {**who, "verdicts": answer["verdicts"]}


def commit(produced: Produced, store: Store) -> RunResult:
    """Store what was produced, in one short transaction; re-raise its error after keeping the attempts."""
    written = produced.written()
    if isinstance(written, FailedAttempts):
        store.save_failed_attempts(written)
        assert produced.error is not None
        raise produced.error
    assert produced.comparison is not None
    store.save_generation(written)
    return RunResult(comparison=produced.comparison, cached=False, attempts=produced.attempts, usage=produced.usage)


def generate(
    job: Job,
    provider: Provider,
    store: Store,
    builder: PromptBuilder,
    transport: TransportPolicy,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    judge: Provider | None = None,
) -> RunResult:
    """One job, from the cache or the model. The calls run in a worker thread so that Ctrl-C (or
    SIGTERM) is answered at once: the attempts already made (paid for) are stored and
    `InterruptedRun` is raised; a call still in flight is abandoned."""
    if not force:
        cached = store.find_cached(job.cache_key)
        if cached is not None:
            return RunResult(comparison=cached, cached=True, attempts=0, usage=Usage())
    if job.by_code:  # nobody to wait for
        return commit(produce(job, provider, builder, transport), store)
    records: list[AttemptRecord] = []
    invocation = uuid.uuid4().hex
    done: list[Produced] = []

    failed: list[BaseException] = []

    def work() -> None:
        try:
            done.append(produce(job, provider, builder, transport, progress=progress, judge=judge,
                                invocation=invocation, into=records))  # fmt: skip
        except BaseException as exc:  # handed to the calling thread, raised there
            failed.append(exc)

    # daemon: an abandoned call must not keep the process alive
    worker = threading.Thread(target=work, name="generate", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        _ignore_stop_signals()  # a second Ctrl-C while the attempts are stored would lose them
        if done:
            commit_quietly(done[0], store)
            raise InterruptedRun(f"{job.what}: interrupted after the answer arrived; it is stored") from None
        kept = list(records)
        if kept:
            store.save_failed_attempts(FailedAttempts(invocation, job.unit, job.cache_key, tuple(kept)))
        usage = sum((r.usage for r in kept), Usage())
        raise InterruptedRun(
            f"{job.what}: interrupted; the call in flight was abandoned"
            + (
                f", the {len(kept)} attempt(s) already made ({usage.total_tokens} tokens) are kept in the store"
                if kept
                else ""
            )
            + "; run the same command again to continue"
        ) from None
    if failed:
        raise failed[0]
    return commit(done[0], store)


def commit_quietly(produced: Produced, store: Store) -> None:
    """Store what was produced; its error (if any) is not raised (the caller reports something else)."""
    with contextlib.suppress(PipelineError):
        commit(produced, store)


def _ignore_stop_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
