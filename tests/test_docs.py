"""Every command is documented in the README, and its help text comes from its docstring."""

from __future__ import annotations

import pytest

from pipeline.cli import cli
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_is_documented(name: str) -> None:
    assert f"pipeline {name}" in README, f"`pipeline {name}` is not in README.md"
    assert cli.commands[name].help, f"`pipeline {name}` has no docstring/help text"


def test_the_documented_shell_completion_works() -> None:
    import os
    import subprocess
    import sys

    assert "_PIPELINE_COMPLETE=bash_source pipeline" in README
    env = {**os.environ, "_PIPELINE_COMPLETE": "bash_source"}
    code = "from pipeline.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0 and "_pipeline_completion" in done.stdout, done.stderr
