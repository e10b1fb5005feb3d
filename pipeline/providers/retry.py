"""Transport retries: 429, 5xx, timeouts and dropped connections, nothing else.

Jittered exponential backoff that honours `Retry-After` (capped), bounded by a
number of retries and by a wall-clock deadline. Capability, authentication and
quota errors are never retried. Invalid *output* is not a transport fault: the
re-ask loop in `generate` handles it separately.
"""

from __future__ import annotations

import time
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
) -> Completion:
    backoff = wait_random_exponential(multiplier=policy.backoff_initial_s, max=policy.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        delay = backoff(state)
        if isinstance(exc, TransientProviderError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, policy.retry_after_cap_s))
        return float(delay)

    def one_call() -> Completion:
        started = time.monotonic()
        try:
            return provider.complete(messages, schema, params, progress)
        except TransientProviderError as exc:
            if on_failure:
                on_failure(exc, int((time.monotonic() - started) * 1000))
            raise

    retrying = Retrying(
        retry=retry_if_exception_type(TransientProviderError),
        wait=wait,
        stop=stop_after_attempt(policy.max_retries + 1) | stop_before_delay(policy.deadline_s),
        sleep=sleep,
        reraise=True,
    )
    return retrying(one_call)
