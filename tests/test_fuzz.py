"""Property-based tests: hostile catalogue TOML, model answers, provider headers and usage, store exports,
Markdown text. The invariant everywhere: a one-line pipeline error, or a valid result — never a traceback.

The default run (and .ci/run) tries `FUZZ_EXAMPLES` examples per property (50); a long run:
    FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py
No example database is kept (it would be state outside the repo's control).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.catalogue import load_catalogue
from pipeline.errors import PipelineError
from pipeline.generation.schema import load_canonical
from pipeline.generation.validate import parse, validate
from pipeline.providers.openai_compat import _retry_after, _usage
from pipeline.text import md_escape
from pipeline.untrusted import MAX_COUNT, clean
from tests.conftest import FIXTURE, REPO

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
CAT = load_catalogue(FIXTURE / "config")
PAIR = CAT.pair("image-classification,image-segmentation")
CANONICAL, _ = load_canonical(REPO / "schemas")
SCOPES = (("P1", "P2", "P3"), ("P4", "P5", "P6"))

# Text with what breaks naive code: surrogates, controls, bidi overrides, markup, huge runs.
nasty_text = st.lists(
    st.one_of(
        st.characters(codec=None),
        st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\x07", "\u202e", "\u2066", "<", ">", "&", "@", "~", "*",
                         "_", "[", "]", "|", "#", "`", ":", "\\", "\n", "\t", "http://", "www.", "</source>"]),
    ),
    max_size=40,
).map("".join)  # fmt: skip
numbers = st.one_of(st.integers(min_value=-(10**20), max_value=10**20),
                    st.floats(allow_nan=True, allow_infinity=True))  # fmt: skip
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, nasty_text),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(nasty_text, children, max_size=5)),
    max_leaves=40,
)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, UnicodeEncodeError):
        return json.dumps(value)


def _checked(text: str) -> None:
    """parse + validate: either problems (each with a message) or data whose problems are listed; never a raise."""
    data, problems = parse(text)
    if data is None:
        assert problems and all(p.message for p in problems)
        return
    assert problems == []
    assert not any(ch in json.dumps(data, ensure_ascii=False) for ch in "\x00\x1b\x07\u202e\u2066")
    found = validate(data, PAIR, CANONICAL, SCOPES)
    assert all(isinstance(p.path, str) and p.message for p in found)


@FUZZ
@given(json_values)
def test_any_model_answer_gives_problems_or_data_never_a_traceback(value: Any) -> None:
    _checked(_dumps(value if isinstance(value, dict) else {"x": value}))


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b", "verdict", "faq", "alternatives", "extra"]), json_values, max_size=6))
def test_answers_shaped_like_a_comparison_never_crash_validation(value: dict[str, Any]) -> None:
    _checked(_dumps(value))


@FUZZ
@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x-ratelimit-reset-requests",
                                        "x-ratelimit-reset-tokens"]), nasty_text, max_size=4))  # fmt: skip
def test_any_rate_limit_header_gives_a_bounded_wait_or_none(headers: dict[str, str]) -> None:
    wait = _retry_after(SimpleNamespace(headers=headers))
    assert wait is None or 0 <= wait < 86_400


@FUZZ
@given(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"]),
    st.one_of(numbers, st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens"]), numbers)))))  # fmt: skip
def test_any_usage_block_gives_bounded_counts(value: Any) -> None:
    usage = _usage(value)
    for n in (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens):
        assert isinstance(n, int) and 0 <= n <= MAX_COUNT


toml_text = nasty_text.filter(lambda t: "\ud800" not in t and "\udfff" not in t)  # TOML files are UTF-8
toml_scalars = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=False),
                         st.booleans(), toml_text)  # fmt: skip
toml_values = st.recursive(toml_scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                             st.dictionaries(st.sampled_from(
                                                                 ["id", "name", "kind", "levels", "weight", "vendor",
                                                                  "description", "aliases", "sources", "brief",
                                                                  "tie_band", "dimensions", "label", "url", "path",
                                                                  "text", "higher_is_better"]), c, max_size=6)),
                           max_leaves=20)  # fmt: skip


def _toml(value: Any) -> str:
    """A TOML document for a dict (inline tables for nested values)."""

    def v(x: Any) -> str:
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, int | float):
            return repr(x) if not (isinstance(x, float) and math.isinf(x)) else ("inf" if x > 0 else "-inf")
        if isinstance(x, str):
            return json.dumps(x)
        if isinstance(x, list):
            return "[" + ", ".join(v(i) for i in x) + "]"
        return "{" + ", ".join(f"{json.dumps(k)} = {v(i)}" for k, i in x.items()) + "}"

    return "\n".join(f"{json.dumps(k)} = {v(x)}" for k, x in value.items()) + "\n"


@FUZZ
@given(category=st.dictionaries(st.sampled_from(["id", "name", "tie_band", "dimensions"]), toml_values, max_size=4),
       subjects=st.lists(toml_values, max_size=3))  # fmt: skip
def test_any_catalogue_file_loads_or_is_a_one_line_error(tmp_path_factory, category: dict, subjects: list) -> None:
    root = tmp_path_factory.mktemp("cat")
    shutil.copytree(FIXTURE / "config", root / "config")
    text = _toml({"category": category, "subjects": subjects})  # may be malformed TOML too: that is tested as well
    (root / "config/catalogue/zz-fuzz.toml").write_text(text, encoding="utf-8")
    try:
        load_catalogue(root / "config")
    except PipelineError as exc:
        assert "\n" not in str(exc).strip(), str(exc)


@FUZZ
@given(nasty_text)
def test_markdown_text_is_inert_under_githubs_renderer(text: str) -> None:
    import cmarkgfm

    html = cmarkgfm.github_flavored_markdown_to_html(f"Before {md_escape(text)} after.")
    tags = {chunk.split(">", 1)[0].split()[0] for chunk in html.split("<")[1:] if chunk and chunk[0] != "/"}
    assert tags <= {"p"}, (text, html)
    assert all(ch not in html for ch in "\x00\x1b\x07\u202e"), html
    assert clean(text) == "" or "after." in html


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real export of a store with one generation, to be tampered with."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from tests.conftest import make_workspace
    from tests.fakeserver import FakeLLM

    server = FakeLLM().start()
    try:
        ws = make_workspace(tmp_path_factory.mktemp("ws") / "ws", server.base_url)
        os.environ["PIPELINE_TEST_KEY"] = "sk-test"
        runner = CliRunner()
        assert runner.invoke(cli, ["--workspace", str(ws), "run", "--pair", PAIR.key]).exit_code == 0
        out = ws / "export"
        assert runner.invoke(cli, ["--workspace", str(ws), "store", "export", str(out)]).exit_code == 0
        return out
    finally:
        server.stop()


@settings(max_examples=max(5, EXAMPLES // 5), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(json_values)
def test_a_tampered_export_is_imported_whole_or_refused_in_one_line(exported: Path, tmp_path_factory, value) -> None:
    import duckdb

    from pipeline.store import Store
    from pipeline.store.exchange import import_

    folder = tmp_path_factory.mktemp("tampered") / "export"
    shutil.copytree(exported, folder)
    con = duckdb.connect()
    data = json.dumps(value).replace("'", "''")  # ASCII JSON: lone surrogates as \\ud800 escapes
    source, target = folder / "generations.parquet", folder / "g.parquet"
    con.execute(f"COPY (SELECT * REPLACE ('{data}' AS data, 'g-fuzz' AS id) FROM read_parquet('{source}')) "
                f"TO '{target}' (FORMAT parquet)")  # fmt: skip
    con.close()
    shutil.move(target, source)
    store = Store(tmp_path_factory.mktemp("store") / "s.duckdb")
    try:
        import_(store, [folder])
    except PipelineError as exc:
        assert "\n" not in str(exc) and "nothing was imported" in str(exc)
        with store.session() as s:
            assert s.execute("SELECT count(*) FROM generations").fetchone()[0] == 0
