from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
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
        return CliRunner().invoke(cli, ["--workspace", str(workspace), *args], catch_exceptions=False)

    yield invoke
