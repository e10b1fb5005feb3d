"""The canonical schemas and what is derived from them.

Two units are generated: a subject's *profile* (`schemas/profile.schema.json`) and a pair's own
*texts* (`schemas/pair.schema.json`); `schemas/comparison.schema.json` is the shape of a whole
pair as earlier releases generated it (and as a composed page's data still looks). Each is the
source of truth and always enforced locally. For one unit it is *specialised*: the subject names
become enums, the category's dimensions become required keys in catalogue order, each value takes
its dimension's kind, a rated dimension's rating becomes an enum (grammars do not enforce
`minimum`/`maximum`; an enum they do) and an unrated one has none, citations become an enum of
the subject's passage ids. The specialised schema is then adapted to what an endpoint accepts
(its structured-output *dialect*).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.models import Category, Dimension, Pair, Subject

SCHEMA_FILE = "comparison.schema.json"
PROFILE_FILE = "profile.schema.json"
PAIR_FILE = "pair.schema.json"
# Keywords OpenAI's strict structured outputs reject, and those fine-tuned models reject as well
# (https://platform.openai.com/docs/guides/structured-outputs, "Supported properties").


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(value: Any) -> str:
    data = value if isinstance(value, bytes) else canonical_json(value).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def load_canonical(schemas_dir: Path, name: str = SCHEMA_FILE) -> tuple[dict[str, Any], str]:
    """A canonical schema and the sha256 of its file."""
    path = schemas_dir / name
    try:
        raw = path.read_bytes()
        schema = json.loads(raw)
    except OSError as exc:
        raise ConfigError(f"cannot read the schema {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: schema is not valid JSON: {exc.msg}") from exc
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"{path}: not a valid Draft 2020-12 schema: {exc.message}") from exc
    return schema, hashlib.sha256(raw).hexdigest()


def specialise(
    canonical: dict[str, Any], pair: Pair, scopes: tuple[tuple[str, ...], tuple[str, ...]] | None = None
) -> dict[str, Any]:
    """The schema for one pair; with `scopes` (a's passage ids, b's), each subject's ratings, pros
    and cons may cite only that subject's passages: an enum per side, which grammars and strict
    structured outputs enforce while generating."""
    defs = dict(canonical["$defs"])
    sides = {}
    for i, (side, subject) in enumerate((("a", pair.a), ("b", pair.b))):
        citations = _inline(copy.deepcopy(defs["citations"]), defs)
        if scopes is not None:
            if scopes[i]:
                citations["items"] = {"type": "string", "enum": list(scopes[i])}
            else:  # a subject without passages can cite nothing
                citations["maxItems"] = 0
        sides[side] = _analysis({**defs, "citations": citations}, subject.name, pair.category.dimensions)
    texts = specialise_pair(canonical, pair)  # the verdict, FAQ and alternatives, as a pair's texts have them
    return {**texts, "properties": {**sides, **texts["properties"]}}


def specialise_profile(
    canonical: dict[str, Any], subject: Subject, category: Category, scope: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The schema of one subject's profile; with `scope` (its passage ids) citations are an enum of them."""
    defs = dict(canonical["$defs"])
    citations = _inline(copy.deepcopy(defs["citations"]), defs)
    if scope is not None:
        if scope:
            citations["items"] = {"type": "string", "enum": list(scope)}
        else:  # a subject without passages can cite nothing
            citations["maxItems"] = 0
    defs = {**defs, "citations": citations}
    cell = defs["cell"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(canonical["required"]),
        "properties": {
            "subject": {"type": "string", "enum": [subject.name]},
            "dimensions": {
                "type": "object",
                "additionalProperties": False,
                "required": [d.name for d in category.dimensions],
                "properties": {d.name: _cell(cell, defs, d) for d in category.dimensions},
            },
            "pros": _inline(copy.deepcopy(defs["points"]), defs),
            "cons": _inline(copy.deepcopy(defs["points"]), defs),
        },
    }


def _cell(base: dict[str, Any], defs: dict[str, Any], dim: Dimension) -> dict[str, Any]:
    props = base["properties"]
    value = _value_of(props["value"], dim)
    out: dict[str, Any] = {"value": value}
    required = ["value"]
    if dim.rated:
        rating = props["rating"]
        out["rating"] = {"type": "integer", "enum": list(range(rating["minimum"], rating["maximum"] + 1))}
        required.append("rating")
    out["rationale"] = copy.deepcopy(props["rationale"])
    out["sources"] = copy.deepcopy(defs["citations"])
    return {"type": "object", "additionalProperties": False, "required": [*required, "rationale", "sources"],
            "properties": out}  # fmt: skip


def specialise_pair(canonical: dict[str, Any], pair: Pair) -> dict[str, Any]:
    """The schema of a pair's texts: the verdict's winner is one of the two names or "tie"."""
    props = canonical["properties"]
    verdict = copy.deepcopy(props["verdict"])
    verdict["properties"]["winner"] = {"type": "string", "enum": [pair.a.name, pair.b.name, "tie"]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(canonical["required"]),
        "properties": {
            "verdict": verdict,
            "faq": copy.deepcopy(props["faq"]),
            "alternatives": copy.deepcopy(props["alternatives"]),
        },
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`$ref`s into `$defs` replaced by what they point at (the pair schema stands alone)."""
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return _inline(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]), defs)
    return {k: _inline(v, defs) for k, v in node.items()}


def _analysis(defs: dict[str, Any], name: str, dims: tuple[Dimension, ...]) -> dict[str, Any]:
    base = defs["analysis"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(base["required"]),
        "properties": {
            "subject": {"type": "string", "enum": [name]},
            "dimensions": {
                "type": "object",
                "additionalProperties": False,
                "required": [d.name for d in dims],
                "properties": {d.name: _rating(defs, d) for d in dims},
            },
            "pros": _inline(copy.deepcopy(defs["points"]), defs),
            "cons": _inline(copy.deepcopy(defs["points"]), defs),
        },
    }


def _value_of(value: dict[str, Any], dim: Dimension) -> dict[str, Any]:
    """A value's schema for a dimension's kind (from the canonical `anyOf` of kinds)."""
    branches = {b["type"]: b for b in value["anyOf"]}
    if dim.kind == "percent":
        return copy.deepcopy(branches["integer"])
    if dim.kind == "level":
        return {"type": "string", "enum": list(dim.levels)}
    if dim.kind == "list":
        return copy.deepcopy(branches["array"])
    return copy.deepcopy(branches["string"])


def _rating(defs: dict[str, Any], dim: Dimension) -> dict[str, Any]:
    base = defs["rating"]
    value = _value_of(base["properties"]["value"], dim)
    rating = base["properties"]["rating"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(base["required"]),
        "properties": {
            "value": value,
            "rating": {"type": "integer", "enum": list(range(rating["minimum"], rating["maximum"] + 1))},
            "rationale": copy.deepcopy(base["properties"]["rationale"]),
            "sources": copy.deepcopy(defs["citations"]),
        },
    }
