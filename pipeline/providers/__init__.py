"""Providers: one interface, two kinds.

`openai` talks to any OpenAI-compatible endpoint through the `openai` SDK
(`azure`: Azure OpenAI through its `AzureOpenAI` client); `local` runs a GGUF
model in-process with llama-cpp-python. Both return a
`Completion`; transport retries live in `retry.py`, shared by both.
"""

from __future__ import annotations

from pipeline.providers.base import ProgressFn, Provider
from pipeline.settings import ProviderProfile, TransportPolicy


def make_provider(profile: ProviderProfile, transport: TransportPolicy, *, need_key: bool = True) -> Provider:
    """Build the provider for a profile; heavy imports happen here, not at import time. `need_key=False`:
    it will not be called (a dry run), so a missing API key is not an error yet."""
    if profile.kind == "local":
        from pipeline.providers.local import LocalProvider

        return LocalProvider(profile)
    from pipeline.providers.openai_compat import AzureProvider, OpenAICompatProvider

    if profile.kind == "azure":
        return AzureProvider(profile, transport, need_key=need_key)
    return OpenAICompatProvider(profile, transport, need_key=need_key)


def sends_choices(provider: Provider) -> bool:
    """Whether this provider asks for several samples in one request (`n`): its prompt is billed once."""
    from pipeline.providers.capabilities import detect

    return provider.kind != "local" and detect(provider.profile).choices


__all__ = ["ProgressFn", "Provider", "make_provider", "sends_choices"]
