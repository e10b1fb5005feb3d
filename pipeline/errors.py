"""The one error tree of the pipeline.

Third-party exceptions are wrapped once, where they enter our code, and every
error carries what a user needs to act on it. `pipeline.exitcodes.exit_code` maps classes to exit codes::

    PipelineError                      exit 2 unless stated
    ├── ConfigError                    settings, provider profiles, flags
    │   └── CatalogueError             catalogue TOML, ids, pairs
    ├── SourceError                    a source that cannot be read
    ├── ProviderError                  talking to a model
    │   ├── TransientProviderError     429, 5xx, timeouts, dropped connections (retried)
    │   ├── CapabilityError            the endpoint rejects the structured-output dialect
    │   ├── AuthenticationError        401/403 or a missing key
    │   ├── QuotaError                 insufficient_quota: retrying cannot help
    │   ├── RefusedError               the model refused to answer (exit 1)
    │   └── ContentFilteredError       the provider's content filter stopped the answer twice (exit 1)
    ├── OutputInvalidError             the model's output stayed invalid (exit 1)
    ├── StoreError                     the DuckDB file
    │   └── StoreBusyError             another process holds the store (exit 75)
    ├── RenderError                    writing reports
    └── InterruptedRun                 Ctrl-C or SIGTERM during a model call; what was paid for is kept (exit 130)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.models import AttemptRecord, Problem


class PipelineError(Exception):
    """Base class. `str(err)` is the one line the CLI prints."""


class ConfigError(PipelineError):
    pass


class CatalogueError(ConfigError):
    pass


class SourceError(PipelineError):
    pass


class ProviderError(PipelineError):
    pass


class TransientProviderError(ProviderError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class CapabilityError(ProviderError):
    pass


class AuthenticationError(ProviderError):
    pass


class QuotaError(ProviderError):
    pass


class AnsweredError(ProviderError):
    """The model answered, but not with a comparison: the item fails (exit 1) with its attempts kept."""

    def __init__(self, message: str, *, attempts: Sequence[AttemptRecord] = ()):
        super().__init__(message)
        self.attempts = list(attempts)


class RefusedError(AnsweredError):
    pass


class ContentFilteredError(AnsweredError):
    pass


class OutputInvalidError(PipelineError):
    """Every attempt produced output that failed validation."""

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[Problem] = (),
        attempts: Sequence[AttemptRecord] = (),
        last_raw: str = "",
    ):
        super().__init__(message)
        self.problems = list(problems)
        self.attempts = list(attempts)
        self.last_raw = last_raw


class StoreError(PipelineError):
    pass


class StoreBusyError(StoreError):
    pass


class RenderError(PipelineError):
    pass


class InterruptedRun(PipelineError):
    """Ctrl-C (or SIGTERM) while a model call was in flight: the attempts already made are stored."""
