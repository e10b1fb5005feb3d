"""Compose: a pair page from its two subjects' profiles and the pair's own texts.

The matrix, ratings, rationales, pros and cons are the profiles', unchanged: the page that
compares PostgreSQL with MySQL and the one that compares it with SQLite show the same
PostgreSQL. Each profile numbers its passages P1, P2, ...; on the page the second subject's
passages continue from the first's, so every label names one sentence of the page.

The texts name the profile generations they were written for. When a profile has moved on since
(its brief changed and a batch has not yet refreshed this pair), texts that code wrote are simply
written again from the current profiles; a model's texts are kept and the page says they were
written for an earlier profile (`stale_texts`), until the pair is generated again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Any

from pipeline.generation import selection
from pipeline.models import Comparison, Pair, Part, PassageText

_ID = re.compile(r"^P(\d+)$")


def compose(
    pair: Pair,
    texts: Comparison,
    a: Comparison,
    b: Comparison,
    pinned: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> Comparison:
    """The page of `pair`: profiles `a` and `b` (their generations), `texts` (the pair's texts).

    `pinned`: the data of the profiles the texts were written for, when they are not `a` and `b`
    (None: they are)."""
    offset = max((_number(p.id) for s in a.sources for p in s.passages), default=0)
    b_data = _shift(b.data, offset)
    b_sources = tuple(replace(s, passages=tuple(PassageText(_renamed(p.id, offset), p.text) for p in s.passages))
                      for s in b.sources)  # fmt: skip
    page: dict[str, Any] = {"a": a.data, "b": b_data}
    own = dict(texts.data)
    written_for = texts.params.get("profiles") or {}
    moved = (written_for.get("a"), written_for.get("b")) != (a.generation_id, b.generation_id)
    stale = False
    if moved and (pinned is None or pinned != (a.data, b.data)):
        if texts.params.get("mode") == "code":
            own = selection.compose_texts(page, pair, own.get("alternatives", []))
        else:
            stale = True
    page.update(own)
    parts = tuple(
        Part(role, g.generation_id, g.generated_at, g.provider, g.model, g.cache_key, g.attempts, g.usage, g.params)
        for role, g in (("a", a), ("b", b), ("pair", texts))
    )
    ids = "|".join(p.generation_id for p in parts)
    params = {
        # what the profiles were asked with (dialect, sampling); the texts' own are in their part
        **{k: v for k, v in a.params.items() if k not in ("samples", "judge", "profiles", "gates")},
        "mode": a.params.get("mode", "write"),
        "texts": texts.params.get("mode", "write"),
        "gates": min(int(g.params.get("gates") or 0) for g in (a, b, texts)),
        **({"stale_texts": True} if stale else {}),
        "sides": {"a": a.params.get("samples"), "b": b.params.get("samples")},
        **_judged(a, b, offset),
    }
    return Comparison(
        generation_id=hashlib.sha256(ids.encode()).hexdigest()[:16],
        pair_key=pair.key,
        category=pair.category.id,
        data=page,
        generated_at=max(g.generated_at for g in (a, b, texts)),
        provider=a.provider,
        model=a.model,
        cache_key=hashlib.sha256("|".join(g.cache_key for g in (a, b, texts)).encode()).hexdigest(),
        prompt_sha256=texts.prompt_sha256,
        schema_sha256=texts.schema_sha256,
        sources=a.sources + b_sources,
        attempts=a.attempts + b.attempts + texts.attempts,
        usage=a.usage + b.usage + texts.usage,
        params=params,
        template_sha256=a.template_sha256,
        answered_by=a.answered_by,
        kind="page",
        parts=parts,
    )


def _judged(a: Comparison, b: Comparison, offset: int) -> dict[str, Any]:
    """The grounding judge's verdicts of both profiles, on the page's paths ("a.dimensions.Speed")."""
    merged: dict[str, str] = {}
    who: dict[str, Any] = {}
    errors = []
    for side, g in (("a", a), ("b", b)):
        judged = g.params.get("judge")
        if isinstance(judged, dict):
            who = {k: judged[k] for k in ("provider", "model") if k in judged} or who
            if judged.get("error"):
                errors.append(f"{side}: {judged['error']}")
            merged.update({f"{side}.{path}": v for path, v in (judged.get("verdicts") or {}).items()})
    if not who and not merged:
        return {}
    return {
        "judge": {**who, **({"verdicts": merged} if merged else {}), **({"error": "; ".join(errors)} if errors else {})}
    }


def _number(pid: str) -> int:
    match = _ID.match(pid)
    return int(match.group(1)) if match else 0


def _renamed(pid: str, offset: int) -> str:
    match = _ID.match(pid)
    return f"P{int(match.group(1)) + offset}" if match and offset else pid


def _shift(profile: dict[str, Any], offset: int) -> dict[str, Any]:
    """The profile with its citations renamed to the page's numbering."""
    if not offset:
        return profile

    def cited(entry: dict[str, Any]) -> dict[str, Any]:
        return {**entry, "sources": [_renamed(p, offset) for p in entry.get("sources") or ()]}

    return {
        **profile,
        "dimensions": {name: cited(cell) for name, cell in profile["dimensions"].items()},
        "pros": [cited(p) if isinstance(p, dict) else p for p in profile["pros"]],
        "cons": [cited(c) if isinstance(c, dict) else c for c in profile["cons"]],
    }
