"""Jobs: one unit of generation prepared before any call — a subject's profile, or a pair's texts.

A `ProfileJob` rates one subject of a category on the category's dimensions and rubric, from
that subject's sources alone: its cache key covers the sources, the category's dimensions and
rubric, the prompt templates, the schema, the model and the parameters, so every page that shows
the subject shares the one generation. A `PairJob` writes a pair page's own texts (verdict
reasoning, FAQ, alternatives) from the two profiles, never the sources again; for a small model
code writes them and no model is called. Both carry their cache key, messages and schema.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline.generation import gates, selection
from pipeline.generation.grid import Grid, grid_schema
from pipeline.generation.prompt import PromptBuilder
from pipeline.generation.schema import canonical_json, sha256_of, specialise_pair, specialise_profile
from pipeline.generation.selection import Plan
from pipeline.generation.validate import validate_profile, validate_texts
from pipeline.grounding import Passage, passages_by_source
from pipeline.models import (
    AttemptRecord,
    Category,
    Comparison,
    Messages,
    Pair,
    PassageText,
    Problem,
    SourceBundle,
    SourceRecord,
    Subject,
    Usage,
    model_attempts,
    profile_key,
)
from pipeline.providers.base import Provider
from pipeline.settings import GenerationParams

# /2: levels and percentages got ratings of their own. Earlier releases' pairs were "comparison-cache/2".
CACHE_FORMAT = "unit-cache/2"
CODE_TEXTS = "code-texts/1"  # what code writes for a small model's pair: bump when selection_text changes


@dataclass(frozen=True)
class Job:
    """What every unit shares: its key, messages, parameters and the identity of who answers."""

    unit: str  # "databases/postgresql" (a profile) or "mysql,postgresql" (a pair)
    category: Category
    messages: Messages
    canonical: dict[str, Any]
    schema_sha256: str
    params: GenerationParams
    provider_identity: dict[str, str]
    cache_key: str

    kind = "unit"

    @property
    def what(self) -> str:
        """How messages and errors name the unit."""
        return self.unit

    @property
    def mode(self) -> str:
        return "write"

    @property
    def by_code(self) -> bool:
        """Whether code writes the answer (no model call)."""
        return False

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def accept(self, answer: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """The data an answer stands for, and its problems (none: accepted)."""
        return answer, self.check(answer)

    def check(self, data: dict[str, Any]) -> list[Problem]:
        raise NotImplementedError

    @property
    def canonical_schema(self) -> str:
        """The canonical schema's JSON, kept in the store beside its sha256 (one copy for every job)."""
        if self.schema_sha256 not in _SCHEMA_TEXTS:
            _SCHEMA_TEXTS[self.schema_sha256] = canonical_json(self.canonical)
        return _SCHEMA_TEXTS[self.schema_sha256]

    def sources(self) -> tuple[SourceRecord, ...]:
        return ()

    def extra_params(self) -> dict[str, Any]:
        return {}


_SCHEMA_TEXTS: dict[str, str] = {}


