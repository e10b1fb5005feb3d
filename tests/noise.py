"""A seeded noise model for the test server: answers that vary between samples like a model's.

Every rated cell of a subject's profile has a stable "true" rating (from a hash of the subject and
dimension, inside the band its synthesised value allows). Each profile answer moves each rating by
-1 or +1 with probability `p` (each direction half of it), drawn from a generator seeded by the
request's seed, the choice's index and the subject, and kept inside the band, so every answer
passes the content gates. A pair's texts name the winner the prompt gives and a dimension the
prompt marks as a lead, so they agree with the profiles. Nothing else varies: with unchanged
inputs, two generations differ only by this sampling noise.

`displaced` stands for a real change: a cell in it has its value moved (a level to the far level,
a percentage 30 points; a rated list's true rating to the far end of 1-10), so its rating moves
by 2 or more and a diff that calls everything noise is caught out.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from pipeline.generation.gates import percent_band
from pipeline.models import Category, Dimension, Pair, Subject, level_band

_WINNER = re.compile(r"Winner: (.+)\.$", re.MULTILINE)
_LEAD = re.compile(r"^([^:\n]+): [^\n]*\(rated \d+/10, leads\)", re.MULTILINE)


class NoisyAnswers:
    def __init__(self, pairs: list[Pair], p: float = 0.2):
        self.subjects: dict[str, tuple[Subject, Category]] = {
            s.name: (s, pair.category) for pair in pairs for s in (pair.a, pair.b)
        }
        self.p = p
        self.displaced: set[tuple[str, str]] = set()  # (subject id, dimension name)

    def __call__(self, data: dict[str, Any], request: dict[str, Any], choice: int) -> dict[str, Any]:
        if "verdict" in data:
            return _texts(data, request["messages"][1]["content"])
        found = self.subjects.get(str(data.get("subject")))
        if found is None:
            return data
        subject, category = found
        rng = random.Random(f"{request.get('seed')}|{choice}|{subject.id}")
        for dim in category.rated:
            cell = data["dimensions"][dim.name]
            displaced = (subject.id, dim.name) in self.displaced
            if displaced and dim.kind in ("level", "percent"):
                cell["value"] = _moved(cell["value"], dim)
            low, high = _band(cell["value"], dim)
            draw = rng.random()
            step = -1 if draw < self.p / 2 else 1 if draw < self.p else 0
            true = true_rating(subject, dim, low, high)
            if displaced and dim.kind == "list":
                true = high if true <= (low + high) // 2 else low
            cell["rating"] = min(high, max(low, true + step))
        return data


def _texts(data: dict[str, Any], prompt: str) -> dict[str, Any]:
    """The pair's texts agreeing with the profiles the prompt shows: its winner, and a lead of the winner's."""
    found = _WINNER.search(prompt)
    winner = found.group(1) if found else "tie"
    if winner == "tie":
        reasoning = "It is a tie: the two score within the tie band overall."
    else:
        block = prompt.split(f'<source subject="{winner}"', 1)[-1].split("</source>", 1)[0]
        lead = _LEAD.search(block)
        reasoning = f"{winner} comes out ahead; it leads on {lead.group(1) if lead else 'the rated dimensions'}."
    return {**data, "verdict": {"winner": winner, "reasoning": reasoning}}


def true_rating(subject: Subject, dim: Dimension, low: int, high: int) -> int:
    """The cell's stable rating: one of the three middle ratings of its band, by a hash."""
    digest = hashlib.sha256(f"{subject.id}|{dim.name}".encode()).digest()
    middle = (low + high) // 2
    return min(high - 1, max(low + 1, middle - 1 + digest[0] % 3))


def _moved(value: Any, dim: Dimension) -> Any:
    """A real change of a level's or a percentage's value: to the far level, or 30 points away."""
    if dim.kind == "level" and value in dim.levels:
        index = dim.levels.index(value)
        return dim.levels[-1] if index < len(dim.levels) - 1 else dim.levels[0]
    if dim.kind == "percent" and isinstance(value, int):
        return value + 30 if value <= 60 else value - 30
    return value


def _band(value: Any, dim: Dimension) -> tuple[int, int]:
    if dim.kind == "level" and value in dim.levels:
        return level_band(dim.levels.index(value), len(dim.levels))
    if dim.kind == "percent" and isinstance(value, int):
        return percent_band(value)
    return 1, 10
