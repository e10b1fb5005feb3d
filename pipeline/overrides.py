"""Reviewer overrides: pin a value or a rating, or strike a pro, con or alternative.

Overrides live in `config/overrides/*.toml`, by pair and path, and are applied
when a report is rendered, after validation, so they survive regeneration. An
override whose target no longer exists is reported, never silently dropped::

    [[override]]
    pair = "image-classification,image-segmentation"
    path = "b.dimensions.Accuracy.rating"     # or ...Accuracy.value
    set = 9
    reason = "vendor benchmark, 2026-10"

    [[override]]
    pair = "image-classification,image-segmentation"
    strike = "a.pros"                          # or a.cons, b.pros, b.cons, alternatives
    item = "Easy to implement"
    reason = "not true for production systems"
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.configfile import check_keys, key_line, read_toml
from pipeline.errors import ConfigError
from pipeline.grounding import point_text
from pipeline.models import Dimension, Pair

_SET = re.compile(r"^(a|b)\.dimensions\.(.+)\.(rating|value)$")
_STRIKE = re.compile(r"^((a|b)\.(pros|cons)|alternatives)$")


@dataclass(frozen=True)
class Shown:
    """What a reader sees of a stored generation: overrides applied, then what code derives from the
    ratings (the winner, and where code wrote them, the verdict reasoning and FAQ) recomputed."""

    data: dict[str, Any]
    applied: list[Override]
    unresolved: list[Override]
    # A model wrote the verdict reasoning and an override changed what it must say (the winner, or
    # where the winner leads): the page says so beside the reasoning.
    stale_verdict: bool = False


@dataclass(frozen=True)
class Override:
    pair: str
    path: str
    value: Any
    strike: bool
    reason: str
    source: str  # file name, for the audit summary

    def describe(self) -> str:
        what = f"struck {self.value!r} from {self.path}" if self.strike else f"{self.path} pinned to {self.value!r}"
        return f"{what} ({self.reason})" if self.reason else what


OVERRIDE_KEYS = ("pair", "path", "set", "strike", "item", "reason")


def load_overrides(config_dir: Path, catalogue: Any) -> dict[str, list[Override]]:
    """Every `config/overrides/*.toml` entry, checked against the catalogue: an unknown key, pair,
    dimension or level is a one-line error with the file, the line and the nearest right name."""
    out: dict[str, list[Override]] = {}
    for path in sorted((config_dir / "overrides").glob("*.toml")):
        doc = read_toml(path)
        check_keys(doc, ("override",), path, "the file")
        entries = doc.get("override", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{path}: write each override as an [[override]] table")
        for i, raw in enumerate(entries):
            item = _override(raw, path, i, catalogue)
            out.setdefault(item.pair, []).append(item)
    return out


def _override(raw: dict[str, Any], path: Path, i: int, catalogue: Any) -> Override:
    where = f"{path}: override[{i}]"
    check_keys(raw, OVERRIDE_KEYS, path, f"override[{i}]")
    try:
        pair = catalogue.pair(str(raw.get("pair", "")), allow_cross_category=True)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    reason = raw.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"{where}: `reason` must be a string")
    if "strike" in raw:
        target = str(raw["strike"])
        if not _STRIKE.match(target) or not isinstance(raw.get("item"), str):
            raise ConfigError(f"{where}: strike must be a.pros, a.cons, b.pros, b.cons or alternatives, with item")
        return Override(pair.key, target, raw["item"], True, reason, path.name)
    if "path" not in raw or "set" not in raw:
        raise ConfigError(f"{where}: needs `path` and `set`, or `strike` and `item`")
    match = _SET.match(str(raw["path"]))
    if not match:
        raise ConfigError(f"{where}: path must look like a.dimensions.<Dimension>.rating or .value")
    _side, name, field = match.groups()
    dims = {d.name: d for d in pair.category.dimensions}
    if name not in dims:
        near = difflib.get_close_matches(name, list(dims), n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}?" if near else f"its dimensions are {', '.join(dims)}"
        line = key_line(path, "path")
        raise ConfigError(f"{path}{f':{line}' if line else ''}: override[{i}]: {pair.category.name} has no dimension "
                          f"{name!r}; {hint}")  # fmt: skip
    value = raw["set"]
    problem = _set_problem(value, field, dims[name])
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return Override(pair.key, str(raw["path"]), value, False, reason, path.name)


def _set_problem(value: Any, field: str, dim: Dimension) -> str:
    """Why `value` cannot be set as a dimension's rating or value ("" when it can)."""
    if field == "rating":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10
        return "" if ok else "a rating must be a whole number from 1 to 10"
    if dim.kind == "level" and value not in dim.levels:
        near = difflib.get_close_matches(str(value), list(dim.levels), n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"{dim.name} takes one of {', '.join(dim.levels)}, not {value!r}{hint}"
    if dim.kind == "percent" and not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100):
        return f"{dim.name} takes a whole percentage from 0 to 100, not {value!r}"
    if dim.kind == "list" and not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        return f'{dim.name} takes a list of names, such as ["a", "b"], not {value!r}'
    if dim.kind == "text" and not isinstance(value, str):
        return f"{dim.name} takes a short text, not {value!r}"
    return ""