@dataclass(frozen=True)
class ProfileJob(Job):
    subject: Subject
    bundle: SourceBundle
    passage_groups: tuple[tuple[Passage, ...], ...]  # each source's passages, as the prompt numbered them
    plan: Plan | None = None  # selection mode (small models): what the model may choose from
    grid: Grid | None = None  # grid mode: the call that rates it with other subjects of its category

    kind = "profile"

    @property
    def what(self) -> str:
        return f"{self.subject.id} ({self.category.id})"

    @cached_property
    def passages(self) -> tuple[Passage, ...]:
        return tuple(p for group in self.passage_groups for p in group)

    @cached_property
    def scope(self) -> tuple[str, ...]:
        """The passage ids its values, pros and cons may cite."""
        return tuple(p.id for p in self.passages)

    @property
    def mode(self) -> str:
        return "select" if self.plan else "grid" if self.grid else "write"

    def extra_params(self) -> dict[str, Any]:
        if self.grid is None:
            return {}
        return {"grid": {"call": self.grid.cache_key[:16], "subjects": list(self.grid.ids)}}

    def schema(self) -> dict[str, Any]:
        """The schema the model follows: the subject's profile, or the plan's choices in selection mode.

        Made on each call, not kept: a batch of 10,000 jobs need not hold 10,000 schemas."""
        if self.plan is not None:
            return self.plan.schema()
        return specialise_profile(self.canonical, self.subject, self.category, self.scope)

    def accept(self, answer: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """In selection mode the answer is a set of choices; the profile is composed from them and then
        checked exactly like a written one."""
        if self.plan is not None:
            problems = selection.check(answer, self.plan)
            if problems:
                return answer, problems
            answer = selection.compose(answer, self.plan)
        return answer, self.check(answer)

    def check(self, data: dict[str, Any]) -> list[Problem]:
        return validate_profile(data, self.subject, self.category, self.canonical, self.scope)

    def sources(self) -> tuple[SourceRecord, ...]:
        return tuple(
            SourceRecord(
                s.subject_id,
                s.label,
                s.kind,
                s.location,
                s.sha256,
                s.truncated,
                s.retrieved_at,
                tuple(PassageText(p.id, p.text) for p in group),
                s.references,
                s.alternatives,
            )
            for s, group in zip(self.bundle.sources, self.passage_groups, strict=True)
        )


@dataclass(frozen=True)
class PairJob(Job):
    pair: Pair
    page: dict[str, Any]  # {"a": profile, "b": profile}: what the texts complete
    profiles: tuple[str, str] = ("", "")  # the profile generations the texts are written for
    alternatives: tuple[str, ...] = ()  # named in the briefs (else the category's other subjects)
    code: bool = False  # a small model's pair: code writes the texts

    kind = "pair"

    @property
    def mode(self) -> str:
        return "code" if self.code else "write"

    @property
    def by_code(self) -> bool:
        return self.code

    def schema(self) -> dict[str, Any]:
        return specialise_pair(self.canonical, self.pair)

    def check(self, data: dict[str, Any]) -> list[Problem]:
        return validate_texts(data, {**self.page, **data}, self.pair, self.canonical)

    def written_by_code(self) -> dict[str, Any]:
        return selection.compose_texts(self.page, self.pair, self.alternatives)

    def extra_params(self) -> dict[str, Any]:
        return {"profiles": {"a": self.profiles[0], "b": self.profiles[1]}}


def prepare_profile(
    subject: Subject,
    category: Category,
    bundle: SourceBundle,
    builder: PromptBuilder,
    canonical: dict[str, Any],
    schema_sha256: str,
    provider: Provider,
    params: GenerationParams,
    judge: Provider | None = None,
) -> ProfileJob:
    """`judge`: the grounding judge, whose identity is part of the cache key (its verdicts are stored
    with the generation)."""
    groups = tuple(tuple(group) for group in passages_by_source([bundle]))
    found = tuple(p for group in groups for p in group)
    the_plan = None
    if provider.small:
        leanings = {t: "limitation" for s in bundle.sources for t in s.limitations}
        leanings.update({t: "strength" for s in bundle.sources for t in s.strengths})
        the_plan = selection.plan(subject, category, found, leanings)
        schema = the_plan.schema() if provider.dialect in ("json_object", "prompt") else None
        messages = builder.select(the_plan, schema)
    else:
        schema = None
        if provider.dialect in ("json_object", "prompt"):
            schema = specialise_profile(canonical, subject, category, tuple(p.id for p in found))
        messages = builder.profile(subject, category, found, schema)
    identity = provider.identity()
    key = _key(identity, params, messages, schema_sha256, [s.sha256 for s in bundle.sources], judge)
    return ProfileJob(profile_key(category.id, subject.id), category, messages, canonical, schema_sha256, params,
                      identity, key, subject=subject, bundle=bundle, passage_groups=groups, plan=the_plan)  # fmt: skip


def prepare_grid(
    category: Category,
    members: Sequence[tuple[Subject, SourceBundle]],
    builder: PromptBuilder,
    canonical: dict[str, Any],
    schema_sha256: str,
    provider: Provider,
    params: GenerationParams,
    judge: Provider | None = None,
) -> list[ProfileJob]:
    """The profile jobs of subjects rated together in one call (grid mode, a capable model): each its
    own job, answered by their shared `Grid`. Their keys cover every member's sources."""
    groups = {s.id: tuple(tuple(g) for g in passages_by_source([bundle])) for s, bundle in members}
    found = {sid: tuple(p for g in gs for p in g) for sid, gs in groups.items()}
    scopes = {sid: tuple(p.id for p in ps) for sid, ps in found.items()}
    subjects = tuple(s for s, _ in members)
    schema = None
    if provider.dialect in ("json_object", "prompt"):
        schema = grid_schema(canonical, category, subjects, scopes)
    messages = builder.grid(category, [(s, found[s.id]) for s in subjects], schema)
    identity = provider.identity()
    sources = [src.sha256 for _, bundle in members for src in bundle.sources]
    key = _key(identity, params, messages, schema_sha256, sources, judge)
    unit = f"{category.id}/grid:{'+'.join(s.id for s in subjects)}"
    grid = Grid(unit, category, subjects, scopes, messages, canonical, key)
    return [ProfileJob(profile_key(category.id, s.id), category, messages, canonical, schema_sha256, params, identity,
                       grid.member_key(s.id), subject=s, bundle=bundle, passage_groups=groups[s.id], grid=grid)
            for s, bundle in members]  # fmt: skip


def prepare_pair(
    pair: Pair,
    profiles: tuple[Comparison, Comparison],
    builder: PromptBuilder,
    canonical: dict[str, Any],
    schema_sha256: str,
    provider: Provider,
    params: GenerationParams,
    alternatives: Sequence[str],
    code: bool | None = None,
) -> PairJob:
    """The texts of a pair page from its two published profiles; code writes them for a small model (or
    with `code=True`: a page whose texts code wrote, refreshed for new profiles)."""
    page = {"a": profiles[0].data, "b": profiles[1].data}
    code = provider.small if code is None else code
    identity = {"kind": "code", "model": CODE_TEXTS} if code else provider.identity()
    # The texts name the profile generations they are written for (in their key too): a page is a
    # version of its own whenever a profile is, so its history and "previous version" are exact.
    ids = (profiles[0].generation_id, profiles[1].generation_id)
    if code:
        messages = Messages((), "", "")
        key = sha256_of({"format": CODE_TEXTS, "pair": pair.key, "profiles": list(ids), "page": page,
                         "alternatives": list(alternatives)})  # fmt: skip
    else:
        schema = specialise_pair(canonical, pair) if provider.dialect in ("json_object", "prompt") else None
        messages = builder.pair(pair, page, alternatives, schema)
        key = _key(identity, params, messages, schema_sha256, list(ids), None)
    return PairJob(pair.key, pair.category, messages, canonical, schema_sha256, params, identity, key, pair=pair,
                   page=page, profiles=ids, alternatives=tuple(alternatives), code=code)  # fmt: skip


def _key(identity: dict[str, str], params: GenerationParams, messages: Messages, schema_sha256: str,
         sources: list[str], judge: Provider | None) -> str:  # fmt: skip
    return sha256_of({
        "format": CACHE_FORMAT, "provider": identity, "params": params.for_cache(), "messages": list(messages.messages),
        "schema": schema_sha256, "sources": sources, **({"judge": judge.identity()} if judge else {}),
    })  # fmt: skip


def generation_from(
    job: Job,
    data: dict[str, Any],
    answered_at: str,
    records: list[AttemptRecord],
    answered_model: str,
    verdicts: dict[str, Any] | None = None,
    samples: dict[str, Any] | None = None,
) -> Comparison:
    """The stored generation of a job's accepted answer (a profile, or a pair's texts)."""
    generation_id = hashlib.sha256(f"{job.cache_key}|{answered_at}|{time.monotonic_ns()}".encode()).hexdigest()[:16]
    return Comparison(
        generation_id=generation_id,
        pair_key=job.unit,
        category=job.category.id,
        data=data,
        generated_at=answered_at,
        provider=job.provider_identity["kind"],
        model=job.provider_identity["model"],
        cache_key=job.cache_key,
        prompt_sha256=job.messages.sha256,
        schema_sha256=job.schema_sha256,
        sources=job.sources(),
        attempts=model_attempts(records),
        usage=sum((r.usage for r in records), Usage()),
        params={
            **job.params.for_cache(),
            "dialect": job.provider_identity.get("dialect", "json_object_schema"),
            "mode": job.mode,
            "gates": gates.VERSION,
            **job.extra_params(),
            **({"judge": verdicts} if verdicts else {}),
            **({"samples": samples} if samples else {}),
        },
        template_sha256=job.messages.template_sha256,
        answered_by=answered_model,
        kind=job.kind,
    )
