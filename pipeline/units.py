"""Units: the profiles and pair texts a set of pairs needs, prepared as jobs from one workspace.

A pair page needs two profiles — each subject rated in the pair's category — and the pair's own
texts, which are written from those two profiles. `Units` gathers a subject's sources once per
profile and knows both canonical schemas; everything it returns is a `Job` of
`pipeline.generation.job`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.catalogue import Catalogue
from pipeline.errors import ConfigError, PipelineError, SourceError
from pipeline.gather import gather
from pipeline.generation.grid import chunks
from pipeline.generation.job import PairJob, ProfileJob, prepare_grid, prepare_pair, prepare_profile
from pipeline.generation.prompt import PromptBuilder
from pipeline.generation.schema import sha256_of
from pipeline.generation.selection import alternatives_for
from pipeline.models import Category, Comparison, Pair, Subject, profile_key
from pipeline.providers.base import Provider
from pipeline.settings import GenerationParams, TransportPolicy

if TYPE_CHECKING:
    from pipeline.fetch import Fetcher
    from pipeline.store import Store

Schema = tuple[dict[str, Any], str]  # a canonical schema and its file's sha256


@dataclass(frozen=True)
class Units:
    catalogue: Catalogue
    root: Path
    max_chars: int
    fetcher: Fetcher | None
    prompts: PromptBuilder
    profile_schema: Schema
    pair_schema: Schema
    judge: Provider | None = None
    # grid mode: each (category, provider, parameters)'s member jobs, made once and shared by the run
    grids: dict[str, dict[str, ProfileJob]] = field(default_factory=dict, compare=False, repr=False)

    def profile(self, subject: Subject, category: Category, provider: Provider, params: GenerationParams) -> ProfileJob:
        """The job of a subject's profile in `category` (its sources gathered now). In grid mode (a capable
        model whose profile says `profiles = "grid"`) it is a member of its category's grid; a subject rated
        outside its own category, or whose sources cannot be gathered, is asked for alone."""
        if provider.profile.profiles == "grid" and not provider.small:
            members = self.grid_members(category, provider, params)
            if subject.id in members:
                return members[subject.id]
        bundle = gather(subject, self.root, self.max_chars, self.fetcher)
        canonical, sha = self.profile_schema
        return prepare_profile(subject, category, bundle, self.prompts, canonical, sha, provider, params, self.judge)

    def grid_members(self, category: Category, provider: Provider, params: GenerationParams) -> dict[str, ProfileJob]:
        """Every subject of the category as a grid member (by subject id), chunked to the profile's
        `grid_chars`: the chunks depend on the category only, so every run shares them."""
        if params.samples > 1:
            raise ConfigError(f"samples = {params.samples} is not supported in grid mode yet; use profiles = "
                              '"subject" in this provider profile, or --samples 1')  # fmt: skip
        memo = sha256_of({"category": category.id, "provider": provider.identity(), "params": params.for_cache()})
        if memo not in self.grids:
            gathered = []
            for subject in self.catalogue.members(category.id):
                try:
                    gathered.append((subject, gather(subject, self.root, self.max_chars, self.fetcher)))
                except SourceError:
                    continue  # asked for alone, where its own error is reported
            canonical, sha = self.profile_schema
            jobs: dict[str, ProfileJob] = {}
            for chunk in chunks(gathered, provider.profile.grid_chars):
                for job in prepare_grid(category, chunk, self.prompts, canonical, sha, provider, params, self.judge):
                    jobs[job.subject.id] = job
            self.grids[memo] = jobs
        return self.grids[memo]

    def answered_with(self, jobs: Sequence[ProfileJob]) -> list[ProfileJob]:
        """The other members of these jobs' grids whose grid call has been answered in this run (their
        profiles are stored without another call)."""
        asked = {j.subject.id for j in jobs}
        out: dict[str, ProfileJob] = {}
        for grid_jobs in self.grids.values():
            for job in grid_jobs.values():
                grid = job.grid
                if (
                    grid is not None
                    and grid.answer is not None
                    and job.subject.id not in asked
                    and any(j.grid is grid for j in jobs)
                ):
                    out[job.unit] = job
        return [out[k] for k in sorted(out)]

    def pair(
        self, pair: Pair, profiles: tuple[Comparison, Comparison], provider: Provider, params: GenerationParams,
        *, code: bool | None = None,
    ) -> PairJob:  # fmt: skip
        """The job of a pair's texts, written for these two profile generations (by code for a small
        model, or with `code=True`)."""
        canonical, sha = self.pair_schema
        named = [alt for p in profiles for s in p.sources for alt in s.alternatives]
        alternatives = alternatives_for(pair, named, self.catalogue.members(pair.category.id))
        return prepare_pair(pair, profiles, self.prompts, canonical, sha, provider, params, alternatives, code)


def profile_units(pairs: Iterable[Pair]) -> list[tuple[str, Subject, Category]]:
    """The profiles a set of pairs needs, each once: (unit key, subject, the category it is rated in)."""
    found: dict[str, tuple[str, Subject, Category]] = {}
    for pair in pairs:
        for subject in (pair.a, pair.b):
            key = profile_key(pair.category.id, subject.id)
            found.setdefault(key, (key, subject, pair.category))
    return [found[k] for k in sorted(found)]


def units_of(pair: Pair) -> tuple[str, str]:
    """The profile units a pair page shows, a's first."""
    return profile_key(pair.category.id, pair.a.id), profile_key(pair.category.id, pair.b.id)


def pairs_showing(units: Sequence[str], published: Iterable[str], catalogue: Catalogue) -> list[Pair]:
    """Published pairs whose pages show one of these profile units (a page to refresh when one changes)."""
    wanted = set(units)
    out = []
    for key in published:
        if "," not in key:
            continue
        try:
            pair = catalogue.pair(key, allow_cross_category=True)
        except PipelineError:  # a pair the catalogue no longer has has no page to refresh
            continue
        if wanted & set(units_of(pair)):
            out.append(pair)
    return out


def refresh_pages(
    store: Store, units: Units, provider: Provider, catalogue: Catalogue, moved: Sequence[str], skip: Iterable[str] = ()
) -> list[Pair]:
    """The published pages (but `skip`) showing a profile in `moved` (one that just changed). Texts code
    wrote are written again for the new profiles (no model call); a model's texts stay, and the page says
    they were written for an earlier profile until a batch generates the pair again."""
    from pipeline.generation.run import generate

    skipped = set(skip)
    refreshed = []
    for pair in pairs_showing(moved, store.published_keys(), catalogue):
        if pair.key in skipped:
            continue
        texts = _published(store, pair.key)
        found = [_published(store, u) for u in units_of(pair)]
        a, b = found
        if texts is None or texts.kind != "pair" or a is None or b is None:
            continue  # an earlier release's page, shown as it was until it is generated again
        refreshed.append(pair)
        if texts.params.get("mode") == "code":
            job = units.pair(pair, (a, b), provider, GenerationParams(), code=True)
            made = generate(job, provider, store, units.prompts, TransportPolicy())
            store.publish([(pair.key, made.comparison.generation_id)])
    return refreshed


def _published(store: Store, unit: str) -> Comparison | None:
    found = store.published(unit)
    return found[0] if found else None
