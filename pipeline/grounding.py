"""Grounding: sources split into numbered passages, and how well each claim rests on the passages it cites.

A passage is one sentence (a sentence longer than `MAX_CHARS` is cut at a space). A subject's
passages are numbered P1, P2, ... across its sources (in catalogue order), at most
`MAX_PASSAGES`, so an id names the same text for as long as the sources do. The model cites
passage ids for every value and every pro and con; the profile's schema makes them an enum of
the subject's passages, so a made-up id cannot pass. A page numbers the second subject's
passages on from the first's (pipeline.compose), so each label names one sentence on the page.

The support measure is lexical and graded. A claim's content words (stemmed; stop words and
the subjects' names, ids, aliases and vendors left out) are looked up in the passages it cites:

- *supported*: at least `SUPPORTED` of its words are there, and every number it states;
- *weak*: at least `WEAK` of its words are there, and every number;
- *unsupported*: fewer, or a number the cited passages do not contain;
- *uncited*: it cites nothing.

It catches citations unrelated to their claim and invented figures, not a claim that misreads a
passage; tests/data/support_labels.json is the hand-labelled set it is measured against.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models import Pair, SourceBundle, Subject

MAX_CHARS = 280
MAX_PASSAGES = 24  # per subject
SUPPORTED = 0.5
WEAK = 0.25
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d,])|(?<![\w.])\d+(?:\.\d+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n\s*\n")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP = frozenset(
    """a about above after again against all also an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just more most no nor not now of off
    on once only or other our out over own same she should so some such than that the their them then there
    these they this those through to too under until up very was we well were what when where which while
    who whom why will with would you your yours one two many much use used uses using based make makes
    made via per like within without across among new""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Passage:
    id: str
    subject_id: str
    label: str
    text: str


def passages(bundles: Sequence[SourceBundle]) -> tuple[Passage, ...]:
    return tuple(p for group in passages_by_source(bundles) for p in group)


def passages_by_source(bundles: Sequence[SourceBundle]) -> list[list[Passage]]:
    """The passages of each source (bundles' sources in order); at most MAX_PASSAGES per subject."""
    out: list[list[Passage]] = []
    count = 0
    for bundle in bundles:
        room = MAX_PASSAGES
        for source in bundle.sources:
            group = []
            for chunk in split(source.text)[:room]:
                count += 1
                group.append(Passage(f"P{count}", bundle.subject_id, source.label, chunk))
            room -= len(group)
            out.append(group)
    return out


def split(text: str) -> list[str]:
    """Sentences, one per passage; a sentence longer than MAX_CHARS is cut at spaces."""
    chunks: list[str] = []
    for sentence in (" ".join(s.split()) for s in _SENTENCE.split(text)):
        while len(sentence) > MAX_CHARS:
            cut = sentence.rfind(" ", 0, MAX_CHARS)
            cut = cut if cut > MAX_CHARS // 2 else MAX_CHARS
            chunks.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            chunks.append(sentence)
    return chunks


@functools.lru_cache(maxsize=8192)
def content_words(text: str, ignore: frozenset[str] = frozenset()) -> frozenset[str]:
    """Cached: a report checks each passage against every claim that cites it."""
    return frozenset(
        stem(w) for w in _WORD.findall(text.casefold()) if w not in STOP and w not in ignore and len(w) > 2
    )


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Enough stemming for overlap: common suffixes off, then the first six letters.

    "accuracy"/"accurate", "scalable"/"scalability", "replicas"/"replication" meet; the
    price is a few false meetings ("district"/"distributed"), acceptable for a lexical check.
    """
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word[:6]


def numbers(text: str) -> frozenset[float]:
    """The numbers a text states ("1,000" is 1000, "88.55%" is 88.55)."""
    return frozenset(float(n.replace(",", "")) for n in _NUMBER.findall(text))


def _stated(claimed: float, found: frozenset[float]) -> bool:
    """A claimed number is in the passages as written, or as the integer a passage's figure rounds or truncates to."""
    return any(claimed == n or (claimed.is_integer() and claimed in (round(n), int(n))) for n in found)


