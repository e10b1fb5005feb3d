"""OpenAI models as users run them: reasoning models, refusals, content filters, rate-limit headers,
strict-schema limits, cached and reasoning tokens, Azure — over real HTTP, every body checked
against OpenAI's published types (tests/contract.py, in the `fake` fixture)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.catalogue import load_catalogue
from pipeline.generation.schema import load_canonical, specialise
from pipeline.generation.validate import validate
from pipeline.models import Category, Dimension, Pair, Subject, Usage
from pipeline.providers import strict
from pipeline.providers.capabilities import detect
from pipeline.providers.openai_compat import _duration, _retry_after
from pipeline.providers.strict import for_dialect
from pipeline.settings import ProviderProfile
from tests import contract
from tests.conftest import FIXTURE, REPO
from tests.fakeserver import FakeLLM

PAIR = "image-classification,image-segmentation"
JS = Path("reports/computer-vision/image-classification-vs-image-segmentation.json")
MD = JS.with_suffix(".md")
CANONICAL, _ = load_canonical(REPO / "schemas")


def profile_extra(workspace: Path, text: str) -> None:
    cfg = workspace / "config/pipeline.toml"
    cfg.write_text(
        cfg.read_text().replace('api_key_env = "PIPELINE_TEST_KEY"', f'api_key_env = "PIPELINE_TEST_KEY"\n{text}')
    )


@pytest.mark.parametrize("model", ["gpt-5-mini", "o3-mini"])
def test_reasoning_models_get_max_completion_tokens_and_no_sampling(run_cli, fake: FakeLLM, model: str) -> None:
    result = run_cli("run", "--pair", PAIR, "--model", model)
    assert result.exit_code == 0, result.output
    body = fake.requests[0]
    assert body["model"] == model and body["max_completion_tokens"] == 1400 + 8192
    assert not {"max_tokens", "temperature", "top_p", "presence_penalty"} & set(body)
    # the fake rejects max_tokens and temperature for these models, as OpenAI does: no call was refused
    assert fake.calls == 3


def test_reasoning_effort_and_overrides(run_cli, fake: FakeLLM, workspace: Path) -> None:
    profile_extra(workspace, 'reasoning_effort = "low"')
    assert run_cli("run", "--pair", PAIR, "--model", "o4-mini").exit_code == 0
    assert fake.requests[0]["reasoning_effort"] == "low" and fake.requests[0]["max_completion_tokens"] == 1400 + 4096
    # a different effort changes the request: a new generation, not a cache hit
    cfg = workspace / "config/pipeline.toml"
    cfg.write_text(cfg.read_text().replace('reasoning_effort = "low"', 'reasoning_effort = "high"'))
    assert "model called" in run_cli("run", "--pair", PAIR, "--model", "o4-mini").stdout


def test_a_reasoning_model_configured_as_a_chat_model_gets_advice(run_cli, fake: FakeLLM, workspace: Path) -> None:
    profile_extra(workspace, "reasoning = false")
    result = run_cli("run", "--pair", PAIR, "--model", "gpt-5-mini")
    assert result.exit_code == 2 and fake.calls == 1  # a capability error: never retried
    assert "does not accept max_tokens" in result.stderr and "set reasoning = true" in result.stderr


def test_capabilities_table() -> None:
    def caps(model: str, **kw):
        return detect(ProviderProfile(name="p", kind="openai", model=model, **kw))

    assert caps("o3").reasoning and caps("gpt-5").reasoning and caps("gpt-5.2-mini").reasoning
    assert not caps("gpt-5-chat-latest").reasoning and not caps("gpt-4o-mini").reasoning
    ft = caps("ft:gpt-4o-mini-2024-07-18:acme::abc123")
    assert ft.fine_tuned and not ft.reasoning and ft.max_tokens_param == "max_tokens"
    assert caps("llama3", base_url="http://127.0.0.1:11434/v1").family == "other"  # no guessing for other servers
    assert caps("o3-mini", base_url="http://127.0.0.1:4000/v1").reasoning  # a proxy in front of OpenAI
    assert not caps("o3-mini", base_url="http://127.0.0.1:4000/v1", reasoning=False).reasoning
    assert caps("m", max_tokens_param="max_completion_tokens").max_tokens_param == "max_completion_tokens"
    assert caps("gpt-5", sampling=True).sampling


def test_a_refusal_costs_one_call_and_ends_with_the_reason(run_cli, fake: FakeLLM) -> None:
    fake.push({"kind": "refusal", "reason": "I can't compare these."})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 1 and fake.calls == 1
    assert "refused: I can't compare these." in result.stderr
    attempts = run_cli("show", PAIR, "--attempts").stdout
    assert " refused " in attempts and "tokens=100+50" in attempts and "I can't compare these." in attempts


def test_a_profile_may_allow_re_asking_a_refusal(run_cli, fake: FakeLLM, workspace: Path) -> None:
    profile_extra(workspace, "reask_refusals = 1")
    fake.push({"kind": "refusal"})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0 and fake.calls == 4 and "2 attempts" in result.stdout


def test_a_refusal_in_a_batch_fails_that_item_with_the_reason(run_cli, fake: FakeLLM) -> None:
    fake.chooser = lambda body: {"kind": "refusal", "reason": "Not this one."} if body["messages"][1][
        "content"].startswith("Rate Object Detection ") else None  # fmt: skip
    result = run_cli("batch", "--category", "computer-vision")
    assert result.exit_code == 1
    assert result.stdout.count("failed") >= 1 and "refused: Not this one." in result.stdout
    run_id = result.stdout.split()[1]
    items = run_cli("runs", "--items", run_id).stdout
    # object detection's profile is refused, and its three pairs wait for it; 3 profiles and 3 pairs are made
    assert "refused: Not this one." in items and items.count(" generated ") == 6


def test_the_content_filter_is_re_asked_once_then_fails_clearly(run_cli, fake: FakeLLM) -> None:
    fake.push({"kind": "content_filter"})
    assert run_cli("run", "--pair", PAIR).exit_code == 0 and fake.calls == 4  # the first profile asked twice
    fake.push({"kind": "content_filter"}, {"kind": "content_filter"})
    result = run_cli("run", "--pair", PAIR, "--force")
    assert result.exit_code == 1 and fake.calls == 6
    assert "content filter stopped the answer twice" in result.stderr
    assert run_cli("show", PAIR, "--attempts").stdout.count(" content_filter ") == 3


def test_rate_limit_headers() -> None:
    assert [_duration(v) for v in ("20ms", "1s", "6m0s", "1h2m3.5s", "soon", "", "5")] == [
        0.02, 1.0, 360.0, 3723.5, None, None, None]  # fmt: skip

    def headers(**h: str):
        return SimpleNamespace(headers={k.replace("_", "-"): v for k, v in h.items()})

    assert _retry_after(headers(retry_after="soon")) is None  # never a traceback: the backoff applies
    assert _retry_after(headers(retry_after="Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # a date in the past
    assert _retry_after(headers(retry_after="2", x_ratelimit_reset_tokens="6m0s")) == 2.0
    assert _retry_after(headers(x_ratelimit_reset_requests="1s", x_ratelimit_reset_tokens="300ms")) == 1.0
    assert _retry_after(headers(retry_after="-3", x_ratelimit_reset_tokens="bogus")) is None


def test_an_unparseable_retry_after_falls_back_to_backoff_over_http(run_cli, fake: FakeLLM) -> None:
    fake.push({"kind": "status", "status": 429, "headers": {"retry-after": "soon"}})
    fake.push({"kind": "status", "status": 429, "headers": {"x-ratelimit-reset-tokens": "300ms"}})
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0 and fake.calls == 5  # the first profile's call tried three times, then two more
    assert fake.times[2] - fake.times[1] >= 0.3  # the reset header set the wait (capped at 2 s here)


@pytest.mark.parametrize(("server", "advice"), [("openai", "json_object"), ("llamacpp", "json_object_schema")])
def test_advice_for_a_rejected_dialect_depends_on_the_server(run_cli, fake, workspace, server, advice) -> None:
    profile_extra(workspace, f'server = "{server}"')
    fake.push({"kind": "status", "status": 400, "message": "Invalid parameter: 'response_format' of type "
               "'json_schema' is not supported with this model."})  # fmt: skip
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 2 and fake.calls == 1 and f'set dialect = "{advice}"' in result.stderr


def test_a_schema_limit_400_is_reported_as_that_limit(run_cli, fake: FakeLLM) -> None:
    fake.push({"kind": "status", "status": 400, "message": "Invalid schema for response_format 'comparison': "
               "the schema exceeds the maximum of 1000 enum values."})  # fmt: skip
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 2 and "over a structured-output limit" in result.stderr
    assert "enum_values" in result.stderr and "of 1000" in result.stderr


def _category(dims: int) -> Category:
    levels = ("Low", "Moderate", "High")
    return Category("big", "Big", tuple(Dimension(f"Dimension {i}", "level", levels=levels) for i in range(dims)))


def _pair(dims: int) -> Pair:
    return Pair(Subject("x", "Xeno", "V", "big", "d"), Subject("y", "Ypsilon", "V", "big", "d"), _category(dims))


def _scopes(passages: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    half = passages // 2
    return tuple(f"P{i}" for i in range(1, half + 1)), tuple(f"P{i}" for i in range(half + 1, passages + 1))


def test_strict_schemas_of_every_catalogue_pair_and_a_large_category_are_within_limits(capsys) -> None:
    cat = load_catalogue(FIXTURE / "config")
    sizes = {}
    for category in cat.categories:
        for pair in cat.pairs_in_category(category):
            schema = for_dialect(specialise(CANONICAL, pair, _scopes(48)), "json_schema")  # 24 passages a side
            sizes[pair.key] = strict.measure(schema)
            assert not sizes[pair.key].over(), (pair.key, sizes[pair.key])
    big = strict.measure(for_dialect(specialise(CANONICAL, _pair(9), _scopes(40)), "json_schema"))
    with capsys.disabled():
        worst = max(sizes.values(), key=lambda s: s.enum_values)
        print(f"\n  largest catalogue pair: {worst.as_text()}\n  9 dimensions, 40 passages: {big.as_text()}")
    assert not big.over()


def test_an_oversized_strict_schema_is_degraded_and_still_validated_locally(caplog) -> None:
    pair, scopes = _pair(30), _scopes(48)
    schema = for_dialect(specialise(CANONICAL, pair, scopes), "json_schema")
    assert strict.measure(schema).over()
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        sent, after = strict.fit(schema, where="openai")
        strict.fit(schema, where="openai")
    assert not after.over() and '"pattern": "^P[0-9]{1,3}$"' in json.dumps(sent)
    assert caplog.text.count("over OpenAI's limits") == 1  # said once
    fine, _ = strict.fit(for_dialect(specialise(CANONICAL, pair, scopes), "json_schema", fine_tuned=True),
                         fine_tuned=True)  # fmt: skip
    assert "pattern" not in json.dumps(fine) and "minItems" not in json.dumps(fine)
    # the degraded schema lets a cross-subject id through the grammar; local validation still refuses it
    from tests.fakeserver import synthesise

    data = synthesise(specialise(CANONICAL, pair, scopes))
    data["a"]["pros"][0]["sources"] = [scopes[1][0]]
    assert any("is not one of" in str(p) for p in validate(data, pair, CANONICAL, scopes))


def test_cached_and_reasoning_tokens_are_read_priced_and_shown(run_cli, fake: FakeLLM, workspace: Path) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 600,
        "total_tokens": 1600,
        "prompt_tokens_details": {"cached_tokens": 400},
        "completion_tokens_details": {"reasoning_tokens": 350},
    }
    fake.default = {"kind": "valid", "usage": usage}
    (workspace / "config/prices.toml").write_text(
        '[models."o4-mini"]\ninput_per_mtok = 1.0\ncached_input_per_mtok = 0.25\noutput_per_mtok = 4.0\n'
    )
    result = run_cli("run", "--pair", PAIR, "--model", "o4-mini")
    assert result.exit_code == 0
    assert "1000 prompt (400 cached) + 600 completion (350 reasoning)" in result.stdout
    # the page sums its three generations (two profiles and the texts)
    assert "3000 prompt (1200 cached) + 1800 completion (1050 reasoning) = 4800" in (workspace / MD).read_text()
    batch = run_cli("batch", "--category", "computer-vision", "--model", "o4-mini", "--force", "--json", "-")
    summary = json.loads(batch.stdout[batch.stdout.index("{") :])
    # 10 items (4 profiles, 6 pairs) of 600 uncached + 400 cached prompt tokens and 600 completion tokens:
    assert summary["cost"] == pytest.approx(10 * (600 * 1.0 + 400 * 0.25 + 600 * 4.0) / 1e6)
    items = run_cli("runs", "--items", summary["run_id"]).stdout
    assert "(cached 400, reasoning 350)" in items
    from pipeline.pricing import Price

    assert Price(1.0, 4.0).cost(Usage(1000, 600, 400, 350)) == pytest.approx((1000 + 2400) / 1e6)  # no cached rate


def test_nonsense_token_counts_count_as_zero(run_cli, fake: FakeLLM) -> None:
    fake.default = {"kind": "valid", "odd": True,  # deliberately not OpenAI's types
                    "usage": {"prompt_tokens": -5, "completion_tokens": 1e300, "total_tokens": 0}}  # fmt: skip
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0 and "0 tokens (0 prompt + 0 completion)" in result.stdout


def test_azure_openai_through_the_sdk_client(run_cli, fake: FakeLLM, workspace: Path, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-123")
    endpoint = fake.base_url.removesuffix("/v1")
    cfg = workspace / "config/pipeline.toml"
    cfg.write_text(
        cfg.read_text().replace('provider = "fake"', 'provider = "az"', 1)
        + f"""
