"""Content gates: what a schema-valid answer must also get right before a reader sees it.

The schema checks shape; these check substance, for every model, and each problem names its
gate (`Problem.rule`) so the re-ask can say which rule was broken:

- value-rating: a level's rating lies in the level's band (the levels split 1-10 into equal
  bands, lowest level lowest, with half a band of slack on each side — one band in all — so for
  three levels Low is 1-5, Moderate 3-8, High 6-10); a percent's rating is within 2 of value/10;
  and a subject whose value is higher than the other's is not rated lower;
- complete-text: rationales, pros, cons, verdict reasoning and FAQ answers end with . ! or ?
  and do not stop at their field's length limit;
- faq-questions: a question ends with ? and names a subject (name, alias or id) or a dimension;
- alternative-names: a market alternative is a name (at most 6 words, no sentence punctuation),
  not either compared subject nor containing one's name or alias, and not listed twice;
- no-copies: no text appears in two fields (verdict reasoning, pros, cons, rationales, FAQ
  answers; one text containing another of 24+ characters counts);
- verdict: the winner is the one code computed from the ratings, and the reasoning names it (or
  says it is a tie) and a dimension where it leads;
- plausible-values: list and text values are not written in capitals and are not placeholders;
- citation-scope: a rating, pro or con of one subject cites only that subject's passages;
- consistency: no duplicate items, no empty or looping text, no point that is both pro and con.

A dimension or subject is "named" when a word of its name (stemmed, four letters or more) is in
the text, so "Which one is more accurate?" names Accuracy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from pipeline.grounding import point_text
from pipeline.models import Dimension, Pair, Problem
from pipeline.scoring import dimension_score, winner, winner_name
from pipeline.textcheck import (
    WORD,
    contains_words,
    ends_sentence,
    names,
    names_subject,
    repetitive,
    shouting,
    subject_names,
)

VERSION = 1  # stored with each generation; generations made before it are listed, not failed
GATES = {
    "value-rating": "a value agrees with its rating",
    "complete-text": "texts are complete sentences",
    "faq-questions": "FAQ entries are questions about the pair",
    "alternative-names": "market alternatives are names of other products",
    "no-copies": "no text appears in two fields",
    "verdict": "the verdict names the computed winner and where it leads",
    "plausible-values": "list and text values are plain names or phrases",
    "citation-scope": "each subject's claims cite that subject's passages",
    "consistency": "no duplicates, empty or looping text",
}
_SENTENCE_MARK = re.compile(r"[.!?;:,](\s|$)")
_PLACEHOLDER = re.compile(
    r"^(n/?a|tbd|todo|unknown|none|null|nil|placeholder|lorem ipsum.*|value|values|text|string|example|sample|"
    r"test|foo|bar|x+|\?+|-+|\.+|(item|value|option|feature|thing|example) ?\d*)$",
    re.IGNORECASE,
)
_TIE = re.compile(r"\b(tie|tied|draw|evenly)\b", re.IGNORECASE)
MIN_CONTAINED = 24  # characters (letters and digits) a copied text must have to count inside a longer one


def check(
    data: dict[str, Any],
    pair: Pair,
    scopes: tuple[frozenset[str], frozenset[str]] | None = None,
    caps: dict[str, int] | None = None,
) -> list[Problem]:
    """Every gate's problems. `scopes`: each subject's passage ids; `caps`: text field length limits."""
    return [
        *consistency(data, pair),
        *value_rating(data, pair),
        *complete_text(data, caps or {}),
        *faq_questions(data, pair),
        *alternative_names(data, pair),
        *no_copies(data),
        *verdict(data, pair),
        *plausible_values(data, pair),
        *(citation_scope(data, pair, scopes) if scopes else []),
    ]


def by_gate(problems: Iterable[Problem]) -> dict[str, list[Problem]]:
    """Problems grouped by gate, every gate present (empty lists: passed)."""
    out: dict[str, list[Problem]] = {g: [] for g in GATES}
    for p in problems:
        out.setdefault(p.rule or "consistency", []).append(p)
    return out


def level_band(index: int, count: int) -> tuple[int, int]:
    """The ratings (lowest, highest) that agree with the level at `index` of `count` levels."""
    width = 9 / count
    low = math.ceil(1 + width * (index - 0.5) - 1e-9)
    high = math.floor(1 + width * (index + 1.5) + 1e-9)
    return max(1, low), min(10, high)


def percent_band(value: float) -> tuple[int, int]:
    """The ratings within 2 of value/10."""
    return max(1, math.ceil(value / 10 - 2 - 1e-9)), min(10, math.floor(value / 10 + 2 + 1e-9))


@lru_cache(maxsize=8)
def caps_of(schema_json: str) -> dict[str, int]:
    """The length limits of the sentence fields, from the canonical schema's JSON (do not modify)."""
    schema = json.loads(schema_json)
    defs, props = schema.get("$defs", {}), schema.get("properties", {})
    found = {
        "rationale": defs.get("rating", {}).get("properties", {}).get("rationale", {}),
        "point": defs.get("points", {}).get("items", {}).get("properties", {}).get("text", {}),
        "reasoning": props.get("verdict", {}).get("properties", {}).get("reasoning", {}),
        "answer": props.get("faq", {}).get("items", {}).get("properties", {}).get("answer", {}),
    }
    return {k: int(v["maxLength"]) for k, v in found.items() if "maxLength" in v}


