"""#10: a simulated large Batch API run through the local Files/Batches server, and a 4-shard merge.

    python bench/batch_api.py [--pairs 10000] [--shards 4] [--json out.json]

1. One machine: `pipeline batch FILE --via openai-batch` (write, upload, create) then
   `pipeline batch --collect` (download, validate, store, write reports), timed separately,
   with the store's size after.
2. n machines: the same pairs as n shards (`--shard i/n`), each submitted and collected into
   its own store and exported (`pipeline store export`), then `pipeline store import` of all
   the exports into one store, timed, and checked to hold every pair once.

The server answers every request at once (no provider queueing time is simulated): what is
measured is this pipeline's own cost of a run of that size. The server runs in this process
and shares the machine's CPU with the pipeline processes.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakeserver import FakeLLM  # noqa: E402


def workspace(root: Path, base_url: str, pairs: int) -> Path:
    for name in ("config", "prompts", "schemas"):
        shutil.copytree(ROOT / name, root / name)
    (root / "config/pipeline.toml").write_text(
        f'provider = "fake"\n\n[providers.fake]\nkind = "openai"\nbase_url = "{base_url}"\nmodel = "gpt-4o-mini"\n'
        'dialect = "json_schema"\napi_key_env = ""\n',
        encoding="utf-8",
    )
    subjects = math.ceil((1 + math.sqrt(1 + 8 * pairs)) / 2)
    lines = ['[category]\nid = "widgets"\nname = "Widgets"\n',
             '[[category.dimensions]]\nname = "Speed"\nkind = "level"\nlevels = ["Slow", "Fast"]\n',
             '[[category.dimensions]]\nname = "Notes"\nkind = "text"\n']  # fmt: skip
    for i in range(subjects):
        lines.append(
            f'[[subjects]]\nid = "widget-{i:04d}"\nname = "Widget {i:04d}"\nvendor = "Acme"\n'
            f'description = "Widget number {i} is a test subject. It has a speed and notes about its design."\n'
        )
    (root / "config/catalogue/widgets.toml").write_text("\n".join(lines), encoding="utf-8")
    chosen = [f"widget-{a:04d},widget-{b:04d}" for a in range(subjects) for b in range(a + 1, subjects)][:pairs]
    (root / "config/batches/big.toml").write_text(
        'name = "big"\npairs = [\n' + "".join(f'  "{p}",\n' for p in chosen) + "]\n", encoding="utf-8"
    )
    return root


def cli(ws: Path, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(ws), *args],
                          capture_output=True, text=True, check=False)  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pipeline {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return wall, done.stdout


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file()) / 1e6


def count(store: Path, sql: str) -> Any:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    server = FakeLLM().start()
    out: dict[str, Any] = {"pairs": args.pairs, "shards": args.shards}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = workspace(Path(tmp) / "ws", server.base_url, args.pairs)
            store = Path(tmp) / "one.duckdb"
            out["submit_s"], text = cli(ws, "--store", str(store), "batch", str(ws / "config/batches/big.toml"),
                                        "--via", "openai-batch")  # fmt: skip
            print(text.strip().splitlines()[0], flush=True)
            uploads = [server.api.files[b["input_file_id"]] for b in server.api.batches.values()]
            out["uploaded_mb"] = sum(len(u) for u in uploads) / 1e6
            out["batches"] = len(server.api.batches)
            out["collect_s"], text = cli(ws, "--store", str(store), "batch", "--collect")
            print(text.strip(), flush=True)
            out["generations"] = count(store, "SELECT count(DISTINCT pair_key) FROM generations")[0]
            out["store_mb"] = size_mb(store)
            out["reports"] = len(list((ws / "reports/widgets").glob("*.html")))
            out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # submit and collect
            print(json.dumps(out), flush=True)

            exports = []
            shard_total = 0.0
            for i in range(1, args.shards + 1):
                shard_store = Path(tmp) / f"shard-{i}.duckdb"
                shutil.rmtree(ws / "reports", ignore_errors=True)
                t1, _ = cli(ws, "--store", str(shard_store), "batch", str(ws / "config/batches/big.toml"), "--via",
                            "openai-batch", "--shard", f"{i}/{args.shards}")  # fmt: skip
                t2, _ = cli(ws, "--store", str(shard_store), "batch", "--collect")
                folder = Path(tmp) / f"export-{i}"
                t3, _ = cli(ws, "--store", str(shard_store), "store", "export", str(folder))
                shard_total += t1 + t2
                out[f"shard_{i}"] = {"submit_s": t1, "collect_s": t2, "export_s": t3, "store_mb": size_mb(shard_store),
                                     "export_mb": sum(p.stat().st_size for p in folder.iterdir()) / 1e6}  # fmt: skip
                exports.append(str(folder))
                print(json.dumps(out[f"shard_{i}"]), flush=True)
            merged = Path(tmp) / "merged.duckdb"
            out["merge_s"], text = cli(ws, "--store", str(merged), "store", "import", *exports)
            print(text.strip(), flush=True)
            out["merge_again_s"], text = cli(ws, "--store", str(merged), "store", "import", *exports)
            out["merge_again_output"] = text.strip().splitlines()[0]
            out["merged_generations"] = count(merged, "SELECT count(*), count(DISTINCT pair_key) FROM generations")
            out["merged_store_mb"] = size_mb(merged)
            out["shards_submit_collect_s"] = shard_total
    finally:
        server.stop()
    print(json.dumps(out, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
