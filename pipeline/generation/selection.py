"""Selection mode: a small model chooses, the report quotes the sources, code composes the rest.

A 135M model cannot write sound sentences about a comparison, but it can choose. For a profile
made with `small = true` the pipeline plans, for the subject and each dimension of its category,
the passages that speak to that dimension (lexical relevance to its name, description, levels and
rubric; each passage serves at most one dimension, so no quotation appears twice). The possible
pros and cons are the sentences a brief files under Strengths and Limitations, else the remaining
passages split by their wording. The model's answer is only choices:

    {"dimensions": {"Complexity": {"value": "Low", "rating": 3, "source": "P4"}, ...,
                    "Data Model": {"value": "Relational tables", "source": "P7"}},
     "pros": ["P9", "P12"], "cons": ["P10", "P13"]}

and the schema (anyOf branches, which llama.cpp's grammar enforces while decoding) makes each
choice consistent by construction: a level's rating lies in its band, and a passage that states
a level ("Complexity is low: ...") offers only the levels it states; a percent is a figure stated
in the cited passage and its rating is its tenth; list and text values are phrases of the
cited passage (a dimension that is not rated asks for no rating); pros and cons are two different
passages. `compose` turns the choices into the subject's profile: each rationale, pro and con is
the chosen passage quoted. A pair's texts are written by code (`compose_texts`): the verdict and
FAQ from the computed scores, the market alternatives from the briefs (else other subjects of the
category). Profiles and texts then pass the same validation and content gates as any model's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import SourceError
from pipeline.generation.gates import percent_band
from pipeline.generation.selection_text import faq_entries, verdict_reasoning
from pipeline.grounding import Passage, content_words, stem
from pipeline.models import Category, Dimension, Pair, Problem, Subject, level_band
from pipeline.scoring import winner, winner_name
from pipeline.textcheck import ends_sentence

RESERVE = 4  # passages kept for pros and cons (two each)
MAX_CANDIDATES = 2  # passages offered per dimension
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")
_MARKER = re.compile(r":\s+|\b(?:include|includes|including|such as)\s+", re.IGNORECASE)
_LIMITATION = re.compile(
    r"\b(only|cannot|can't|not|no|limited|limits?|lacks?|requires?|needs?|slower|slow|expensive|costly|harder|hard|"
    r"poor|lose|loses|drops?|falls?|less|fewer|weaker|lagged|stalls?|must|partial|smaller|heavy|bloat|vary|drawbacks?)\b",
    re.IGNORECASE,
)
_LEVEL_WORDS_SKIP = frozenset({"low", "high", "moderate", "medium", "none", "some"})


@dataclass(frozen=True)
class Slot:
    """One dimension of one subject: the passages that may support it and the values each offers."""

    dimension: Dimension
    options: tuple[tuple[str, tuple[Any, ...]], ...]  # (passage id, values it offers; () for levels)

    @property
    def candidates(self) -> tuple[str, ...]:
        return tuple(pid for pid, _ in self.options)


@dataclass(frozen=True)
class Side:
    subject: Subject
    slots: tuple[Slot, ...]
    strengths: tuple[str, ...]
    limitations: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """One subject's choices: per dimension the passages (and the values each offers), the possible
    pros and cons. A profile is planned on its own, so the same sources give the same choices on
    every page that shows the subject."""

    subject: Subject
    category: Category
    side: Side
    texts: tuple[tuple[str, str], ...]  # passage id -> text, for every passage the plan uses

    def text(self, pid: str) -> str:
        return dict(self.texts)[pid]

    def schema(self) -> dict[str, Any]:
        """What the model is asked for: choices only, each consistent by construction."""
        return _side_schema(self.side)


def plan(
    subject: Subject, category: Category, passages: Sequence[Passage], leanings: dict[str, str] | None = None
) -> Plan:
    """Which of a subject's passages may support which dimension, and which may be pros or cons.

    `leanings`: sentence text -> "strength" or "limitation", as briefs file them.
    Raises SourceError when the subject has too few quotable passages (give it a brief).
    """
    own = [p for p in passages if p.subject_id == subject.id]
    quotable = [p for p in own if p.label != "description" and ends_sentence(p.text)]
    needed = len(category.dimensions) + RESERVE
    if len(quotable) < needed:
        why = (f"{subject.id} has {len(quotable)} quotable source sentences; the small model's selection mode "
               f"needs at least {needed} (one per dimension and two pros and two cons)")  # fmt: skip
        fix = (
            f"add sentences to its brief config/{subject.brief} (complete sentences, at least one per dimension, "
            "and two each under ## Strengths and ## Limitations)"
            if subject.brief
            else f'give it a brief (brief = "sources/{subject.id}.md" in the catalogue)'
        )
        raise SourceError(f"{why}: {fix}, or use a capable model")
    side = _side(subject, category.dimensions, quotable, leanings or {})
    return Plan(subject, category, side, tuple(sorted((p.id, p.text) for p in quotable)))


def check(answer: dict[str, Any], the_plan: Plan) -> list[Problem]:
    """Problems of a selection answer against the plan's schema (the grammar usually prevents them)."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(the_plan.schema()).iter_errors(answer), key=lambda e: list(map(str, e.path)))
    out = []
    for e in errors[:12]:
        path = ".".join(str(p) for p in e.absolute_path)
        out.append(Problem(path, "is not one of the allowed choices" if e.validator == "anyOf" else e.message[:200]))
    return out


