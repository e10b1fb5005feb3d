"""Validate: parse a model's text, check it against the schemas, then semantic rules.

Parsing is lenient where small models slip (raw control characters inside
strings, code fences, trailing text) and the result is normalised; everything
else is reported as a `Problem(path, message)` that the re-ask feeds back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pipeline.generation import gates
from pipeline.generation.gates import caps_of
from pipeline.generation.schema import canonical_json, specialise, specialise_pair, specialise_profile
from pipeline.models import Category, Pair, Problem, Subject
from pipeline.untrusted import TooLarge, clean_tree

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


MAX_ANSWER = 1_000_000  # characters; the longest valid comparison is a few thousand


def parse(text: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The answer's JSON object, its strings cleaned (pipeline.untrusted), or the problem with it."""
    if len(text) > MAX_ANSWER:
        return None, [Problem("", f"the answer is {len(text)} characters long; reply with one short JSON object")]
    body = _FENCE.sub("", text)
    start = body.find("{")
    if start < 0:
        return None, [Problem("", "the answer contains no JSON object; reply with one JSON object only")]
    try:
        value, _end = json.JSONDecoder(strict=False).raw_decode(body, start)
        if not isinstance(value, dict):
            return None, [Problem("", "the answer must be a JSON object")]
        return clean_tree(value), []
    except json.JSONDecodeError as exc:
        return None, [Problem("", f"invalid JSON at character {exc.pos}: {exc.msg}")]
    except (RecursionError, TooLarge) as exc:
        reason = str(exc) if isinstance(exc, TooLarge) else "nested too deeply"
        return None, [Problem("", f"the answer is {reason}; reply with the comparison object only")]


Scopes = tuple[tuple[str, ...], tuple[str, ...]]  # each subject's passage ids, a's first


def validate(
    data: dict[str, Any], pair: Pair, canonical: dict[str, Any], scopes: Scopes | None = None
) -> list[Problem]:
    """Schema problems (the generic shape first, then the pair's names), else the content gates' problems.

    The pair-specialised schema accepts a subset of what the canonical one does, so a valid answer
    needs one pass; the canonical pass runs only to explain a failure in generic terms first.
    """
    canonical_text = canonical_json(canonical)
    problems = _problems(_pair_validator(canonical_text, pair, scopes), data)
    if problems:
        return _problems(_validator(canonical_text), data) or problems
    return semantic_problems(data, pair, scopes, caps_of(canonical_text))


def semantic_problems(
    data: dict[str, Any], pair: Pair, scopes: Scopes | None = None, caps: dict[str, int] | None = None,
    version: int = gates.VERSION,
) -> list[Problem]:  # fmt: skip
    """The content gates (pipeline.generation.gates, of `version`) for data valid against the pair's schema."""
    return gates.check(data, pair, (frozenset(scopes[0]), frozenset(scopes[1])) if scopes else None, caps, version)


def validate_profile(
    data: dict[str, Any], subject: Subject, category: Category, canonical: dict[str, Any], scope: tuple[str, ...] | None
) -> list[Problem]:
    """A profile's schema problems (generic shape first, then the subject's names and ids), else its gates'."""
    canonical_text = canonical_json(canonical)
    problems = _problems(_profile_validator(canonical_text, subject, category, scope), data)
    if problems:
        return _problems(_validator(canonical_text), data) or problems
    return gates.check_profile(data, category, frozenset(scope) if scope is not None else None, caps_of(canonical_text))


def validate_texts(texts: dict[str, Any], page: dict[str, Any], pair: Pair, canonical: dict[str, Any]) -> list[Problem]:
    """A pair's texts: their schema problems, else the gates they must pass on the page they complete."""
    canonical_text = canonical_json(canonical)
    problems = _problems(_texts_validator(canonical_text, pair), texts)
    if problems:
        return _problems(_validator(canonical_text), texts) or problems
    return gates.check_texts(texts, page, pair, caps_of(canonical_text))


@lru_cache(maxsize=64)
def _profile_validator(canonical_text: str, subject: Subject, category: Category, scope: tuple[str, ...] | None) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(specialise_profile(json.loads(canonical_text), subject, category, scope))


@lru_cache(maxsize=64)
def _texts_validator(canonical_text: str, pair: Pair) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(specialise_pair(json.loads(canonical_text), pair))


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


# Re-asks of a pair reuse its validator; a batch has at most `concurrency` pairs in flight. Bounded so
# that memory does not grow with the batch (each validator holds its pair's schema, ~70 KB).
@lru_cache(maxsize=64)
def _pair_validator(canonical_text: str, pair: Pair, scopes: Scopes | None) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(specialise(json.loads(canonical_text), pair, scopes))


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
