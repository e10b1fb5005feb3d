"""Consensus of several samples of one subject's profile, and the spread that comes with it.

With `[generation] samples = k` the model answers the same profile prompt k times (samples cost k
per subject, not per pair). What is published:

- per rated dimension, the **median** rating (the lower median for an even count, so it is always
  a rating some sample gave); the cell (value, rationale, citations) is that of a sample that gave
  the median rating, the one whose value is the most frequent among all samples, so a value, its
  rating and its rationale always come from one answer and agree; an unrated dimension's cell is
  the most frequent value's;
- pros and cons from the sample **closest** to the consensus ratings (least total distance), or
  the next closest whose cells and points pass the content gates together; when none does, the
  closest sample is published whole (`method = "closest sample"`);
- every sample's ratings, kept with the generation (`params.samples.ratings`): pages show each
  rating's **spread** (min–max over the samples) and an interval for the overall scores.

A winner whose score interval overlaps the other's, or comes within the tie band of it, is
reported as *leaning* (`standing`), not as a firm winner.
"""

from __future__ import annotations

import copy
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models import Category, Pair, Problem
from pipeline.scoring import overall_score, winner

SIDES = ("a", "b")
Check = Callable[[dict[str, Any]], list[Problem]]


@dataclass(frozen=True)
class Consensus:
    data: dict[str, Any]
    meta: dict[str, Any]  # kept in the generation's params as "samples"
    base: int  # the index of the sample the pros and cons come from


def build(samples: Sequence[dict[str, Any]], category: Category, asked: int, check: Check) -> Consensus:
    """The consensus of valid profile `samples` (of `asked`); `check`: a candidate's problems."""
    rated = [d.name for d in category.rated]
    names = [d.name for d in category.dimensions]
    ratings = {d: [int(x["dimensions"][d]["rating"]) for x in samples] for d in rated}
    median = {d: statistics.median_low(ratings[d]) for d in rated}
    cells = {d: _cell([x["dimensions"][d] for x in samples], median.get(d)) for d in names}
    distance = [sum(abs(ratings[d][j] - median[d]) for d in rated) for j in range(len(samples))]
    order = sorted(range(len(samples)), key=lambda j: (distance[j], j))
    values = {d: [x["dimensions"][d]["value"] for x in samples] for d in names}
    meta = {"k": asked, "valid": len(samples), "ratings": ratings, "values": values}
    for j in order:
        candidate = copy.deepcopy(samples[j])
        candidate["dimensions"] = copy.deepcopy(cells)
        if not check(candidate):
            return Consensus(candidate, {**meta, "method": "median"}, j)
    return Consensus(copy.deepcopy(samples[order[0]]), {**meta, "method": "closest sample"}, order[0])


def _cell(entries: list[dict[str, Any]], median: int | None) -> dict[str, Any]:
    counts = Counter(_hashable(e["value"]) for e in entries)
    at_median = [e for e in entries if median is None or int(e["rating"]) == median]
    return copy.deepcopy(max(at_median, key=lambda e: counts[_hashable(e["value"])]))  # the first on a tie


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# -- spread -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """How far the samples of one generation lie apart, for the report and the diff."""

    samples: int  # asked
    valid: int
    method: str
    ratings: dict[str, dict[str, tuple[int, int]]]  # side -> dimension -> (min, max); pinned cells absent
    overall: dict[str, tuple[float, float]]  # side -> (min, max) of the overall score
    standing: str  # "firm", "leans" or "tie"
    values: dict[str, dict[str, list[Any]]]  # side -> dimension -> the samples' distinct values; pinned absent

    def rating_text(self, side: str, dim: str) -> str:
        """ " (6–8)" where the samples disagree, "" where they agree or the cell is pinned."""
        low, high = self.ratings[side].get(dim, (0, 0))
        return f" ({low}–{high})" if low != high else ""

    def overall_text(self, side: str) -> str:
        low, high = self.overall[side]
        return f"{low:.2f}–{high:.2f}"

    def as_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "valid": self.valid,
            "method": self.method,
            "ratings": {s: {d: list(r) for d, r in dims.items()} for s, dims in self.ratings.items()},
            "overall": {s: list(r) for s, r in self.overall.items()},
            "standing": self.standing,
            "values": self.values,
        }


