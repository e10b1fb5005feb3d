"""Any OpenAI-compatible endpoint through the `openai` SDK.

The SDK's own retries are off (`max_retries=0`) so that every call is counted
and retried by our transport layer. SDK exceptions are mapped to ours here,
once. Error messages are written by us: server text is shortened and any
occurrence of the API key is removed before it can reach a log or the store.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pipeline.errors import (
    AuthenticationError,
    CapabilityError,
    ConfigError,
    ProviderError,
    QuotaError,
    TransientProviderError,
)
from pipeline.models import Completion, Usage
from pipeline.providers import strict
from pipeline.providers.base import ProgressFn
from pipeline.providers.capabilities import detect, next_dialect
from pipeline.providers.strict import for_dialect
from pipeline.settings import GenerationParams, ProviderProfile, TransportPolicy
from pipeline.text import safe_url
from pipeline.untrusted import clean, storable
from pipeline.untrusted import count as _count

if TYPE_CHECKING:
    import openai

_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "grammar", "structured output")
_LIMIT_WORDS = re.compile(r"\b(exceed|exceeds|exceeded|maximum|too many|limit|nesting)\b", re.IGNORECASE)
_RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")


class OpenAICompatProvider:
    kind = "openai"

    def __init__(
        self,
        profile: ProviderProfile,
        transport: TransportPolicy,
        http_client: Any = None,
        *,
        need_key: bool = True,
    ):
        """`need_key=False`: a provider that will not be called (a dry run's estimate) may lack its key."""
        self.profile = profile
        self.small = profile.small
        self.model = profile.model
        self.dialect = profile.dialect
        self.caps = detect(profile)
        self.last_size: strict.Size | None = None  # of the last strict schema sent, for limit errors
        key = os.environ.get(profile.api_key_env, "") if profile.api_key_env else ""
        if profile.api_key_env and not key and need_key:
            raise AuthenticationError(
                f"{profile.api_key_env} is not set: export it for provider {profile.name!r}, "
                "or use --provider local for the bundled offline model"
            )
        self._secret = key
        base_url = profile.base_url or (os.environ.get("OPENAI_BASE_URL") if profile.kind == "openai" else None) or None
        self.endpoint = safe_url(base_url or "https://api.openai.com/v1")
        self._client_args = (base_url, transport, http_client)

    def token_limit(self, requested: int) -> int:
        return self.caps.max_tokens(requested)

    def warm_up(self) -> None:
        """Import the SDK and make the client now, on this thread, not inside the first call of many workers."""
        _ = self.client

    @cached_property
    def client(self) -> openai.OpenAI:
        """The SDK client, made on first use: a batch that finds every item fresh never imports `openai`."""
        import openai

        base_url, transport, http_client = self._client_args
        return openai.OpenAI(
            api_key=self._secret or "not-needed",
            base_url=base_url,
            max_retries=0,
            timeout=openai.Timeout(transport.timeout_s, connect=transport.connect_timeout_s),
            http_client=http_client,
        )

    def identity(self) -> dict[str, str]:
        identity = {"kind": self.kind, "model": self.model, "dialect": self.dialect, **self.caps.describe()}
        if self.small:
            identity["mode"] = "select"
        if self.profile.presence_penalty:
            identity["presence_penalty"] = str(self.profile.presence_penalty)
        return identity

    def request_body(
        self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams, n: int = 1
    ) -> dict[str, Any]:
        """The chat-completions request body for these messages: sent as is, or as one Batch API line.

        `n` > 1 asks for several choices; only sent where the server takes it (`caps.choices`)."""
        caps = self.caps
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if n > 1 and caps.choices:
            body["n"] = n
        if caps.sampling:
            body["temperature"] = params.temperature
            body["top_p"] = params.top_p
            if self.profile.presence_penalty:
                body["presence_penalty"] = self.profile.presence_penalty
        body[caps.max_tokens_param] = caps.max_tokens(params.max_tokens)
        if caps.reasoning_effort:
            body["reasoning_effort"] = caps.reasoning_effort
        if params.seed is not None:
            body["seed"] = params.seed
        shaped = for_dialect(schema, self.dialect, fine_tuned=caps.fine_tuned)
        if self.dialect == "json_schema":
            shaped, self.last_size = strict.fit(shaped, fine_tuned=caps.fine_tuned, where=self.profile.name)
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "comparison", "strict": True, "schema": shaped},
            }
        elif self.dialect == "json_object_schema":
            body["response_format"] = {"type": "json_object", "schema": shaped}
            body["repeat_penalty"] = params.repeat_penalty  # llama.cpp's server reads it from the body
        elif self.dialect == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def complete(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        progress: ProgressFn | None = None,
    ) -> Completion:
        return self.complete_many(messages, schema, params, 1, progress)[0]

    def complete_many(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        n: int,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        import openai

        kwargs = self.request_body(messages, schema, params, n)
        # The body is JSON-ready already. Passed as typed parameters, the SDK would walk the whole
        # schema in response_format on every call to transform it (~1 ms of CPU per call here);
        # `extra_body` (its documented way to send fields as they are) skips that.
        kwargs["extra_body"] = {k: kwargs.pop(k) for k in ("response_format", "repeat_penalty") if k in kwargs}
        started = time.monotonic()
        try:
            # The raw body, parsed as plain JSON: building the SDK's typed models costs more CPU
            # per call than everything else in a batch item on a small machine.
            raw = self.client.chat.completions.with_raw_response.create(**kwargs)
            body = json.loads(raw.content)
        except openai.APIError as exc:
            raise self.map_error(exc) from None
        except ValueError:
            raise TransientProviderError(f"{self.endpoint} answered with a body that is not JSON", status=200) from None
        latency_ms = int((time.monotonic() - started) * 1000)
        completions = self.completions_from(body, latency_ms)[: max(1, n)]
        if progress:
            progress(completions[0].usage.completion_tokens or sum(len(c.text) for c in completions) // 4)
        return completions

    def completion_from(self, body: Any, latency_ms: int = 0) -> Completion:
        """A chat-completions response body (from a call or a Batch API output line) as a Completion."""
        return self.completions_from(body, latency_ms)[0]

    def completions_from(self, body: Any, latency_ms: int = 0) -> list[Completion]:
        """Every choice of a response body, in index order; the one request's usage and latency are on the first."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise TransientProviderError(f"{self.endpoint} answered with no choices", status=200)
        ordered = sorted(choices, key=lambda c: c.get("index") if isinstance(c.get("index"), int) else 0)
        usage = _usage(body.get("usage"))
        model = str(body.get("model") or self.model)
        first = [(usage, latency_ms)] + [(Usage(), 0)] * (len(ordered) - 1)
        return [self._choice(c, u, model, ms) for c, (u, ms) in zip(ordered, first, strict=True)]

    def _choice(self, choice: dict[str, Any], usage: Usage, model: str, latency_ms: int) -> Completion:
        message = choice.get("message") or {}
        text = (message.get("content") or "") if isinstance(message, dict) else ""
        refusal = (message.get("refusal") or "") if isinstance(message, dict) else ""
        return Completion(
            text=storable(str(text)),
            finish_reason=str(choice.get("finish_reason") or ""),
            usage=usage,
            model=model,
            latency_ms=latency_ms,
            refusal=clean(refusal)[:500],
        )

    def map_error(self, exc: openai.APIError) -> Exception:
        """An SDK error as the pipeline's error, with what to do about it."""
        import openai

        where = self.endpoint
        if isinstance(exc, openai.APITimeoutError):
            return TransientProviderError(f"{where} did not answer in time")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = type(cause).__name__ if cause else "connection error"
            return TransientProviderError(f"cannot reach {where} ({detail}); is the server running?")
        if not isinstance(exc, openai.APIStatusError):
            return ProviderError(f"{where}: {self._clean(str(exc))}")
        status = exc.status_code
        detail = self._clean(_server_message(exc))
        if status in (401, 403):
            var = self.profile.api_key_env or "the API key"
            return AuthenticationError(f"{where} rejected the credentials (HTTP {status}); check {var}")
        code = _error_code(exc)
        if code == "insufficient_quota":
            return QuotaError(f"{where}: the account has no quota left (HTTP {status}); add credit or change key")
        if status == 404:
            return ConfigError(f"{where}: model {self.model!r} or the endpoint was not found (HTTP 404): {detail}")
        if code in ("unsupported_parameter", "unsupported_value"):
            param = _error_param(exc)
            return CapabilityError(
                f"{where}: model {self.model!r} does not accept {param or 'a parameter'} (HTTP {status}: {detail}); "
                f"if it is a reasoning model set reasoning = true in provider {self.profile.name!r} in "
                "config/pipeline.toml (or max_tokens_param / sampling = false)"
            )
        if status == 400 and self.last_size is not None and _LIMIT_WORDS.search(detail):
            return CapabilityError(
                f"{where} rejected the strict schema as over a structured-output limit (HTTP 400: {detail}); measured: "
                f'{self.last_size.as_text()}; fewer dimensions or passages, or dialect = "json_object", fit'
            )
        if status in (400, 422, 500) and any(w in detail.lower() for w in _FORMAT_WORDS):
            advice = next_dialect(self.caps.family, self.dialect)
            return CapabilityError(
                f"{where} rejected the structured-output dialect {self.dialect!r} (HTTP {status}: {detail}); "
                f'set dialect = "{advice}" in this provider\'s profile in config/pipeline.toml'
            )
        if status == 429 or status >= 500 or status in (408, 409):
            return TransientProviderError(
                f"{where} answered HTTP {status}: {detail}", status=status, retry_after=_retry_after(exc.response)
            )
        return ProviderError(f"{where} answered HTTP {status}: {detail}")

    def _clean(self, text: str) -> str:
        text = " ".join(text.split())[:300]
        return text.replace(self._secret, "[redacted]") if self._secret else text


def _usage(value: Any) -> Usage:
    """Token counts as the API reports them, cached and reasoning tokens included; nonsense counts as 0."""
    if not isinstance(value, dict):
        return Usage()
    prompt_details = value.get("prompt_tokens_details")
    completion_details = value.get("completion_tokens_details")
    return Usage(
        _count(value.get("prompt_tokens")),
        _count(value.get("completion_tokens")),
        _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0,
        _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else 0,
    )


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message or ""


def _error_param(exc: openai.APIStatusError) -> str:
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    return str(inner.get("param") or "") if isinstance(inner, dict) else ""


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("code") or inner.get("type") or "")
    return ""


def _retry_after(response: Any) -> float | None:
    """How long the server asks us to wait: Retry-After(-ms) in seconds, milliseconds or an HTTP date,
    else OpenAI's x-ratelimit-reset-requests / -tokens ("1s", "6m0s", "20ms"); None when nothing
    parses (the caller's backoff applies)."""
    headers = response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = _seconds(headers.get(name), scale)
        if value is not None:
            return value
    waits = [w for w in (_duration(headers.get(h)) for h in _RESET_HEADERS) if w is not None]
    return max(waits) if waits else None


def _seconds(value: str | None, scale: float) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        return number * scale if 0 <= number * scale < 86_400 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(86_400.0, when.timestamp() - time.time())) if when else None


