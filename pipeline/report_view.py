"""The pieces of a report view that depend on the comparison alone: the JSON report, cells, headlines, passages."""

from __future__ import annotations

import re
from typing import Any

from pipeline.generation.consensus import Spread
from pipeline.models import Comparison, Dimension, Pair
from pipeline.scoring import dimension_score

REPORT_FORMAT = 2  # the JSON report's format (schemas/report.schema.json); 2: rated dimensions only in computed


def report_json(view: dict[str, Any]) -> dict[str, Any]:
    pair: Pair = view["pair"]
    c: Comparison = view["c"]
    return {
        "report_format": REPORT_FORMAT,
        "title": f"{pair.a.name} vs {pair.b.name}",
        "pair": pair.key,
        "category": {"id": pair.category.id, "name": pair.category.name},
        "subjects": {
            side: {"id": s.id, "name": s.name, "vendor": s.vendor, "description": s.description}
            for side, s in (("a", pair.a), ("b", pair.b))
        },
        "data": view["data"],
        "overrides": view["overrides"],
        "grounding": view["grounding"],
        "quality": view["quality"],
        "computed": {
            "overall": {"a": float(view["overall"]["a"]), "b": float(view["overall"]["b"])},
            "winner": view["winner"],
            "winner_name": view["winner_name"],
            "tie_band": pair.category.tie_band,
            "headline": view["headline"],
            # Enough to recompute the overall scores from this file alone (schemas/report.schema.json).
            "dimensions": [
                {
                    "name": d.name,
                    "weight": d.weight,
                    "higher_is_better": d.higher_is_better,
                    "feature_score": {"a": r["a"]["score"], "b": r["b"]["score"]},
                    "leader": r["leader"] or None,
                }
                for d, r in zip(pair.category.dimensions, view["rows"], strict=True)
                if d.rated
            ],
            "people_also_compare": [r["key"] for r in view["related"]],
            **({"spread": view["spread"].as_json()} if view["spread"] else {}),
        },
        "previous_generated_at": (view.get("previous") or {}).get("generated_at"),
        "provenance": {
            "generation_id": c.generation_id,
            "generated_at": c.generated_at,
            "provider": c.provider,
            "model": c.model,
            "demo_model": view["demo"],
            "cache_key": c.cache_key,
            "prompt_sha256": c.prompt_sha256,
            "schema_sha256": c.schema_sha256,
            "params": c.report_params(),
            "sources": [s.to_json() for s in c.sources],
            "attempts": c.attempts,
            "usage": {
                "prompt_tokens": c.usage.prompt_tokens,
                "completion_tokens": c.usage.completion_tokens,
                "cached_tokens": c.usage.cached_tokens,
                "reasoning_tokens": c.usage.reasoning_tokens,
            },
            **(
                {
                    "parts": [
                        {
                            "role": p.role,
                            "generation_id": p.generation_id,
                            "generated_at": p.generated_at,
                            "provider": p.provider,
                            "model": p.model,
                            "attempts": p.attempts,
                            "mode": str(p.params.get("mode", "write")),
                        }
                        for p in c.parts
                    ]
                }
                if c.parts
                else {}
            ),
        },
    }


def result_line(pair: Pair, won: str, score_a: float, score_b: float, spread: Spread | None = None) -> str:
    """Both overall scores, the winner's first: "Image Segmentation 7.40 · Image Classification 6.93";
    with samples, each with its range: "Image Segmentation 7.40 (7.10–7.60) · ..."."""
    order = (
        (("b", pair.b, score_b), ("a", pair.a, score_a))
        if won == "b"
        else (("a", pair.a, score_a), ("b", pair.b, score_b))
    )
    shown = [
        f"{s.name} {score:.2f}" + (f" ({spread.overall_text(side)})" if spread else "") for side, s, score in order
    ]
    return " · ".join(shown)


def headline(pair: Pair, won: str, score_a: float, score_b: float, spread: Spread | None = None) -> str:
    """The result at a glance, the winner first: "Image Segmentation wins, 7.40 to 6.93"; with
    samples whose score ranges overlap, "Image Segmentation leans ahead, ..." (pipeline.generation.consensus)."""
    if won == "tie":
        return f"A tie: {pair.a.name} {score_a:.2f}, {pair.b.name} {score_b:.2f} out of 10"
    win, lose, ws, ls = (pair.a, pair.b, score_a, score_b) if won == "a" else (pair.b, pair.a, score_b, score_a)
    if spread is not None and spread.standing == "leans":
        lw, ll = (spread.overall_text(s) for s in ((won, "b" if won == "a" else "a")))
        return (f"{win.name} leans ahead, {ws:.2f} ({lw}) to {ls:.2f} ({ll}) out of 10 for {lose.name}: "
                f"the {spread.valid} samples' scores overlap or come within the tie band, so this is a close call, "
                "not a firm win")  # fmt: skip
    return f"{win.name} wins, {ws:.2f} to {ls:.2f} out of 10 for {lose.name}"


def result_label(pair: Pair, won: str, spread: Spread | None) -> str:
    """ "Tie", "Winner: X" or, for a winner the samples do not settle, "Leans: X"."""
    if won == "tie":
        return "Tie"
    name = pair.a.name if won == "a" else pair.b.name
    return f"Leans: {name}" if spread is not None and spread.standing == "leans" else f"Winner: {name}"


def description(pair: Pair, won: str, score_a: float, score_b: float) -> str:
    dims = ", ".join(d.name.lower() for d in pair.category.dimensions[:4])
    return (f"{pair.a.name} vs {pair.b.name} ({pair.category.name}): {dims} and more, rated from cited sources. "
            f"{headline(pair, won, score_a, score_b)}.")  # fmt: skip


def passages_of(c: Comparison, pair: Pair) -> list[dict[str, str]]:
    """Each passage with where it comes from (for the cited-passages lists and links)."""
    names = {pair.a.id: pair.a.name, pair.b.id: pair.b.name}
    listed = []
    for source in c.sources:
        for p in source.passages:
            if not _PASSAGE_ID.fullmatch(p.id):
                continue
            listed.append({
                "id": p.id, "text": p.text, "subject": names.get(source.subject, source.subject),
                "label": source.label, "location": source.location,
                "url": source.location if source.kind == "url" else "", "retrieved_at": source.retrieved_at,
            })  # fmt: skip
    return listed


def claim_view(claim: Any, judged: str = "") -> dict[str, Any]:
    if claim is None:
        return {"cites": [], "status": "uncited", "judge": ""}
    return {"cites": list(claim.cited), "status": claim.status, "judge": judged}


def format_value(value: Any, dim: Dimension) -> str:
    if dim.kind == "percent":
        return f"{value}%"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


_PASSAGE_ID = re.compile(r"P[0-9]{1,3}")


def cell_view(entry: dict[str, Any], dim: Dimension) -> dict[str, Any]:
    """A cell as reports show it; a dimension that is not rated has no rating and no score."""
    pinned = entry.get("overridden", [])
    rating = int(entry["rating"]) if dim.rated and "rating" in entry else None
    return {
        "value": format_value(entry["value"], dim) + (" (override)" if "value" in pinned else ""),
        "rating": rating,
        "pinned": "rating" in pinned,
        "score": None if rating is None else dimension_score(rating, dim),
        "rationale": entry["rationale"],
    }


def tidy(text: str) -> str:
    """No runs of blank lines, exactly one trailing newline."""
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def number_text(value: float) -> str:
    """Stable number formatting: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text != "-0" else "0"
