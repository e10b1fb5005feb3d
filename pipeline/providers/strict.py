"""The size limits of OpenAI's strict structured outputs, measured before a schema is sent.

From https://platform.openai.com/docs/guides/structured-outputs ("Supported schemas", "Objects
have limitations on nesting depth and size", "Limitations on enum size", "Limitations on total
string size"), as of 2025-2026; earlier limits were lower (100 properties, 5 levels, 500 enum
values). A schema over a limit is refused with HTTP 400 before any generation, so the pipeline
measures the derived strict schema first and, when a pair would exceed a limit, degrades it
predictably: citations become a `^P[0-9]{1,3}$` pattern instead of an enum of passage ids (for
fine-tuned models, which take no `pattern`, a plain string). The canonical schema with the
pair's per-subject enums is still enforced locally, so a wrong id is still re-asked — after the
answer instead of while decoding.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pipeline")

LIMITS = {
    "properties": 5000,  # object properties in the whole schema
    "depth": 10,  # levels of nesting
    "enum_values": 1000,  # enum values across all enum properties
    "string_chars": 120_000,  # property names, definition names, enum and const values together
    "large_enum_chars": 15_000,  # one string enum with more than 250 values: its values' total length
}
LARGE_ENUM = 250
_PASSAGE_ID = re.compile(r"^P[0-9]{1,3}$")
_warned: set[str] = set()


@dataclass(frozen=True)
class Size:
    properties: int
    depth: int
    enum_values: int
    string_chars: int
    large_enum_chars: int

    def over(self) -> list[str]:
        """The limits this size exceeds, as "enum_values 1065 > 1000"."""
        return [f"{k} {getattr(self, k)} > {v}" for k, v in LIMITS.items() if getattr(self, k) > v]

    def as_text(self) -> str:
        return ", ".join(f"{k} {getattr(self, k)} of {v}" for k, v in LIMITS.items())


def measure(schema: Any) -> Size:
    counts = {"properties": 0, "enum_values": 0, "string_chars": 0, "large_enum_chars": 0}

    def walk(node: Any, depth: int) -> int:
        if isinstance(node, list):
            return max((walk(x, depth) for x in node), default=depth)
        if not isinstance(node, dict):
            return depth
        deepest = depth
        props = node.get("properties")
        if isinstance(props, dict):
            counts["properties"] += len(props)
            counts["string_chars"] += sum(len(k) for k in props)
            deepest = max(deepest, *(walk(v, depth + 1) for v in props.values())) if props else deepest
        for key in ("$defs", "definitions"):
            if isinstance(node.get(key), dict):
                counts["string_chars"] += sum(len(k) for k in node[key])
                deepest = max(deepest, *(walk(v, depth) for v in node[key].values()))
        if isinstance(node.get("enum"), list):
            values = node["enum"]
            counts["enum_values"] += len(values)
            chars = sum(len(str(v)) for v in values)
            counts["string_chars"] += chars
            if len(values) > LARGE_ENUM and all(isinstance(v, str) for v in values):
                counts["large_enum_chars"] = max(counts["large_enum_chars"], chars)
        if "const" in node:
            counts["string_chars"] += len(str(node["const"]))
        for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems", "additionalProperties"):
            if key in node and isinstance(node[key], dict | list):
                deepest = max(deepest, walk(node[key], depth + (key == "items")))
        return deepest

    depth = walk(schema, 1)
    return Size(counts["properties"], depth, counts["enum_values"], counts["string_chars"], counts["large_enum_chars"])


def fit(schema: dict[str, Any], *, fine_tuned: bool = False, where: str = "") -> tuple[dict[str, Any], Size]:
    """The schema to send: as it is when within the limits, else with citation enums relaxed."""
    size = measure(schema)
    if not size.over():
        return schema, size
    relaxed = _relax_citations(copy.deepcopy(schema), fine_tuned)
    after = measure(relaxed)
    key = f"{where}|{','.join(size.over())}"
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "%sthe strict schema is over OpenAI's limits (%s): citations are sent as a %s instead of an enum of "
            "passage ids and checked locally (now: %s)",
            f"{where}: " if where else "", "; ".join(size.over()), "string" if fine_tuned else "pattern",
            after.as_text(),
        )  # fmt: skip
    return relaxed, after


def _relax_citations(node: Any, fine_tuned: bool) -> Any:
    if isinstance(node, list):
        return [_relax_citations(x, fine_tuned) for x in node]
    if not isinstance(node, dict):
        return node
    values = node.get("enum")
    if isinstance(values, list) and values and all(isinstance(v, str) and _PASSAGE_ID.match(v) for v in values):
        return {"type": "string"} if fine_tuned else {"type": "string", "pattern": _PASSAGE_ID.pattern}
    return {k: _relax_citations(v, fine_tuned) for k, v in node.items()}


# -- the strict dialect: the schema as OpenAI's strict structured outputs take it ----------------

STRICT_UNSUPPORTED = {"$schema", "$id", "minLength", "maxLength", "minProperties", "maxProperties", "title"}
FINE_TUNED_UNSUPPORTED = STRICT_UNSUPPORTED | {
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minItems", "maxItems", "uniqueItems",
}  # fmt: skip


def for_dialect(schema: dict[str, Any], dialect: str, *, fine_tuned: bool = False) -> dict[str, Any]:
    """The schema as the endpoint's dialect takes it."""
    if dialect != "json_schema":
        return schema
    strict: dict[str, Any] = _strict(schema, FINE_TUNED_UNSUPPORTED if fine_tuned else STRICT_UNSUPPORTED)
    return strict


def _strict(node: Any, dropped: set[str], *, names: bool = False) -> Any:
    if isinstance(node, list):
        return [_strict(x, dropped) for x in node]
    if not isinstance(node, dict):
        return node
    if names:  # a `properties` mapping: its keys are names (a dimension may be called "Format"), not keywords
        return {k: _strict(v, dropped) for k, v in node.items()}
    out = {k: _strict(v, dropped, names=k in ("properties", "$defs")) for k, v in node.items() if k not in dropped}
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out
