"""Sampling noise between regenerations, with one sample and with the consensus of several (#20).

    python bench/samples.py                         # bundled model and test server, k = 1 and 3
    python bench/samples.py --model server --ks 1,3,5
    python bench/samples.py --results bench/RESULTS.md

Regenerates the reference pair and two other pairs `--regenerations` times each with a new seed
(nothing else changes: same sources, prompts and settings), with `samples = k` for each k, and
compares consecutive generations of a pair with `pipeline diff`'s own comparison
(pipeline.diff.diff_reports on the JSON reports): winner flips (any change of the result: a to
b, or to or from a tie), reversals (a to b), the winner changes the diff calls material, the
mean absolute rating change over every rating, and the changes the diff calls material. Two models:

- `bundled`: SmolLM2-135M-Instruct in-process (selection mode), k answers by k seeds;
- `server`: the test server on 127.0.0.1 with the seeded noise model of tests/noise.py (each
  rating moves by ±1 with probability 0.2 per answer), k answers from one request with `n`.
  Beside every generation it makes one more with a real change (two cells' true ratings moved
  2 or 3 ratings) and counts how many of the moved ratings the diff calls material, and how many
  of the others: a diff that called everything noise would fail here.

Targets: on the bundled model, winner flips with k = 3 at most half those with k = 1; on the
test server, no material change between generations whose inputs did not change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.diff import diff_reports  # noqa: E402
from pipeline.workspace import Workspace  # noqa: E402
from tests.fakeserver import FakeLLM  # noqa: E402
from tests.noise import NoisyAnswers  # noqa: E402

PAIRS = ("image-classification,image-segmentation", "image-classification,object-detection", "postgresql,mysql")
FIRST_SEED = 101


def server_workspace(tmp: Path, base_url: str) -> Path:
    ws = tmp / "ws"
    for name in ("config", "prompts", "schemas"):
        shutil.copytree(ROOT / name, ws / name)
    (ws / "config/pipeline.toml").write_text(
        f'provider = "fake"\n[providers.fake]\nkind = "openai"\nbase_url = "{base_url}"\nmodel = "noisy-model"\n'
        'dialect = "json_schema"\napi_key_env = ""\nchoices = true\n',
        encoding="utf-8",
    )
    return ws


def regenerate(ws: Workspace, profile: str, key: str, k: int, seed: int) -> tuple[dict[str, Any], float, int]:
    """One fresh generation of a pair: its JSON report, seconds, and model calls' attempts."""
    object.__setattr__(ws.settings, "generation", replace(ws.settings.generation, seed=seed))
    pair = ws.pair(key)
    provider = ws.provider(ws.profile(profile, None)[0])
    started = time.monotonic()
    outcome = ws.run_pair(pair, provider, force=True, samples=k)
    seconds = time.monotonic() - started
    page, _ = ws.published(pair)  # composed from the two profiles and the pair's texts
    doc = json.loads(ws.renderer.render(page, frozenset(), None).files["json"])
    return doc, seconds, sum(r.attempts for _, r in outcome.steps)


def displace(ws: Workspace, noise: NoisyAnswers, key: str, k: int, i: int, previous: dict[str, Any]) -> dict[str, int]:
    """A generation beside the i-th with a real change (two cells' true ratings moved, tests/noise.py):
    how many of the moved ratings the diff calls material, and how many other ratings it does."""
    pair = ws.pair(key)
    dims = pair.category.rated
    moved = {("a", dims[i % len(dims)].name), ("b", dims[(i + 1) % len(dims)].name)}
    noise.displaced = {(pair.a.id if side == "a" else pair.b.id, dim) for side, dim in moved}
    try:
        doc, _, _ = regenerate(ws, "fake", key, k, FIRST_SEED + 500 + i)
    finally:
        noise.displaced = set()
    names = {side: previous["subjects"][side]["name"] for side in ("a", "b")}
    where = {f"{dim} / {names[side]}" for side, dim in moved}
    changes = [c for c in diff_reports(previous, doc).changes if c.material]
    return {
        "moved": len(moved),
        "caught": sum(1 for c in changes if c.kind == "rating" and c.where in where),
        "other_material_ratings": sum(1 for c in changes if c.kind == "rating" and c.where not in where),
    }


