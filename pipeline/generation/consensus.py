"""Consensus of several samples of one comparison, and the spread that comes with it.

With `[generation] samples = k` the model answers the same prompt k times. What is published:

- per dimension and subject, the **median** rating (the lower median for an even count, so it
  is always a rating some sample gave); the cell (value, rationale, citations) is that of a
  sample that gave the median rating, the one whose value is the most frequent among all
  samples, so a value, its rating and its rationale always come from one answer and agree;
- pros, cons, FAQ, alternatives and the verdict from the sample **closest** to the consensus
  ratings (least total distance), or the next closest whose verdict fits the consensus scores;
  when none fits, the verdict is composed by code from the consensus ratings (as in selection
  mode), and when even that does not pass the content gates, the closest sample is published
  whole (`method = "closest sample"`);
- every sample's ratings, kept with the generation (`params.samples.ratings`): the report shows
  each rating's **spread** (min–max over the samples) and an interval for the overall scores.

A winner whose score interval overlaps the other's, or comes within the tie band of it, is
reported as *leaning* (`standing`), not as a firm winner.
"""

from __future__ import annotations

import copy
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models import Pair, Problem
from pipeline.scoring import overall_score, winner

SIDES = ("a", "b")
Check = Callable[[dict[str, Any]], list[Problem]]
Recompose = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Consensus:
    data: dict[str, Any]
    meta: dict[str, Any]  # kept in the generation's params as "samples"
    base: int  # the index of the sample the texts come from


def build(
    samples: Sequence[dict[str, Any]], pair: Pair, asked: int, check: Check, recompose: Recompose, by_code: bool
) -> Consensus:
    """The consensus of valid `samples` (of `asked`). `check`: the content gates' problems of a
    candidate; `recompose`: the candidate with its verdict (and, in selection mode, FAQ) composed by
    code; `by_code`: selection mode, where code always writes them."""
    dims = [d.name for d in pair.category.dimensions]
    ratings = {s: {d: [int(x[s]["dimensions"][d]["rating"]) for x in samples] for d in dims} for s in SIDES}
    median = {s: {d: statistics.median_low(ratings[s][d]) for d in dims} for s in SIDES}
    cells = {s: {d: _cell([x[s]["dimensions"][d] for x in samples], median[s][d]) for d in dims} for s in SIDES}
    distance = [sum(abs(ratings[s][d][j] - median[s][d]) for s in SIDES for d in dims) for j in range(len(samples))]
    order = sorted(range(len(samples)), key=lambda j: (distance[j], j))
    values = {s: {d: [x[s]["dimensions"][d]["value"] for x in samples] for d in dims} for s in SIDES}
    meta = {"k": asked, "valid": len(samples), "ratings": ratings, "values": values}
    candidates: list[tuple[str, int, dict[str, Any]]] = []
    for j in order:
        candidate = copy.deepcopy(samples[j])
        for s in SIDES:
            candidate[s]["dimensions"] = copy.deepcopy(cells[s])
        candidates.append(("median", j, recompose(candidate) if by_code else candidate))
    if not by_code:
        candidates.append(("median, verdict by code", order[0], recompose(candidates[0][2])))
    for method, j, candidate in candidates:
        if not check(candidate):
            return Consensus(candidate, {**meta, "method": method}, j)
    return Consensus(copy.deepcopy(samples[order[0]]), {**meta, "method": "closest sample"}, order[0])


def _cell(entries: list[dict[str, Any]], median: int) -> dict[str, Any]:
    counts = Counter(_hashable(e["value"]) for e in entries)
    at_median = [e for e in entries if int(e["rating"]) == median]
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
    """The spread of a generation made with samples > 1 (None for a single sample).

    `data` is the published data (reviewers' overrides applied): a pinned rating has no spread,
    and every sample's overall score is computed with the pinned ratings in place."""
    meta = params.get("samples")
    if not isinstance(meta, dict) or int(meta.get("k", 1)) <= 1:
        return None
    stored = meta["ratings"]
    count = int(meta["valid"])
    ranges: dict[str, dict[str, tuple[int, int]]] = {s: {} for s in SIDES}
    per_sample: list[dict[str, dict[str, dict[str, Any]]]] = [
        {s: {"dimensions": {}} for s in SIDES} for _ in range(count)
    ]
    for s in SIDES:
        for d in pair.category.dimensions:
            entry = data[s]["dimensions"][d.name]
            values = stored.get(s, {}).get(d.name)
            if "rating" in entry.get("overridden", []) or not values:
                values = [int(entry["rating"])] * count
            else:
                ranges[s][d.name] = (min(values), max(values))
            for j in range(count):
                per_sample[j][s]["dimensions"][d.name] = {"rating": values[j]}
    seen: dict[str, dict[str, list[Any]]] = {s: {} for s in SIDES}
    for s in SIDES:
        for d in pair.category.dimensions:
            given = meta.get("values", {}).get(s, {}).get(d.name)
            if given and "value" not in data[s]["dimensions"][d.name].get("overridden", []):
                seen[s][d.name] = [v for i, v in enumerate(given) if v not in given[:i]]
    won, sa, sb = winner(data, pair.category)
    published = {"a": sa, "b": sb}
    overall = {}
    for s in SIDES:
        scores = [overall_score(x[s], pair.category) for x in per_sample] + [published[s]]
        overall[s] = (min(scores), max(scores))
    return Spread(int(meta["k"]), count, str(meta.get("method", "median")), ranges, overall,
                  standing(won, overall, pair.category.tie_band), seen)  # fmt: skip


def standing(won: str, overall: dict[str, tuple[float, float]], tie_band: float) -> str:
    """ "firm" when the winner's lowest score beats the other's highest by more than the tie band,
    "leans" when the intervals overlap or come within the tie band, "tie" for a tie."""
    if won == "tie":
        return "tie"
    lose = "b" if won == "a" else "a"
    return "firm" if overall[won][0] - overall[lose][1] > tie_band else "leans"


def within(value: float, interval: Sequence[float] | None) -> bool:
    return interval is not None and interval[0] <= value <= interval[1]