def compose(answer: dict[str, Any], the_plan: Plan) -> dict[str, Any]:
    """The subject's profile data from a valid selection answer: each rationale, pro and con is the
    chosen passage, quoted."""
    dims = {}
    for slot in the_plan.side.slots:
        pick = answer["dimensions"][slot.dimension.name]
        value = pick["value"]
        dims[slot.dimension.name] = {
            "value": list(value) if isinstance(value, list) else value,
            **({"rating": int(pick["rating"])} if slot.dimension.rated else {}),
            "rationale": the_plan.text(pick["source"]),
            "sources": [pick["source"]],
        }
    return {
        "subject": the_plan.subject.name,
        "dimensions": dims,
        "pros": [{"text": the_plan.text(p), "sources": [p]} for p in answer["pros"]],
        "cons": [{"text": the_plan.text(p), "sources": [p]} for p in answer["cons"]],
    }


def compose_texts(page: dict[str, Any], pair: Pair, alternatives: Sequence[str]) -> dict[str, Any]:
    """A pair's texts written by code from its page (two profiles): the verdict and FAQ from the
    computed scores, the market alternatives given (the briefs', else the category's other subjects)."""
    texts = with_verdict(page, pair, faq=True)
    return {"verdict": texts["verdict"], "faq": texts["faq"], "alternatives": list(alternatives[:5])}


def with_verdict(data: dict[str, Any], pair: Pair, *, faq: bool) -> dict[str, Any]:
    """`data` with the verdict (and with `faq`, the FAQ) composed by code from its ratings."""
    won, sa, sb = winner(data, pair.category)
    out = {
        **data,
        "verdict": {"winner": winner_name(pair, won), "reasoning": verdict_reasoning(data, pair, won, sa, sb)},
    }
    if faq:
        out["faq"] = faq_entries(data, pair, won, sa, sb)
    return out


def alternatives_for(pair: Pair, named: Sequence[str], others: Sequence[Subject]) -> tuple[str, ...]:
    """The briefs' market alternatives (neither subject, nor naming one); else other catalogue subjects."""
    from pipeline.textcheck import names_subject

    found = [n for n in dict.fromkeys(named) if not names_subject(n, pair)]
    return tuple(found or [s.name for s in others if s.id not in (pair.a.id, pair.b.id)])


# -- planning ---------------------------------------------------------------------------------


