"""Validate: parse a model's text, check it against the schemas, then semantic rules.

Parsing is lenient where small models slip (raw control characters inside
strings, code fences, trailing text) and the result is normalised; everything
else is reported as a `Problem(path, message)` that the re-ask feeds back.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pipeline.grounding import point_text
from pipeline.models import Pair, Problem
from pipeline.schema import canonical_json, specialise, without_verdict
from pipeline.scoring import winner

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
_WORD = re.compile(r"\w+", re.UNICODE)


def parse(text: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    body = _FENCE.sub("", text)
    start = body.find("{")
    if start < 0:
        return None, [Problem("", "the answer contains no JSON object; reply with one JSON object only")]
    try:
        value, _end = json.JSONDecoder(strict=False).raw_decode(body, start)
    except json.JSONDecodeError as exc:
        return None, [Problem("", f"invalid JSON at character {exc.pos}: {exc.msg}")]
    if not isinstance(value, dict):
        return None, [Problem("", "the answer must be a JSON object")]
    return _normalise(value), []


def validate(
    data: dict[str, Any], pair: Pair, canonical: dict[str, Any], passage_ids: tuple[str, ...] | None = None
) -> list[Problem]:
    """Schema problems (the generic shape first, then the pair's names), else semantic problems.

    The pair-specialised schema accepts a subset of what the canonical one does, so a valid answer
    needs one pass; the canonical pass runs only to explain a failure in generic terms first.
    """
    canonical_text = canonical_json(canonical)
    problems = _problems(_pair_validator(canonical_text, pair, False, passage_ids), data)
    if problems:
        return _problems(_validator(canonical_text), data) or problems
    return semantic_problems(data, pair)


def validate_partial(
    data: dict[str, Any], pair: Pair, canonical: dict[str, Any], passage_ids: tuple[str, ...] | None = None
) -> list[Problem]:
    """Everything but the verdict (the first stage of a staged generation)."""
    problems = _problems(_pair_validator(canonical_json(canonical), pair, True, passage_ids), data)
    return problems or semantic_problems(data, pair, verdict=False)


def semantic_problems(data: dict[str, Any], pair: Pair, *, verdict: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    for side in ("a", "b"):
        analysis = data[side]
        for dim in pair.category.dimensions:
            value = analysis["dimensions"][dim.name]["value"]
            if dim.kind == "list":
                problems += _duplicates(value, f"{side}.dimensions.{dim.name}.value")
        rationales = [analysis["dimensions"][d.name]["rationale"] for d in pair.category.dimensions]
        problems += _duplicates(rationales, f"{side}.dimensions.*.rationale")
        pros, cons = [point_text(p) for p in analysis["pros"]], [point_text(c) for c in analysis["cons"]]
        problems += _duplicates(pros, f"{side}.pros")
        problems += _duplicates(cons, f"{side}.cons")
        overlap = {_key(p) for p in pros} & {_key(c) for c in cons}
        if overlap:
            problems.append(Problem(f"{side}", "the same point is listed as both a pro and a con"))
    problems += _duplicates([f["question"] for f in data["faq"]], "faq")
    problems += _duplicates(data["alternatives"], "alternatives")
    own = {_key(s) for s in (pair.a.id, pair.a.name, pair.b.id, pair.b.name, *pair.a.aliases, *pair.b.aliases)}
    for i, alt in enumerate(data["alternatives"]):
        if _key(alt) in own:
            problems.append(Problem(f"alternatives[{i}]", f"{alt!r} is one of the two compared subjects"))
    for path, text in _strings(data, ""):
        if not text.strip():
            problems.append(Problem(path, "is empty"))
        elif _repetitive(text):
            problems.append(Problem(path, "repeats the same words over and over; write a short plain sentence"))
    if not verdict:
        return problems
    computed, sa, sb = winner(data, pair.category)
    expected = {"a": pair.a.name, "b": pair.b.name, "tie": "tie"}[computed]
    if data["verdict"]["winner"] != expected:
        problems.append(
            Problem(
                "verdict.winner",
                f"the ratings give {pair.a.name} {sa:.2f} and {pair.b.name} {sb:.2f} overall, so the winner "
                f"is {expected!r}, not {data['verdict']['winner']!r}; make the verdict agree with the ratings",
            )
        )
    return problems


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


# Re-asks of a pair reuse its validator; a batch has at most `concurrency` pairs in flight. Bounded so
# that memory does not grow with the batch (each validator holds its pair's schema, ~70 KB).
@lru_cache(maxsize=64)
def _pair_validator(canonical_text: str, pair: Pair, partial: bool, passage_ids: tuple[str, ...] | None) -> Any:
    from jsonschema import Draft202012Validator

    schema = specialise(json.loads(canonical_text), pair, passage_ids)
    return Draft202012Validator(without_verdict(schema) if partial else schema)


def _problems(validator: Any, data: dict[str, Any]) -> list[Problem]:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path)))
    return [Problem(_path(e.absolute_path), _short(e.message)) for e in errors[:12]]


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def _key(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _duplicates(items: list[str], path: str) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        key = _key(item)
        if key in seen:
            out.append(Problem(f"{path}[{i}]", f"duplicate item {item[:60]!r}"))
        seen.add(key)
    return out


def _strings(node: Any, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")


def _repetitive(text: str) -> bool:
    """Degenerate output: a word or short phrase looping, or very few distinct words."""
    words = [w.casefold() for w in _WORD.findall(text)]
    if len(words) < 8:
        return False
    for n in (1, 2, 3):
        run = 1
        for i in range(n, len(words) - n + 1, n):
            run = run + 1 if words[i : i + n] == words[i - n : i] else 1
            if run >= 4:
                return True
    return len(set(words)) / len(words) < 0.35


def _normalise(node: Any) -> Any:
    if isinstance(node, str):
        return " ".join(unicodedata.normalize("NFC", node).split())
    if isinstance(node, dict):
        return {_normalise(k): _normalise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    return node
