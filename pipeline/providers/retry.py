"""Transport retries: 429, 5xx, timeouts and dropped connections, nothing else.

Jittered exponential backoff that honours `Retry-After` (capped), bounded by a
number of retries and by a wall-clock deadline. Capability, authentication and
quota errors are never retried. Invalid *output* is not a transport fault: the
re-ask loop in `generate` handles it separately.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from pipeline.errors import TransientProviderError
from pipeline.models import Completion
from pipeline.providers.base import ProgressFn, Provider
from pipeline.settings import GenerationParams, TransportPolicy

FailureFn = Callable[[TransientProviderError, int], None]  # (error, latency_ms)


class RateGate:
    """Client-side limits shared by every worker of a batch.

    Requests and (estimated) tokens per minute over a sliding window, and a batch-wide
    pause: when the endpoint answers 429, no worker starts a call until the pause ends.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._events: deque[tuple[float, int]] = deque()
        self.waited_s = 0.0

    def acquire(self, tokens: int) -> None:
        while True:
            with self._lock:
                now = self.clock()
                while self._events and self._events[0][0] <= now - 60:
                    self._events.popleft()
                wait = self._paused_until - now
                if self.rpm and len(self._events) >= self.rpm:
                    wait = max(wait, self._events[0][0] + 60 - now)
                if self.tpm and self._events:
                    used = sum(t for _, t in self._events)
                    if used + tokens > self.tpm:
                        # wait until enough of the window has expired
                        freed, until = 0, now
                        for at, t in self._events:
                            freed += t
                            until = at + 60
                            if used - freed + tokens <= self.tpm:
                                break
                        wait = max(wait, until - now)
                if wait <= 0:
                    self._events.append((now, tokens))
                    return
            step = min(wait, 1.0)
            self.waited_s += step
            self.sleep(step)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)


def call_with_retries(
    provider: Provider,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    params: GenerationParams,
    policy: TransportPolicy,
    *,
    on_failure: FailureFn | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
    gate: RateGate | None = None,
) -> Completion:
    return call_many_with_retries(
        provider, messages, schema, params, policy, on_failure=on_failure, progress=progress, sleep=sleep, gate=gate
    )[0]


def call_many_with_retries(
    provider: Provider,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    params: GenerationParams,
    policy: TransportPolicy,
    *,
    n: int = 1,
    on_failure: FailureFn | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
    gate: RateGate | None = None,
) -> list[Completion]:
    """One request (retried on transport faults) for up to `n` answers (`Provider.complete_many`)."""
    backoff = wait_random_exponential(multiplier=policy.backoff_initial_s, max=policy.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        delay = backoff(state)
        if isinstance(exc, TransientProviderError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, policy.retry_after_cap_s))
        return float(delay)

    # OpenAI counts a request as its prompt plus the token limit it sends (reasoning budget included).
    limit = provider.token_limit(params.max_tokens)
    estimate = sum(len(m["content"]) for m in messages) // 4 + limit * n

    def one_call() -> list[Completion]:
        if gate:
            gate.acquire(estimate)
        started = time.monotonic()
        try:
            if n > 1:
                return provider.complete_many(messages, schema, params, n, progress)
            return [provider.complete(messages, schema, params, progress)]
        except TransientProviderError as exc:
            if on_failure:
                on_failure(exc, int((time.monotonic() - started) * 1000))
            if gate and exc.status == 429:
                gate.pause(min(exc.retry_after or policy.backoff_initial_s, policy.retry_after_cap_s))
            raise

    retrying = Retrying(
        retry=retry_if_exception_type(TransientProviderError),
        wait=wait,
        stop=stop_after_attempt(policy.max_retries + 1) | stop_before_delay(policy.deadline_s),
        sleep=sleep,
        reraise=True,
    )
    return retrying(one_call)
