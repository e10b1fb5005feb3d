"""Content gates: what a schema-valid answer must also get right before a reader sees it.

The schema checks shape; these check substance, for every model, and each problem names its
gate (`Problem.rule`) so the re-ask can say which rule was broken:

- value-rating: a level's rating lies in the level's own band (the levels split 1-10 into runs
  that do not overlap, lowest level lowest: for three levels Low is 1-3, Moderate 4-6, High
  7-10); a percent's rating is its tenth, rounded (91% is 9); so a subject whose value is higher
  than another's is never rated lower, on any page (checked on each page too);
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

Three entry points: `check_profile` (one subject: its cells, pros and cons), `check_texts` (a pair's
own texts, seen on the page they complete: the verdict, FAQ, alternatives, and copies of profile
text) and `check` (a whole page or an earlier release's pair generation: everything). Only rated
dimensions have a rating to check; the cross-subject order of ratings ("a higher value is never
rated lower") is a page-level rule, since each profile is rated on its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from pipeline.grounding import point_text
from pipeline.models import Category, Dimension, Pair, Problem, level_band, percent_rating
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

# Stored with each generation; generations made before gates existed are listed, not failed. 3: each level
# has ratings of its own and a percentage one; a generation made under 2 is checked on the bands of its day.
VERSION = 3
# 2: profiles and pair texts are gated apart; the page gates what spans both (the verdict, copies, order)
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


Sides = dict[str, dict[str, Any]]  # path prefix ("a.", "b.", or "" for a profile) -> analysis


def check(
    data: dict[str, Any],
    pair: Pair,
    scopes: tuple[frozenset[str], frozenset[str]] | None = None,
    caps: dict[str, int] | None = None,
    version: int = VERSION,
) -> list[Problem]:
    """Every gate's problems for a page. `scopes`: each subject's passage ids; `caps`: text length limits;
    `version`: the gates' version the page was made under (its rating bands)."""
    sides = {"a.": data["a"], "b.": data["b"]}
    category = pair.category
    out = [p for prefix, side in sides.items() for p in _side_problems(side, prefix, category, version)]
    out += _duplicates([f["question"] for f in data["faq"]], "faq") + _degenerate(data)
    out += value_order(data, pair)
    out += complete_text(sides, data, caps or {})
    out += faq_questions(data, pair) + alternative_names(data, pair)
    # Copies within one subject's profile, and of any text in the pair's own texts; two profiles are rated
    # apart and may state the same fact in the same words (neither is asked again for the other).
    out += [p for prefix, side in sides.items() for p in no_copies({prefix: side}, None)]
    out += [p for p in no_copies(sides, data) if _own(p.path)] + verdict(data, pair)
    if scopes:
        for (prefix, side), own, other in zip(sides.items(), scopes, reversed(scopes), strict=True):
            subject, rival = (pair.a, pair.b) if prefix == "a." else (pair.b, pair.a)
            out += citation_scope(side, prefix, own, other, subject.name, rival.name)
    return out


def check_profile(
    profile: dict[str, Any],
    category: Category,
    scope: frozenset[str] | None = None,
    caps: dict[str, int] | None = None,
    version: int = VERSION,
) -> list[Problem]:
    """The gates one subject's profile must pass: its own cells, pros and cons."""
    sides = {"": profile}
    out = _side_problems(profile, "", category, version) + _degenerate(profile)
    out += complete_text(sides, None, caps or {}) + no_copies(sides, None)
    if scope is not None:
        out += citation_scope(profile, "", scope, frozenset(), str(profile.get("subject", "")), "")
    return out


def check_texts(
    texts: dict[str, Any], page: dict[str, Any], pair: Pair, caps: dict[str, int] | None = None
) -> list[Problem]:
    """The gates a pair's own texts must pass, on the page they complete (`page`: the two profiles with
    these texts): only what the texts can change counts, so a re-ask never asks for another rating."""
    found = [*_duplicates([f["question"] for f in texts["faq"]], "faq"), *_degenerate(texts)]
    found += complete_text({}, texts, caps or {}) + faq_questions(texts, pair) + alternative_names(texts, pair)
    found += no_copies({"a.": page["a"], "b.": page["b"]}, texts) + verdict(page, pair)
    return [p for p in found if _own(p.path)]


