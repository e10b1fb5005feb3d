"""History: picking generations of a pair and saying which of their inputs changed."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.errors import ConfigError, StoreError
from pipeline.models import Comparison

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")
_PARAMS_NOT_SAMPLING = ("mode", "gates", "judge")


def input_changes(old: Comparison, new: Comparison) -> list[str]:
    """Which parts of the cache key differ: sources, prompt, schema, model, parameters."""
    changed = []
    if [s.sha256 for s in old.sources] != [s.sha256 for s in new.sources]:
        changed.append("sources")
    if old.template_sha256 != new.template_sha256:
        changed.append("prompt")
    if old.schema_sha256 != new.schema_sha256:
        changed.append("schema")
    if (old.provider, old.model) != (new.provider, new.model):
        changed.append("model")

    def sampling(c: Comparison) -> dict[str, object]:
        return {k: v for k, v in c.params.items() if k not in _PARAMS_NOT_SAMPLING}

    if sampling(old) != sampling(new):
        changed.append("parameters")
    if not changed:
        changed.append("none (forced or expired regeneration)" if old.cache_key == new.cache_key else "other")
    return changed


def pick(generations: Sequence[Comparison], ref: str) -> Comparison:
    """A generation by 'latest', 'previous', a date (the one in effect then) or an id prefix."""
    if not generations:
        raise StoreError("no stored generations for this pair; run it first")
    if ref == "latest":
        return generations[-1]
    if ref == "previous":
        if len(generations) < 2:
            raise StoreError("this pair has only one generation; there is no previous one to compare with")
        return generations[-2]
    if _DATE.match(ref):
        bound = ref if "T" in ref else f"{ref}T23:59:59Z"
        before = [g for g in generations if g.generated_at <= bound]
        if not before:
            raise StoreError(f"no generation on or before {ref}; the first is from {generations[0].generated_at}")
        return before[-1]
    matches = [g for g in generations if g.generation_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(
        f"{ref!r} is not 'latest', 'previous', a date (YYYY-MM-DD) or a unique generation id prefix "
        "(see `pipeline history`)"
    )
