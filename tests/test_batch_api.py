"""`pipeline batch --via openai-batch`: submit, collect, re-ask, split, cancel and restart, against a
local server speaking the Files and Batches endpoints to the real `openai` SDK."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from pipeline.batch.files import custom_id
from tests.conftest import add_category, cli, db
from tests.fakeserver import FakeLLM

SUBJECTS = 6  # their profiles go to the Batch API
PAIRS = 15  # their pairs' texts are asked directly once the profiles are collected
UNITS = SUBJECTS + PAIRS


@pytest.fixture
def ws(workspace: Path) -> Path:
    add_category(workspace, 6)
    with (workspace / "config/prices.toml").open("a") as prices:
        prices.write('\n[models."fake-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n')
    return workspace


def batch_settings(ws: Path, text: str) -> None:
    with (ws / "config/pipeline.toml").open("a") as cfg:
        cfg.write(f"\n[batch_api]\n{text}\n")


def submit(ws: Path, *extra: str) -> str:
    done = cli(ws, "batch", "--category", "widgets", "--via", "openai-batch", *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def lines_of(fake: FakeLLM, file_id: str) -> list[dict]:
    return [json.loads(line) for line in fake.api.files[file_id].decode().splitlines()]


def statuses(ws: Path) -> dict[str, int]:
    return dict(db(ws, "SELECT status, count(*) FROM run_items GROUP BY status"))


# A batch answer costs half of 100 prompt + 50 completion tokens at $1 / $2 per million.
BATCH_COST = (100 * 1.0 + 50 * 2.0) / 1e6 * 0.5
DIRECT_COST = (100 * 1.0 + 50 * 2.0) / 1e6


def profile_of(text: str, name: str) -> bool:
    """Whether a request's user message asks for the profile of `name` (profiles begin "Rate <name> ")."""
    return text.startswith(f"Rate {name} ")


def test_submit_then_collect_stores_every_answer_at_the_discounted_price(ws: Path, fake: FakeLLM) -> None:
    out = submit(ws)
    assert "6 submitted to the Batch API in 1 batch(es)" in out
    assert fake.calls == 0  # nothing answered yet: the provider has the batch
    (file_id,) = [f for f in fake.api.files]
    lines = lines_of(fake, file_id)
    assert len(lines) == SUBJECTS
    cache_keys = dict(db(ws, "SELECT pair_key, cache_key FROM api_requests"))
    assert sorted(cache_keys) == [f"widgets/widget-{i:02d}" for i in range(SUBJECTS)]
    for line in lines:
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        assert line["body"]["model"] == "fake-model" and line["body"]["response_format"]["type"] == "json_schema"
    assert sorted(line["custom_id"] for line in lines) == sorted(custom_id(p, k, 1) for p, k in cache_keys.items())
    assert db(ws, "SELECT status FROM runs") == [("submitted",)]
    (batch_id,) = db(ws, "SELECT batch_id FROM api_batches")[0]
    assert fake.api.batches[batch_id]["metadata"]["pipeline_run"]

    summary = ws / "collect.json"
    done = cli(ws, "batch", "--collect", "--json", str(summary))
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(summary.read_text())
    assert run["status"] == "finished" and run["counts"] == {"generated": UNITS}
    assert run["batches"][0]["batch_id"] == batch_id and run["batches"][0]["completed"] == SUBJECTS
    assert round(run["cost"], 9) == round(SUBJECTS * BATCH_COST + PAIRS * DIRECT_COST, 9)
    assert "finished; 21 generated, 0 fresh, 0 failed, 0 pending" in done.stdout
    assert fake.calls == UNITS  # each profile once, inside the batch; each pair's texts once, directly
    assert db(ws, "SELECT count(*) FROM generations") == [(UNITS,)]
    costs = {round(c, 9) for (c,) in db(ws, "SELECT cost FROM run_items")}
    assert costs == {round(BATCH_COST, 9), round(DIRECT_COST, 9)}
    assert db(ws, "SELECT DISTINCT status FROM runs") == [("finished",)]
    assert len(list((ws / "reports/widgets").glob("*-vs-*.html"))) == PAIRS
    assert not list((ws / ".pipeline/batch-api").glob("*/*.jsonl"))  # answer files cleaned up once stored

    again = cli(ws, "batch", "--collect")
    assert again.returncode == 0 and "no Batch API run is waiting" in again.stdout
    out = submit(ws)  # the same batch again: everything is fresh, nothing is uploaded
    assert "0 submitted" in out and "21 fresh" in out
    assert fake.api.creates == 1 and fake.api.uploads == 1