def _duration(value: str | None) -> float | None:
    """A Go-style duration as OpenAI sends in x-ratelimit-reset-*: "20ms", "1s", "6m0s", "1h2m3.5s"."""
    if not value or not _DURATION.fullmatch(value.strip()):
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    total = sum(float(n) * units[u] for n, u in _DURATION_PART.findall(value.strip()))
    return total if total < 86_400 else None


class AzureProvider(OpenAICompatProvider):
    """Azure OpenAI through the SDK's `AzureOpenAI` client: a resource endpoint, an API version and a
    deployment (the model name unless `deployment` says otherwise); the key from AZURE_OPENAI_API_KEY
    or the variable the profile names. Azure's structured outputs (api-version 2024-08-01-preview and
    later) take OpenAI's strict `json_schema`; without it, set dialect = "json_object"."""

    kind = "azure"

    @cached_property
    def client(self) -> openai.OpenAI:
        import openai

        _base, transport, http_client = self._client_args
        return openai.AzureOpenAI(
            azure_endpoint=str(self.profile.base_url),
            api_version=self.profile.api_version,
            azure_deployment=self.profile.deployment or self.model,
            api_key=self._secret or "not-needed",
            max_retries=0,
            timeout=openai.Timeout(transport.timeout_s, connect=transport.connect_timeout_s),
            http_client=http_client,
        )

    def identity(self) -> dict[str, str]:
        return {**super().identity(), "deployment": self.profile.deployment or self.model}
