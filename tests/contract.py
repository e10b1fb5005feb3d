"""Bodies checked against OpenAI's published API types, not against our own code.

The `openai` SDK's request and response types are generated from OpenAI's OpenAPI spec
(openai/openai-openapi) by Stainless; the SDK is installed from PyPI, so these checks use the
spec's own definitions without copying the spec into this repository. On top of the types:
what the spec marks required but the SDK leaves optional (`message.refusal` and
`choice.logprobs`, required and nullable), and the documented rules the types cannot express
(`max_tokens` with `max_completion_tokens`; a batch line's method and url).

The test server records every violation; the `fake` fixture fails a test that produced one.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

# llama.cpp's server reads these from the body; they are sent only in the json_object_schema dialect.
LLAMA_EXTRAS = ("repeat_penalty",)


@cache
def _chat_request() -> tuple[Any, frozenset[str]]:
    from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
    from pydantic import TypeAdapter

    return TypeAdapter(CompletionCreateParamsNonStreaming), frozenset(
        typing.get_type_hints(CompletionCreateParamsNonStreaming)
    )


def chat_request(body: Any) -> list[str]:
    """Violations of POST /v1/chat/completions (CreateChatCompletionRequest)."""
    if not isinstance(body, dict):
        return ["request: the body is not a JSON object"]
    body = dict(body)
    llama = isinstance(body.get("response_format"), dict) and "schema" in body["response_format"]
    if llama:  # llama.cpp's json_object + schema: an extension, checked as the OpenAI subset it extends
        body["response_format"] = {k: v for k, v in body["response_format"].items() if k != "schema"}
        for key in LLAMA_EXTRAS:
            body.pop(key, None)
    adapter, known = _chat_request()
    out = [f"request: unknown parameter {k!r}" for k in body if k not in known]
    try:
        adapter.validate_python(body)
    except Exception as exc:  # pydantic.ValidationError: one line per error
        errors = getattr(exc, "errors", lambda: [])()
        out += [f"request: {'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in errors[:5]] or [str(exc)]
    if "max_tokens" in body and "max_completion_tokens" in body:
        out.append("request: max_tokens and max_completion_tokens together")
    return out


def chat_response(body: Any) -> list[str]:
    """Violations of a 200 answer (CreateChatCompletionResponse)."""
    from openai.types.chat import ChatCompletion

    out = []
    try:
        ChatCompletion.model_validate(body, strict=False)
    except Exception as exc:
        out.append(f"response: {str(exc).splitlines()[0]}")
    for i, choice in enumerate(body.get("choices") or []):
        if "logprobs" not in choice:
            out.append(f"response: choices[{i}].logprobs is required (nullable)")
        if "refusal" not in (choice.get("message") or {}):
            out.append(f"response: choices[{i}].message.refusal is required (nullable)")
    return out


def error_response(body: Any) -> list[str]:
    """Violations of an error body: {"error": {"message", "type", "param", "code"}}."""
    inner = body.get("error") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        return ["error response: no error object"]
    return [f"error response: error.{k} is required" for k in ("message", "type", "param", "code") if k not in inner]


def batch_line(line: Any) -> list[str]:
    """Violations of one line of a batch input file (BatchRequestInput) and of its body."""
    if not isinstance(line, dict):
        return ["batch line: not a JSON object"]
    out = []
    if not isinstance(line.get("custom_id"), str) or not line.get("custom_id"):
        out.append("batch line: custom_id must be a non-empty string")
    if line.get("method") != "POST":
        out.append("batch line: method must be POST")
    if line.get("url") != "/v1/chat/completions":
        out.append(f"batch line: url {line.get('url')!r} is not the chat completions endpoint")
    out += [f"batch line {line.get('custom_id')}: {v}" for v in chat_request(line.get("body"))]
    return out


def batch_create(body: Any) -> list[str]:
    """Violations of POST /v1/batches (CreateBatchRequest)."""
    from openai.types.batch_create_params import BatchCreateParams
    from pydantic import TypeAdapter

    known = typing.get_type_hints(BatchCreateParams)
    out = [f"batch create: unknown parameter {k!r}" for k in body if k not in known]
    try:
        TypeAdapter(BatchCreateParams).validate_python(body)
    except Exception as exc:
        out.append(f"batch create: {str(exc).splitlines()[0]}")
    return out


def batch_object(body: Any) -> list[str]:
    """Violations of a Batch object the server returns."""
    from openai.types import Batch

    try:
        Batch.model_validate(body)
    except Exception as exc:
        return [f"batch object: {str(exc).splitlines()[0]}"]
    return []


def file_object(body: Any) -> list[str]:
    from openai.types import FileObject

    try:
        FileObject.model_validate(body)
    except Exception as exc:
        return [f"file object: {str(exc).splitlines()[0]}"]
    return []
