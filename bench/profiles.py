"""Profiles against pair-by-pair generation, on the whole catalogue with the bundled model (issue #29).

    .venv/bin/python bench/profiles.py --baseline <commit>   # about 20 minutes on 2 cores
    .venv/bin/python bench/profiles.py --baseline none       # HEAD alone (about 5 minutes)

Both the baseline commit (pair by pair) and this checkout's HEAD (profiles) are checked out with
`git worktree` and run from an empty store on every pair of their own catalogue, one after the
other on the same machine. Measured for each: model calls (attempts that reached the model),
tokens, wall time, and how many (subject, dimension) shown on two or more pages show different
values or ratings; `pipeline quality` on HEAD's pages. Then, on HEAD only, one brief gains a
sentence and the batch runs again: the model calls it makes and the pages it rewrites. Prints a
Markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "out" / "profiles"


def checkout(commit: str, name: str) -> Path:
    target = WORK / name
    if target.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(target)], check=False)
        shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), commit], check=True,
                   capture_output=True)  # fmt: skip
    return target


def batch(tree: Path, store: Path) -> tuple[float, int]:
    """Every category of the tree's own catalogue, in one process each; wall seconds and the exit code."""
    categories = sorted(p.stem for p in (tree / "config/catalogue").glob("*.toml"))
    started, code = time.monotonic(), 0
    for category in categories:
        done = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(tree), "--store", str(store),
                               "batch", "--category", category], cwd=tree, capture_output=True, text=True,
                              check=False)  # fmt: skip
        code = max(code, done.returncode)
        if done.returncode not in (0, 1):
            print(done.stderr, file=sys.stderr)
    return time.monotonic() - started, code


def usage(store: Path) -> tuple[int, int]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*) FILTER (WHERE outcome IN ('accepted', 'invalid', 'refused', 'content_filter')), "
            "coalesce(sum(prompt_tokens + completion_tokens), 0) FROM attempts"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), int(row[1])


def inconsistent(tree: Path) -> tuple[int, int, float]:
    """(subject-dimensions shown differently, subject-dimensions on 2+ pages, mean rating spread of those)."""
    shown: dict[tuple[str, str], set[tuple[str, object]]] = defaultdict(set)
    pages: dict[tuple[str, str], int] = defaultdict(int)
    for path in sorted((tree / "reports").glob("*/*-vs-*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for side in ("a", "b"):
            subject = doc["subjects"][side]["id"]
            for dim, cell in doc["data"][side]["dimensions"].items():
                shown[(subject, dim)].add((json.dumps(cell["value"]), cell.get("rating")))
                pages[(subject, dim)] += 1
    repeated = [k for k, n in pages.items() if n >= 2]
    differ = [k for k in repeated if len(shown[k]) > 1]
    spreads = []
    for k in repeated:
        ratings = [r for _, r in shown[k] if isinstance(r, int)]
        if ratings:
            spreads.append(max(ratings) - min(ratings))
    return len(differ), len(repeated), (sum(spreads) / len(spreads) if spreads else 0.0)


def rewritten(tree: Path, before: dict[Path, bytes]) -> int:
    return sum(1 for p in (tree / "reports").glob("*/*-vs-*.md") if before.get(p) != p.read_bytes())


def measure(commit: str, name: str) -> dict[str, object]:
    tree = checkout(commit, name)
    store = WORK / f"{name}.duckdb"
    store.unlink(missing_ok=True)
    wall, code = batch(tree, store)
    calls, tokens = usage(store)
    differ, repeated, spread = inconsistent(tree)
    pages = len(list((tree / "reports").glob("*/*-vs-*.json")))
    return {"name": name, "commit": commit, "wall_s": round(wall, 1), "exit": code, "calls": calls, "tokens": tokens,
            "pages": pages, "differ": differ, "repeated": repeated, "mean_spread": round(spread, 2),
            "tree": tree, "store": store}  # fmt: skip


def quality(result: dict[str, object]) -> tuple[int, str]:
    """`pipeline quality` over every published page: its exit code and summary line."""
    tree, store = Path(str(result["tree"])), Path(str(result["store"]))
    done = subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(tree), "--store", str(store),
                           "quality"], cwd=tree, capture_output=True, text=True, check=False)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    return done.returncode, lines[-1] if lines else done.stderr.strip()[-300:]


def one_brief(result: dict[str, object], subject: str = "postgresql") -> dict[str, object]:
    tree, store = Path(str(result["tree"])), Path(str(result["store"]))
    before_calls, _ = usage(store)
    snapshot = {p: p.read_bytes() for p in (tree / "reports").glob("*/*-vs-*.md")}
    brief = tree / f"config/sources/{subject}.md"
    text = brief.read_text(encoding="utf-8")
    brief.write_text(text.replace("\n## Strengths", "\nIt is maintained by a worldwide community of "
                                                    "contributors.\n\n## Strengths", 1), encoding="utf-8")  # fmt: skip
    wall, _ = batch(tree, store)
    calls, _ = usage(store)
    return {"subject": subject, "calls": calls - before_calls, "rewritten": rewritten(tree, snapshot),
            "wall_s": round(wall, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help='the pair-by-pair commit to compare with, or "none"')
    parser.add_argument("--head", default="HEAD")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    new = measure(args.head, "profiles")  # HEAD first: a baseline of "none" measures HEAD alone
    old = measure(args.baseline, "baseline") if args.baseline != "none" else {k: "—" for k in new}
    checked = quality(new)
    after = one_brief(new)
    rows = [("model calls", "calls"), ("tokens", "tokens"), ("wall time (s)", "wall_s"), ("pages", "pages"),
            ("subject-dimensions on 2+ pages", "repeated"), ("... shown differently", "differ"),
            ("... mean rating spread across pages", "mean_spread")]  # fmt: skip
    print(f"| measure | pair by pair ({str(old['commit'])[:7]}) | profiles ({str(new['commit'])[:7]}) | ratio |")
    print("|---|---|---|---|")
    for label, key in rows:
        a, b = old[key], new[key]
        ratio = f"{b / a:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "—"
        print(f"| {label} | {a} | {b} | {ratio} |")
    print(f"\n`pipeline quality` on the profiles' pages: exit {checked[0]}; {checked[1]}")
    print(
        f"\nAfter one brief changed ({after['subject']}): {after['calls']} model call(s), "
        f"{after['rewritten']} page(s) rewritten, {after['wall_s']} s."
    )
    print(json.dumps({"baseline": {k: v for k, v in old.items() if k not in ("tree", "store")},
                      "profiles": {k: v for k, v in new.items() if k not in ("tree", "store")},
                      "quality": checked, "one_brief": after}, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