def _own(path: str) -> bool:
    """Whether a problem's path is in a pair's own texts (not in a profile)."""
    return path.split(".")[0].split("[")[0] in ("verdict", "faq", "alternatives")


def page_consistency(data: dict[str, Any], pair: Pair) -> list[Problem]:
    """The consistency rules alone, for pages made before the content gates existed."""
    out = [p for prefix in ("a.", "b.") for p in consistency(data[prefix[0]], prefix, pair.category)]
    return out + _duplicates([f["question"] for f in data["faq"]], "faq") + _degenerate(data)


def _side_problems(side: dict[str, Any], prefix: str, category: Category, version: int = VERSION) -> list[Problem]:
    return [*consistency(side, prefix, category), *value_bands(side, prefix, category, version),
            *plausible_values(side, prefix, category)]  # fmt: skip


def by_gate(problems: Iterable[Problem]) -> dict[str, list[Problem]]:
    """Problems grouped by gate, every gate present (empty lists: passed)."""
    out: dict[str, list[Problem]] = {g: [] for g in GATES}
    for p in problems:
        out.setdefault(p.rule or "consistency", []).append(p)
    return out


def percent_band(value: float) -> tuple[int, int]:
    """The one rating of a percentage (pipeline.models.percent_rating), as a band."""
    rating = percent_rating(value)
    return rating, rating


@lru_cache(maxsize=8)
def caps_of(schema_json: str) -> dict[str, int]:
    """The length limits of the sentence fields, from a canonical schema's JSON (do not modify): the
    comparison schema has them all; the profile schema the rationale and points, the pair's the rest."""
    schema = json.loads(schema_json)
    defs, props = schema.get("$defs", {}), schema.get("properties", {})
    cell = defs.get("rating") or defs.get("cell") or {}
    found = {
        "rationale": cell.get("properties", {}).get("rationale", {}),
        "point": defs.get("points", {}).get("items", {}).get("properties", {}).get("text", {}),
        "reasoning": props.get("verdict", {}).get("properties", {}).get("reasoning", {}),
        "answer": props.get("faq", {}).get("items", {}).get("properties", {}).get("answer", {}),
    }
    return {k: int(v["maxLength"]) for k, v in found.items() if "maxLength" in v}


# -- the gates ---------------------------------------------------------------------------------


def value_bands(side: dict[str, Any], prefix: str, category: Category, version: int = VERSION) -> list[Problem]:
    """A level's or a percentage's rating lies in the value's band (the bands of gates `version`)."""
    out: list[Problem] = []
    for dim in category.dimensions:
        entry = side["dimensions"].get(dim.name)
        if dim.kind not in ("level", "percent") or entry is None or "rating" not in entry:
            continue
        band = _band(entry["value"], dim) if version >= 3 else _band_v2(entry["value"], dim)
        if band is None:
            continue  # not one of the levels: the schema reports it
        (low, high), what = band
        rating = int(entry["rating"])
        if not low <= rating <= high:
            allowed = f"{low}" if low == high else f"{low}-{high}"
            out.append(_p(f"{prefix}dimensions.{dim.name}.rating",
                          f"{what}, so its rating must be {allowed}, not {rating}", "value-rating"))  # fmt: skip
    return out


def value_order(data: dict[str, Any], pair: Pair) -> list[Problem]:
    """Across the two subjects of a page: a higher value is never rated lower."""
    out: list[Problem] = []
    for dim in pair.category.dimensions:
        if dim.kind not in ("level", "percent"):
            continue
        entries = {side: data[side]["dimensions"][dim.name] for side in ("a", "b")}
        if any("rating" not in e or (dim.kind == "level" and e["value"] not in dim.levels) for e in entries.values()):
            continue
        ranks = {s: (dim.levels.index(e["value"]) if dim.kind == "level" else e["value"]) for s, e in entries.items()}
        ra, rb = (int(entries[s]["rating"]) for s in ("a", "b"))
        if (ranks["a"] - ranks["b"]) * (ra - rb) < 0:
            hi, lo = ("a", "b") if ranks["a"] > ranks["b"] else ("b", "a")
            out.append(_p(f"{hi}.dimensions.{dim.name}.rating",
                          f"{_name(pair, hi)}'s value {_shown(entries[hi]['value'], dim)} is above {_name(pair, lo)}'s "
                          f"{_shown(entries[lo]['value'], dim)} but is rated lower ({entries[hi]['rating']} vs "
                          f"{entries[lo]['rating']})", "value-rating"))  # fmt: skip
    return out


