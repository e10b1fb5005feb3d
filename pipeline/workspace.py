"""The library API the CLI calls: one workspace, its stages wired together.

Everything is loaded on first use, so a command pays only for what it needs
(`pipeline list` never imports duckdb, openai or llama_cpp).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.catalogue import Catalogue, load_catalogue
from pipeline.errors import ConfigError, StoreError
from pipeline.models import Comparison, Pair, RunResult
from pipeline.providers.base import ProgressFn, Provider
from pipeline.settings import (
    GenerationParams,
    ProviderProfile,
    Settings,
    choose_profile,
    load_settings,
    resolve_workspace,
)

log = logging.getLogger("pipeline")

if TYPE_CHECKING:
    from pipeline.batch import BatchSpec
    from pipeline.batch.context import BatchContext
    from pipeline.batch.plan import PlanItem
    from pipeline.batch.start import BatchPlan
    from pipeline.fetch import Fetcher
    from pipeline.generation.job import Job
    from pipeline.generation.prompt import PromptBuilder
    from pipeline.publish import Publisher, Rendered
    from pipeline.render import Renderer
    from pipeline.store import Store
    from pipeline.units import Units


@dataclass(frozen=True)
class RunOutcome:
    result: RunResult  # the pair's texts
    files: list[Path]
    steps: list[tuple[str, RunResult]] = field(default_factory=list)  # each unit: profiles, then the texts
    refreshed: list[Pair] = field(default_factory=list)  # other pages showing a profile that changed


class Workspace:
    def __init__(
        self, root: str | None = None, *, store: str | None = None, holder: str = "pipeline", offline: bool = False
    ):
        self.root = resolve_workspace(root)
        self._store_flag = store
        self._offline = offline
        self.holder = holder

    @cached_property
    def settings(self) -> Settings:
        """The workspace's settings; `offline=True` (`--offline`) fetches nothing, whatever the file says."""
        settings = load_settings(self.root, store=self._store_flag)
        if self._offline and not settings.fetch.offline:
            settings = replace(settings, fetch=replace(settings.fetch, offline=True))
        return settings

    @cached_property
    def catalogue(self) -> Catalogue:
        """The catalogue; a category file that cannot be read is left out with a warning (the rest works)."""
        catalogue = load_catalogue(self.settings.config_dir)
        for problem in catalogue.broken.values():
            log.warning("%s (its category is left out until the file is fixed)", problem)
        return catalogue

    @cached_property
    def store(self) -> Store:
        from pipeline.store import Store

        return Store(self.settings.store_path, self.settings.lock_timeout_s, self.holder)

    @cached_property
    def canonical(self) -> tuple[dict[str, Any], str]:
        from pipeline.generation.schema import load_canonical

        return load_canonical(self.settings.data_dir("schemas"))

    @cached_property
    def prompts(self) -> PromptBuilder:
        from pipeline.generation.prompt import PromptBuilder

        return PromptBuilder(self.settings.data_dir("prompts"))

    @cached_property
    def renderer(self) -> Renderer:
        from pipeline.generation.gates import caps_of
        from pipeline.generation.schema import canonical_json
        from pipeline.overrides import load_overrides
        from pipeline.render import Renderer

        overrides = load_overrides(self.settings.config_dir, self.catalogue)
        caps = caps_of(canonical_json(self.canonical[0]))
        return Renderer(self.catalogue, self.settings.reports_dir, overrides, caps, self.settings.publish.base_url)

    def profile(self, provider: str | None, model: str | None) -> tuple[ProviderProfile, str]:
        return choose_profile(self.settings, provider, model)

    def provider(self, profile: ProviderProfile, *, need_key: bool = True) -> Provider:
        from pipeline.providers import make_provider

        return make_provider(profile, self.settings.transport, need_key=need_key)

    @cached_property
    def fetcher(self) -> Fetcher:
        from pipeline.fetch import Fetcher

        return Fetcher(self.store, self.settings.fetch)

    @cached_property
    def snapshot_fetcher(self) -> Fetcher:
        """A fetcher that reads stored snapshots only (jobs rebuilt as they were submitted)."""
        from pipeline.fetch import Fetcher

        return Fetcher(self.store, replace(self.settings.fetch, offline=True))

    @cached_property
    def judge(self) -> Provider | None:
        """The grounding judge of `[grounding] judge`, if one is configured."""
        name = self.settings.grounding.judge
        return self.provider(self.settings.profiles[name]) if name else None

    def provider_named(self, profile: str, model: str) -> Provider:
        """The provider of a profile name and model (a submitted Batch API run's)."""
        return self.provider(self.profile(profile, model)[0])

    def batch_context(self) -> BatchContext:
        """What the batch runners use of this workspace."""
        from pipeline.batch.context import BatchContext

        return BatchContext(
            store=self.store,
            renderer=self.renderer,
            catalogue=self.catalogue,
            prompts=self.prompts,
            transport=self.settings.transport,
            judge=self.judge,
            config_dir=self.settings.config_dir,
            work_dir=self.settings.store_path.parent,
            policy=self.settings.batch_api,
            max_attempts=self.settings.generation.max_attempts,
            provider_for=self.provider_named,
            units=self.units(from_snapshots=True),
            params=self.settings.generation,
        )

    def plan_batch(
        self, spec: BatchSpec, provider: str | None, model: str | None, *, via: str, force: bool, resume: bool,
        shard: tuple[int, int] | None, reask: str | None, dry_run: bool = False,
    ) -> BatchPlan:  # fmt: skip
        """Everything a batch needs before its first call: provider, the plan of its profiles and pairs,
        price and estimate, and how the pairs waiting for a profile are planned once it is settled."""
        from pipeline.batch import prepare_batch
        from pipeline.batch.api import require_batchable
        from pipeline.batch.plan import plan_pairs
        from pipeline.batch.start import BatchPlan
        from pipeline.pricing import estimate, load_price
        from pipeline.providers import sends_choices

        profile, why = self.profile(provider or spec.provider, model or spec.model)
        backend = self.provider(profile, need_key=not dry_run)  # a dry run calls nothing
        params = self.generation(backend, spec.samples, spec.seed)
        if via == "openai-batch":
            require_batchable(backend)
            if params.samples > 1:
                raise ConfigError(
                    f"samples = {params.samples} is not supported with --via openai-batch yet; use --via threads, "
                    "or --samples 1 for this run"
                )
            if profile.profiles == "grid":
                raise ConfigError(
                    f"providers.{profile.name} rates profiles in grid mode, which --via openai-batch does not support "
                    'yet; use --via threads, or profiles = "subject" in that provider profile'
                )
        units = self.units()
        texts_params = replace(params, samples=1)  # a pair's texts are written once; samples are the profiles'

        def texts_of(pair: Pair, profiles: tuple[Comparison, Comparison]) -> Job:
            return units.pair(pair, profiles, backend, texts_params)

        items, resumed_from, fresh = prepare_batch(
            self.catalogue, self.store, lambda subject, category: units.profile(subject, category, backend, params),
            texts_of, spec, force=force, resume=resume, shard=shard,
        )  # fmt: skip

        def stage_two(
            waiting: list[PlanItem], profiles: dict[str, Comparison], failed: dict[str, str]
        ) -> list[PlanItem]:
            pairs = [i.pair for i in waiting if i.pair is not None]
            return plan_pairs(self.store, texts_of, pairs, fresh, profiles, failed, later=False)

        price = load_price(self.settings.config_dir, backend.model)
        policy = self.settings.batch_api.with_reask(reask)
        todo = [i.job.messages for i in items if i.job is not None and i.action == "generate" and not i.job.by_code]
        waiting = 0 if backend.small else sum(1 for i in items if i.action == "later")
        fresh_count = sum(1 for i in items if i.action == "fresh")
        est = estimate(todo, fresh_count, params.max_tokens, price,
                       discount=policy.discount if via == "openai-batch" else 1.0, samples=params.samples,
                       one_prompt=sends_choices(backend), later=waiting)  # fmt: skip
        chose = "" if (provider or spec.provider) or self.settings.default_provider != "auto" else why
        return BatchPlan(spec, profile, chose, backend, items, resumed_from, price, est, policy, stage_two)

    def pair(self, ref: str, *, cross_category: bool = False) -> Pair:
        return self.catalogue.pair(ref, allow_cross_category=cross_category)

    def generation(self, provider: Provider, samples: int | None = None, seed: int | None = None) -> GenerationParams:
        """The generation parameters for this provider: `samples` (a flag or batch file) wins over the
        profile's `samples`, which wins over `[generation] samples`; `seed` (`--seed`) over `[generation] seed`."""
        params = self.settings.generation.with_samples(samples or provider.profile.samples)
        return params if seed is None else replace(params, seed=seed)

    def units(self, *, from_snapshots: bool = False) -> Units:
        """What prepares profile and pair jobs here; `from_snapshots` reads URL sources from the store only."""
        from pipeline.generation.schema import PAIR_FILE, PROFILE_FILE, load_canonical
        from pipeline.units import Units

        folder = self.settings.data_dir("schemas")
        return Units(self.catalogue, self.root, self.settings.max_source_chars,
                     self.snapshot_fetcher if from_snapshots else self.fetcher, self.prompts,
                     load_canonical(folder, PROFILE_FILE), load_canonical(folder, PAIR_FILE), self.judge)  # fmt: skip

    def run_pair(
        self,
        pair: Pair,
        provider: Provider,
        *,
        force: bool = False,
        progress: ProgressFn | None = None,
        samples: int | None = None,
        seed: int | None = None,
    ) -> RunOutcome:
        """One pair page: its two profiles (each from the cache or the model), then its texts (from the two
        profiles), then every published page that shows a profile that changed."""
        from pipeline.generation.run import generate
        from pipeline.units import refresh_pages

        self.store.require_writable(f"pipeline run --pair {pair.key}")
        params = self.generation(provider, samples, seed)
        units = self.units()
        jobs = [units.profile(subject, pair.category, provider, params) for subject in (pair.a, pair.b)]
        steps: list[tuple[str, RunResult]] = []
        for job in jobs:
            steps.append((job.what, generate(job, provider, self.store, self.prompts, self.settings.transport,
                                             force=force, progress=progress, judge=self.judge)))  # fmt: skip
        for sibling in units.answered_with(jobs):  # grid mode: the other subjects rated in the same call
            generate(sibling, provider, self.store, self.prompts, self.settings.transport)
        profiles = (steps[0][1].comparison, steps[1][1].comparison)
        before = {u: found[0].generation_id for u in (j.unit for j in jobs) if (found := self.store.published(u))}
        self.store.publish([(job.unit, r.comparison.generation_id) for job, (_, r) in zip(jobs, steps, strict=True)])
        texts = units.pair(pair, profiles, provider, replace(params, samples=1))
        done = generate(texts, provider, self.store, self.prompts, self.settings.transport,
                        force=force and not texts.by_code, progress=progress)  # fmt: skip
        steps.append((f"{pair.key} texts", done))
        self.store.publish([(pair.key, done.comparison.generation_id)])
        moved = [j.unit for j in jobs if before.get(j.unit) not in (None, *(p.generation_id for p in profiles))]
        refreshed = refresh_pages(self.store, units, provider, self.catalogue, moved, skip=[pair.key])
        # Reports are read from the store and written under the render lock: two runs at once could
        # otherwise write a related report from a snapshot older than the other's commit.
        with self.renderer.locked(self.settings.lock_timeout_s):
            files = self.publisher.pair(pair.key, also=[p.key for p in refreshed])
        return RunOutcome(result=done, files=files, steps=steps, refreshed=refreshed)

    @cached_property
    def publisher(self) -> Publisher:
        from pipeline.publish import Publisher

        return Publisher(self.store, self.renderer, self.catalogue)

    def published(self, pair: Pair) -> tuple[Comparison, Comparison | None]:
        """The pair's published page and the one published before it."""
        found = self.publisher.pages([pair.key])
        if not found:
            raise StoreError(f"no stored comparison for {pair.key}; run `pipeline run --pair {pair.key}` first")
        return found[0]

    def render_all(self) -> Rendered:
        """Re-render every published report and the index; no model calls."""
        with self.renderer.locked(self.settings.lock_timeout_s):
            return self.publisher.everything()
