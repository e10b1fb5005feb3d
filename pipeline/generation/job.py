"""The job of one generation: everything it depends on, and its cache key, prepared before any call."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline.generation import gates, selection
from pipeline.generation.prompt import PromptBuilder
from pipeline.generation.schema import canonical_json, sha256_of, specialise
from pipeline.generation.selection import Plan
from pipeline.generation.validate import validate
from pipeline.grounding import Passage, passages_by_source
from pipeline.models import (
    AttemptRecord,
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
)
from pipeline.providers.base import Provider
from pipeline.settings import GenerationParams

CACHE_FORMAT = "comparison-cache/2"  # 2: source hashes in the key


@dataclass(frozen=True)
class Job:
    """Everything one generation of one pair depends on; its cache key covers all of it."""

    pair: Pair
    bundles: tuple[SourceBundle, ...]
    messages: Messages
    canonical: dict[str, Any]
    schema_sha256: str
    params: GenerationParams
    provider_identity: dict[str, str]
    cache_key: str
    passage_groups: tuple[tuple[Passage, ...], ...]  # each source's passages, as the prompt numbered them
    plan: Plan | None = None  # selection mode (small models): what the model may choose from

    # Derived only when a job is generated: a fresh batch item never needs them.
    @cached_property
    def passages(self) -> tuple[Passage, ...]:
        return tuple(p for group in self.passage_groups for p in group)

    @cached_property
    def scopes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Each subject's passage ids (a's, b's): what its ratings, pros and cons may cite."""
        return scopes_of(self.pair, self.passages)

    @property
    def mode(self) -> str:
        return "select" if self.plan else "write"

    def schema(self) -> dict[str, Any]:
        """The schema the model is asked to follow: the pair's, or the plan's choices in selection mode.

        Made on each call, not kept: a batch of 10,000 jobs need not hold 10,000 large schemas."""
        return self.plan.schema() if self.plan else specialise(self.canonical, self.pair, self.scopes)

    def accept(self, answer: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """The comparison data an answer stands for, and its problems (none: accepted).

        In selection mode the answer is a set of choices; the data is composed from them and
        then checked exactly like a written answer.
        """
        if self.plan is not None:
            problems = selection.check(answer, self.plan)
            if problems:
                return answer, problems
            answer = selection.compose(answer, self.plan)
        return answer, self.check(answer)

    def check(self, data: dict[str, Any]) -> list[Problem]:
        """The problems of comparison data (composed or written) against the pair's schema and the gates."""
        return validate(data, self.pair, self.canonical, self.scopes)

    @property
    def canonical_schema(self) -> str:
        """The canonical schema's JSON, kept in the store beside its sha256 (one copy for every job)."""
        if self.schema_sha256 not in _SCHEMA_TEXTS:
            _SCHEMA_TEXTS[self.schema_sha256] = canonical_json(self.canonical)
        return _SCHEMA_TEXTS[self.schema_sha256]


_SCHEMA_TEXTS: dict[str, str] = {}


def scopes_of(pair: Pair, passages: Sequence[Passage]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        tuple(p.id for p in passages if p.subject_id == pair.a.id),
        tuple(p.id for p in passages if p.subject_id == pair.b.id),
    )


def prepare(
    pair: Pair,
    bundles: tuple[SourceBundle, ...],
    builder: PromptBuilder,
    canonical: dict[str, Any],
    schema_sha256: str,
    provider: Provider,
    params: GenerationParams,
    others: Sequence[Subject] = (),
    judge: Provider | None = None,
) -> Job:
    """`others`: the category's other subjects, market alternatives of last resort in selection mode;
    `judge`: the grounding judge, whose identity is part of the cache key (its verdicts are stored
    with the generation)."""
    groups = tuple(tuple(group) for group in passages_by_source(bundles))
    found = tuple(p for group in groups for p in group)
    the_plan = None
    if provider.small:
        sources = [s for bundle in bundles for s in bundle.sources]
        named = [a for s in sources for a in s.alternatives]
        leanings = {t: "limitation" for s in sources for t in s.limitations}
        leanings.update({t: "strength" for s in sources for t in s.strengths})
        the_plan = selection.plan(pair, found, selection.alternatives_for(pair, named, others), leanings)
        schema = the_plan.schema() if provider.dialect in ("json_object", "prompt") else None
        messages = builder.build_select(pair, the_plan, schema)
    else:
        schema = None
        if provider.dialect in ("json_object", "prompt"):
            schema = specialise(canonical, pair, scopes_of(pair, found))
        named = [a for bundle in bundles for s in bundle.sources for a in s.alternatives]
        messages = builder.build(pair, found, schema, list(dict.fromkeys(named)))
    identity = provider.identity()
    key = sha256_of(
        {
            "format": CACHE_FORMAT,
            "provider": identity,
            "params": params.for_cache(),
            "messages": list(messages.messages),
            "schema": schema_sha256,
            "sources": [s.sha256 for bundle in bundles for s in bundle.sources],
            **({"judge": judge.identity()} if judge else {}),
        }
    )
    return Job(pair, bundles, messages, canonical, schema_sha256, params, identity, key, groups, the_plan)


def comparison_from(
    job: Job,
    data: dict[str, Any],
    answered_at: str,
    records: list[AttemptRecord],
    answered_model: str,
    verdicts: dict[str, Any] | None = None,
    samples: dict[str, Any] | None = None,
) -> Comparison:
    flat = [s for bundle in job.bundles for s in bundle.sources]
    sources = tuple(
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
        for s, group in zip(flat, job.passage_groups, strict=True)
    )
    generation_id = hashlib.sha256(f"{job.cache_key}|{answered_at}|{time.monotonic_ns()}".encode()).hexdigest()[:16]
    return Comparison(
        generation_id=generation_id,
        pair_key=job.pair.key,
        category=job.pair.category.id,
        data=data,
        generated_at=answered_at,
        provider=job.provider_identity["kind"],
        model=job.provider_identity["model"],
        cache_key=job.cache_key,
        prompt_sha256=job.messages.sha256,
        schema_sha256=job.schema_sha256,
        sources=sources,
        attempts=model_attempts(records),
        usage=sum((r.usage for r in records), Usage()),
        params={
            **job.params.for_cache(),
            "dialect": job.provider_identity.get("dialect", "json_object_schema"),
            "mode": job.mode,
            "gates": gates.VERSION,
            **({"judge": verdicts} if verdicts else {}),
            **({"samples": samples} if samples else {}),
        },
        template_sha256=job.messages.template_sha256,
        answered_by=answered_model,
    )
