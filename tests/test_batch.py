"""Batch runs against the scriptable server: statuses, resume, re-runs, concurrency beside `run`, Ctrl-C."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import add_category, cli, db
from tests.fakeserver import FakeLLM


def pair_of(request: dict) -> str:
    text = request["messages"][1]["content"]
    names = sorted({w for w in text.split("(by Acme)")[0].split() if w.isdigit()})
    return "-".join(names)


def test_batch_of_55_with_faults_ends_with_exactly_the_right_statuses(workspace: Path, fake: FakeLLM) -> None:
    add_category(workspace)  # 11 subjects: 11 profiles, then the 55 pairs' texts
    rng = random.Random(1234)
    lock = threading.Lock()
    streak: dict[str, int] = {}

    def chooser(request: dict) -> dict | None:
        user = request["messages"][1]["content"]
        if user.startswith("Rate Widget 03 "):
            return {"kind": "schema_invalid"}  # one profile that never gets a valid answer
        key = user[:80]  # names the unit
        with lock:
            roll = rng.random()
            # at most 2 faults in a row per unit (fewer than the 3 transport retries): a unit that fails
            # anyway shows a bug, not bad luck
            streak[key] = streak.get(key, 0) + 1 if roll < 0.20 else 0
            if streak[key] > 2:
                streak[key], roll = 0, 1.0
        if roll < 0.10:
            return {"kind": "status", "status": 429, "headers": {"retry-after": "0.2"}}
        if roll < 0.15:
            return {"kind": "status", "status": 500}
        if roll < 0.20:
            return {"kind": "invalid_json"}
        return None

    fake.chooser = chooser
    result = cli(workspace, "batch", "--category", "widgets", "--concurrency", "8", "--json", "-")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    failures = [(i["pair_key"], i["error"]) for i in summary["items"] if i["status"] != "generated"]
    # 10 profiles and the 45 pairs of subjects with one are generated; the broken profile and its 10 pairs fail
    assert summary["counts"] == {"generated": 55, "fresh": 0, "failed": 11, "skipped": 0, "pending": 0}, failures
    failed = {i["pair_key"]: i for i in summary["items"] if i["status"] == "failed"}
    broken = failed.pop("widgets/widget-03")
    assert "still invalid after 3 attempts" in broken["error"] and broken["attempts"] == 3
    assert all("widget-03" in key and "its profile widgets/widget-03 failed" in i["error"] for key, i in failed.items())
    assert len(failed) == 10
    # the store: one generation per generated unit, none for the failed ones, the ledger agrees
    assert db(workspace, "SELECT count(*), count(DISTINCT pair_key) FROM generations") == [(55, 55)]
    assert db(workspace, "SELECT status, count(*) FROM run_items GROUP BY status ORDER BY status") == [
        ("failed", 11), ("generated", 55)
    ]  # fmt: skip
    assert len(list((workspace / "reports/widgets").glob("*-vs-*.md"))) == 45
    assert "[1/66]" not in result.stdout and "widget" in result.stderr  # per-item lines go to stderr

    calls = fake.calls
    again = cli(workspace, "batch", "--category", "widgets", "--resume")
    assert again.returncode == 1  # the broken profile is still broken...
    assert fake.calls - calls == 3  # ...and it is the only unit called again (3 attempts)
    assert "55 fresh, 11 failed" in again.stdout


def test_identical_rerun_makes_zero_calls_and_max_age_regenerates(workspace: Path, fake: FakeLLM) -> None:
    batch = workspace / "config/batches/cv.toml"
    batch.write_text('name = "cv"\n[[select]]\ncategory = "computer-vision"\n[freshness]\nmax_age = "1s"\n')
    first = cli(workspace, "batch", str(batch))
    assert first.returncode == 0, first.stderr
    assert fake.calls == 10  # 4 profiles, then 6 pairs' texts
    batch.write_text('name = "cv"\n[[select]]\ncategory = "computer-vision"\n[freshness]\nmax_age = "7d"\n')
    second = cli(workspace, "batch", str(batch))
    assert second.returncode == 0 and "0 generated, 10 fresh" in second.stdout
    assert fake.calls == 10
    time.sleep(2.1)
    batch.write_text('name = "cv"\n[[select]]\ncategory = "computer-vision"\n[freshness]\nmax_age = "2s"\n')
    third = cli(workspace, "batch", str(batch), "--dry-run")
    # the 4 profiles are too old; the 6 pairs' texts are written once the profiles are new
    assert "10 to generate, 6 fresh" not in third.stdout and "10 to generate, 0 fresh" in third.stdout, third.stdout
    assert fake.calls == 10
    runs = cli(workspace, "runs")
    assert runs.returncode == 0 and runs.stdout.count(" cv ") == 2


def test_budget_skips_the_rest(workspace: Path, fake: FakeLLM) -> None:
    (workspace / "config/prices.toml").write_text(
        '[models."fake-model"]\ninput_per_mtok = 1000\noutput_per_mtok = 1000\n'
    )
    result = cli(workspace, "batch", "--category", "computer-vision", "--concurrency", "1", "--max-cost", "0.2")
    assert result.returncode == 1
    assert "budget of $0.2 was reached" in result.stderr
    # 150 tokens = $0.15 per call: two profiles, then the budget; the pairs that needed a skipped profile wait too
    assert "2 generated, 0 fresh, 0 failed, 8 skipped" in result.stdout, result.stdout
    assert fake.calls == 2


def test_batch_and_on_demand_run_at_once_both_succeed(workspace: Path, fake: FakeLLM) -> None:
    fake.default = {"kind": "valid", "delay": 0.05}
    batch = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--workspace", str(workspace), "batch", "--category", "databases"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    single = cli(workspace, "run", "--pair", "django,flask")
    _out, err = batch.communicate(timeout=120)
    assert single.returncode == 0, single.stderr
    assert batch.returncode == 0, err
    assert "Traceback" not in err + single.stderr
    # databases: 5 profiles and 10 pairs' texts; django,flask: 2 profiles and its texts
    assert db(workspace, "SELECT count(*) FROM generations") == [(18,)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_what_arrived_and_resume_finishes(workspace: Path, fake: FakeLLM, sig: int) -> None:
    add_category(workspace)
    fake.default = {"kind": "valid", "delay": 0.25}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace", str(workspace), "batch",
                             "--category", "widgets", "--concurrency", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while fake.calls < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)  # Ctrl-C, or a scheduler stopping the job
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "finish with: pipeline batch --category widgets --concurrency 2 --resume" in err
    stored = db(workspace, "SELECT count(*) FROM generations")[0][0]
    generated = db(workspace, "SELECT count(*) FROM run_items WHERE status = 'generated'")[0][0]
    assert stored == generated >= 5  # nothing that arrived was lost, the ledger agrees with the store
    calls_before = fake.calls
    fake.default = {"kind": "valid"}
    resumed = cli(workspace, "batch", "--category", "widgets", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert db(workspace, "SELECT count(*), count(DISTINCT pair_key) FROM generations") == [(66, 66)]
    # repeated calls: at most the two that were in flight when Ctrl-C came (11 profiles, 55 pairs' texts)
    assert fake.calls - calls_before <= 66 - stored + 2
    assert calls_before <= stored + 2 + 1
    md = list((workspace / "reports/widgets").glob("*-vs-*.md"))
    assert len(md) == 55 and not list((workspace / "reports/widgets").glob(".*.tmp"))


@pytest.mark.parametrize(("content", "message"), [
    ("name = 'x'\n", "names no pairs"),
    ("name = 'x'\npairs = ['image-classification,nope']\n", "unknown subject 'nope'"),
    ("name = 'x'\npairs = ['django,flask']\n[freshness]\nmax_age = 'soon'\n", "max_age 'soon' must look like"),
    ("name = 'x'\nbogus = 1\n", "bad.toml:2: the batch file: unknown key `bogus`"),
    ("name = 'x'\npairs = ['mysql,postgresql']\n[limits]\nconcurency = 2\n",
     "unknown key `concurency`; did you mean `concurrency`?"),
    ("name = \n", "malformed TOML"),
])  # fmt: skip
def test_bad_batch_files(workspace: Path, content: str, message: str) -> None:
    path = workspace / "config/batches/bad.toml"
    path.write_text(content)
    result = cli(workspace, "batch", str(path))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
