"""Settings: precedence flag > environment > config/pipeline.toml > built-in default."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import choose_profile, load_settings, resolve_workspace
from pipeline.workspace import Workspace
from tests.conftest import make_workspace

CONFIG = """
provider = "cfg"

[paths]
store = "from-config.duckdb"

[store]
lock_timeout_s = 12

[providers.cfg]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "model-from-config"

[providers.env]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "model-of-env-profile"

[providers.flag]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "model-of-flag-profile"
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws", extra=CONFIG)


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "bare")
    return root


def test_built_in_defaults(bare: Path) -> None:
    s = load_settings(bare)
    assert s.store_path == bare / ".pipeline/store.duckdb"
    assert s.lock_timeout_s == 30.0 and s.default_provider == "auto" and s.fetch.offline is False
    profile, why = choose_profile(s, None, None)
    assert profile.name == "local" and "no OPENAI_API_KEY" in why


def test_workspace_file_beats_defaults(ws: Path) -> None:
    s = load_settings(ws)
    assert s.store_path == ws / "from-config.duckdb" and s.lock_timeout_s == 12.0
    profile, _ = choose_profile(s, None, None)
    assert (profile.name, profile.model) == ("cfg", "model-from-config")


def test_environment_beats_workspace_file(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_STORE", "from-env.duckdb")
    monkeypatch.setenv("PIPELINE_LOCK_TIMEOUT", "7")
    monkeypatch.setenv("PIPELINE_PROVIDER", "env")
    monkeypatch.setenv("PIPELINE_MODEL", "model-from-env")
    monkeypatch.setenv("PIPELINE_OFFLINE", "1")
    s = load_settings(ws)
    assert s.store_path == ws / "from-env.duckdb" and s.lock_timeout_s == 7.0 and s.fetch.offline is True
    profile, _ = choose_profile(s, None, None)
    assert (profile.name, profile.model) == ("env", "model-from-env")


def test_flags_beat_environment(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_STORE", "from-env.duckdb")
    monkeypatch.setenv("PIPELINE_PROVIDER", "env")
    monkeypatch.setenv("PIPELINE_MODEL", "model-from-env")
    monkeypatch.setenv("PIPELINE_WORKSPACE", str(ws.parent / "nowhere"))
    assert resolve_workspace(str(ws)) == ws.resolve()  # --workspace beats PIPELINE_WORKSPACE
    s = load_settings(ws, store="from-flag.duckdb")
    assert s.store_path == ws / "from-flag.duckdb"
    profile, _ = choose_profile(s, "flag", "model-from-flag")
    assert (profile.name, profile.model) == ("flag", "model-from-flag")
    # --offline wins even when neither the file nor the environment asks for it
    assert Workspace(str(ws), offline=True).settings.fetch.offline is True
    assert Workspace(str(ws)).settings.fetch.offline is False


def test_an_api_key_in_the_environment_picks_openai_only_when_nothing_is_configured(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    profile, why = choose_profile(load_settings(bare), None, None)
    assert profile.name == "openai" and why == "OPENAI_API_KEY is set"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("PIPELINE_LOCK_TIMEOUT", "soon", "PIPELINE_LOCK_TIMEOUT must be a number of seconds, not 'soon'"),
        ("PIPELINE_PROVIDER", "nope", "unknown provider 'nope'; known: auto, "),
        ("PIPELINE_JUDGE", "nope", "[grounding] judge 'nope' is not a provider profile"),
    ],
)
def test_a_bad_environment_value_is_a_one_line_error(
    ws: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings(ws)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_workspace_without_config_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config"):
        resolve_workspace(str(tmp_path))