def _side(subject: Subject, dims: Sequence[Dimension], quotable: list[Passage], leanings: dict[str, str]) -> Side:
    texts = {p.id: p.text for p in quotable}
    leaning = {p.id: leanings[p.text] for p in quotable if p.text in leanings}
    scores = {(d.name, p.id): _relevance(p.text, d) for d in dims for p in quotable}
    order = {p.id: i for i, p in enumerate(quotable)}
    taken: dict[str, list[str]] = {d.name: [] for d in dims}
    # Passages a brief files as strengths or limitations stay for pros and cons, unless a
    # dimension has nothing else.
    free = [p.id for p in quotable if p.id not in leaning]
    spare = [p.id for p in quotable if p.id in leaning]

    def best(dim: Dimension, pool: list[str]) -> str | None:
        ranked = sorted(pool, key=lambda pid: (-scores[(dim.name, pid)], order[pid]))
        return ranked[0] if ranked else None

    # Every dimension gets its best passage (strongest matches first); a second one only when
    # it is a good match too and enough passages stay free for two pros and two cons.
    wanted = sorted(dims, key=lambda d: -max((scores[(d.name, pid)] for pid in free), default=0))
    for dim in wanted:
        pid = best(dim, free)
        if pid is None or (scores[(dim.name, pid)] <= 0 and spare):
            pid = best(dim, spare) or pid
        if pid is None:
            continue
        taken[dim.name].append(pid)
        (free if pid in free else spare).remove(pid)
    for dim in wanted:
        pid = best(dim, free)
        first = scores[(dim.name, taken[dim.name][0])] if taken[dim.name] else 0
        if pid is None or scores[(dim.name, pid)] < max(2.0, first / 2) or len(free) + len(spare) <= RESERVE:
            continue
        taken[dim.name].append(pid)
        free.remove(pid)
    slots = tuple(Slot(d, tuple((pid, _values(texts[pid], d)) for pid in taken[d.name])) for d in dims)
    left = spare + free
    strengths = [pid for pid in left if leaning.get(pid) == "strength"]
    limits = [pid for pid in left if leaning.get(pid) == "limitation"]
    for pid in free:  # passages the brief did not file: by their wording, where a pool is short
        pool = limits if _LIMITATION.search(texts[pid]) else strengths
        if len(pool) < 2 or (len(strengths) + len(limits) < RESERVE):
            pool.append(pid)
    while len(strengths) < 2 and len(limits) > 2:
        strengths.append(limits.pop())
    while len(limits) < 2 and len(strengths) > 2:
        limits.append(strengths.pop())
    return Side(subject, slots, tuple(sorted(strengths, key=lambda pid: order[pid])),
                tuple(sorted(limits, key=lambda pid: order[pid])))  # fmt: skip


def _relevance(text: str, dim: Dimension) -> float:
    words = content_words(text)
    name = content_words(dim.name)
    score = 2.0 * len(words & name) + len(words & (content_words(dim.description) - name))
    score += 0.5 * len(words & (content_words(" ".join(dim.levels)) - _LEVEL_WORDS_SKIP - name))
    head = " ".join(text.split()[: len(dim.name.split()) + 1]).casefold()
    if dim.name.casefold() in head:
        score += 3  # "Throughput is high: ...", "Data model: ..."
    if dim.kind == "percent" and _PERCENT.search(text):
        score += 1
    if dim.kind in ("list", "text") and _MARKER.search(text):
        score += 1
    return score


def _values(text: str, dim: Dimension) -> tuple[Any, ...]:
    """What a passage offers for a dimension: the figures, items or phrase it states; for a level
    dimension the levels it names (none named: any level)."""
    if dim.kind == "level":
        named = _levels_named(text.split(":", 1)[0], dim) if ":" in text else ()
        return named or _levels_named(text, dim)  # "Throughput is moderate: ..." states only its head
    if dim.kind == "percent":
        # Rounded, except that a figure just under 100 is not shown as 100.
        found = [_percent(float(v)) for v in _PERCENT.findall(text)]
        return tuple(dict.fromkeys(v for v in found if 0 <= v <= 100))
    if dim.kind == "list":
        return tuple(_items(text))
    if dim.kind == "text":
        return (_phrase(text),)
    return ()


def _percent(value: float) -> int:
    return round(value) if round(value) < 100 or value >= 100 else int(value)


def _levels_named(text: str, dim: Dimension) -> tuple[str, ...]:
    words = re.findall(r"[^\W\d_]+", text.casefold())
    return tuple(lv for lv in dim.levels if all(any(_same(w, part) for w in words) for part in lv.casefold().split()))


def _same(word: str, level_word: str) -> bool:
    """A text's word states a level's word: "slower" for Slow, "replication" for Replicated."""
    return word.startswith(level_word) or (len(level_word) >= 5 and stem(word) == stem(level_word))


def _after_marker(text: str) -> str:
    match = _MARKER.search(text)
    return (text[match.end() :] if match else text).rstrip(" .!?")


