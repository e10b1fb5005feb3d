#!/usr/bin/env python3
"""Task runner that needs nothing but Python: it makes `.venv`, installs the project, runs a task.

    python3 tasks.py demo     # install, then the reference comparison on the bundled offline model
    python3 tasks.py check    # install, then formatting, lint, type check and the tests
    python3 tasks.py bench    # install, then the performance suite (writes bench/RESULTS.md)

The first install builds llama-cpp-python from source (4-5 minutes on 2 cores);
pip caches the wheel, so later installs take seconds. Re-installs happen only
when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"
REFERENCE = "image-classification,image-segmentation"


def sh(*args: str | os.PathLike[str]) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if code:
        sys.exit(code)


def install() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    print("installing the project (the first time, llama-cpp-python compiles: 4-5 minutes)", flush=True)
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[local,dev]")
    STAMP.write_text(wanted)


def demo(args: list[str]) -> None:
    sh(BIN / "pipeline", "run", "--pair", REFERENCE, *args)


def check(args: list[str]) -> None:
    sh(BIN / "ruff", "format", "--check", "pipeline", "tests", "bench", "tasks.py")
    sh(BIN / "ruff", "check", "pipeline", "tests", "bench", "tasks.py")
    sh(BIN / "mypy")
    sh(BIN / "python", "-m", "pytest", *args)


def bench(args: list[str]) -> None:
    sh(BIN / "python", "bench/run.py", *args)


TASKS = {"demo": demo, "check": check, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(TASKS)}}} [args...]")
    install()
    TASKS[sys.argv[1]](sys.argv[2:])
