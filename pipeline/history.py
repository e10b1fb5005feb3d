"""History: picking generations of a pair and saying, in words, which of their inputs changed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from pipeline.errors import ConfigError, StoreError
from pipeline.models import Comparison, SourceRecord

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")
# What a generation records about itself, not what it was asked with ("profiles": a pair's texts name the
# profiles they were written for, whose own changes are described as such).
_NOT_INPUTS = ("mode", "gates", "judge", "profiles", "grid")
MAX_QUOTE = 60


def input_changes(old: Comparison, new: Comparison, parts: dict[str, Comparison] | None = None) -> list[str]:
    """What differs between the inputs of two generations, each in words a reviewer can act on:
    "brief of PostgreSQL: 1 sentence added ('…')", "seed 7 → 8", "model gpt-4o-mini → gpt-4.1".

    Two pages (`kind == "page"`) differ by their parts: each profile that changed, with what changed
    in its own inputs ("profile of postgresql: seed 7 → 8"), and the pair's texts; `parts` gives the
    stored generations of their parts by id."""
    if old.kind == "page" and new.kind == "page" and parts is not None:
        return _page_changes(old, new, parts)
    changed = source_changes(old.sources, new.sources)
    if old.template_sha256 != new.template_sha256:
        changed.append("prompt templates changed")
    if old.schema_sha256 != new.schema_sha256:
        changed.append(f"schema {old.schema_sha256[:12]} → {new.schema_sha256[:12]}")
    if old.provider != new.provider:
        changed.append(f"provider {old.provider} → {new.provider}")
    if old.model != new.model:
        changed.append(f"model {old.model} → {new.model}")
    before, after = _asked(old.params), _asked(new.params)
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            changed.append(f"{key} {_shown(before.get(key))} → {_shown(after.get(key))}")
    if not changed:
        changed.append("none (forced or expired regeneration)" if old.cache_key == new.cache_key else "other")
    return changed


def _page_changes(old: Comparison, new: Comparison, parts: dict[str, Comparison]) -> list[str]:
    before, after = {p.role: p for p in old.parts}, {p.role: p for p in new.parts}
    changed = []
    for role in ("a", "b", "pair"):
        o, n = before.get(role), after.get(role)
        if o is None or n is None or o.generation_id == n.generation_id:
            continue
        then, now = parts.get(o.generation_id), parts.get(n.generation_id)
        if then is None or now is None:
            changed.append(f"{'texts' if role == 'pair' else 'profile of side ' + role}: regenerated")
            continue
        what = "texts" if role == "pair" else f"profile of {now.pair_key.split('/')[-1]}"
        if (
            role == "pair"
            and then.cache_key != now.cache_key
            and _asked(then.params) == _asked(now.params)
            and (then.template_sha256, then.schema_sha256, then.model)
            == (now.template_sha256, now.schema_sha256, now.model)
        ):
            continue  # written again for the new profiles, nothing else: what changed is theirs
        changed += [f"{what}: {line}" for line in input_changes(then, now)]
    return changed or ["none (forced or expired regeneration)"]


def source_changes(old: Sequence[SourceRecord], new: Sequence[SourceRecord]) -> list[str]:
    """Sources added, removed or changed; a changed one with the sentences (passages) it gained and lost."""

    def key(s: SourceRecord) -> tuple[str, str]:
        return s.subject, s.label

    before, after = {key(s): s for s in old}, {key(s): s for s in new}
    out = []
    for k in sorted(before.keys() | after.keys()):
        o, n = before.get(k), after.get(k)
        either = n or o
        assert either is not None
        place = f" ({either.location})" if either.location not in ("", "catalogue") else ""
        what = f"{k[1]} of {k[0]}{place}"
        if o is None:
            out.append(f"{what} added")
        elif n is None:
            out.append(f"{what} removed")
        elif o.sha256 != n.sha256:
            out.append(f"{what}: {_sentences(o, n)}")
    return out


def _sentences(old: SourceRecord, new: SourceRecord) -> str:
    """What a changed source gained and lost, as its sentences: reworded ones shown around the change."""
    gone = [p.text for p in old.passages if p.text not in {q.text for q in new.passages}]
    came = [p.text for p in new.passages if p.text not in {q.text for q in old.passages}]
    if not gone and not came:
        return "changed outside its sentences (references, alternatives or headings)"
    reworded = []
    for before in list(gone):
        best = max(came, key=lambda after: difflib.SequenceMatcher(None, before, after).ratio(), default=None)
        if best is not None and difflib.SequenceMatcher(None, before, best).ratio() >= REWORDED:
            reworded.append(_window(before, best))
            gone.remove(before)
            came.remove(best)
    parts = []
    for verb, texts in (("reworded", reworded), ("added", [repr(_cut(t)) for t in came]),
                        ("removed", [repr(_cut(t)) for t in gone])):  # fmt: skip
        if texts:
            noun = "sentence" if len(texts) == 1 else "sentences"
            parts.append(f"{len(texts)} {noun} {verb} ({'; '.join(texts[:2])}{'; ...' if len(texts) > 2 else ''})")
    return ", ".join(parts)


REWORDED = 0.6  # sentences at least this similar are one sentence reworded, not one removed and one added


def _window(before: str, after: str, context: int = 20) -> str:
    """ "'…from a predefined set…' → '…from a fixed set…'": the changed part with a little around it."""
    start = next(
        (i for i, (x, y) in enumerate(zip(before, after, strict=False)) if x != y), min(len(before), len(after))
    )
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1

    def cut(text: str) -> str:
        lo, hi = max(0, start - context), min(len(text), len(text) - end + context)
        lo = 0 if lo < 10 else text.find(" ", lo) + 1 or lo  # whole words, and no "…" for a few characters
        hi = len(text) if len(text) - hi < 10 else (text.rfind(" ", 0, hi) if text.rfind(" ", 0, hi) > lo else hi)
        return ("…" if lo else "") + text[lo:hi].strip() + ("…" if hi < len(text) else "")

    return f"{cut(before)!r} → {cut(after)!r}"


def _asked(params: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters a generation was asked with (samples as a count, not its consensus record)."""
    out = {k: v for k, v in params.items() if k not in _NOT_INPUTS}
    samples = out.get("samples")
    if isinstance(samples, dict):
        out["samples"] = samples.get("k", 1)
    out.setdefault("samples", 1)
    return out