def test_large_input_is_split_into_several_batches(ws: Path, fake: FakeLLM) -> None:
    batch_settings(ws, "max_requests = 4")
    out = submit(ws)
    assert "in 2 batch(es)" in out
    assert fake.api.creates == 2
    sizes = sorted(len(lines_of(fake, b["input_file_id"])) for b in fake.api.batches.values())
    assert sizes == [2, 4]
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 0, done.stderr
    assert statuses(ws) == {"generated": UNITS}


def test_expired_batch_keeps_partial_results_and_reasks_the_rest_directly(ws: Path, fake: FakeLLM) -> None:
    fake.api.mode, fake.api.expire_after = "expire", 5
    seen: dict[str, int] = {}

    def chooser(request: dict) -> dict | None:  # one profile's first answer fails validation
        if profile_of(request["messages"][1]["content"], "Widget 00"):
            seen["00"] = seen.get("00", 0) + 1
            return {"kind": "schema_invalid"} if seen["00"] == 1 else None
        return None

    fake.chooser = chooser
    submit(ws)
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 0, done.stderr
    assert statuses(ws) == {"generated": UNITS}
    in_batch = fake.api.batches["batch_0001"]["answered"]
    assert in_batch == 5
    # 5 profiles in the batch, the expired one asked directly, 1 re-ask of the invalid one, then the 15 texts
    assert fake.calls == 5 + 1 + 1 + PAIRS
    costs = sorted(round(c, 9) for (c,) in db(ws, "SELECT cost FROM run_items"))
    assert costs.count(round(BATCH_COST, 9)) == 4  # the profiles answered in the batch, but the invalid one
    expired = db(ws, "SELECT count(*) FROM attempts WHERE error LIKE '%batch_expired%'")[0][0]
    assert expired == SUBJECTS - 5  # the expired answer is kept as a failed attempt
    attempts = db(ws, "SELECT attempts FROM generations WHERE pair_key = 'widgets/widget-00'")
    assert attempts == [(2,)]


def test_error_file_and_invalid_answers_go_to_a_follow_up_batch(ws: Path, fake: FakeLLM) -> None:
    batch_settings(ws, 'reask = "batch"')
    counts: dict[str, int] = {}

    def chooser(request: dict) -> dict | None:
        text = request["messages"][1]["content"]
        for key, first in (("Widget 02", {"kind": "status", "status": 500, "message": "overloaded"}),
                           ("Widget 03", {"kind": "schema_invalid"})):  # fmt: skip
            if profile_of(text, key):
                counts[key] = counts.get(key, 0) + 1
                return first if counts[key] == 1 else None
        return None

    fake.chooser = chooser
    submit(ws)
    first = cli(ws, "batch", "--collect")
    assert first.returncode == 75, first.stderr  # a follow-up batch is running
    assert "still running" in first.stderr
    assert fake.api.creates == 2
    follow = fake.api.batches["batch_0002"]
    assert len(follow["lines"]) == 2
    assert {line["custom_id"].rsplit("-", 1)[1] for line in follow["lines"]} == {"r2"}
    reasked = [line["body"]["messages"] for line in follow["lines"] if len(line["body"]["messages"]) > 2]
    assert len(reasked) == 1  # the invalid answer is shown back with its problems; the failed call is repeated
    assert reasked[0][-2]["role"] == "assistant" and "dimensions" in reasked[0][-1]["content"]
    assert statuses(ws) == {"generated": SUBJECTS - 2, "pending": 2 + PAIRS}  # the pairs wait for the profiles

    second = cli(ws, "batch", "--collect")
    assert second.returncode == 0, second.stderr
    assert statuses(ws) == {"generated": UNITS}
    assert db(ws, "SELECT attempts FROM generations WHERE pair_key = 'widgets/widget-03'") == [(2,)]
    errors = db(ws, "SELECT error FROM attempts WHERE pair_key = 'widgets/widget-02' AND outcome = 'transport_error'")
    assert len(errors) == 1 and "overloaded" in errors[0][0]


def test_restart_between_submit_and_collect_creates_no_second_batch(ws: Path, fake: FakeLLM) -> None:
    submit(ws)
    # As if the submitting process had died after the provider created the batch and before the
    # batch id was written down: collect must find that batch again, not pay for a second one.
    con = duckdb.connect(str(ws / ".pipeline/store.duckdb"))
    con.execute("UPDATE api_batches SET batch_id = NULL, status = 'uploaded'")
    con.close()
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 0, done.stderr
    assert "adopting it" in done.stderr
    assert fake.api.creates == 1
    assert statuses(ws) == {"generated": UNITS}