[providers.az]
kind = "azure"
base_url = "{endpoint}"
api_version = "2024-10-21"
deployment = "cmp-deploy"
model = "gpt-4o-mini"
"""
    )
    result = run_cli("run", "--pair", PAIR)
    assert result.exit_code == 0, result.output
    assert fake.paths[0] == "/openai/deployments/cmp-deploy/chat/completions?api-version=2024-10-21"
    assert {k.lower(): v for k, v in fake.headers[0].items()}["api-key"] == "azure-key-123"
    assert json.loads((workspace / JS).read_text())["provenance"]["provider"] == "azure"
    assert "azure-key-123" not in "".join(p.read_text() for p in (workspace / "reports").rglob("*.*"))


def test_azure_profile_needs_its_endpoint_and_version(run_cli, workspace: Path) -> None:
    cfg = workspace / "config/pipeline.toml"
    cfg.write_text(cfg.read_text() + '\n[providers.az]\nkind = "azure"\nmodel = "gpt-4o-mini"\n')
    for args in (("list",), ("run", "--pair", PAIR, "--provider", "az")):  # a broken profile is a config error
        result = run_cli(*args)
        assert result.exit_code == 2 and "providers.az (azure) needs base_url" in result.stderr, result.output
        assert "api_version" in result.stderr


def test_the_contract_check_can_fail() -> None:
    bad = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
           "max_completion_tokens": 5, "temprature": 0.2, "response_format": {"type": "json_schema"}}  # fmt: skip
    found = contract.chat_request(bad)
    assert any("unknown parameter 'temprature'" in v for v in found)
    assert any("max_tokens and max_completion_tokens together" in v for v in found)
    assert any("response_format" in v for v in found)
    assert contract.chat_response({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "{}"}}]})  # fmt: skip
    assert contract.batch_line({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}})


def test_batch_api_lines_for_a_reasoning_model_follow_the_rules(run_cli, fake: FakeLLM, workspace: Path) -> None:
    result = run_cli("batch", "--category", "computer-vision", "--via", "openai-batch", "--model", "gpt-5-mini")
    assert result.exit_code == 0, result.output
    collected = run_cli("batch", "--collect")
    assert collected.exit_code == 0, collected.output
    body = fake.requests[0]
    assert "max_completion_tokens" in body and "temperature" not in body and time.time()
