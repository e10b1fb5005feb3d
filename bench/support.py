"""Precision and recall of the lexical support measure against the hand-labelled set.

    python bench/support.py            # table on stdout
    python bench/support.py --show     # also every disagreement

tests/data/support_labels.json holds claim/passage pairs from the catalogue's briefs, each labelled
by hand (supported or not, by meaning) before the measure was run on them. Positive = "the
measure calls the claim supported"; a second line counts "weak" as positive too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.catalogue import load_catalogue  # noqa: E402
from pipeline.grounding import support  # noqa: E402


def evaluate(show: bool = False, config: Path = ROOT / "config") -> dict[str, dict[str, float]]:
    """`config`: the catalogue whose subjects the labels name (the tests pass their own copy)."""
    labels = json.loads((ROOT / "tests/data/support_labels.json").read_text(encoding="utf-8"))
    catalogue = load_catalogue(config)
    from pipeline.grounding import names_of

    rows = []
    for item in labels:
        subject = catalogue.subjects[item["subject"]]
        ignore = names_of((subject,))
        status, share = support(item["claim"], [item["passage"]], ignore)
        rows.append((item, status, share))
        if show and (status == "supported") != item["supported"]:
            print(f"{'FN' if item['supported'] else 'FP'} {status:<11} {share:.2f}  {item['claim']}", file=sys.stderr)
    out = {}
    for name, positive in (("supported", {"supported"}), ("supported or weak", {"supported", "weak"})):
        tp = sum(1 for i, s, _ in rows if s in positive and i["supported"])
        fp = sum(1 for i, s, _ in rows if s in positive and not i["supported"])
        fn = sum(1 for i, s, _ in rows if s not in positive and i["supported"])
        tn = len(rows) - tp - fp - fn
        out[name] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    result = evaluate(args.show)
    print("| counted as supported | pairs | TP | FP | FN | TN | precision | recall |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in result.items():
        n = r["tp"] + r["fp"] + r["fn"] + r["tn"]
        print(
            f"| {name} | {n} | {r['tp']} | {r['fp']} | {r['fn']} | {r['tn']} | "
            f"{r['precision']:.2f} | {r['recall']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
