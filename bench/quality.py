"""What the bundled model's reports say, read as a reader would: the targets of issue #15.

    python bench/quality.py                    # every catalogue pair at seed 7, the reference pair over 10 seeds
    python bench/quality.py --pairs a,b --seeds 3
    python bench/quality.py --out bench/out/quality.json --results bench/RESULTS.md

Each generation runs with a fresh store in a temp folder (nothing cached), on the bundled model
in-process. For every report it counts, over all sentence fields and claims: cut texts (a text
that does not end a sentence or stops at its length limit), value/rating contradictions, claims
citing a passage of the other subject, texts copied into a second field, FAQ entries that are not
on-topic questions, alternatives that are sentences or one of the pair, and the claims the support
measure calls supported; plus attempts and wall time. The counts use the content gates' own rules
(pipeline.generation.gates), and cross-subject citations are counted directly from the stored passages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.generation import gates  # noqa: E402
from pipeline.quality import assess, passage_texts  # noqa: E402
from pipeline.workspace import Workspace  # noqa: E402

REFERENCE = "image-classification,image-segmentation"


def measure(ws: Workspace, key: str, seed: int) -> dict[str, Any]:
    pair = ws.pair(key)
    object.__setattr__(ws.settings, "generation", replace(ws.settings.generation, seed=seed))
    provider = ws.provider(ws.profile("local", None)[0])
    started = time.monotonic()
    try:
        outcome = ws.run_pair(pair, provider, force=True)
    except PipelineError as exc:
        return {"pair": key, "seed": seed, "valid": False, "error": str(exc)[:300],
                "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    seconds = time.monotonic() - started
    c, _ = ws.published(pair)  # the page: two profiles and the pair's texts
    quality = assess(c, pair, c.data, ws.renderer.caps)
    found = quality.problems
    _texts, scopes = passage_texts(c)
    assert scopes is not None
    cross = 0
    for side, own in zip(("a", "b"), scopes, strict=True):
        for _path, cited in gates._citations(c.data[side], f"{side}."):
            cross += sum(1 for pid in cited if pid not in own)
    sentences = sum(1 for _ in gates.sentence_fields({"a.": c.data["a"], "b.": c.data["b"]}, c.data))
    return {
        "pair": key,
        "seed": seed,
        "valid": True,
        "attempts": sum(r.attempts for _, r in outcome.steps),
        "seconds": round(seconds, 1),
        "sentences": sentences,
        "cut_texts": len(found["complete-text"]),
        "contradictions": len(found["value-rating"]),
        "cross_subject_citations": cross,
        "copied_texts": len(found["no-copies"]),
        "faq_off_topic": len(found["faq-questions"]),
        "bad_alternatives": len(found["alternative-names"]),
        "gates_failed": quality.failed,
        "claims": quality.counts,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["valid"]]
    claims = {k: sum(r["claims"][k] for r in ok) for k in ("supported", "weak", "unsupported", "uncited")}
    total = sum(claims.values())
    keys = ("cut_texts", "contradictions", "cross_subject_citations", "copied_texts", "faq_off_topic",
            "bad_alternatives")  # fmt: skip
    return {
        "runs": len(rows),
        "valid": len(ok),
        "within_3_attempts": sum(1 for r in ok if r["attempts"] <= 3),
        "sentences": sum(r["sentences"] for r in ok),
        **{k: sum(r[k] for r in ok) for k in keys},
        "claims": claims,
        "supported_share": round(claims["supported"] / total, 3) if total else 0.0,
        "median_s": round(statistics.median(r["seconds"] for r in rows), 1) if rows else 0.0,
        "max_s": max((r["seconds"] for r in rows), default=0.0),
        "mean_attempts": round(statistics.mean(r["attempts"] for r in ok), 2) if ok else 0.0,
    }


def table(name: str, s: dict[str, Any]) -> str:
    c = s["claims"]
    return (
        f"| {name} | {s['valid']}/{s['runs']} | {s['within_3_attempts']} | {s['cut_texts']} of {s['sentences']} | "
        f"{s['contradictions']} | {s['cross_subject_citations']} | {s['copied_texts']} | {s['faq_off_topic']} | "
        f"{s['bad_alternatives']} | {c['supported']}/{sum(c.values())} ({100 * s['supported_share']:.0f}%) | "
        f"{s['median_s']} | {s['max_s']} | {s['mean_attempts']} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", nargs="*", help="default: every pair of every category")
    parser.add_argument("--seed", type=int, default=7, help="seed for the every-pair run")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the reference pair (1..N)")
    parser.add_argument("--out", default=str(ROOT / "bench/out/quality.json"))
    parser.add_argument("--results", help="rewrite this Markdown file's 'Report quality' section")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(str(ROOT), store=str(Path(tmp) / "bench.duckdb"))
        object.__setattr__(ws.settings, "reports_dir", Path(tmp) / "reports")
        cat = ws.catalogue
        pairs = args.pairs or [p.key for c in sorted(cat.categories) for p in cat.pairs_in_category(c)]
        every = []
        for key in pairs:
            every.append(measure(ws, key, args.seed))
            print(json.dumps(every[-1]), file=sys.stderr, flush=True)
        seeds = []
        for seed in range(1, args.seeds + 1):
            seeds.append(measure(ws, REFERENCE, seed))
            print(json.dumps(seeds[-1]), file=sys.stderr, flush=True)
    result = {"every_pair": {"rows": every, "summary": summarise(every)},
              "reference_seeds": {"rows": seeds, "summary": summarise(seeds)}}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    header = (
        "| run | valid | within 3 attempts | cut texts | value/rating contradictions | cross-subject citations | "
        "copied texts | FAQ off-topic | bad alternatives | claims supported | median s | max s | mean attempts |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    text = "\n".join([
        header,
        table(f"{len(every)} pairs, seed {args.seed}", result["every_pair"]["summary"]),
        table(f"reference pair, seeds 1-{args.seeds}", result["reference_seeds"]["summary"]),
    ])  # fmt: skip
    print(text)
    if args.results:
        _rewrite_section(Path(args.results), text)
    return 0


def _rewrite_section(path: Path, table_text: str) -> None:
    title = "## Report quality on the bundled model (bench/quality.py)"
    body = (
        f"{title}\n\nTargets (#15): 0 cut texts, 0 contradictions, 0 cross-subject citations, 0 copied texts, "
        "0 off-topic FAQ entries, 0 bad alternatives; at least 80% of claims supported; every pair valid within "
        "3 attempts; median at most 30 s per report.\n\n"
        f"{table_text}\n"
    )
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    before, found, rest = old.partition(title)
    if not found:
        new = old.rstrip("\n") + "\n\n" + body
    else:
        following = rest.find("\n## ")
        new = before + body + (rest[following:] if following >= 0 else "")
    path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
