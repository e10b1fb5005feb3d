"""Grid mode against per-subject profiles on the whole catalogue: calls, prompt and answer tokens (issue #29).

    .venv/bin/python bench/grid.py [--grid-chars 24000]

A capable model is not reachable from this machine, so the answers come from the local test server
(tests/fakeserver.py), which writes valid profiles for any schema: what is measured is what the
mode sends and must receive, not how well a model rates. For each mode the batch runs every
category of config/catalogue from an empty store; each request the server saw is tokenised with
the bundled model's tokenizer (a stand-in for a capable model's). Then one brief (PostgreSQL's)
gains a sentence and its category runs again: the profile calls, subjects re-rated and pair-text
calls that follow. Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakeserver import FakeLLM  # noqa: E402

PROFILE_SYSTEMS = ("You rate one subject", "You rate several subjects")


def workspace(tmp: Path, base_url: str, mode: str, grid_chars: int) -> Path:
    ws = tmp / mode
    for name in ("config", "prompts", "schemas"):
        shutil.copytree(ROOT / name, ws / name)
    (ws / "config/pipeline.toml").write_text(
        f'provider = "fake"\n[providers.fake]\nkind = "openai"\nbase_url = "{base_url}"\nmodel = "fake-model"\n'
        f'dialect = "json_schema"\napi_key_env = ""\nprofiles = "{mode}"\ngrid_chars = {grid_chars}\n'
        "[store]\nlock_timeout_s = 120\n",
        encoding="utf-8",
    )
    return ws


def tokenizer() -> Any:
    from llama_cpp import Llama

    from pipeline.providers.local import bundled_model_path

    model = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
    return lambda text: len(model.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def measure(mode: str, grid_chars: int, count: Any) -> dict[str, Any]:
    fake = FakeLLM().start()
    sent: list[dict[str, Any]] = []
    answers: list[str] = []

    def mutate(data: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        sent.append(request)
        answers.append(json.dumps(data))
        return data

    fake.mutate = mutate
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp), fake.base_url, mode, grid_chars)
            categories = sorted(p.stem for p in (ws / "config/catalogue").glob("*.toml"))
            for category in categories:
                batch(ws, category, mode)
            first = len(sent)
            brief = ws / "config/sources/postgresql.md"  # one brief gains a sentence; the batch runs again
            added = "\nIt is maintained by a worldwide community of contributors.\n\n## Strengths"
            brief.write_text(brief.read_text(encoding="utf-8").replace("\n## Strengths", added, 1), encoding="utf-8")
            batch(ws, "databases", mode)
            later = sent[first:]
            del sent[first:], answers[first:]
    finally:
        fake.stop()
    again = [r for r in later if r["messages"][0]["content"].startswith(PROFILE_SYSTEMS)]
    rerated = sum(len(r["response_format"]["json_schema"]["schema"]["properties"]) if mode == "grid" else 1
                  for r in again)  # fmt: skip
    profile = [i for i, r in enumerate(sent) if r["messages"][0]["content"].startswith(PROFILE_SYSTEMS)]
    prompt = [sum(count(m["content"]) for m in sent[i]["messages"]) for i in profile]
    texts = [sum(count(m["content"]) for m in r["messages"]) for i, r in enumerate(sent) if i not in set(profile)]
    answer = [count(answers[i]) for i in profile]
    subjects = [len(sent[i]["response_format"]["json_schema"]["schema"]["properties"]) if mode == "grid" else 1
                for i in profile]  # fmt: skip
    return {
        "mode": mode,
        "calls": len(profile),
        "pair_calls": len(sent) - len(profile),
        "prompt_tokens": sum(prompt),
        "answer_tokens": sum(answer),
        "largest_prompt": max(prompt),
        "largest_answer": max(answer),
        "subjects_per_call": f"{min(subjects)}-{max(subjects)}",
        "texts_prompt_mean": round(sum(texts) / len(texts)) if texts else 0,
        "change_calls": len(again),
        "change_rerated": rerated,
        "change_texts": len(later) - len(again),
    }


def batch(ws: Path, category: str, mode: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(ws), "batch", "--category", category],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{mode} {category}: {done.stderr[-1500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid-chars", type=int, default=24_000)
    args = parser.parse_args()
    count = tokenizer()
    rows = [measure(mode, args.grid_chars, count) for mode in ("subject", "grid")]
    one, grid = rows
    print(f"### Grid mode against per-subject profiles (bench/grid.py, grid_chars = {args.grid_chars:,})\n")
    print(
        "| profiles | calls | subjects per call | prompt tokens | answer tokens | largest prompt | largest answer "
        "| one brief changed: profile calls / subjects re-rated / pair-text calls |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['calls']} | {r['subjects_per_call']} | {r['prompt_tokens']:,} | "
              f"{r['answer_tokens']:,} | {r['largest_prompt']:,} | {r['largest_answer']:,} | "
              f"{r['change_calls']} / {r['change_rerated']} / {r['change_texts']} |")  # fmt: skip
    print(f"\nGrid against per-subject: calls {grid['calls'] / one['calls']:.0%}, prompt tokens "
          f"{grid['prompt_tokens'] / one['prompt_tokens']:.0%}, answer tokens "
          f"{grid['answer_tokens'] / one['answer_tokens']:.0%}. The pairs' texts ({one['pair_calls']} calls, "
          f"{one['texts_prompt_mean']:,} prompt tokens on average) are the same in both modes.")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
