"""The provider's Batch API (OpenAI's `/v1/files` and `/v1/batches`): upload, create, find, retrieve,
cancel, download. SDK errors are translated into the pipeline's once, here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ConfigError
from pipeline.providers.openai_compat import OpenAICompatProvider

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "expired", "cancelled", "failed")  # a batch in one of these states is over
T = TypeVar("T")


@dataclass(frozen=True)
class BatchInfo:
    id: str
    status: str
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    errors: str = ""  # the provider's reasons when it rejected the whole file


class BatchClient:
    def __init__(self, provider: OpenAICompatProvider):
        self.provider = provider

    @classmethod
    def of(cls, provider: object) -> BatchClient:
        """The Batch API of a provider, or a one-line error for a provider that has none."""
        if not isinstance(provider, OpenAICompatProvider):
            profile = getattr(provider, "profile", None)
            name, kind = getattr(profile, "name", "?"), getattr(provider, "kind", "?")
            what = "the in-process model" if kind == "local" else f"of kind {kind!r}"
            raise ConfigError(
                f"--via openai-batch needs an OpenAI-compatible provider; the profile {name!r} is {what}: "
                'pass --provider openai (or a profile of kind "openai")'
            )
        return cls(provider)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIError as exc:
            raise self.provider.map_error(exc) from None

    def upload(self, path: Path) -> str:
        return self._call(self.provider.client.files.create, file=path, purpose="batch").id

    def create(self, input_file_id: str, window: str, metadata: dict[str, str]) -> BatchInfo:
        created = self._call(self.provider.client.batches.create, input_file_id=input_file_id, endpoint=ENDPOINT,
                             completion_window=window, metadata=metadata)  # fmt: skip
        return BatchInfo(created.id, created.status, input_file_id)

    def find(self, metadata: dict[str, str], since: float) -> BatchInfo | None:
        """A batch created with this metadata no earlier than `since` (Unix seconds): one whose id was
        not recorded because the process stopped right after creating it."""
        for batch in self._call(self.provider.client.batches.list, limit=100):
            meta = batch.metadata or {}
            if all(meta.get(k) == v for k, v in metadata.items()):
                return BatchInfo(batch.id, batch.status, batch.input_file_id)
            if batch.created_at and batch.created_at < since:  # the list is newest first
                break
        return None

    def retrieve(self, batch_id: str) -> BatchInfo:
        batch = self._call(self.provider.client.batches.retrieve, batch_id)
        counts = batch.request_counts
        errors = "; ".join(e.message or e.code or "" for e in (batch.errors.data or [])) if batch.errors else ""
        return BatchInfo(batch.id, batch.status, batch.input_file_id, batch.output_file_id, batch.error_file_id,
                         counts.completed if counts else 0, counts.failed if counts else 0, errors)  # fmt: skip

    def cancel(self, batch_id: str) -> str:
        return self._call(self.provider.client.batches.cancel, batch_id).status

    def download(self, file_id: str | None, path: Path) -> Path | None:
        """The file streamed to disk (answer files can be hundreds of MB); None when there is no such file."""
        if not file_id:
            return None
        tmp = path.with_suffix(".part")
        streamed = self._call(self.provider.client.files.with_streaming_response.content, file_id)
        with streamed as response, tmp.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
        os.replace(tmp, path)
        return path
