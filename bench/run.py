"""The benchmark suite: `python3 tasks.py bench` (or `python bench/run.py`) writes bench/RESULTS.md.

Every figure is a ratio or a comparison taken in one run on this machine, against
the local OpenAI-compatible test server (tests/fakeserver.py) answering valid
output after a fixed latency. Not part of the test run.

    python bench/run.py                 # everything (about 5 minutes)
    python bench/run.py --quick         # smaller sizes, for a smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakeserver import FakeLLM  # noqa: E402

PY = sys.executable
REFERENCE = "image-classification,image-segmentation"


def workspace(tmp: Path, base_url: str, subjects: int, model: str = "fake-model") -> Path:
    ws = tmp / "ws"
    for name in ("config", "prompts", "schemas"):
        shutil.copytree(ROOT / name, ws / name)
    (ws / "config/pipeline.toml").write_text(
        f'provider = "fake"\n[providers.fake]\nkind = "openai"\nbase_url = "{base_url}"\nmodel = "{model}"\n'
        'dialect = "json_schema"\napi_key_env = ""\n[store]\nlock_timeout_s = 120\n',
        encoding="utf-8",
    )
    lines = ['[category]\nid = "bench"\nname = "Bench"\n',
             '[[category.dimensions]]\nname = "Speed"\nkind = "level"\nlevels = ["Slow", "Fast"]\n',
             '[[category.dimensions]]\nname = "Notes"\nkind = "text"\n']  # fmt: skip
    for i in range(subjects):
        lines.append(f'[[subjects]]\nid = "s-{i:03d}"\nname = "Subject {i:03d}"\nvendor = "Bench"\n'
                     f'description = "Subject number {i} of the benchmark."\n')  # fmt: skip
    (ws / "config/catalogue/bench.toml").write_text("\n".join(lines), encoding="utf-8")
    return ws


def batch_file(ws: Path, n: int, name: str) -> Path:
    ids = sorted(
        p.split('"')[1]
        for p in (ws / "config/catalogue/bench.toml").read_text().split("\n")
        if p.startswith('id = "s-')
    )
    pairs = [f"{a},{b}" for i, a in enumerate(ids) for b in ids[i + 1 :]][:n]
    path = ws / "config/batches" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'name = "{name}"\npairs = {json.dumps(pairs)}\n', encoding="utf-8")
    return path


def timed(cmd: list[str], ws: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (of the command itself) and stdout."""
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=ws, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-2000:]}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return wall, rss_kb // 1024, proc.stdout


def pipeline(*args: str) -> list[str]:
    return [PY, "-m", "pipeline", *args]


def throughput(n: int, latency: float, concurrency: int) -> dict[str, float]:
    server = FakeLLM(default={"kind": "valid", "delay": latency}).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp), server.base_url, 40)
            path = batch_file(ws, n, "tp")
            wall, rss, out = timed(pipeline("batch", str(path), "--concurrency", str(concurrency), "--json", "-"), ws)
            summary = json.loads(out[out.index("{") :])
            assert summary["counts"]["generated"] == n, summary["counts"]
            ideal = n * latency / concurrency
            return {"ideal": ideal, "run": summary["wall_s"], "wall": wall, "rss": rss, "calls": server.calls}
    finally:
        server.stop()


def render_and_fresh(n: int, latency: float, concurrency: int) -> dict[str, float]:
    server = FakeLLM(default={"kind": "valid", "delay": latency}).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp), server.base_url, 50)
            path = batch_file(ws, n, "big")
            gen_wall, gen_rss, _ = timed(pipeline("batch", str(path), "--concurrency", str(concurrency)), ws)
            calls = server.calls
            fresh_wall, fresh_rss, _out = timed(pipeline("batch", str(path)), ws)
            assert server.calls == calls, "a fresh batch called the model"
            render_wall, render_rss, _ = timed(pipeline("render"), ws)
            floor = jinja_floor(ws)
            return {
                "generate_wall": gen_wall, "generate_rss": gen_rss, "fresh_wall": fresh_wall, "fresh_rss": fresh_rss,
                "fresh_calls": server.calls - calls, "render_wall": render_wall, "render_rss": render_rss,
                "floor": floor, "n": n,
            }  # fmt: skip
    finally:
        server.stop()