def _band(value: Any, dim: Dimension) -> tuple[tuple[int, int], str] | None:
    if dim.kind == "level":
        if value not in dim.levels:
            return None
        index = dim.levels.index(value)
        return level_band(
            index, len(dim.levels)
        ), f"{value!r} is level {index + 1} of {len(dim.levels)} ({', '.join(dim.levels)})"
    return percent_band(value), f"{value}% is {value / 10:g} on the 1-10 scale, rounded {percent_rating(value)}"


def _band_v2(value: Any, dim: Dimension) -> tuple[tuple[int, int], str] | None:
    """The bands of gates version 2, which overlapped by half a band each side (three levels: 1-5, 3-8,
    6-10; a percentage within 2 of its tenth): how generations made under them are checked."""
    if dim.kind == "level":
        if value not in dim.levels:
            return None
        index, width = dim.levels.index(value), 9 / len(dim.levels)
        low = math.ceil(1 + width * (index - 0.5) - 1e-9)
        high = math.floor(1 + width * (index + 1.5) + 1e-9)
        return (max(1, low), min(10, high)), f"{value!r} is level {index + 1} of {len(dim.levels)}"
    band = max(1, math.ceil(value / 10 - 2 - 1e-9)), min(10, math.floor(value / 10 + 2 + 1e-9))
    return band, f"{value}% is {value / 10:g} on the 1-10 scale"


def complete_text(sides: Sides, texts: dict[str, Any] | None, caps: dict[str, int]) -> list[Problem]:
    out = []
    for path, kind, text in sentence_fields(sides, texts):
        if not ends_sentence(text):
            out.append(
                _p(path, f"{_quote(text)} does not end with . ! or ?; write a complete sentence", "complete-text")
            )
        elif kind in caps and len(text) >= caps[kind]:
            out.append(_p(path, f"is {len(text)} characters, the limit for this field, so it was probably cut off; "
                                "write a shorter complete sentence", "complete-text"))  # fmt: skip
    return out


def faq_questions(texts: dict[str, Any], pair: Pair) -> list[Problem]:
    out = []
    for i, entry in enumerate(texts["faq"]):
        question = entry["question"].strip()
        path = f"faq[{i}].question"
        if not question.endswith("?"):
            out.append(_p(path, f"{_quote(question)} is not a question: end it with ?", "faq-questions"))
        if not (names_subject(question, pair) or any(names(question, d.name) for d in pair.category.dimensions)):
            out.append(_p(path, f"{_quote(question)} names neither {pair.a.name}, {pair.b.name} nor a dimension "
                                "of the comparison; ask about them", "faq-questions"))  # fmt: skip
    return out


def alternative_names(texts: dict[str, Any], pair: Pair) -> list[Problem]:
    out = []
    own = [(s, words) for s in (pair.a, pair.b) for words in subject_names(s)]
    for i, alt in enumerate(texts["alternatives"]):
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
    for p in _duplicates(texts["alternatives"], "alternatives"):
        out.append(Problem(p.path, p.message, "alternative-names"))
    return out


def no_copies(sides: Sides, texts: dict[str, Any] | None) -> list[Problem]:
    out = []
    seen: list[tuple[str, str, str]] = []  # (group, path, key)
    for path, _kind, text in sentence_fields(sides, texts):
        key, group = _key(text), re.sub(r"\[\d+\]$|(^|\.)dimensions\.[^.]+\.rationale$", "*", path)
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
    leads = [d for d in pair.category.rated if _score(data, side, d) > _score(data, other, d)]
    if not any(names(reasoning, d.name) for d in leads):
        out.append(_p("verdict.reasoning", f"names no dimension where {win.name} leads; it leads on "
                                           f"{', '.join(d.name for d in leads)}", "verdict"))  # fmt: skip
    return out