def shown(data: dict[str, Any], params: dict[str, Any], overrides: list[Override], pair: Pair) -> Shown:
    """The published data of a generation (`data`, made with `params`) under reviewers' overrides.

    Nothing a page shows may disagree with the ratings it shows: the header, the verdict, the FAQ
    and the index rows are all computed from the data returned here. Where code wrote the verdict
    (and FAQ) — selection mode, or a consensus whose verdict code wrote — it is written again from
    the overridden ratings; a model's reasoning cannot be rewritten, so its winner is corrected and
    it is marked `stale_verdict` when the override makes it disagree with the scores.
    """
    from pipeline.generation import gates
    from pipeline.generation.selection import with_verdict

    changed, applied, unresolved = apply(data, overrides, pair)
    if not applied:
        return Shown(data, applied, unresolved)
    method = (params.get("samples") or {}).get("method", "") if isinstance(params.get("samples"), dict) else ""
    if params.get("mode") == "select":
        return Shown(with_verdict(changed, pair, faq=True), applied, unresolved)
    if method == "median, verdict by code":
        return Shown(with_verdict(changed, pair, faq=False), applied, unresolved)
    if gates.verdict(changed, pair) and not gates.verdict(data, pair):
        from pipeline.scoring import winner, winner_name

        corrected = {**changed["verdict"], "winner": winner_name(pair, winner(changed, pair.category)[0])}
        return Shown({**changed, "verdict": corrected}, applied, unresolved, stale_verdict=True)
    return Shown(changed, applied, unresolved)


def apply(
    data: dict[str, Any], overrides: list[Override], pair: Pair
) -> tuple[dict[str, Any], list[Override], list[Override]]:
    """The data with overrides applied, the overrides applied and those whose target is gone.

    The caller's data is never changed: with overrides it gets a copy; without, the same object.
    """
    if not overrides:
        return data, [], []
    data = copy.deepcopy(data)
    applied, unresolved = [], []
    for o in overrides:
        if o.strike:
            node = data["alternatives"] if o.path == "alternatives" else data[o.path[0]][o.path.split(".")[1]]
            # pros and cons are {"text", "sources"} (plain strings in generations made before grounding)
            match_at = [i for i, item in enumerate(node) if point_text(item) == o.value]
            if match_at:
                del node[match_at[0]]
                applied.append(o)
            else:
                unresolved.append(o)
            continue
        match = _SET.match(o.path)
        assert match is not None
        side, dim, field = match.groups()
        entry = data[side]["dimensions"].get(dim)
        if entry is None or dim not in {d.name for d in pair.category.dimensions}:
            unresolved.append(o)
            continue
        entry[field] = o.value
        entry["overridden"] = sorted({*entry.get("overridden", []), field})
        applied.append(o)
    return data, applied, unresolved