def measure(
    ws: Workspace, profile: str, pairs: list[str], k: int, regenerations: int, noise: NoisyAnswers | None = None
) -> dict[str, Any]:
    flips = reversals = material_winners = material = material_ratings = noise_marked = 0
    material_list: list[str] = []
    steps: list[dict[str, Any]] = []  # one per pair of consecutive generations, for subsets of a run
    real: dict[str, int] = {}  # the real changes caught (test server only)
    deltas: list[int] = []
    seconds: list[float] = []
    winners: dict[str, list[str]] = {}
    failed: list[str] = []
    for key in pairs:
        previous = None
        winners[key] = []
        for i in range(regenerations):
            try:
                doc, took, _ = regenerate(ws, profile, key, k, FIRST_SEED + i)
            except Exception as exc:  # a failed generation is counted, not fatal to the benchmark
                failed.append(f"{key} seed {FIRST_SEED + i}: {str(exc)[:160]}")
                print(f"  {key} k={k} seed {FIRST_SEED + i}: failed: {str(exc)[:160]}", file=sys.stderr, flush=True)
                continue
            seconds.append(took)
            standing = (doc["computed"].get("spread") or {}).get("standing", "")
            winners[key].append(doc["computed"]["winner_name"] + (f" ({standing})" if standing else ""))
            if previous is not None:
                d = diff_reports(previous, doc)
                before, after = previous["computed"]["winner"], doc["computed"]["winner"]
                changed = [c for c in d.changes if c.material]
                moves = [abs(cell["rating"] - previous["data"][side]["dimensions"][dim]["rating"])
                         for side in ("a", "b") for dim, cell in doc["data"][side]["dimensions"].items()]  # fmt: skip
                step = {"pair": key, "seed": FIRST_SEED + i, "flip": before != after,
                        "reversal": before != after and "tie" not in (before, after),  # one subject to the other
                        "material": len(changed), "noise": sum(1 for c in d.changes if "noise" in c.note),
                        "moves": moves}  # fmt: skip
                steps.append(step)
                flips += step["flip"]
                reversals += step["reversal"]
                material += step["material"]
                noise_marked += step["noise"]
                material_winners += sum(1 for c in changed if c.kind == "winner")
                material_ratings += sum(1 for c in changed if c.kind == "rating")
                material_list += [f"{key} seed {FIRST_SEED + i}: {c.kind} {c.where}: {c.old} → {c.new} {c.note}"
                                  for c in changed]  # fmt: skip
                deltas += moves
            previous = doc
            if noise is not None:  # and beside it, the same generation after a real change
                caught = displace(ws, noise, key, k, i, doc)
                for name, count in caught.items():
                    real[name] = real.get(name, 0) + count
            print(f"  {key} k={k} seed {FIRST_SEED + i}: {winners[key][-1]} {took:.1f}s", file=sys.stderr, flush=True)
    return {
        "k": k,
        "generations": len(seconds),
        "failed": failed,
        "comparisons": sum(max(0, len(w) - 1) for w in winners.values()),
        "winner_flips": flips,
        "winner_reversals": reversals,
        "material_winner_changes": material_winners,
        "mean_abs_rating_change": round(statistics.mean(deltas), 3) if deltas else 0.0,
        "ratings_compared": len(deltas),
        "material_changes": material,
        "material_rating_changes": material_ratings,
        "changes_marked_noise": noise_marked,
        "median_s": round(statistics.median(seconds), 1) if seconds else 0.0,
        "winners": winners,
        "material": material_list,
        "steps": steps,
        "real_changes": real,
    }


def run_server(pairs: list[str], ks: list[int], regenerations: int, p: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        fake = FakeLLM()
        fake.start()
        try:
            root = server_workspace(Path(tmp), fake.base_url)
            ws = Workspace(str(root), store=str(Path(tmp) / "bench.duckdb"))
            noise = NoisyAnswers([ws.pair(key) for key in pairs], p=p)
            fake.noise = noise
            rows = [measure(ws, "fake", pairs, k, regenerations, noise) for k in ks]
            for row in rows:
                row["requests"] = None
            rows[-1]["requests"] = fake.calls
            return rows
        finally:
            fake.stop()


def run_bundled(pairs: list[str], ks: list[int], regenerations: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(str(ROOT), store=str(Path(tmp) / "bench.duckdb"))
        object.__setattr__(ws.settings, "reports_dir", Path(tmp) / "reports")
        return [measure(ws, "local", pairs, k, regenerations) for k in ks]


def table(name: str, rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"| {name} | {r['k']} | {r['generations']} ({len(r['failed'])} failed) | {r['winner_flips']} of "
        f"{r['comparisons']} | {r['winner_reversals']} | {r['material_winner_changes']} | "
        f"{r['mean_abs_rating_change']} | {r['material_changes']} "
        f"({r['material_rating_changes']} ratings) | {r['changes_marked_noise']} | {_real(r)} | {r['median_s']} |"
        for r in rows
    ]


def _real(r: dict[str, Any]) -> str:
    real = r.get("real_changes")
    if not real:
        return "–"
    return f"{real['caught']} of {real['moved']} ({real['other_material_ratings']} other ratings material)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["bundled", "server", "both"], default="both")
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS))
    parser.add_argument("--ks", default="1,3", help="comma-separated sample counts")
    parser.add_argument("--regenerations", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.2, help="the test server's per-answer move probability")
    parser.add_argument("--out", default=str(ROOT / "bench/out/samples.json"))
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    result: dict[str, Any] = {}
    if args.model in ("server", "both"):
        result["server"] = run_server(args.pairs, ks, args.regenerations, args.noise)
    if args.model in ("bundled", "both"):
        result["bundled"] = run_bundled(args.pairs, ks, args.regenerations)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        "| model | k | generations | winner flips | of them reversals (a ↔ b) | winner changes the diff calls "
        "material | mean abs rating change | material changes | changes marked noise | real changes caught | "
        "median s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"server": f"test server, noise p = {args.noise}", "bundled": "bundled SmolLM2-135M"}
    for model, rows in result.items():
        lines += table(names[model], rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
