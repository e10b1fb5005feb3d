"""Grid mode: the subjects of a category rated together, in calls of a bounded size.

For a capable model, one call that sees several subjects' sources side by side can rate them
consistently with each other on the rubric (calibration), where separate calls each decide
alone what "5" means. A `Grid` is one such call: its prompt holds the dimensions and rubric
once, then each member's sources; its answer maps each member's id to that member's profile,
checked by the member's own profile gates exactly as a per-subject answer would be.

Each member is still its own `ProfileJob` (its own passages, scope, schema and generation), so
everything after the call — the store, publishing, pages, overrides, consensus of pages — is
the same as in per-subject mode. A member's cache key is derived from its grid's key: when any
member's sources change, the grid is asked again and all its members are rated again together
(that is the price of calibration: a change re-rates the chunk, in one call).

The chunks are a function of the category alone (its members by id, filled up to a budget of
source characters), never of which pairs a run asks for, so `run --pair` and a batch share them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.generation.schema import sha256_of, specialise_profile
from pipeline.generation.validate import validate_profile
from pipeline.models import Category, Completion, Messages, Problem, SourceBundle, Subject

# What asks the grid's model: (messages, schema, accept) -> (data, completion, answered_at).
Ask = Callable[[list[dict[str, str]], dict[str, Any], Callable[..., Any]], tuple[dict[str, Any], Completion, str]]


@dataclass
class GridAnswer:
    """A grid's answer once asked: each member's profile, or why there is none."""

    profiles: dict[str, dict[str, Any]]
    model: str
    answered_at: str
    raw: str = ""  # the call's answer as it came
    claimed: bool = False  # whether a member has taken the call's attempts (the others carry none)
    error: BaseException | None = None


@dataclass(eq=False)
class Grid:
    """One call for several subjects of a category (`unit` "category/grid:a+b+c")."""

    unit: str
    category: Category
    subjects: tuple[Subject, ...]
    scopes: dict[str, tuple[str, ...]]  # each member's passage ids
    messages: Messages
    canonical: dict[str, Any]
    cache_key: str
    answer: GridAnswer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.subjects)

    @property
    def by_id(self) -> dict[str, Subject]:
        return {s.id: s for s in self.subjects}

    def member_key(self, subject_id: str) -> str:
        """A member's cache key: its grid's, and which member it is."""
        return sha256_of({"grid": self.cache_key, "subject": subject_id})

    def schema(self) -> dict[str, Any]:
        return grid_schema(self.canonical, self.category, self.subjects, self.scopes)

    def asked(self, ask: Ask) -> tuple[GridAnswer, bool]:
        """The grid's answer, asking for it the first time (one call for all members, even when several
        workers want it at once); and whether this caller is the first to take it (it carries the
        call's attempts)."""
        with self.lock:
            if self.answer is None:
                try:
                    data, completion, answered_at = ask(self.messages.as_list(), self.schema(),
                                                        lambda d: (d, self.problems(d)))  # fmt: skip
                    self.answer = GridAnswer({k: data[k] for k in self.ids}, completion.model, answered_at,
                                             raw=completion.text)  # fmt: skip
                except BaseException as exc:  # every member fails with it; the first keeps the attempts
                    self.answer = GridAnswer({}, "", "", error=exc)
            first = not self.answer.claimed
            self.answer.claimed = True
            return self.answer, first

    def problems(self, data: dict[str, Any]) -> list[Problem]:
        """Each member's profile checked by its own gates; paths name the member (`mysql.dimensions...`)."""
        out: list[Problem] = []
        for sid in self.ids:
            part = data.get(sid)
            if not isinstance(part, dict):
                out.append(Problem(sid, "missing: give this subject's profile under its id"))
                continue
            out.extend(Problem(f"{sid}.{p.path}" if p.path else sid, p.message, p.rule)
                       for p in validate_profile(part, self.by_id[sid], self.category, self.canonical,
                                                 self.scopes[sid]))  # fmt: skip
        extra = sorted(set(data) - set(self.ids))
        if extra:
            out.append(Problem("", f"unexpected keys {', '.join(extra)}: give only {', '.join(self.ids)}"))
        return out


def grid_schema(canonical: dict[str, Any], category: Category, subjects: Sequence[Subject],
                scopes: dict[str, tuple[str, ...]]) -> dict[str, Any]:  # fmt: skip
    """An object with each member's profile schema under its id."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [s.id for s in subjects],
        "properties": {s.id: specialise_profile(canonical, s, category, scopes[s.id]) for s in subjects},
    }


def chunks(members: Sequence[tuple[Subject, SourceBundle]], budget: int) -> list[list[tuple[Subject, SourceBundle]]]:
    """The category's members (in id order) in runs whose sources add up to at most `budget` characters;
    a member larger than the budget is a chunk of its own, and a last member left alone joins the chunk
    before it when that stays within half again the budget."""
    out: list[list[tuple[Subject, SourceBundle]]] = []
    sizes: list[int] = []
    for subject, bundle in members:
        chars = sum(len(s.text) for s in bundle.sources)
        if out and sizes[-1] + chars <= budget:
            out[-1].append((subject, bundle))
            sizes[-1] += chars
        else:
            out.append([(subject, bundle)])
            sizes.append(chars)
    if len(out) >= 2 and len(out[-1]) == 1 and sizes[-2] + sizes[-1] <= budget * 3 // 2:
        # a last member alone would be rated without peers: it joins the chunk before, at most half over budget
        out[-2].extend(out.pop())
    return out
