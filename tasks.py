#!/usr/bin/env python3
"""Task runner that needs nothing but Python: it makes `.venv`, installs the project, runs a task.

    python3 tasks.py demo     # install, then the reference comparison on the bundled offline model
    python3 tasks.py check    # install, then formatting, lint, type check and the tests
    python3 tasks.py bench    # install, then the performance suite (writes bench/RESULTS.md)

The first install builds llama-cpp-python from source (4-5 minutes on 2 cores)
into a wheelhouse of its own, keyed by the version and the build flags, so later
installs (and fresh clones) take seconds. Re-installs happen only when
pyproject.toml changes.

The build is portable (AVX2, no -march=native): a native build on CPUs with AMX
(Sapphire Rapids and later) crashes inside ggml's AMX kernels where the kernel
does not grant the AMX tile state, as in some sandboxes. Set CMAKE_ARGS to build
otherwise; the wheelhouse keeps one wheel per set of flags.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"
REFERENCE = "image-classification,image-segmentation"
LLAMA = "llama-cpp-python==0.3.36"  # keep in step with pyproject.toml's `local` extra
PORTABLE = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
# Checkers nobody here wrote, for the browser and HTML tests: axe-core (injected into Chromium) and
# the W3C Nu HTML Checker (vnu.jar, run by Java). Exact versions, installed from npm into the venv.
CHECKERS = VENV / "checkers"
CHECKER_PACKAGES = ("axe-core@4.14.1", "vnu-jar@26.9.27", "sitemap@8.0.3")  # sitemap: for its sitemaps.org XSD
WHEELHOUSE = Path(os.environ.get("PIPELINE_WHEELHOUSE", Path.home() / ".cache" / "comparison-pipeline" / "wheels"))


def sh(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT, env=env)
    if code:
        sys.exit(code)


def llama_wheels() -> Path:
    """A folder holding a llama-cpp-python wheel built with our flags (built once, then reused).

    pip's own cache is keyed by the source archive, not by CMAKE_ARGS, so a wheel built there
    natively would be reused whatever the flags; this folder is keyed by both.
    """
    flags = os.environ.get("CMAKE_ARGS", PORTABLE)
    folder = WHEELHOUSE / hashlib.sha256(f"{LLAMA}|{flags}".encode()).hexdigest()[:16]
    if not any(folder.glob("llama_cpp_python-*.whl")):
        print(f"building {LLAMA} (4-5 minutes the first time) with CMAKE_ARGS={flags!r}", flush=True)
        env = {**os.environ, "CMAKE_ARGS": flags}
        sh(BIN / "python", "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
           "--wheel-dir", folder, LLAMA, env=env)  # fmt: skip
    return folder


def install() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    wheels = llama_wheels()
    print("installing the project", flush=True)
    # A venv may already hold a llama-cpp-python built otherwise (pip would keep it): replace it.
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", *wheels.glob("*.whl"))
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--find-links", wheels, "-e", ".[local,dev]")
    STAMP.write_text(wanted)


def checkers() -> None:
    """npm installs the checkers once per version set; without npm the tests that need them skip
    (locally) or fail (under CI), saying what to install."""
    stamp = CHECKERS / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(CHECKER_PACKAGES):
        return
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the axe-core and Nu checker tests will not run (apt-get install npm)", flush=True)
        return
    CHECKERS.mkdir(parents=True, exist_ok=True)
    # --ignore-scripts: vnu-jar's postinstall would download a Java runtime; Debian's java is used instead.
    sh(npm, "install", "--prefix", CHECKERS, "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact",
       *CHECKER_PACKAGES)  # fmt: skip
    stamp.write_text(" ".join(CHECKER_PACKAGES))


def demo(args: list[str]) -> None:
    sh(BIN / "pipeline", "run", "--pair", REFERENCE, *args)


def check(args: list[str]) -> None:
    checkers()
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
