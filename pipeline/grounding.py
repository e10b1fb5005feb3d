"""Grounding: sources split into numbered passages, and which claim rests on which passage.

Passages are sentences grouped up to `MAX_CHARS`, numbered P1, P2, ... across the pair (subject a's
sources first, in catalogue order), so an id names the same text for as long as the sources do.
The model cites passage ids for every rating and every pro and con; the pair's schema makes the
ids an enum, so an id that does not exist fails validation and is re-asked.

The faithfulness check is deliberately cheap: a claim is *grounded* when it cites at least one
passage and shares at least one content word (not a stop word, not the subject's own name) with
the passages it cites; *unsupported* when it cites passages that share no content word with it;
*uncited* when it cites nothing. Reports mark the last two.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models import Pair, SourceBundle

MAX_CHARS = 280
MAX_PASSAGES = 40
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
    """The passages of each source (bundles' sources in order); at most MAX_PASSAGES in all."""
    out: list[list[Passage]] = []
    count = 0
    for bundle in bundles:
        for source in bundle.sources:
            group = []
            for chunk in split(source.text):
                if count == MAX_PASSAGES:
                    break
                count += 1
                group.append(Passage(f"P{count}", bundle.subject_id, source.label, chunk))
            out.append(group)
    return out


def split(text: str) -> list[str]:
    """Sentences, grouped while the group stays under MAX_CHARS; a longer sentence is cut at spaces."""
    chunks: list[str] = []
    current = ""
    for sentence in (s.strip() for s in _SENTENCE.split(text)):
        if not sentence:
            continue
        while len(sentence) > MAX_CHARS:
            cut = sentence.rfind(" ", 0, MAX_CHARS)
            cut = cut if cut > MAX_CHARS // 2 else MAX_CHARS
            if current:
                chunks.append(current)
                current = ""
            chunks.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > MAX_CHARS:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        chunks.append(current)
    return chunks


@functools.lru_cache(maxsize=8192)
def content_words(text: str, ignore: frozenset[str] = frozenset()) -> frozenset[str]:
    """Cached: a report checks each passage against every claim that cites it."""
    return frozenset(
        _stem(w) for w in _WORD.findall(text.casefold()) if w not in STOP and w not in ignore and len(w) > 2
    )


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """Enough stemming for overlap: plural and common suffixes off."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True)
class Claim:
    path: str  # e.g. "a.dimensions.Accuracy", "b.pros[1]"
    side: str
    text: str
    cited: tuple[str, ...]
    status: str  # grounded | unsupported | uncited


def claims(data: dict[str, Any], pair: Pair, texts: dict[str, str]) -> list[Claim]:
    """Every rating and every pro and con, with its status; `texts` maps passage id to its text."""
    ignore = frozenset(
        w for s in (pair.a, pair.b) for name in (s.id, s.name, s.vendor) for w in _WORD.findall(name.casefold())
    )
    out = []
    for path, side, text, cited in _cited(data):
        known = tuple(c for c in cited if c in texts)
        if not known:
            status = "uncited"
        else:
            words = content_words(text, ignore)
            support = set().union(*(content_words(texts[c], ignore) for c in known))
            status = "grounded" if words & support else "unsupported"
        out.append(Claim(path, side, text, known, status))
    return out


def share(found: Sequence[Claim]) -> tuple[int, int]:
    """(grounded claims, all claims)."""
    return sum(1 for c in found if c.status == "grounded"), len(found)


def _cited(data: dict[str, Any]) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
    for side in ("a", "b"):
        analysis = data.get(side) or {}
        for name, entry in (analysis.get("dimensions") or {}).items():
            text = f"{name} {_text(entry.get('value'))} {entry.get('rationale', '')}"
            yield f"{side}.dimensions.{name}", side, text, tuple(entry.get("sources") or ())
        for kind in ("pros", "cons"):
            for i, item in enumerate(analysis.get(kind) or []):
                if isinstance(item, dict):
                    yield f"{side}.{kind}[{i}]", side, str(item.get("text", "")), tuple(item.get("sources") or ())
                else:  # generations made before grounding: plain strings, no citations
                    yield f"{side}.{kind}[{i}]", side, str(item), ()


def _text(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def point_text(item: Any) -> str:
    """A pro or con's text, from a cited point or a plain string (older generations)."""
    return str(item.get("text", "")) if isinstance(item, dict) else str(item)
