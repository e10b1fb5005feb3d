"""The canonical schema and what is derived from it.

`schemas/comparison.schema.json` is the source of truth and is always enforced
locally. For one pair it is *specialised*: the subject names become enums, the
category's dimensions become required keys in catalogue order, each value takes
its dimension's kind, ratings become an enum (grammars do not enforce
`minimum`/`maximum`; an enum they do). The specialised schema is then adapted
to what an endpoint accepts (its structured-output *dialect*).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.models import Dimension, Pair

SCHEMA_FILE = "comparison.schema.json"
# Keywords OpenAI's strict structured outputs reject.
STRICT_UNSUPPORTED = {"$schema", "$id", "minLength", "maxLength", "minProperties", "maxProperties", "title"}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(value: Any) -> str:
    data = value if isinstance(value, bytes) else canonical_json(value).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def load_canonical(schemas_dir: Path) -> tuple[dict[str, Any], str]:
    """The canonical schema and the sha256 of its file."""
    path = schemas_dir / SCHEMA_FILE
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


def specialise(canonical: dict[str, Any], pair: Pair, passage_ids: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The schema for one pair; with `passage_ids`, citations must name one of those passages."""
    defs = dict(canonical["$defs"])
    citations = _inline(copy.deepcopy(defs["citations"]), defs)
    if passage_ids is not None:
        citations["items"] = {"type": "string", "enum": list(passage_ids)}
    defs["citations"] = citations
    props = canonical["properties"]
    verdict = copy.deepcopy(props["verdict"])
    verdict["properties"]["winner"] = {"type": "string", "enum": [pair.a.name, pair.b.name, "tie"]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(canonical["required"]),
        "properties": {
            "a": _analysis(defs, pair.a.name, pair.category.dimensions),
            "b": _analysis(defs, pair.b.name, pair.category.dimensions),
            "verdict": verdict,
            "faq": copy.deepcopy(props["faq"]),
            "alternatives": copy.deepcopy(props["alternatives"]),
        },
    }


def for_dialect(schema: dict[str, Any], dialect: str) -> dict[str, Any]:
    """The schema as the endpoint's dialect takes it."""
    if dialect != "json_schema":
        return schema
    return _strict(schema)


def compact(node: Any, max_chars: int) -> Any:
    """A stricter schema for small models: shorter strings, the minimum number of items.

    Anything valid against it is valid against the schema it came from.
    """
    if isinstance(node, list):
        return [compact(x, max_chars) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: compact(v, max_chars) for k, v in node.items()}
    if out.get("type") == "string" and "maxLength" in out:
        low = max(1, out.get("minLength", 1))
        high = max(low, min(out["maxLength"], max_chars))
        # Start with a letter or digit and keep JSON and markup characters out: small models
        # otherwise "close" the JSON inside a string or spill the prompt's tags into it.
        out["pattern"] = f'^[A-Za-z0-9][^"\\\\{{}}<>\\[\\]]{{{low - 1},{high - 1}}}$'
        out.pop("minLength", None)
        out.pop("maxLength", None)
    if out.get("type") == "array" and "enum" in out.get("items", {}):
        out["minItems"] = out["maxItems"] = 1  # a citation: exactly one passage id
    elif out.get("type") == "array" and "minItems" in out:
        out["maxItems"] = out["minItems"]
    return out


def without_verdict(schema: dict[str, Any]) -> dict[str, Any]:
    """The first stage of a staged generation: everything but the verdict."""
    out = copy.deepcopy(schema)
    out["properties"].pop("verdict")
    out["required"] = [k for k in out["required"] if k != "verdict"]
    return out


def verdict_only(schema: dict[str, Any], winner: str) -> dict[str, Any]:
    """The second stage: the verdict, its winner fixed to the one code computed."""
    verdict = copy.deepcopy(schema["properties"]["verdict"])
    verdict["properties"]["winner"] = {"type": "string", "enum": [winner]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["verdict"],
        "properties": {"verdict": verdict},
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


def _rating(defs: dict[str, Any], dim: Dimension) -> dict[str, Any]:
    base = defs["rating"]
    branches = {b["type"]: b for b in base["properties"]["value"]["anyOf"]}
    if dim.kind == "percent":
        value = copy.deepcopy(branches["integer"])
    elif dim.kind == "level":
        value = {"type": "string", "enum": list(dim.levels)}
    elif dim.kind == "list":
        value = copy.deepcopy(branches["array"])
    else:
        value = copy.deepcopy(branches["string"])
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


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k not in STRICT_UNSUPPORTED}
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out
