"""What an OpenAI-compatible model and server accept: one table, detected from names, overridable.

OpenAI's reasoning models (the o-series: o1, o3, o4-mini, ...; the gpt-5 family but its `-chat`
models) reject `max_tokens` ("not compatible with o-series models" in the API reference; the
server answers 400 `unsupported_parameter` and asks for `max_completion_tokens`) and reject
sampling parameters other than their defaults (temperature, top_p, presence_penalty: 400
`unsupported_value`). They also spend hidden reasoning tokens, counted in
`max_completion_tokens`, before the answer: the budget below is added to the answer's
`max_tokens`. A profile overrides any of it: `reasoning`, `max_tokens_param`, `sampling`,
`reasoning_effort`.

Fine-tuned models (`ft:<base>:...`) take the base model's parameters but fewer schema keywords
in strict structured outputs (pipeline.providers.strict). The server family decides which
structured-output dialect to advise when one is rejected: OpenAI and Azure take `json_object`
after `json_schema`; llama.cpp's server takes `json_object_schema`.

References: https://platform.openai.com/docs/api-reference/chat/create (max_tokens,
max_completion_tokens, reasoning_effort); https://platform.openai.com/docs/guides/reasoning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.settings import ProviderProfile

# Reasoning tokens allowed on top of the answer's max_tokens, by reasoning_effort ("" = the API default).
REASONING_BUDGET = {"minimal": 1024, "low": 4096, "": 8192, "medium": 8192, "high": 24576}
EFFORTS = ("minimal", "low", "medium", "high")
FAMILIES = ("openai", "azure", "llamacpp", "vllm", "ollama", "other")
_REASONING = re.compile(r"^(o\d|gpt-5(?!.*-chat))")


@dataclass(frozen=True)
class Capabilities:
    reasoning: bool
    max_tokens_param: str  # "max_tokens" or "max_completion_tokens"
    sampling: bool  # temperature, top_p, presence_penalty are sent
    reasoning_effort: str  # "" = not sent
    fine_tuned: bool
    family: str  # one of FAMILIES
    choices: bool = False  # several answers to one request (`n`): OpenAI, Azure and vLLM take it

    def max_tokens(self, answer: int) -> int:
        """What to send as the token limit: the answer's, plus the reasoning budget for reasoning models."""
        return answer + REASONING_BUDGET[self.reasoning_effort] if self.reasoning else answer

    def describe(self) -> dict[str, str]:
        """What changes the request body, for the cache key (empty for a plain chat model)."""
        if not self.reasoning and self.sampling and self.max_tokens_param == "max_tokens":
            return {}
        return {
            "request": f"{self.max_tokens_param},sampling={str(self.sampling).lower()},effort={self.reasoning_effort}"
        }


def base_model(model: str) -> str:
    """`ft:gpt-4o-mini-2024-07-18:org::id` -> `gpt-4o-mini-2024-07-18`; other names unchanged."""
    return model.split(":")[1] if model.startswith("ft:") and model.count(":") >= 1 else model


def detect(profile: ProviderProfile) -> Capabilities:
    model = base_model(profile.model).lower()
    family = profile.server or _family(profile)
    # By name on any server: a proxy in front of OpenAI (LiteLLM, a gateway) serves the same models.
    reasoning = profile.reasoning if profile.reasoning is not None else bool(_REASONING.match(model))
    default_param = "max_completion_tokens" if reasoning else "max_tokens"
    return Capabilities(
        reasoning=reasoning,
        max_tokens_param=profile.max_tokens_param or default_param,
        sampling=profile.sampling if profile.sampling is not None else not reasoning,
        reasoning_effort=profile.reasoning_effort if reasoning else "",
        fine_tuned=profile.model.startswith("ft:"),
        family=family,
        choices=profile.choices if profile.choices is not None else family in _CHOICES,
    )


# Servers that answer `n` with n choices, billing the prompt once. llama.cpp's server and Ollama
# answer one choice whatever `n` says; the pipeline then asks again with other seeds.
_CHOICES = ("openai", "azure", "vllm")


def _family(profile: ProviderProfile) -> str:
    if profile.kind == "azure":
        return "azure"
    host = (urlsplit(profile.base_url).hostname or "") if profile.base_url else "api.openai.com"
    if host == "api.openai.com" or host.endswith(".openai.azure.com"):
        return "azure" if host.endswith(".openai.azure.com") else "openai"
    if profile.dialect == "json_object_schema":
        return "llamacpp"
    return "other"


def next_dialect(family: str, dialect: str) -> str:
    """The dialect to advise when the endpoint rejected `dialect`."""
    if family in ("openai", "azure"):
        return {"json_schema": "json_object", "json_object_schema": "json_object"}.get(dialect, "prompt")
    if family == "llamacpp" and dialect == "json_schema":
        return "json_object_schema"
    order = ["json_schema", "json_object_schema", "json_object", "prompt"]
    return order[min(order.index(dialect) + 1, len(order) - 1)]
