"""A seeded noise model for the test server: answers that vary between samples like a model's.

Every cell of a pair has a stable "true" rating (from a hash of the pair, side and dimension,
inside the band its synthesised value allows). Each answer moves each rating by -1 or +1 with
probability `p` (each direction half of it), drawn from a generator seeded by the request's
seed, the choice's index and the pair, and kept inside the band, so every answer passes the
content gates. The verdict is written to agree with the answer's ratings. Nothing else varies:
with unchanged inputs, two generations differ only by this sampling noise.

`displaced` stands for a real change: a cell in it has its true rating moved to the far end of
its band (2 or 3 ratings away), so a diff that calls everything noise is caught out.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from pipeline.generation.gates import level_band, percent_band
from pipeline.generation.selection import with_verdict
from pipeline.models import Dimension, Pair


class NoisyAnswers:
    def __init__(self, pairs: list[Pair], p: float = 0.2):
        self.pairs = {(pair.a.name, pair.b.name): pair for pair in pairs}
        self.p = p
        self.displaced: set[tuple[str, str, str]] = set()  # (pair key, side, dimension name)

    def __call__(self, data: dict[str, Any], request: dict[str, Any], choice: int) -> dict[str, Any]:
        pair = self.pairs.get((data["a"]["subject"], data["b"]["subject"]))
        if pair is None:
            return data
        rng = random.Random(f"{request.get('seed')}|{choice}|{pair.key}")
        for side in ("a", "b"):
            for dim in pair.category.dimensions:
                cell = data[side]["dimensions"][dim.name]
                low, high = _band(cell["value"], dim)
                draw = rng.random()
                step = -1 if draw < self.p / 2 else 1 if draw < self.p else 0
                true = true_rating(pair, side, dim, low, high)
                if (pair.key, side, dim.name) in self.displaced:
                    true = high if true <= (low + high) // 2 else low
                cell["rating"] = min(high, max(low, true + step))
        return with_verdict(data, pair, faq=False)


def true_rating(pair: Pair, side: str, dim: Dimension, low: int, high: int) -> int:
    """The cell's stable rating: one of the three middle ratings of its band, by a hash."""
    digest = hashlib.sha256(f"{pair.key}|{side}|{dim.name}".encode()).digest()
    middle = (low + high) // 2
    return min(high - 1, max(low + 1, middle - 1 + digest[0] % 3))


def _band(value: Any, dim: Dimension) -> tuple[int, int]:
    if dim.kind == "level" and value in dim.levels:
        return level_band(dim.levels.index(value), len(dim.levels))
    if dim.kind == "percent" and isinstance(value, int):
        return percent_band(value)
    return 1, 10
