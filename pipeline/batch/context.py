"""What the batch runners use of a workspace, typed: nothing else reaches them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.catalogue import Catalogue
from pipeline.generation.prompt import PromptBuilder
from pipeline.providers.base import Provider
from pipeline.render import Renderer
from pipeline.settings import BatchAPIPolicy, GenerationParams, TransportPolicy
from pipeline.store import Store
from pipeline.units import Units


@dataclass(frozen=True)
class BatchContext:
    store: Store
    renderer: Renderer
    catalogue: Catalogue
    prompts: PromptBuilder
    transport: TransportPolicy
    judge: Provider | None
    config_dir: Path  # prices.toml
    work_dir: Path  # Batch API request and answer files live under it
    policy: BatchAPIPolicy
    max_attempts: int
    # (profile name, model) -> the provider that answers a submitted run
    provider_for: Callable[[str, str], Provider]
    # jobs rebuilt as they were submitted: URL sources from stored snapshots only
    units: Units
    params: GenerationParams