def plausible_values(side: dict[str, Any], prefix: str, category: Category) -> list[Problem]:
    out = []
    for dim in category.dimensions:
        if dim.kind not in ("list", "text") or dim.name not in side["dimensions"]:
            continue
        value = side["dimensions"][dim.name]["value"]
        for j, item in enumerate(value if isinstance(value, list) else [value]):
            path = f"{prefix}dimensions.{dim.name}.value" + (f"[{j}]" if isinstance(value, list) else "")
            text = str(item).strip()
            if shouting(text):
                out.append(_p(path, f"{_quote(text)} is written in capitals; write it normally", "plausible-values"))
            elif _PLACEHOLDER.match(text) or text.casefold() == dim.name.casefold():
                out.append(_p(path, f"{_quote(text)} is a placeholder, not a value for {dim.name}", "plausible-values"))
    return out


def citation_scope(
    side: dict[str, Any], prefix: str, own: frozenset[str], foreign: frozenset[str], subject: str, other: str
) -> list[Problem]:
    out = []
    for path, cited in _citations(side, prefix):
        wrong = [c for c in cited if c not in own]
        if wrong:
            whose = (
                f"passages of {other}'s sources" if foreign and all(c in foreign for c in wrong) else "unknown passages"
            )
            message = f"cites {', '.join(wrong)}, {whose}; a claim about {subject} may cite only its own"
            out.append(_p(f"{path}.sources", message, "citation-scope"))
    return out


def consistency(side: dict[str, Any], prefix: str, category: Category) -> list[Problem]:
    problems: list[Problem] = []
    for dim in category.dimensions:
        entry = side["dimensions"].get(dim.name)
        if dim.kind == "list" and entry is not None:
            problems += _duplicates(entry["value"], f"{prefix}dimensions.{dim.name}.value")
    rationales = [side["dimensions"][d.name]["rationale"] for d in category.dimensions if d.name in side["dimensions"]]
    problems += _duplicates(rationales, f"{prefix}dimensions.*.rationale")
    pros, cons = [point_text(p) for p in side["pros"]], [point_text(c) for c in side["cons"]]
    problems += _duplicates(pros, f"{prefix}pros")
    problems += _duplicates(cons, f"{prefix}cons")
    if {_key(p) for p in pros} & {_key(c) for c in cons}:
        problems.append(_p(prefix.rstrip(".") or "pros", "the same point is listed as both a pro and a con",
                           "consistency"))  # fmt: skip
    return problems


def _degenerate(data: dict[str, Any]) -> list[Problem]:
    """Empty or looping strings anywhere in an answer."""
    problems = []
    for path, text in _strings(data, ""):
        if not text.strip():
            problems.append(_p(path, "is empty", "consistency"))
        elif repetitive(text):
            problems.append(
                _p(path, "repeats the same words over and over; write a short plain sentence", "consistency")
            )
    return problems


# -- helpers ----------------------------------------------------------------------------------


def sentence_fields(sides: Sides, texts: dict[str, Any] | None = None) -> Iterator[tuple[str, str, str]]:
    """(path, kind, text) of every field that must be a complete sentence: each side's rationales, pros
    and cons, then (with `texts`) the verdict reasoning and the FAQ answers."""
    for prefix, side in sides.items():
        for name, entry in side["dimensions"].items():
            yield f"{prefix}dimensions.{name}.rationale", "rationale", entry["rationale"]
        for kind in ("pros", "cons"):
            for i, item in enumerate(side[kind]):
                yield f"{prefix}{kind}[{i}]", "point", point_text(item)
    if texts is not None:
        yield "verdict.reasoning", "reasoning", texts["verdict"]["reasoning"]
        for i, entry in enumerate(texts["faq"]):
            yield f"faq[{i}].answer", "answer", entry["answer"]


def _citations(side: dict[str, Any], prefix: str) -> Iterator[tuple[str, list[str]]]:
    for name, entry in side["dimensions"].items():
        yield f"{prefix}dimensions.{name}", list(entry.get("sources") or ())
    for kind in ("pros", "cons"):
        for i, item in enumerate(side[kind]):
            if isinstance(item, dict):
                yield f"{prefix}{kind}[{i}]", list(item.get("sources") or ())


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
