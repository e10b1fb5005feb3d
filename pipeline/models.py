"""The small frozen values passed between stages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

DimensionKind = Literal["percent", "level", "list", "text"]


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: DimensionKind
    weight: float = 1.0
    higher_is_better: bool = True
    levels: tuple[str, ...] = ()  # for kind == "level", lowest first
    description: str = ""
    # What ratings mean on this dimension, e.g. ((1, "one process on one machine"), (5, ...), (10, ...)).
    rubric: tuple[tuple[int, str], ...] = ()

    @property
    def rated(self) -> bool:
        """Whether subjects get a 1-10 rating here: levels and percentages always, lists only with a
        rubric (what would "how much list" mean otherwise), text never (shown as values)."""
        return self.kind in ("level", "percent") or (self.kind == "list" and bool(self.rubric))

    def rubric_text(self) -> str:
        """ "1 = one process on one machine; 5 = ...; 10 = ..." ("" without a rubric)."""
        return "; ".join(f"{point} = {meaning}" for point, meaning in self.rubric)

    def levels_text(self) -> str:
        """ "Low (rated 1-3), Moderate (4-6), High (7-10)": each level with its ratings."""
        bands = [level_band(i, len(self.levels)) for i in range(len(self.levels))]
        return ", ".join(f"{lv} ({'rated ' if i == 0 else ''}{lo}-{hi})" for i, (lv, (lo, hi))
                         in enumerate(zip(self.levels, bands, strict=True)))  # fmt: skip


def level_band(index: int, count: int) -> tuple[int, int]:
    """The ratings (lowest, highest) of the level at `index` of `count` (at most 10): the levels split
    1-10 into runs of their own, lowest level lowest (three levels: 1-3, 4-6, 7-10). No two levels share
    a rating, so a subject at a higher level is rated above one at a lower level on every page of the
    site, though each subject is rated on its own."""
    return 1 + 10 * index // count, 10 * (index + 1) // count


def percent_rating(value: float) -> int:
    """A percentage's rating: its tenth, rounded half up, from 1 to 10 (91% is 9, 95% is 10). One rating
    per value keeps every page's order of percentages and ratings the same."""
    return max(1, min(10, math.floor(value / 10 + 0.5)))


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    dimensions: tuple[Dimension, ...]
    tie_band: float = 0.25

    @property
    def rated(self) -> tuple[Dimension, ...]:
        """The dimensions that carry ratings and count in the overall score."""
        return tuple(d for d in self.dimensions if d.rated)


@dataclass(frozen=True)
class SourceSpec:
    kind: Literal["text", "file", "url"]
    label: str
    text: str = ""
    path: str = ""  # a workspace-relative file, or the URL of a url source


@dataclass(frozen=True)
class Subject:
    id: str
    name: str
    vendor: str
    category: str
    description: str
    sources: tuple[SourceSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    defined_in: str = ""
    brief: str = ""  # a config-relative Markdown file of facts about the subject ("sources/<id>.md")


@dataclass(frozen=True)
class Pair:
    """Two subjects in canonical (sorted id) order: `a,b` and `b,a` are one pair."""

    a: Subject
    b: Subject
    category: Category

    @property
    def key(self) -> str:
        return f"{self.a.id},{self.b.id}"

    @property
    def slug(self) -> str:
        return f"{self.a.id}-vs-{self.b.id}"


@dataclass(frozen=True)
class Source:
    subject_id: str
    label: str
    kind: str
    location: str  # "catalogue" or a workspace-relative path
    text: str
    sha256: str
    truncated: bool = False
    retrieved_at: str = ""  # url sources: when the text was last fetched (or revalidated)
    references: tuple[str, ...] = ()  # briefs: the public references their facts come from
    alternatives: tuple[str, ...] = ()  # briefs: market alternatives they name
    strengths: tuple[str, ...] = ()  # briefs: sentences filed under Strengths (the small model's pros)
    limitations: tuple[str, ...] = ()  # briefs: sentences filed under Limitations (its cons)


@dataclass(frozen=True)
class SourceBundle:
    subject_id: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class Messages:
    messages: tuple[dict[str, str], ...]
    sha256: str
    template_sha256: str

    def as_list(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.messages]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, served from the provider's prompt cache (cheaper)
    reasoning_tokens: int = 0  # of the completion tokens, spent reasoning before the answer

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def describe(self) -> str:
        """ "1200 prompt (300 cached) + 800 completion (500 reasoning)"."""
        cached = f" ({self.cached_tokens} cached)" if self.cached_tokens else ""
        reasoning = f" ({self.reasoning_tokens} reasoning)" if self.reasoning_tokens else ""
        return f"{self.prompt_tokens} prompt{cached} + {self.completion_tokens} completion{reasoning}"


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage
    model: str
    latency_ms: int
    refusal: str = ""  # the model declined (structured outputs' `message.refusal`): its reason


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    rule: str = ""  # the content gate that found it (pipeline.generation.gates.GATES); "" for schema and parse problems

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} [rule: {self.rule}]" if self.rule else text


