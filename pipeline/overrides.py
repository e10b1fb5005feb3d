"""Reviewer overrides: pin a subject's value or rating, or strike a pro, con or alternative.

Overrides live in `config/overrides/*.toml` and are applied when a page is rendered, after
validation, so they survive regeneration. A rating, value, pro or con belongs to a subject's
profile, so it is overridden for the subject — one fix, every page that shows it; a market
alternative belongs to a pair page::

    [[override]]
    subject = "image-segmentation"
    path = "dimensions.Accuracy.rating"        # or dimensions.<Dimension>.value
    set = 9
    reason = "vendor benchmark, 2026-10"

    [[override]]
    subject = "image-classification"
    strike = "pros"                            # or cons
    item = "Easy to implement"
    reason = "not true for production systems"

    [[override]]
    pair = "image-classification,image-segmentation"
    strike = "alternatives"
    item = "Clarifai"

A file is checked when it is read (unknown keys, subjects, pairs, dimensions and levels are
one-line errors with the nearest right name); a file that cannot be read is left out with a
warning and the others apply. A struck item the current profile no longer has is listed as not
applied and warned about.
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.configfile import check_keys, key_line, read_toml
from pipeline.errors import ConfigError
from pipeline.grounding import point_text
from pipeline.models import Dimension, Pair

log = logging.getLogger("pipeline")
_SET = re.compile(r"^(?:(a|b)\.)?dimensions\.(.+)\.(rating|value)$")
_STRIKE = re.compile(r"^(?:(a|b)\.)?(pros|cons)$|^alternatives$")
_LEGACY = re.compile(r"^(a|b)\.")


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
    target: str  # a subject id (its profile), or a pair key (its page: alternatives)
    path: str  # "dimensions.<D>.rating|value", "pros", "cons" or "alternatives"; on a page "a."/"b." in front
    value: Any
    strike: bool
    reason: str
    source: str  # file name, for the audit summary

    def describe(self) -> str:
        where = f"{self.target}: {self.path.split('.', 1)[1] if _LEGACY.match(self.path) else self.path}"
        what = f"struck {self.value!r} from {where}" if self.strike else f"{where} pinned to {self.value!r}"
        return f"{what} ({self.reason})" if self.reason else what


Overrides = dict[str, list[Override]]  # by target: a subject id or a pair key


def for_page(overrides: Overrides, pair: Pair) -> list[Override]:
    """The overrides a pair page shows: each subject's (on its side of the page), then the pair's own."""
    out = []
    for side, subject in (("a", pair.a), ("b", pair.b)):
        out += [replace(o, path=f"{side}.{o.path}") for o in overrides.get(subject.id, [])]
    return out + overrides.get(pair.key, [])


OVERRIDE_KEYS = ("subject", "pair", "path", "set", "strike", "item", "reason")


def load_overrides(config_dir: Path, catalogue: Any) -> Overrides:
    """Every `config/overrides/*.toml` entry, checked against the catalogue. A file with a mistake (an
    unknown key, subject, pair, dimension or level) is left out with a one-line warning naming the file,
    the line and the nearest right name; the other files apply."""
    out: Overrides = {}
    for path in sorted((config_dir / "overrides").glob("*.toml")):
        try:
            found = _file(path, catalogue)
        except ConfigError as exc:
            log.warning("%s (its overrides are not applied until it is fixed)", exc)
            continue
        for item in found:
            out.setdefault(item.target, []).append(item)
    return out


def check_overrides(config_dir: Path, catalogue: Any) -> list[str]:
    """The problems of every override file (for `pipeline doctor`): one line each."""
    problems = []
    for path in sorted((config_dir / "overrides").glob("*.toml")):
        try:
            _file(path, catalogue)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def _file(path: Path, catalogue: Any) -> list[Override]:
    doc = read_toml(path)
    check_keys(doc, ("override",), path, "the file")
    entries = doc.get("override", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: write each override as an [[override]] table")
    return [_override(raw, path, i, catalogue) for i, raw in enumerate(entries)]


def _override(raw: dict[str, Any], path: Path, i: int, catalogue: Any) -> Override:
    where = f"{path}: override[{i}]"
    check_keys(raw, OVERRIDE_KEYS, path, f"override[{i}]")
    reason = raw.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"{where}: `reason` must be a string")
    target_path = str(raw.get("path") if "path" in raw else raw.get("strike", ""))
    legacy = _LEGACY.match(target_path)
    if "pair" in raw and (legacy or target_path in ("pros", "cons") or target_path.startswith("dimensions.")):
        subject = "<subject id>"
        if legacy:
            try:
                pair = catalogue.pair(str(raw["pair"]), allow_cross_category=True)
                subject = pair.a.id if legacy.group(1) == "a" else pair.b.id
            except ConfigError:
                pass
        fixed = _LEGACY.sub("", target_path)
        raise ConfigError(f"{where}: ratings, values, pros and cons are a subject's (every page shows the same "
                          f'profile): write subject = "{subject}" and {"path" if "path" in raw else "strike"} = '
                          f'"{fixed}" instead of pair = ...')  # fmt: skip
    if "subject" in raw and "pair" in raw:
        raise ConfigError(f"{where}: give `subject` (a rating, value, pro or con) or `pair` (alternatives), not both")
    if "subject" in raw:
        try:
            subject = catalogue.subject(str(raw["subject"]))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        target, category = subject.id, catalogue.categories.get(subject.category)
    elif "pair" in raw:
        try:
            target, category = catalogue.pair(str(raw["pair"]), allow_cross_category=True).key, None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    else:
        raise ConfigError(f"{where}: name the `subject` (a rating, value, pro or con) or the `pair` (alternatives)")
    if "strike" in raw:
        wanted = ("alternatives",) if category is None else ("pros", "cons")
        if target_path not in wanted or not isinstance(raw.get("item"), str):
            raise ConfigError(f"{where}: strike must be {' or '.join(wanted)} (with `item`) for a "
                              f"{'pair' if category is None else 'subject'}")  # fmt: skip
        return Override(target, target_path, raw["item"], True, reason, path.name)
    if "path" not in raw or "set" not in raw or category is None:
        raise ConfigError(f"{where}: a subject's override needs `path` and `set`, or `strike` and `item`")
    match = _SET.match(target_path)
    if not match:
        raise ConfigError(f"{where}: path must look like dimensions.<Dimension>.rating or dimensions.<Dimension>.value")
    _side, name, field = match.groups()
    dims = {d.name: d for d in category.dimensions}
    if name not in dims:
        near = difflib.get_close_matches(name, list(dims), n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}?" if near else f"its dimensions are {', '.join(dims)}"
        line = key_line(path, "path")
        raise ConfigError(f"{path}{f':{line}' if line else ''}: override[{i}]: {category.name} has no dimension "
                          f"{name!r}; {hint}")  # fmt: skip
    value = raw["set"]
    problem = _set_problem(value, field, dims[name])
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return Override(target, target_path, value, False, reason, path.name)


def _set_problem(value: Any, field: str, dim: Dimension) -> str:
    """Why `value` cannot be set as a dimension's rating or value ("" when it can)."""
    if field == "rating":
        if not dim.rated:
            return f"{dim.name} is not rated (it is shown as a value); pin its value instead"
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
    """The published data of a page (`data`, made with `params`) under reviewers' overrides (page paths).

    Nothing a page shows may disagree with the ratings it shows: the header, the verdict, the FAQ
    and the index rows are all computed from the data returned here. Where code wrote the verdict
    (and FAQ) — a small model's page, or a consensus whose verdict code wrote — it is written again
    from the overridden ratings; a model's reasoning cannot be rewritten, so its winner is corrected
    and it is marked `stale_verdict` when the override makes it disagree with the scores.
    """
    from pipeline.generation import gates
    from pipeline.generation.selection import with_verdict

    changed, applied, unresolved = apply(data, overrides, pair)
    code = params.get("mode") == "select" and params.get("texts", "code") == "code"
    if code:  # written by code: always from the ratings shown (the category's scoring may have changed too)
        return Shown(with_verdict(changed, pair, faq=True), applied, unresolved)
    if not applied:
        return Shown(data, applied, unresolved)
    method = (params.get("samples") or {}).get("method", "") if isinstance(params.get("samples"), dict) else ""
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
    """The data with overrides (page paths) applied, the overrides applied and those whose target is gone.

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