def _shown(value: Any) -> str:
    return "unset" if value is None else str(value)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 1].rstrip() + "…"


def pick(generations: Sequence[Comparison], ref: str, published: Sequence[str] = ()) -> Comparison:
    """A generation by 'published' (the one shown now), 'previous' (the one shown before it),
    'latest' (the newest), a date (the one in effect then) or an id prefix.

    `published`: the generation ids the pair has shown, oldest first (the publication log)."""
    if not generations:
        raise StoreError("no stored generations for this pair; run it first")
    by_id = {g.stored_id: g for g in generations}
    shown = [gid for gid in published if gid in by_id] or [g.stored_id for g in generations]
    if ref == "latest":
        return generations[-1]
    if ref == "published":
        return by_id[shown[-1]]
    if ref == "previous":
        earlier = [gid for gid in shown if gid != shown[-1]]
        if not earlier:
            raise FirstGeneration("this pair has shown only one generation; there is no previous one to compare with")
        return by_id[earlier[-1]]
    if _DATE.match(ref):
        bound = ref if "T" in ref else f"{ref}T23:59:59Z"
        before = [g for g in generations if g.generated_at <= bound]
        if not before:
            raise StoreError(f"no generation on or before {ref}; the first is from {generations[0].generated_at}")
        return before[-1]
    matches = [g for g in generations if g.generation_id.startswith(ref) or g.stored_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(
        f"{ref!r} is not 'published', 'previous', 'latest', a date (YYYY-MM-DD) or a unique generation id prefix "
        "(see `pipeline history`)"
    )


class FirstGeneration(StoreError):
    """There is nothing before the first generation: not an error for `pipeline diff`."""