def jinja_floor(ws: Path) -> float:
    """Rendering the same templates with Jinja2 alone on the same, precomputed view data (no store, no I/O)."""
    from pipeline.report_view import report_json
    from pipeline.workspace import Workspace

    w = Workspace(str(ws))
    r = w.renderer
    pairs = w.publisher.pages()  # composed from profiles and texts (that work is not Jinja2's: done before timing)
    existing = frozenset(c.pair_key for c, _ in pairs)
    views = []
    for c, _prev in pairs:
        pair = w.catalogue.pair(c.pair_key)
        view = r.view(pair, c, existing)
        view["previous"] = None
        views.append(view)
    md, html = r.md_env.get_template("report.md.j2"), r.html_env.get_template("report.html.j2")
    started = time.perf_counter()
    for view in views:
        md.render(**view)
        html.render(**view)
        json.dumps(report_json(view), indent=2, sort_keys=True, ensure_ascii=False)
    return time.perf_counter() - started


def startup(repeat: int = 10) -> dict[str, float]:
    def median(cmd: list[str]) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    base = median([PY, "-c", "pass"])
    imports = subprocess.run(
        [PY, "-c", "import sys, pipeline.cli; from pipeline.workspace import Workspace; Workspace('.').catalogue; "
         "print(sorted(m for m in ('openai', 'llama_cpp', 'duckdb', 'jsonschema', 'rich') if m in sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return {"python": base, "help": median(pipeline("--help")), "list": median(pipeline("list")), "imports": imports}


def prompt_tokens() -> dict[str, float]:
    from llama_cpp import Llama

    from pipeline.providers.local import bundled_model_path
    from pipeline.workspace import Workspace

    ws = Workspace(str(ROOT))
    profile, _ = ws.profile("local", None)
    provider = ws.provider(profile)
    pair = ws.pair(REFERENCE)
    tok = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
    out = {"system": 0, "user": 0, "total": 0, "shared": 0}
    for subject in (pair.a, pair.b):  # the reference page's two profile prompts (its texts are code's)
        job = ws.units().profile(subject, pair.category, provider, ws.generation(provider))
        system, user = job.messages.messages
        n_system = len(tok.tokenize(system["content"].encode()))
        n_user = len(tok.tokenize(user["content"].encode()))
        out["system"] += n_system
        out["user"] += n_user
        out["total"] += n_system + n_user
        out["shared"] += n_system
    return out


def local_overhead(seeds: int) -> dict[str, Any] | None:
    """bench/local_overhead.py in its own process (it loads the bundled model)."""
    python = ROOT / ".venv/bin/python"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lo.json"
        command = [str(python if python.exists() else sys.executable), str(ROOT / "bench/local_overhead.py"),
                   "--seeds", str(seeds), "--json", str(out)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.exists():
            print(done.stderr[-2000:], file=sys.stderr)
            return None
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_batch, n_render = (100, 200) if args.quick else (500, 1000)
    results: list[tuple[str, str, str, str]] = []

    def row(what: str, measured: str, target: str, holds: bool | None) -> None:
        results.append((what, measured, target, "n/a" if holds is None else ("yes" if holds else "**no**")))
        print(f"{what}: {measured} (target {target})", flush=True)

    tp = throughput(n_batch, 0.2, 16)
    row(f"batch {n_batch} pairs, 200 ms latency, concurrency 16: run / ideal",
        f"{tp['run']:.2f} s / {tp['ideal']:.2f} s = {tp['run'] / tp['ideal']:.2f}× (whole command {tp['wall']:.2f} s)",
        "≤ 1.10×", tp["run"] / tp["ideal"] <= 1.10)  # fmt: skip
    tp64 = throughput(n_batch, 0.05, 64)
    row(f"batch {n_batch} pairs, 50 ms latency, concurrency 64: run / ideal",
        f"{tp64['run']:.2f} s / {tp64['ideal']:.2f} s = {tp64['run'] / tp64['ideal']:.2f}× "
        f"(whole command {tp64['wall']:.2f} s)",
        "≤ 1.10×", tp64["run"] / tp64["ideal"] <= 1.10)  # fmt: skip
    row(f"peak RSS, batch of {n_batch}", f"{tp['rss']} MB", "≤ 250 MB", tp["rss"] <= 250)
    small = throughput(100, 0.0, 16)
    row("peak RSS, batch of 100 vs 500", f"{small['rss']} MB vs {tp['rss']} MB", "no growth with items",
        tp["rss"] <= small["rss"] * 1.25)  # fmt: skip

    rf = render_and_fresh(n_render, 0.2, 16)
    per = rf["render_wall"] / rf["n"] * 1000
    row(f"`pipeline render` of {n_render} stored comparisons (md+html+json+index) vs Jinja2-alone floor",
        f"{rf['render_wall']:.2f} s vs {rf['floor']:.2f} s = {rf['render_wall'] / rf['floor']:.2f}×, "
        f"{per:.1f} ms/report",
        "≤ 2× and < 10 ms/report", rf["render_wall"] / rf["floor"] <= 2 and per < 10)  # fmt: skip
    row(f"fresh batch of {n_render}: model calls, time vs the generating run",
        f"{rf['fresh_calls']} calls, {rf['fresh_wall']:.2f} s vs {rf['generate_wall']:.2f} s = "
        f"{rf['fresh_wall'] / rf['generate_wall']:.1%}", "0 calls, < 5%",
        rf["fresh_calls"] == 0 and rf["fresh_wall"] / rf["generate_wall"] < 0.05)  # fmt: skip
    row(f"peak RSS, render of {n_render}", f"{rf['render_rss']} MB", "≤ 250 MB", rf["render_rss"] <= 250)

    st = startup()
    for name in ("help", "list"):
        over = st[name] - st["python"]
        row(f"`pipeline {'--help' if name == 'help' else 'list'}` start-up above `python -c pass` "
            f"({st['python'] * 1000:.0f} ms)", f"+{over * 1000:.0f} ms", "≤ +150 ms", over <= 0.15)  # fmt: skip
    row("heavy modules imported by `list`", st["imports"], "no openai, llama_cpp, duckdb", "openai" not in st["imports"]
        and "llama_cpp" not in st["imports"] and "duckdb" not in st["imports"])  # fmt: skip

    pt = prompt_tokens()
    row("prompt tokens, reference pair (bundled model's tokenizer)",
        f"{pt['total']} ({pt['system']} system + {pt['user']} user); shared prefix ≈ {pt['shared'] / pt['total']:.0%}",
        "instructions first, pair-specific last", None)  # fmt: skip

    lo = local_overhead(1 if args.quick else 3)
    if lo is None:
        row("local model: pipeline tokens/s vs raw llama-cpp-python, same grammar", "not measured (no bundled model)",
            "overhead ≤ 10%", False)  # fmt: skip
    else:
        row("local model: pipeline tokens/s vs raw llama-cpp-python, same requests and grammar (median of "
            f"{len(lo['rows'])} seeds)", f"{lo['pipeline_tps']:.1f} vs {lo['raw_tps']:.1f} tok/s: overhead "
            f"{lo['overhead']:+.1%}", "≤ 10%", lo["overhead"] <= 0.10)  # fmt: skip
        row("local model: grammar cost (constrained vs unconstrained tokens/s, same count)",
            f"{lo['raw_tps']:.1f} vs {lo['free_tps']:.1f} tok/s: {lo['grammar_cost']:.0%} slower",
            "report", None)  # fmt: skip

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Benchmark results",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- commit: {commit}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}",
        f"- command: `python3 tasks.py bench`{' --quick' if args.quick else ''}",
        "",
        "| measure | result | target | holds |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in results),
        "",
        "The local-model success rate and timing are measured by `bench/local_model.py` (see README).",
        "",
    ]
    (ROOT / "bench/RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    print("wrote bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