def support(claim: str, passages: Sequence[str], ignore: frozenset[str] = frozenset()) -> tuple[str, float]:
    """(supported | weak | unsupported, share of the claim's content words found in the passages)."""
    words = {w for w in content_words(claim, ignore) if not w.isdigit()}
    found = set().union(*(content_words(p, ignore) for p in passages)) if passages else set()
    share = len(words & found) / len(words) if words else 0.0
    stated = frozenset().union(*(numbers(p) for p in passages)) if passages else frozenset()
    if not all(_stated(n, stated) for n in numbers(claim)):
        return "unsupported", share
    if share >= SUPPORTED:
        return "supported", share
    return ("weak" if share >= WEAK else "unsupported"), share


STATUSES = ("supported", "weak", "unsupported", "uncited")


@dataclass(frozen=True)
class Claim:
    path: str  # e.g. "a.dimensions.Accuracy", "b.pros[1]"
    side: str
    text: str
    cited: tuple[str, ...]
    status: str  # one of STATUSES
    share: float = 0.0  # of the claim's content words found in the cited passages


def names_of(subjects: Sequence[Subject]) -> frozenset[str]:
    """Words of the subjects' names, ids, aliases and vendors: they say nothing about support."""
    return frozenset(
        w for s in subjects for name in (s.id, s.name, s.vendor, *s.aliases) for w in _WORD.findall(name.casefold())
    )


def claims(data: dict[str, Any], pair: Pair, texts: dict[str, str]) -> list[Claim]:
    """Every rating and every pro and con of a page, with its status; `texts` maps passage id to its text."""
    return _claims([(f"{s}.", s, data.get(s) or {}) for s in ("a", "b")], names_of((pair.a, pair.b)), texts)


def profile_claims(data: dict[str, Any], subject: Subject, texts: dict[str, str]) -> list[Claim]:
    """The claims of one subject's profile (paths without a side: "dimensions.Speed", "pros[1]")."""
    return _claims([("", "", data)], names_of((subject,)), texts)


def _claims(sides: list[tuple[str, str, dict[str, Any]]], ignore: frozenset[str], texts: dict[str, str]) -> list[Claim]:
    out = []
    for path, side, text, cited in _cited(sides):
        known = tuple(c for c in cited if c in texts)
        if not known:
            out.append(Claim(path, side, text, known, "uncited"))
            continue
        status, measured = support(text, [texts[c] for c in known], ignore)
        out.append(Claim(path, side, text, known, status, round(measured, 2)))
    return out


def tally(found: Sequence[Claim]) -> dict[str, int]:
    """How many claims have each status."""
    return {status: sum(1 for c in found if c.status == status) for status in STATUSES}


def _cited(sides: list[tuple[str, str, dict[str, Any]]]) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
    for prefix, side, analysis in sides:
        for name, entry in (analysis.get("dimensions") or {}).items():
            # The dimension's name is left out: a passage can support a rating without naming it.
            text = f"{_text(entry.get('value'))} {entry.get('rationale', '')}"
            yield f"{prefix}dimensions.{name}", side, text, tuple(entry.get("sources") or ())
        for kind in ("pros", "cons"):
            for i, item in enumerate(analysis.get(kind) or []):
                if isinstance(item, dict):
                    yield f"{prefix}{kind}[{i}]", side, str(item.get("text", "")), tuple(item.get("sources") or ())
                else:  # generations made before grounding: plain strings, no citations
                    yield f"{prefix}{kind}[{i}]", side, str(item), ()


def _text(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def point_text(item: Any) -> str:
    """A pro or con's text, from a cited point or a plain string (older generations)."""
    return str(item.get("text", "")) if isinstance(item, dict) else str(item)
