"""The provider interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pipeline.models import Completion
from pipeline.settings import GenerationParams, ProviderProfile

ProgressFn = Callable[[int], None]  # called with the number of tokens generated so far


class Provider(Protocol):
    profile: ProviderProfile
    kind: str
    model: str
    dialect: str
    small: bool  # selection mode (pipeline.generation.selection) instead of free writing

    def complete(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        progress: ProgressFn | None = None,
    ) -> Completion: ...

    def complete_many(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        n: int,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        """Up to `n` answers from one request (OpenAI's `n`); a provider that cannot returns one.

        The request's usage is on the first answer (the prompt is billed once)."""
        ...

    def identity(self) -> dict[str, str]:
        """What goes into the cache key: kind, model, dialect (never a key or URL credentials)."""
        ...

    def warm_up(self) -> None:
        """Do the slow first-use work (import the SDK, load the model) now, before workers start."""
        ...

    def token_limit(self, requested: int) -> int:
        """The completion-token limit a request with `max_tokens = requested` is counted with by rate limits."""
        ...