# -- the gates ---------------------------------------------------------------------------------


def value_rating(data: dict[str, Any], pair: Pair) -> list[Problem]:
    out: list[Problem] = []
    for dim in pair.category.dimensions:
        if dim.kind not in ("level", "percent"):
            continue
        entries = {side: data[side]["dimensions"][dim.name] for side in ("a", "b")}
        ranks: dict[str, float] = {}
        for side, entry in entries.items():
            path = f"{side}.dimensions.{dim.name}.rating"
            value, rating = entry["value"], int(entry["rating"])
            if dim.kind == "level":
                if value not in dim.levels:
                    return out  # the schema reports it
                index = dim.levels.index(value)
                low, high = level_band(index, len(dim.levels))
                what = f"{value!r} is level {index + 1} of {len(dim.levels)} ({', '.join(dim.levels)})"
                ranks[side] = index
            else:
                low, high = percent_band(value)
                what = f"{value}% is {value / 10:g} on the 1-10 scale"
                ranks[side] = value
            if not low <= rating <= high:
                out.append(_p(path, f"{what}, so its rating must be {low}-{high}, not {rating}", "value-rating"))
        ra, rb = (int(entries[s]["rating"]) for s in ("a", "b"))
        if (ranks["a"] - ranks["b"]) * (ra - rb) < 0:
            hi, lo = ("a", "b") if ranks["a"] > ranks["b"] else ("b", "a")
            out.append(_p(f"{hi}.dimensions.{dim.name}.rating",
                          f"{_name(pair, hi)}'s value {_shown(entries[hi]['value'], dim)} is above {_name(pair, lo)}'s "
                          f"{_shown(entries[lo]['value'], dim)} but is rated lower ({entries[hi]['rating']} vs "
                          f"{entries[lo]['rating']})", "value-rating"))  # fmt: skip
    return out


def complete_text(data: dict[str, Any], caps: dict[str, int]) -> list[Problem]:
    out = []
    for path, kind, text in sentence_fields(data):
        if not ends_sentence(text):
            out.append(
                _p(path, f"{_quote(text)} does not end with . ! or ?; write a complete sentence", "complete-text")
            )
        elif kind in caps and len(text) >= caps[kind]:
            out.append(_p(path, f"is {len(text)} characters, the limit for this field, so it was probably cut off; "
                                "write a shorter complete sentence", "complete-text"))  # fmt: skip
    return out