@dataclass(frozen=True)
class AttemptRecord:
    """One HTTP call or in-process completion, kept whether it succeeded or not."""

    number: int
    outcome: str  # accepted | invalid | transport_error
    raw: str
    problems: tuple[Problem, ...]
    usage: Usage
    latency_ms: int
    finish_reason: str = ""
    error: str = ""
    sample: int = 1  # which sample it was for (generation samples > 1; pipeline.generation.consensus)


@dataclass(frozen=True)
class PassageText:
    id: str
    text: str


@dataclass(frozen=True)
class SourceRecord:
    """A source as a generation recorded it: where it came from, its hash, and the passages the prompt numbered.

    Stored (and published in the JSON report's provenance) as the dict of `to_json`; `from_json`
    reads every shape stored so far (older generations lack the optional keys).
    """

    subject: str
    label: str
    kind: str
    location: str
    sha256: str
    truncated: bool = False
    retrieved_at: str = ""
    passages: tuple[PassageText, ...] = ()
    references: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "label": self.label, "kind": self.kind, "location": self.location,
            "sha256": self.sha256, "truncated": self.truncated,
            **({"retrieved_at": self.retrieved_at} if self.retrieved_at else {}),
            "passages": [{"id": p.id, "text": p.text} for p in self.passages],
            **({"references": list(self.references)} if self.references else {}),
            **({"alternatives": list(self.alternatives)} if self.alternatives else {}),
        }  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> SourceRecord:
        passages = value.get("passages") or []
        return cls(
            subject=str(value.get("subject", "")), label=str(value.get("label", "")), kind=str(value.get("kind", "")),
            location=str(value.get("location", "")), sha256=str(value.get("sha256", "")),
            truncated=bool(value.get("truncated", False)), retrieved_at=str(value.get("retrieved_at", "")),
            passages=tuple(PassageText(str(p.get("id", "")), str(p.get("text", ""))) for p in passages
                           if isinstance(p, dict)),
            references=tuple(map(str, value.get("references") or ())),
            alternatives=tuple(map(str, value.get("alternatives") or ())),
        )  # fmt: skip


def profile_key(category_id: str, subject_id: str) -> str:
    """The unit key of a subject's profile in a category: "databases/postgresql"."""
    return f"{category_id}/{subject_id}"


