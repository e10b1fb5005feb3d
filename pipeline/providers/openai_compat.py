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
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import (
    AuthenticationError,
    CapabilityError,
    ConfigError,
    ProviderError,
    QuotaError,
    TransientProviderError,
)
from pipeline.models import Completion, Usage
from pipeline.providers.base import ProgressFn
from pipeline.schema import for_dialect
from pipeline.settings import GenerationParams, ProviderProfile, TransportPolicy

if TYPE_CHECKING:
    import openai

_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "grammar", "structured output")


class OpenAICompatProvider:
    kind = "openai"

    def __init__(
        self,
        profile: ProviderProfile,
        transport: TransportPolicy,
        http_client: Any = None,
    ):
        self.profile = profile
        self.small = profile.small
        self.model = profile.model
        self.dialect = profile.dialect
        key = os.environ.get(profile.api_key_env, "") if profile.api_key_env else ""
        if profile.api_key_env and not key:
            raise AuthenticationError(
                f"{profile.api_key_env} is not set: export it for provider {profile.name!r}, "
                "or use --provider local for the bundled offline model"
            )
        self._secret = key
        base_url = profile.base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.endpoint = _safe_url(base_url or "https://api.openai.com/v1")
        self._client_args = (base_url, transport, http_client)

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
        identity = {"kind": self.kind, "model": self.model, "dialect": self.dialect}
        if self.small:
            identity["mode"] = "select"
        if self.profile.presence_penalty:
            identity["presence_penalty"] = str(self.profile.presence_penalty)
        return identity

    def request_body(
        self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams
    ) -> dict[str, Any]:
        """The chat-completions request body for these messages: sent as is, or as one Batch API line."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if self.profile.presence_penalty:
            body["presence_penalty"] = self.profile.presence_penalty
        shaped = for_dialect(schema, self.dialect)
        if self.dialect == "json_schema":
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
        import openai

        kwargs = self.request_body(messages, schema, params)
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
            raise self._map(exc) from None
        except ValueError:
            raise TransientProviderError(f"{self.endpoint} answered with a body that is not JSON", status=200) from None
        completion = self.completion_from(body, int((time.monotonic() - started) * 1000))
        if progress:
            progress(completion.usage.completion_tokens or len(completion.text) // 4)
        return completion

    def completion_from(self, body: Any, latency_ms: int = 0) -> Completion:
        """A chat-completions response body (from a call or a Batch API output line) as a Completion."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise TransientProviderError(f"{self.endpoint} answered with no choices", status=200)
        choice = choices[0]
        message = choice.get("message") or {}
        text = (message.get("content") or "") if isinstance(message, dict) else ""
        return Completion(
            text=str(text),
            finish_reason=str(choice.get("finish_reason") or ""),
            usage=_usage(body.get("usage")),
            model=str(body.get("model") or self.model),
            latency_ms=latency_ms,
        )

    def _map(self, exc: openai.APIError) -> Exception:
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
        if status in (400, 422, 500) and any(w in detail.lower() for w in _FORMAT_WORDS):
            return CapabilityError(
                f"{where} rejected the structured-output dialect {self.dialect!r} (HTTP {status}: {detail}); "
                f'set dialect = "{_next_dialect(self.dialect)}" in this provider\'s profile in config/pipeline.toml'
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
    if not isinstance(value, dict):
        return Usage()
    try:
        return Usage(int(value.get("prompt_tokens") or 0), int(value.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        return Usage()


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message or ""


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("code") or inner.get("type") or "")
    return ""


def _retry_after(response: Any) -> float | None:
    headers = response.headers
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def _next_dialect(dialect: str) -> str:
    order = ["json_schema", "json_object_schema", "json_object", "prompt"]
    return order[min(order.index(dialect) + 1, len(order) - 1)]


def _safe_url(url: str) -> str:
    """The endpoint for messages: no userinfo, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
