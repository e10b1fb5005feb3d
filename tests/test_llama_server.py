"""Integration: the real `python -m llama_cpp.server` with the bundled model, the real SDK, real HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import CapabilityError
from pipeline.providers.local import bundled_model_path
from pipeline.providers.openai_compat import OpenAICompatProvider
from pipeline.settings import GenerationParams, ProviderProfile, TransportPolicy
from tests.conftest import make_workspace

pytestmark = pytest.mark.server
PAIR = "image-classification,image-segmentation"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2",
         "--last_n_tokens_size", "512"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):  # noqa: S310 - fixed http URL
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"llama_cpp.server did not start; see {log.name}") from None
            time.sleep(0.5)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:  # still busy with a generation: it does not need to finish
        proc.kill()
        proc.wait()
    log.close()


def test_unsupported_dialect_is_a_capability_error_with_advice(llama_server: str) -> None:
    profile = ProviderProfile(name="llamacpp", kind="openai", model="smollm2", dialect="json_schema",
                              base_url=llama_server, api_key_env=None)  # fmt: skip
    provider = OpenAICompatProvider(profile, TransportPolicy(timeout_s=60))
    with pytest.raises(CapabilityError, match='set dialect = "json_object_schema"'):
        provider.complete([{"role": "user", "content": "hi"}], {"type": "object"}, GenerationParams(max_tokens=5))


def test_pipeline_run_through_llama_cpp_server(llama_server: str, tmp_path: Path) -> None:
    ws = make_workspace(
        tmp_path / "ws",
        extra=f"""
provider = "llamacpp"

[providers.llamacpp]
kind = "openai"
base_url = "{llama_server}"
model = "smollm2"
dialect = "json_object_schema"
api_key_env = ""
small = true
presence_penalty = 0.5
""",
    )
    # The transport table in make_workspace is tuned for the fake server; the real one needs time.
    cfg = ws / "config/pipeline.toml"
    cfg.write_text(
        cfg.read_text().replace("timeout_s = 5", "timeout_s = 120").replace("deadline_s = 20", "deadline_s = 240")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--workspace", str(ws), "run", "--pair", PAIR],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "model called" in result.stdout
    report = json.loads((ws / "reports/computer-vision/image-classification-vs-image-segmentation.json").read_text())
    assert report["provenance"]["provider"] == "openai"
    assert report["provenance"]["params"]["dialect"] == "json_object_schema"
    assert set(report["data"]["a"]["dimensions"]) == {
        "Accuracy", "Complexity", "Speed", "Applications", "Data Requirements", "Real-world Impact"
    }  # fmt: skip
