"""Success rate and wall time of the bundled SmolLM2-135M model, over seeds and pairs.

    python bench/local_model.py                       # reference pair, 10 seeds
    python bench/local_model.py --all --seeds 10      # every pair of the catalogue
    python bench/local_model.py --pairs a,b c,d --seeds 3

Each run uses a fresh store in a temp folder, so nothing is cached. Writes a
Markdown table to stdout and, with --out, to a file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.errors import PipelineError
from pipeline.workspace import Workspace

REFERENCE = "image-classification,image-segmentation"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", nargs="*", default=[REFERENCE])
    parser.add_argument("--all", action="store_true", help="every pair of every category")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()

    root = Path(__file__).resolve().parent.parent
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(str(root), store=str(Path(tmp) / "bench.duckdb"))
        object.__setattr__(ws.settings, "reports_dir", Path(tmp) / "reports")
        cat = ws.catalogue
        pairs = [p.key for c in sorted(cat.categories) for p in cat.pairs_in_category(c)] if args.all else args.pairs
        profile, _ = ws.profile("local", None)
        provider = ws.provider(profile)
        base = ws.settings.generation
        for key in pairs:
            pair = ws.pair(key)
            times, ok, attempts = [], 0, []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                object.__setattr__(ws.settings, "generation", replace(base, seed=seed))
                started = time.monotonic()
                try:
                    outcome = ws.run_pair(pair, provider, force=True)
                    ok += 1
                    made = sum(r.attempts for _, r in outcome.steps)  # both profiles (the texts are code's)
                    attempts.append(made)
                    status = f"ok in {made}"
                except PipelineError as exc:
                    attempts.append(base.max_attempts)
                    status = f"FAILED: {str(exc)[:160]}"
                elapsed = time.monotonic() - started
                times.append(elapsed)
                print(f"{key} seed={seed}: {status} ({elapsed:.1f} s)", file=sys.stderr, flush=True)
            rows.append((key, ok, args.seeds, statistics.median(times), max(times), statistics.mean(attempts)))
    lines = [
        "| pair | valid | median s | max s | mean attempts |",
        "|---|---|---|---|---|",
        *(f"| {k} | {ok}/{n} | {med:.1f} | {mx:.1f} | {att:.2f} |" for k, ok, n, med, mx, att in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