def faq_questions(data: dict[str, Any], pair: Pair) -> list[Problem]:
    out = []
    for i, entry in enumerate(data["faq"]):
        question = entry["question"].strip()
        path = f"faq[{i}].question"
        if not question.endswith("?"):
            out.append(_p(path, f"{_quote(question)} is not a question: end it with ?", "faq-questions"))
        if not (names_subject(question, pair) or any(names(question, d.name) for d in pair.category.dimensions)):
            out.append(_p(path, f"{_quote(question)} names neither {pair.a.name}, {pair.b.name} nor a dimension "
                                "of the comparison; ask about them", "faq-questions"))  # fmt: skip
    return out


def alternative_names(data: dict[str, Any], pair: Pair) -> list[Problem]:
    out = []
    own = [(s, words) for s in (pair.a, pair.b) for words in subject_names(s)]
    for i, alt in enumerate(data["alternatives"]):
        path = f"alternatives[{i}]"
        tokens = WORD.findall(alt.casefold())
        if len(alt.split()) > 6 or _SENTENCE_MARK.search(alt):
            out.append(_p(path, f"{_quote(alt)} is a sentence, not a name: give the name of a product or technique "
                                "(at most 6 words, no sentence punctuation)", "alternative-names"))  # fmt: skip
        hit = next((s for s, words in own if contains_words(tokens, words)), None)
        if hit is not None:
            out.append(
                _p(
                    path,
                    f"{_quote(alt)} is (or names) {hit.name}, one of the two compared subjects",
                    "alternative-names",
                )
            )
    for p in _duplicates(data["alternatives"], "alternatives"):
        out.append(Problem(p.path, p.message, "alternative-names"))
    return out


def no_copies(data: dict[str, Any]) -> list[Problem]:
    out = []
    seen: list[tuple[str, str, str]] = []  # (group, path, key)
    for path, _kind, text in sentence_fields(data):
        key, group = _key(text), re.sub(r"\[\d+\]$|\.dimensions\.[^.]+\.rationale$", "*", path)
        for other_group, other_path, other in seen:
            if other_group == group:
                continue  # repeats within one list are the consistency gate's duplicates
            shorter, longer = sorted((key, other), key=len)
            if key == other or (len(shorter) >= MIN_CONTAINED and shorter in longer):
                out.append(_p(path, f"repeats the text of {other_path}; write something of its own", "no-copies"))
                break
        seen.append((group, path, key))
    return out


def verdict(data: dict[str, Any], pair: Pair) -> list[Problem]:
    computed, sa, sb = winner(data, pair.category)
    expected = winner_name(pair, computed)
    stated = data["verdict"]["winner"]
    if stated != expected:
        return [_p("verdict.winner", f"the ratings give {pair.a.name} {sa:.2f} and {pair.b.name} {sb:.2f} overall, "
                                     f"so the winner is {expected!r}, not {stated!r}; make the verdict agree with "
                                     "the ratings", "verdict")]  # fmt: skip
    reasoning = data["verdict"]["reasoning"]
    if computed == "tie":
        if not _TIE.search(reasoning):
            return [_p("verdict.reasoning", "the result is a tie; say so in the reasoning", "verdict")]
        return []
    side, other = computed, "b" if computed == "a" else "a"
    win = pair.a if side == "a" else pair.b
    out = []
    if not names_subject(reasoning, pair, only=win):
        out.append(_p("verdict.reasoning", f"does not name the winner, {win.name}", "verdict"))
    leads = [d for d in pair.category.dimensions if _score(data, side, d) > _score(data, other, d)]
    if not any(names(reasoning, d.name) for d in leads):
        out.append(_p("verdict.reasoning", f"names no dimension where {win.name} leads; it leads on "
                                           f"{', '.join(d.name for d in leads)}", "verdict"))  # fmt: skip
    return out


