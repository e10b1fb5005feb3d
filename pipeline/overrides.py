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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.configfile import read_toml
from pipeline.errors import ConfigError
from pipeline.grounding import point_text
from pipeline.models import Pair

_SET = re.compile(r"^(a|b)\.dimensions\.(.+)\.(rating|value)$")
_STRIKE = re.compile(r"^((a|b)\.(pros|cons)|alternatives)$")


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


def load_overrides(config_dir: Path, catalogue: Any) -> dict[str, list[Override]]:
    out: dict[str, list[Override]] = {}
    for path in sorted((config_dir / "overrides").glob("*.toml")):
        for i, raw in enumerate(read_toml(path).get("override", [])):
            where = f"{path}: override[{i}]"
            try:
                pair_key = catalogue.pair(str(raw.get("pair", "")), allow_cross_category=True).key
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if "strike" in raw:
                target = str(raw["strike"])
                if not _STRIKE.match(target) or not isinstance(raw.get("item"), str):
                    raise ConfigError(
                        f"{where}: strike must be a.pros, a.cons, b.pros, b.cons or alternatives, with item"
                    )
                item = Override(pair_key, target, raw["item"], True, str(raw.get("reason", "")), path.name)
            elif "path" in raw and "set" in raw:
                match = _SET.match(str(raw["path"]))
                if not match:
                    raise ConfigError(f"{where}: path must look like a.dimensions.<Dimension>.rating or .value")
                value = raw["set"]
                if match.group(3) == "rating" and (not isinstance(value, int) or not 1 <= value <= 10):
                    raise ConfigError(f"{where}: a rating must be a whole number from 1 to 10")
                item = Override(pair_key, str(raw["path"]), value, False, str(raw.get("reason", "")), path.name)
            else:
                raise ConfigError(f"{where}: needs `path` and `set`, or `strike` and `item`")
            out.setdefault(pair_key, []).append(item)
    return out


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