def test_submission_that_stopped_before_the_batch_existed_is_finished_by_collect(ws: Path, fake: FakeLLM) -> None:
    fake.api.fail_creates = 1  # the provider refuses the first create (HTTP 503)
    failed = cli(ws, "batch", "--category", "widgets", "--via", "openai-batch")
    assert failed.returncode != 0
    assert failed.stderr.count("\n") == 1 and "503" in failed.stderr
    assert db(ws, "SELECT status, batch_id IS NULL, input_file_id IS NOT NULL FROM api_batches") == [
        ("uploaded", True, True)
    ]
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 0, done.stderr
    assert fake.api.uploads == 1 and fake.api.creates == 1
    assert statuses(ws) == {"generated": UNITS}


def test_cancel_keeps_what_was_answered_and_resume_submits_the_rest(ws: Path, fake: FakeLLM) -> None:
    fake.api.mode, fake.api.answer_before_cancel = "hold", 3
    submit(ws)
    waiting = cli(ws, "batch", "--collect")
    assert waiting.returncode == 75 and "in_progress, 0 of 6 answered" in waiting.stderr
    cancelled = cli(ws, "batch", "--cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert fake.api.batches["batch_0001"]["status"] == "cancelling"
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 1, done.stderr
    assert "cancelled; 3 generated" in done.stdout
    assert statuses(ws) == {"generated": 3, "pending": SUBJECTS - 3 + PAIRS}
    assert db(ws, "SELECT count(*) FROM generations") == [(3,)]

    fake.api.mode = "complete"
    out = submit(ws, "--resume")
    assert "3 submitted" in out and "3 fresh" in out
    assert cli(ws, "batch", "--collect").returncode == 0
    assert db(ws, "SELECT count(DISTINCT pair_key) FROM generations") == [(UNITS,)]


def test_rejected_batch_fails_its_items_with_the_providers_reason(ws: Path, fake: FakeLLM) -> None:
    fake.api.mode = "fail"
    submit(ws)
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 1
    assert statuses(ws) == {"failed": UNITS}
    profiles = {e for (e,) in db(ws, "SELECT error FROM run_items WHERE pair_key LIKE 'widgets/%'")}
    assert len(profiles) == 1 and "the input was rejected" in profiles.pop()
    pairs = {e for (e,) in db(ws, "SELECT error FROM run_items WHERE pair_key LIKE '%,%'")}
    assert all("failed: the provider rejected batch" in e for e in pairs), pairs
    assert fake.calls == 0  # a rejected input is not re-asked one by one, and no texts are written without profiles


def test_inputs_changed_since_submission_fail_that_item_only(ws: Path, fake: FakeLLM) -> None:
    submit(ws)
    widgets = ws / "config/catalogue/widgets.toml"
    widgets.write_text(widgets.read_text().replace("Widget number 4 is", "Widget number 4, rebuilt, is"))
    done = cli(ws, "batch", "--collect")
    assert done.returncode == 1
    # widget 04's profile fails, and its 5 pairs with it; 5 profiles and 10 pairs are written
    assert statuses(ws) == {"generated": 15, "failed": 6}
    errors = {e for (e,) in db(ws, "SELECT error FROM run_items WHERE status = 'failed'")}
    assert all("inputs changed since the batch was submitted" in e for e in errors)


def test_batch_api_refuses_the_staged_local_model(ws: Path) -> None:
    done = cli(ws, "batch", "--category", "widgets", "--via", "openai-batch", "--provider", "local")
    assert done.returncode == 2
    assert "needs an OpenAI-compatible provider" in done.stderr and done.stderr.count("\n") == 1


def test_collect_wait_polls_until_the_batch_is_done(ws: Path, fake: FakeLLM) -> None:
    fake.api.polls_before_done = 2
    submit(ws)
    done = cli(ws, "batch", "--collect", "--wait", "--poll", "0.05")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("in_progress, 0 of 6 answered") == 2
    assert statuses(ws) == {"generated": UNITS}


def test_budget_refuses_to_submit_a_batch_estimated_above_it(ws: Path, fake: FakeLLM) -> None:
    done = cli(ws, "batch", "--category", "widgets", "--via", "openai-batch", "--max-cost", "0.001")
    assert done.returncode == 2
    assert "over the budget of $0.001" in done.stderr and done.stderr.count("\n") == 1
    assert fake.api.uploads == 0 and fake.api.creates == 0
    assert not (ws / ".pipeline/batch-api").exists()