def plausible_values(data: dict[str, Any], pair: Pair) -> list[Problem]:
    out = []
    for dim in pair.category.dimensions:
        if dim.kind not in ("list", "text"):
            continue
        for side in ("a", "b"):
            value = data[side]["dimensions"][dim.name]["value"]
            for j, item in enumerate(value if isinstance(value, list) else [value]):
                path = f"{side}.dimensions.{dim.name}.value" + (f"[{j}]" if isinstance(value, list) else "")
                text = str(item).strip()
                if shouting(text):
                    out.append(
                        _p(path, f"{_quote(text)} is written in capitals; write it normally", "plausible-values")
                    )
                elif _PLACEHOLDER.match(text) or text.casefold() == dim.name.casefold():
                    out.append(
                        _p(path, f"{_quote(text)} is a placeholder, not a value for {dim.name}", "plausible-values")
                    )
    return out


def citation_scope(data: dict[str, Any], pair: Pair, scopes: tuple[frozenset[str], frozenset[str]]) -> list[Problem]:
    out = []
    for side, own in zip(("a", "b"), scopes, strict=True):
        foreign = scopes[1] if side == "a" else scopes[0]
        subject, other = (pair.a, pair.b) if side == "a" else (pair.b, pair.a)
        for path, cited in _citations(data[side], side):
            wrong = [c for c in cited if c not in own]
            if wrong:
                whose = (
                    f"passages of {other.name}'s sources" if all(c in foreign for c in wrong) else "unknown passages"
                )
                message = f"cites {', '.join(wrong)}, {whose}; a claim about {subject.name} may cite only its own"
                out.append(_p(f"{path}.sources", message, "citation-scope"))
    return out


def consistency(data: dict[str, Any], pair: Pair) -> list[Problem]:
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
        if {_key(p) for p in pros} & {_key(c) for c in cons}:
            problems.append(_p(side, "the same point is listed as both a pro and a con", "consistency"))
    problems += _duplicates([f["question"] for f in data["faq"]], "faq")
    for path, text in _strings(data, ""):
        if not text.strip():
            problems.append(_p(path, "is empty", "consistency"))
        elif repetitive(text):
            problems.append(
                _p(path, "repeats the same words over and over; write a short plain sentence", "consistency")
            )
    return problems


# -- helpers ----------------------------------------------------------------------------------


def sentence_fields(data: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(path, kind, text) of every field that must be a complete sentence."""
    for side in ("a", "b"):
        for name, entry in data[side]["dimensions"].items():
            yield f"{side}.dimensions.{name}.rationale", "rationale", entry["rationale"]
        for kind in ("pros", "cons"):
            for i, item in enumerate(data[side][kind]):
                yield f"{side}.{kind}[{i}]", "point", point_text(item)
    yield "verdict.reasoning", "reasoning", data["verdict"]["reasoning"]
    for i, entry in enumerate(data["faq"]):
        yield f"faq[{i}].answer", "answer", entry["answer"]


def _citations(analysis: dict[str, Any], side: str) -> Iterator[tuple[str, list[str]]]:
    for name, entry in analysis["dimensions"].items():
        yield f"{side}.dimensions.{name}", list(entry.get("sources") or ())
    for kind in ("pros", "cons"):
        for i, item in enumerate(analysis[kind]):
            if isinstance(item, dict):
                yield f"{side}.{kind}[{i}]", list(item.get("sources") or ())


def _score(data: dict[str, Any], side: str, dim: Dimension) -> int:
    return dimension_score(int(data[side]["dimensions"][dim.name]["rating"]), dim)


def _shown(value: Any, dim: Dimension) -> str:
    return f"{value}%" if dim.kind == "percent" else repr(value)


def _name(pair: Pair, side: str) -> str:
    return pair.a.name if side == "a" else pair.b.name


def _quote(text: str) -> str:
    return repr(text if len(text) <= 70 else text[:67] + "...")


def _p(path: str, message: str, rule: str) -> Problem:
    return Problem(path, message, rule)


def _key(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _duplicates(items: list[str], path: str) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        key = _key(item)
        if key in seen:
            out.append(_p(f"{path}[{i}]", f"duplicate item {item[:60]!r}", "consistency"))
        seen.add(key)
    return out


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")