def _items(text: str) -> list[str]:
    """The items of an enumeration ("include photo tagging, visual search and OCR.")."""
    parts = [p.strip() for p in re.split(r",\s+", _after_marker(text))]
    if len(parts) > 1 and re.match(r"(and|or)\s", parts[-1]):  # "a, b, and c": the last comma ends it
        parts[-1] = re.sub(r"^(and|or)\s+", "", parts[-1])
    elif " and " in parts[-1] or " or " in parts[-1]:  # "a, b and c"
        parts[-1:] = re.split(r"\s+(?:and|or)\s+(?!.*\s(?:and|or)\s)", parts[-1], maxsplit=1)
    items = [p for p in parts if 1 <= len(p) <= 40 and len(p.split()) <= 5]
    if all(p[:1].islower() for p in items):  # plain phrases ("photo tagging"), not names ("pgvector, Celery")
        items = [_capital(p) for p in items]
    return list(dict.fromkeys(items))[:6] or [_capital(" ".join(text.split()[:4]).rstrip(",.;:"))]


def _phrase(text: str) -> str:
    """A short phrase for a text value: the first clause after a marker ("Data model: ...")."""
    clause = re.split(r",\s+|;\s+|\s+-\s+", _after_marker(text))[0].strip()
    if len(clause) > 80:
        clause = clause[: clause.rfind(" ", 0, 78)].rstrip(",;:") + "…"
    return _capital(clause)


def _capital(text: str) -> str:
    """ "photo tagging" -> "Photo tagging"; a first word with capitals or digits ("pgBouncer") is a name."""
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first.islower() else text


# -- the choice schema ------------------------------------------------------------------------


def _object(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(props), "properties": props}


def _enum(values: Sequence[Any], kind: str = "string") -> dict[str, Any]:
    return {"type": kind, "enum": list(values)}


def _side_schema(side: Side) -> dict[str, Any]:
    return _object(
        {
            "dimensions": _object({s.dimension.name: _slot_schema(s) for s in side.slots}),
            "pros": _two_of(side.strengths),
            "cons": _two_of(side.limitations),
        }
    )


def _choice(value: dict[str, Any], ratings: Sequence[int] | None, sources: Sequence[str]) -> dict[str, Any]:
    """One consistent choice; `ratings` None for a dimension that is not rated (no rating asked)."""
    rating = {} if ratings is None else {"rating": _enum(ratings, "integer")}
    return _object({"value": value, **rating, "source": _enum(sources)})


def _slot_schema(slot: Slot) -> dict[str, Any]:
    dim, cands = slot.dimension, list(slot.candidates)
    if dim.kind == "level":
        n = len(dim.levels)
        stated = {lv: [pid for pid, named in slot.options if lv in named or not named] for lv in dim.levels}
        branches = [
            _choice(_enum([lv]), range(level_band(i, n)[0], level_band(i, n)[1] + 1), stated[lv])
            for i, lv in enumerate(dim.levels)
            if stated[lv]
        ]
    elif dim.kind == "percent":
        pairs = [(v, pid) for pid, values in slot.options for v in values]
        if not pairs:  # no figure in the passages: the claim will show as unsupported
            pairs = [(v, pid) for v in range(0, 101, 10) for pid in cands[:1]]
        branches = [_choice(_enum([v], "integer"), _band(v), [pid]) for v, pid in pairs]
    elif dim.kind == "list":
        ratings = range(1, 11) if dim.rated else None
        branches = [_choice(_two_of(values, item=True), ratings, [pid]) for pid, values in slot.options]
    else:
        branches = [_choice(_enum(list(values)), None, [pid]) for pid, values in slot.options]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _band(value: int) -> range:
    low, high = percent_band(value)
    return range(low, high + 1)


def _two_of(values: Sequence[str], *, item: bool = False) -> dict[str, Any]:
    """Two different values, in the given order (one when only one exists)."""
    values = list(values)
    if len(values) < 2:
        if item:
            return {"type": "array", "minItems": 1, "maxItems": 1, "items": _enum(values)}
        raise SourceError("selection mode needs at least two possible pros and two possible cons per subject")
    branches = [
        {"type": "array", "prefixItems": [_enum([v]), _enum(values[i + 1 :])], "items": False,
         "minItems": 2, "maxItems": 2}
        for i, v in enumerate(values[:-1])
    ]  # fmt: skip
    return branches[0] if len(branches) == 1 else {"anyOf": branches}
