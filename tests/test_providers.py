"""The OpenAI-compatible provider and the transport retry layer, over real HTTP."""

from __future__ import annotations

import time

import pytest

from pipeline.errors import AuthenticationError, ConfigError, QuotaError, TransientProviderError
from pipeline.providers.openai_compat import OpenAICompatProvider
from pipeline.providers.retry import call_with_retries
from pipeline.settings import GenerationParams, ProviderProfile, TransportPolicy
from tests.fakeserver import FakeLLM

SCHEMA = {"type": "object", "properties": {"ok": {"type": "string", "maxLength": 20}}, "required": ["ok"]}
FAST = TransportPolicy(max_retries=3, deadline_s=10, timeout_s=2, connect_timeout_s=1,
                       backoff_initial_s=0.01, backoff_max_s=0.05, retry_after_cap_s=0.5)  # fmt: skip


@pytest.fixture
def provider(fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> OpenAICompatProvider:
    monkeypatch.setenv("TEST_KEY", "sk-secret-value-123")
    profile = ProviderProfile(name="t", kind="openai", model="m", base_url=fake.base_url, api_key_env="TEST_KEY")
    return OpenAICompatProvider(profile, FAST)


def call(provider: OpenAICompatProvider, policy: TransportPolicy = FAST):
    failures: list[str] = []
    completion = call_with_retries(
        provider, [{"role": "user", "content": "x"}], SCHEMA, GenerationParams(), policy,
        on_failure=lambda exc, _ms: failures.append(str(exc)),
    )  # fmt: skip
    return completion, failures


def test_strict_dialect_request_shape(provider: OpenAICompatProvider, fake: FakeLLM) -> None:
    completion, _ = call(provider)
    body = fake.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert "maxLength" not in str(body["response_format"])
    assert {k.lower(): v for k, v in fake.headers[0].items()}["authorization"] == "Bearer sk-secret-value-123"
    assert completion.usage.total_tokens == 150 and completion.finish_reason == "stop"


def test_transient_faults_are_retried_and_recorded(provider: OpenAICompatProvider, fake: FakeLLM) -> None:
    fake.push({"kind": "drop"}, {"kind": "status", "status": 503}, {"kind": "empty_choices"})
    completion, failures = call(provider)
    assert fake.calls == 4 and len(failures) == 3
    assert "HTTP 503" in failures[1] and "no choices" in failures[2]
    assert completion.text.startswith("{")


def test_retry_after_is_honoured_up_to_the_cap(provider: OpenAICompatProvider, fake: FakeLLM) -> None:
    fake.push({"kind": "status", "status": 429, "headers": {"retry-after": "100"}})
    call(provider)
    waited = fake.times[1] - fake.times[0]
    assert 0.5 <= waited < 2  # capped at retry_after_cap_s = 0.5


@pytest.mark.parametrize(
    ("behaviour", "error", "text"),
    [
        ({"kind": "status", "status": 401}, AuthenticationError, "check TEST_KEY"),
        ({"kind": "status", "status": 403}, AuthenticationError, "HTTP 403"),
        ({"kind": "status", "status": 404, "message": "model m not found"}, ConfigError, "not found"),
        ({"kind": "status", "status": 429, "code": "insufficient_quota"}, QuotaError, "no quota"),
    ],
)
def test_permanent_errors_are_never_retried(provider, fake: FakeLLM, behaviour, error, text) -> None:
    fake.push(behaviour)
    with pytest.raises(error, match=text) as info:
        call(provider)
    assert fake.calls == 1
    assert "sk-secret-value-123" not in str(info.value)


def test_exhausted_retries_raise_transient_error(provider: OpenAICompatProvider, fake: FakeLLM) -> None:
    fake.default = {"kind": "status", "status": 500, "message": "boom"}
    with pytest.raises(TransientProviderError, match="HTTP 500: boom"):
        call(provider)
    assert fake.calls == FAST.max_retries + 1


def test_a_hung_server_costs_at_most_the_deadline(provider: OpenAICompatProvider, fake: FakeLLM) -> None:
    fake.default = {"kind": "hang", "seconds": 5}
    policy = TransportPolicy(max_retries=10, deadline_s=1.5, timeout_s=0.5, connect_timeout_s=0.5,
                             backoff_initial_s=0.01, backoff_max_s=0.05)  # fmt: skip
    provider = OpenAICompatProvider(provider.profile, policy)
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="did not answer in time"):
        call(provider, policy)
    assert time.monotonic() - started < 1.5 + 0.5 + 0.5  # deadline + one timeout + slack


def test_refused_connection_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "k")
    profile = ProviderProfile(name="t", kind="openai", model="m", base_url="http://127.0.0.1:9/v1",
                              api_key_env="TEST_KEY")  # fmt: skip
    policy = TransportPolicy(max_retries=1, deadline_s=5, timeout_s=1, connect_timeout_s=1, backoff_initial_s=0.01)
    with pytest.raises(TransientProviderError, match=r"cannot reach http://127.0.0.1:9/v1 .*is the server running"):
        call(OpenAICompatProvider(profile, policy), policy)


def test_rate_gate_limits_requests_and_pauses_every_worker() -> None:
    from pipeline.providers.retry import RateGate

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    gate = RateGate(requests_per_minute=2, tokens_per_minute=1000, clock=lambda: now[0], sleep=sleep)
    gate.acquire(100)
    gate.acquire(100)
    assert slept == []
    gate.acquire(100)  # a third request in the same minute waits for the window
    assert now[0] >= 60
    gate.pause(5)  # a 429 seen by one worker...
    started = now[0]
    gate.acquire(100)  # ...holds back the next call of any worker
    assert now[0] - started >= 5
    big = RateGate(tokens_per_minute=1000, clock=lambda: now[0], sleep=sleep)
    big.acquire(900)
    started = now[0]
    big.acquire(200)  # over the token budget: waits until the first call leaves the window
    assert now[0] - started >= 59