# -- typed values of the generation units ---------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One dimension of one subject: its value, its rating (None where the dimension is not rated),
    the rationale and the passages it cites."""

    value: Any  # an int (percent), a level or phrase (str), or a tuple of items (list)
    rating: int | None
    rationale: str
    sources: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"value": list(self.value) if isinstance(self.value, tuple) else self.value,
                **({"rating": self.rating} if self.rating is not None else {}),
                "rationale": self.rationale, "sources": list(self.sources)}  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Cell:
        raw = value["value"]
        rating = value.get("rating")
        return cls(tuple(raw) if isinstance(raw, list) else raw, None if rating is None else int(rating),
                   str(value.get("rationale", "")), tuple(value.get("sources") or ()))  # fmt: skip


@dataclass(frozen=True)
class Point:
    text: str
    sources: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "sources": list(self.sources)}

    @classmethod
    def from_json(cls, value: Any) -> Point:
        if isinstance(value, dict):
            return cls(str(value.get("text", "")), tuple(value.get("sources") or ()))
        return cls(str(value))  # generations made before grounding: plain strings


@dataclass(frozen=True)
class Profile:
    """A subject rated once in its category: a cell per dimension, its pros and cons.

    Every page that shows the subject shows this, unchanged (one subject, one truth)."""

    subject: str  # the subject's name
    cells: tuple[tuple[str, Cell], ...]  # (dimension name, cell), in the category's order
    pros: tuple[Point, ...]
    cons: tuple[Point, ...]

    def cell(self, dimension: str) -> Cell:
        return dict(self.cells)[dimension]

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "dimensions": {name: c.to_json() for name, c in self.cells},
                "pros": [p.to_json() for p in self.pros], "cons": [c.to_json() for c in self.cons]}  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any], order: Sequence[str] = ()) -> Profile:
        dims = value["dimensions"]
        names = [n for n in order if n in dims] + [n for n in dims if n not in order]
        return cls(str(value["subject"]), tuple((n, Cell.from_json(dims[n])) for n in names),
                   tuple(Point.from_json(p) for p in value["pros"]),
                   tuple(Point.from_json(c) for c in value["cons"]))  # fmt: skip


@dataclass(frozen=True)
class PairTexts:
    """What a pair page says of its own: the verdict (its winner is code's), FAQ, market alternatives."""

    winner: str
    reasoning: str
    faq: tuple[tuple[str, str], ...]  # (question, answer)
    alternatives: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": {"winner": self.winner, "reasoning": self.reasoning},
                "faq": [{"question": q, "answer": a} for q, a in self.faq],
                "alternatives": list(self.alternatives)}  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PairTexts:
        return cls(str(value["verdict"]["winner"]), str(value["verdict"]["reasoning"]),
                   tuple((str(f["question"]), str(f["answer"])) for f in value["faq"]),
                   tuple(str(a) for a in value["alternatives"]))  # fmt: skip


@dataclass(frozen=True)
class Part:
    """One stored generation a composed page is made of (a profile, or the pair's texts)."""

    role: str  # "a", "b" (the subjects' profiles) or "pair"
    generation_id: str
    generated_at: str
    provider: str
    model: str
    cache_key: str
    attempts: int
    usage: Usage
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """A stored, validated generation (a pair's, or a unit's: `kind`), plus what code computes from it.

    kind "comparison": a whole pair generated at once (earlier releases); "profile": one subject
    (`pair_key` is then the unit key "category/subject"); "pair": a pair's own texts, `data` the
    pair texts and `params["profiles"]` the profile generations they were written for; "page": a
    pair page composed from two profiles and the pair's texts (`parts` says which), never stored.
    """

    generation_id: str
    pair_key: str
    category: str
    data: dict[str, Any]
    generated_at: str  # ISO 8601 UTC, when the model answered
    provider: str
    model: str
    cache_key: str
    prompt_sha256: str
    schema_sha256: str
    sources: tuple[SourceRecord, ...]
    attempts: int
    usage: Usage
    params: dict[str, Any] = field(default_factory=dict)  # sampling parameters, dialect, mode, gates, judge
    template_sha256: str = ""  # the prompt templates the messages were made from
    answered_by: str = ""  # the model the endpoint says answered (may differ from the one asked for)
    kind: str = "comparison"
    parts: tuple[Part, ...] = ()  # a composed page's generations

    @property
    def unit(self) -> str:
        return self.pair_key

    @property
    def stored_id(self) -> str:
        """The stored generation this stands for: a composed page's texts generation, else itself."""
        return next((p.generation_id for p in self.parts if p.role == "pair"), self.generation_id)

    def report_params(self) -> dict[str, Any]:
        """The parameters as the JSON report publishes them (its format keeps the two fields among them)."""
        extra = {"template_sha256": self.template_sha256, "answered_by": self.answered_by}
        return {**self.params, **{k: v for k, v in extra.items() if v}}


@dataclass(frozen=True)
class RunResult:
    comparison: Comparison
    cached: bool
    attempts: int
    usage: Usage


def model_attempts(records: Sequence[AttemptRecord]) -> int:
    """Attempts at the answer that reached the model (transport failures and the judge's calls do not count)."""
    return sum(1 for r in records if r.outcome in ("accepted", "invalid", "refused", "content_filter"))
