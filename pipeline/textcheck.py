"""Predicates on untrusted text that the content gates and selection mode share."""

from __future__ import annotations

import re

from pipeline.grounding import content_words
from pipeline.models import Pair, Subject

_TERMINAL = re.compile(r"[.!?…][\"'”’)\]]*$")
WORD = re.compile(r"\w+", re.UNICODE)


def ends_sentence(text: str) -> bool:
    """Whether a text ends like a sentence: . ! ? or …, perhaps inside closing quotes or brackets."""
    return bool(_TERMINAL.search(text.strip()))


def names(text: str, phrase: str) -> bool:
    """Whether `text` names `phrase`: one of its words (stemmed, 4+ letters) is in the text."""
    wanted = {w for w in content_words(phrase) if len(w) >= 4}
    return bool(wanted & content_words(text))


def names_subject(text: str, pair: Pair, only: Subject | None = None) -> bool:
    """Whether `text` names a subject of the pair (or `only` that one) by name, id or alias."""
    tokens = WORD.findall(text.casefold())
    subjects = (only,) if only else (pair.a, pair.b)
    return any(contains_words(tokens, words) for s in subjects for words in subject_names(s))


def subject_names(subject: Subject) -> list[list[str]]:
    found = [subject.name, subject.id.replace("-", " "), *subject.aliases]
    return [WORD.findall(n.casefold()) for n in found if WORD.findall(n)]


def contains_words(tokens: list[str], words: list[str]) -> bool:
    n = len(words)
    return any(tokens[i : i + n] == words for i in range(len(tokens) - n + 1))


def shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return (
        bool(letters) and all(c.isupper() for c in letters) and any(len(w) >= 6 for w in re.findall(r"[^\W\d_]+", text))
    )


def repetitive(text: str) -> bool:
    """Degenerate output: a word or short phrase looping, or very few distinct words."""
    words = [w.casefold() for w in WORD.findall(text)]
    if len(words) < 8:
        return False
    for n in (1, 2, 3):
        run = 1
        for i in range(n, len(words) - n + 1, n):
            run = run + 1 if words[i : i + n] == words[i - n : i] else 1
            if run >= 4:
                return True
    return len(set(words)) / len(words) < 0.35
