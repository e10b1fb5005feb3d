"""#8 item 5: the pipeline's overhead on the bundled model, and the grammar's own cost.

    python bench/local_overhead.py [--seeds 3] [--json out.json]

For each seed, in one process:
1. a full `run_pair` of the reference pair on the bundled model (gather, prompts, every model
   call, validation, re-asks, the store, the reports), timed end to end. Every request the
   pipeline hands to the model is recorded (messages, schema, sampling).
2. raw llama-cpp-python replaying exactly those requests (same grammar, same seed, so the same
   tokens), timed: the floor for generating that many tokens with that grammar.
3. the same replay with each prompt evaluated whole (`llm.reset()` before each call), as the
   pipeline does so that a prompt and seed give one answer whatever ran before: the cost of not
   reusing the previous call's prompt prefix.
4. only the prompts, evaluated whole (one token generated): the prompts' share of the time.
5. the same messages without a grammar, capped at the same number of tokens: the grammar's cost.
Time inside the provider's calls is also measured during step 1: the rest of step 1's time is the
pipeline's own work (gather, validation, the store, rendering).

The model is loaded before any timing (loading is counted once, separately). Tokens per second =
completion tokens / wall seconds. The three runs of a seed alternate, so noise hits all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.workspace import Workspace  # noqa: E402

REFERENCE = "image-classification,image-segmentation"


class Recording:
    """The provider, unchanged, with every request it was given written down."""

    def __init__(self, provider: Any):
        self.inner = provider
        self.requests: list[tuple[list[dict[str, str]], dict[str, Any], Any]] = []
        self.tokens: list[int] = []
        self.prompt_tokens: list[int] = []
        self.seconds = 0.0  # inside the provider's calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def complete(self, messages: Any, schema: Any, params: Any, progress: Any = None) -> Any:
        self.requests.append((messages, schema, params))
        started = time.monotonic()
        completion = self.inner.complete(messages, schema, params, progress)
        self.seconds += time.monotonic() - started
        self.tokens.append(completion.usage.completion_tokens)
        self.prompt_tokens.append(completion.usage.prompt_tokens)
        return completion


def raw_generate(llm: Any, profile: Any, requests: list[Any], grammar: bool, caps: list[int] | None,
                 reset: bool = False) -> int:  # fmt: skip
    """Replays the requests on llama-cpp-python directly; returns the completion tokens produced.
    `reset`: evaluate each prompt whole, as the pipeline does (no reuse of the previous call's prefix)."""
    produced = 0
    for i, (messages, schema, params) in enumerate(requests):
        if reset:
            llm.reset()
        kwargs: dict[str, Any] = {
            "messages": messages, "temperature": params.temperature, "top_p": params.top_p,
            "max_tokens": caps[i] if caps else params.max_tokens, "repeat_penalty": params.repeat_penalty,
            "presence_penalty": profile.presence_penalty, "seed": params.seed, "stream": True,
        }  # fmt: skip
        if grammar:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        else:  # free text may stop early: end-of-text tokens are banned so it makes the same count
            kwargs["logit_bias"] = {t: -1e9 for t in _end_tokens(llm)}
        for chunk in llm.create_chat_completion(**kwargs):
            if chunk["choices"][0]["delta"].get("content"):
                produced += 1
    return produced


def prompts_only(llm: Any, requests: list[Any]) -> None:
    """Each request's prompt evaluated whole, nothing generated: the prompt's share of a call."""
    for messages, schema, params in requests:
        llm.reset()
        llm.create_chat_completion(messages=messages, max_tokens=1, seed=params.seed,
                                   response_format={"type": "json_object", "schema": schema})  # fmt: skip


def _end_tokens(llm: Any) -> set[int]:
    ends = {int(llm.token_eos())}
    for text in (b"<|im_end|>", b"<|endoftext|>"):
        ends.update(llm.tokenize(text, add_bos=False, special=True))
    return ends


def on_model_thread(fn: Any, *args: Any) -> Any:
    """Where the pipeline runs llama.cpp: one dedicated thread (a second thread would bring a
    second OpenMP team and slow both)."""
    from pipeline.providers.local import _RUNNER

    return _RUNNER.submit(fn, *args).result()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(str(ROOT), store=str(Path(tmp) / "bench.duckdb"))
        object.__setattr__(ws.settings, "reports_dir", Path(tmp) / "reports")
        profile, _ = ws.profile("local", None)
        provider = ws.provider(profile)
        started = time.monotonic()
        llm = on_model_thread(provider._llama)  # load once, outside every timing
        load_s = time.monotonic() - started
        pair = ws.pair(REFERENCE)
        base = ws.settings.generation
        for seed in range(1, args.seeds + 1):
            object.__setattr__(ws.settings, "generation", replace(base, seed=seed))
            recording = Recording(provider)
            started = time.monotonic()
            ws.run_pair(pair, recording, force=True)  # type: ignore[arg-type]
            pipeline_s = time.monotonic() - started
            tokens = sum(recording.tokens)
            started = time.monotonic()
            raw_tokens = on_model_thread(raw_generate, llm, profile, recording.requests, True, None)
            raw_s = time.monotonic() - started
            started = time.monotonic()
            whole_tokens = on_model_thread(raw_generate, llm, profile, recording.requests, True, None, True)
            whole_s = time.monotonic() - started
            started = time.monotonic()
            on_model_thread(prompts_only, llm, recording.requests)
            prompt_s = time.monotonic() - started
            per_call = recording.tokens
            started = time.monotonic()
            free_tokens = on_model_thread(raw_generate, llm, profile, recording.requests, False, per_call)
            free_s = time.monotonic() - started
            row = {
                "seed": seed, "calls": len(recording.requests), "pipeline_tokens": tokens, "pipeline_s": pipeline_s,
                "model_s": recording.seconds, "prompt_tokens": sum(recording.prompt_tokens),
                "raw_tokens": raw_tokens, "raw_s": raw_s, "whole_tokens": whole_tokens, "whole_s": whole_s,
                "prompt_eval_s": prompt_s, "free_tokens": free_tokens, "free_s": free_s,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    pipe_tps = [r["pipeline_tokens"] / r["pipeline_s"] for r in rows]
    raw_tps = [r["raw_tokens"] / r["raw_s"] for r in rows]
    free_tps = [r["free_tokens"] / r["free_s"] for r in rows]
    whole_tps = [r["whole_tokens"] / r["whole_s"] for r in rows]
    summary = {
        "load_s": load_s,
        "whole_tps": statistics.median(whole_tps),
        "pipeline_vs_whole": statistics.median(p / w for p, w in zip(pipe_tps, whole_tps, strict=True)),
        "outside_model_share": statistics.median(1 - r["model_s"] / r["pipeline_s"] for r in rows),
        "prompt_eval_share_of_whole": statistics.median(r["prompt_eval_s"] / r["whole_s"] for r in rows),
        "pipeline_tps": statistics.median(pipe_tps),
        "raw_tps": statistics.median(raw_tps),
        "free_tps": statistics.median(free_tps),
        "overhead": statistics.median(r / p - 1 for p, r in zip(pipe_tps, raw_tps, strict=True)),
        "grammar_cost": statistics.median(1 - c / f for c, f in zip(raw_tps, free_tps, strict=True)),
        "rows": rows,
    }
    print(json.dumps(summary, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