def spread_of(params: dict[str, Any], data: dict[str, Any], pair: Pair) -> Spread | None:
    """The spread of an earlier release's pair generation made with samples > 1 (None for one sample)."""
    meta = params.get("samples")
    if not isinstance(meta, dict) or int(meta.get("k", 1)) <= 1:
        return None
    per_side = {
        s: {"k": meta["k"], "valid": meta["valid"], "method": meta.get("method", "median"),
            "ratings": meta["ratings"].get(s, {}), "values": (meta.get("values") or {}).get(s, {})}
        for s in SIDES
    }  # fmt: skip
    return page_spread(per_side, data, pair)


def page_spread(metas: Mapping[str, dict[str, Any] | None], data: dict[str, Any], pair: Pair) -> Spread | None:
    """The spread of a page from each side's samples (a profile's `params.samples`; None: one sample).

    `data` is the published data (reviewers' overrides applied): a pinned rating has no spread, and
    every sample's overall score is computed with the pinned ratings in place."""
    if not any(isinstance(m, dict) and int(m.get("k", 1)) > 1 for m in metas.values()):
        return None
    ranges: dict[str, dict[str, tuple[int, int]]] = {s: {} for s in SIDES}
    seen: dict[str, dict[str, list[Any]]] = {s: {} for s in SIDES}
    overall: dict[str, tuple[float, float]] = {}
    won, sa, sb = winner(data, pair.category)
    published = {"a": sa, "b": sb}
    counts = []
    for s in SIDES:
        meta = metas.get(s) if isinstance(metas.get(s), dict) else None
        count = int(meta["valid"]) if meta else 1
        counts.append(count)
        stored = (meta or {}).get("ratings", {})
        per_sample: list[dict[str, Any]] = [{"dimensions": {}} for _ in range(count)]
        for d in pair.category.rated:
            entry = data[s]["dimensions"][d.name]
            values = stored.get(d.name)
            if "rating" in entry.get("overridden", []) or not values or len(values) != count:
                values = [int(entry["rating"])] * count
            else:
                ranges[s][d.name] = (min(values), max(values))
            for j in range(count):
                per_sample[j]["dimensions"][d.name] = {"rating": values[j]}
        for d in pair.category.dimensions:
            given = ((meta or {}).get("values") or {}).get(d.name)
            if given and "value" not in data[s]["dimensions"][d.name].get("overridden", []):
                seen[s][d.name] = [v for i, v in enumerate(given) if v not in given[:i]]
        scores = [overall_score(x, pair.category) for x in per_sample] + [published[s]]
        overall[s] = (min(scores), max(scores))
    asked = max(int((m or {}).get("k", 1)) for m in metas.values())
    methods = {str(m.get("method", "median")) for m in metas.values() if isinstance(m, dict)}
    method = "closest sample" if "closest sample" in methods else (methods.pop() if len(methods) == 1 else "median")
    return Spread(asked, min(counts), method, ranges, overall, standing(won, overall, pair.category.tie_band), seen)


def standing(won: str, overall: dict[str, tuple[float, float]], tie_band: float) -> str:
    """ "firm" when the winner's lowest score beats the other's highest by more than the tie band,
    "leans" when the intervals overlap or come within the tie band, "tie" for a tie."""
    if won == "tie":
        return "tie"
    lose = "b" if won == "a" else "a"
    return "firm" if overall[won][0] - overall[lose][1] > tie_band else "leans"


def within(value: float, interval: Sequence[float] | None) -> bool:
    return interval is not None and interval[0] <= value <= interval[1]
