from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli as cli_group
from tests.fakeserver import FakeLLM

REPO = Path(__file__).resolve().parent.parent
TEST_KEY = "sk-test-DO-NOT-LEAK-3f9a7c1e"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's keys, endpoints or pipeline settings."""
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "PIPELINE_WORKSPACE",
        "PIPELINE_STORE",
        "PIPELINE_PROVIDER",
        "PIPELINE_MODEL",
        "PIPELINE_LOCK_TIMEOUT",
        "PIPELINE_JUDGE",
        "PIPELINE_OFFLINE",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()
    # Every request the pipeline sent, and every answer the server gave, follows OpenAI's published types.
    assert not server.violations, "\n".join(dict.fromkeys(server.violations))


def make_workspace(root: Path, base_url: str | None = None, extra: str = "") -> Path:
    for name in ("config", "prompts", "schemas"):
        shutil.copytree(REPO / name, root / name)
    profile = ""
    if base_url:
        profile = f"""
provider = "fake"

[providers.fake]
kind = "openai"
base_url = "{base_url}"
model = "fake-model"
dialect = "json_schema"
api_key_env = "PIPELINE_TEST_KEY"
"""
    # `extra` comes first: its top-level keys must precede every table.
    (root / "config" / "pipeline.toml").write_text(
        extra
        + profile
        + """
[transport]
max_retries = 3
deadline_s = 20
timeout_s = 5
connect_timeout_s = 2
backoff_initial_s = 0.01
backoff_max_s = 0.05
retry_after_cap_s = 2
""",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def workspace(tmp_path: Path, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_TEST_KEY", TEST_KEY)
    return make_workspace(tmp_path / "ws", fake.base_url)


@pytest.fixture
def run_cli(workspace: Path) -> Iterator[object]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli_group, ["--workspace", str(workspace), *args], catch_exceptions=False)

    yield invoke


def cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline --workspace WS ARGS...` run in this process, as a finished process would report it.

    An exception the command did not handle is a crash: its traceback lands on stderr and the
    exit code is 1, as for `python -m pipeline`. Tests that need a real process (signals, kills,
    several processes at once, what a fresh interpreter imports) use `cli_process`.
    """
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(cli_group, ["--workspace", str(ws), *args], catch_exceptions=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(*result.exc_info))
        code = 1
    return subprocess.CompletedProcess(["pipeline", *args], code, result.stdout, stderr)


def cli_process(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline --workspace WS ARGS...` in a new process."""
    return subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(ws), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def db(ws: Path, sql: str) -> list[tuple]:
    """Rows of a query on the workspace's store, opened read-only."""
    con = duckdb.connect(str(ws / ".pipeline/store.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def add_category(ws: Path, subjects: int = 11) -> None:
    """A `widgets` category of `subjects` made-up subjects (11: 55 pairs)."""
    lines = ['[category]\nid = "widgets"\nname = "Widgets"\n',
             '[[category.dimensions]]\nname = "Speed"\nkind = "level"\nlevels = ["Slow", "Fast"]\n',
             '[[category.dimensions]]\nname = "Notes"\nkind = "text"\n']  # fmt: skip
    for i in range(subjects):
        lines.append(
            f'[[subjects]]\nid = "widget-{i:02d}"\nname = "Widget {i:02d}"\nvendor = "Acme"\n'
            f'description = "Widget number {i} is a test subject."\n'
        )
    (ws / "config/catalogue/widgets.toml").write_text("\n".join(lines))
