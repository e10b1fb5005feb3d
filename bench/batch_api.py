"""#10: a simulated large Batch API run through the local Files/Batches server, and a 4-shard merge.

    python bench/batch_api.py [--pairs 10000] [--shards 4] [--json out.json]

1. One machine: `pipeline batch FILE --via openai-batch` (write, upload, create) then
   `pipeline batch --collect` (download, validate, store, write reports), timed separately,
   with each command's peak RSS and the store's size after.
2. n machines: the same pairs as n shards (`--shard i/n`), each submitted and collected into
   its own store and exported (`pipeline store export`), then `pipeline store import` of all
   the exports into one store, timed, and checked to hold every pair once; then imported again.

The server answers every request at once (no provider queueing time is simulated): what is
measured is this pipeline's own cost of a run of that size. The server runs in this process
and shares the machine's CPU with the pipeline processes. Prices: gpt-4o-mini's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import batch_file, pipeline, timed, workspace  # noqa: E402

from tests.fakeserver import FakeLLM  # noqa: E402


def size_mb(store: Path) -> float:
    return sum(p.stat().st_size for p in store.parent.glob(store.name + "*") if p.is_file()) / 1e6


def count(store: Path, sql: str) -> Any:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def step(ws: Path, store: Path, *args: str) -> tuple[float, int, str]:
    wall, rss, out = timed(pipeline("--store", str(store), *args), ws)
    print(f"{' '.join(args)[:60]}: {wall:.1f} s, {rss} MB; {out.strip().splitlines()[0] if out.strip() else ''}",
          flush=True)  # fmt: skip
    return wall, rss, out


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
            subjects = math.ceil((1 + math.sqrt(1 + 8 * args.pairs)) / 2)
            ws = workspace(Path(tmp), server.base_url, subjects, model="gpt-4o-mini")
            path = str(batch_file(ws, args.pairs, "big"))
            store = Path(tmp) / "one.duckdb"
            out["submit_s"], out["submit_rss_mb"], _ = step(ws, store, "batch", path, "--via", "openai-batch")
            uploads = [server.api.files[b["input_file_id"]] for b in server.api.batches.values()]
            out["uploaded_mb"] = sum(len(u) for u in uploads) / 1e6
            out["batches"] = len(server.api.batches)
            out["collect_s"], out["collect_rss_mb"], _ = step(ws, store, "batch", "--collect")
            out["generations"] = count(store, "SELECT count(DISTINCT pair_key) FROM generations")[0]
            out["store_mb"] = size_mb(store)
            out["reports"] = len(list((ws / "reports/bench").glob("*.html")))

            exports = []
            for i in range(1, args.shards + 1):
                shard_store = Path(tmp) / f"shard-{i}.duckdb"
                t1, _, _ = step(
                    ws, shard_store, "batch", path, "--via", "openai-batch", "--shard", f"{i}/{args.shards}"
                )
                t2, _, _ = step(ws, shard_store, "batch", "--collect")
                folder = Path(tmp) / f"export-{i}"
                t3, _, _ = step(ws, shard_store, "store", "export", str(folder))
                out[f"shard_{i}"] = {"submit_s": t1, "collect_s": t2, "export_s": t3, "store_mb": size_mb(shard_store),
                                     "export_mb": sum(p.stat().st_size for p in folder.iterdir()) / 1e6}  # fmt: skip
                exports.append(str(folder))
            merged = Path(tmp) / "merged.duckdb"
            out["merge_s"], out["merge_rss_mb"], text = step(ws, merged, "store", "import", *exports)
            out["merge_output"] = text.strip().splitlines()[0]
            out["merge_again_s"], _, text = step(ws, merged, "store", "import", *exports)
            out["merge_again_output"] = text.strip().splitlines()[0]
            out["merged_generations"] = count(merged, "SELECT count(*), count(DISTINCT pair_key) FROM generations")
            out["merged_store_mb"] = size_mb(merged)
    finally:
        server.stop()
    print(json.dumps(out, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
