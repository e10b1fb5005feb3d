"""A batch planned and priced, ready to run directly or to submit to the Batch API."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.batch.plan import PlanItem
from pipeline.batch.spec import BatchSpec
from pipeline.batch.threads import StageTwo
from pipeline.pricing import Estimate, Price
from pipeline.providers.base import Provider
from pipeline.settings import BatchAPIPolicy, ProviderProfile


@dataclass(frozen=True)
class BatchPlan:
    spec: BatchSpec
    profile: ProviderProfile
    chosen_because: str  # why the provider was picked, when nobody named one ("" otherwise)
    provider: Provider
    items: list[PlanItem]
    resumed_from: str | None
    price: Price | None
    estimate: Estimate
    policy: BatchAPIPolicy
    stage_two: StageTwo  # plans the pairs that waited for a profile of the batch, once it is settled
