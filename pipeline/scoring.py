"""Arithmetic the model is never asked for: overall scores and the winner.

A rating says how much of a dimension a subject has (1-10), on the category's
rubric. Where less is better (complexity, data requirements) the dimension's
score is 11 - rating. The overall score is the weighted mean of the rated
dimensions' scores (text dimensions, and lists without a rubric, are shown as
values and not scored); scores closer than the category's tie band are a tie.
"""

from __future__ import annotations

from typing import Any

from pipeline.models import Category, Dimension, Pair


def dimension_score(rating: int, dim: Dimension) -> int:
    return rating if dim.higher_is_better else 11 - rating


def overall_score(analysis: dict[str, Any], category: Category) -> float:
    """The weighted mean of the rated dimensions' scores (text, and lists without a rubric, are shown, not scored)."""
    rated = category.rated
    total = sum(d.weight for d in rated)
    points = sum(d.weight * dimension_score(int(analysis["dimensions"][d.name]["rating"]), d) for d in rated)
    return round(points / total, 2)


def winner(data: dict[str, Any], category: Category) -> tuple[str, float, float]:
    """'a', 'b' or 'tie', with both overall scores."""
    sa, sb = overall_score(data["a"], category), overall_score(data["b"], category)
    if abs(sa - sb) <= category.tie_band:
        return "tie", sa, sb
    return ("a" if sa > sb else "b"), sa, sb


def winner_name(pair: Pair, won: str) -> str:
    """What the verdict says for `won` ('a', 'b' or 'tie'): the subject's name, or "tie"."""
    return {"a": pair.a.name, "b": pair.b.name}.get(won, "tie")


def winner_label(pair: Pair, won: str) -> str:
    """The same for a reader: the subject's name, or "Tie"."""
    return "Tie" if won == "tie" else winner_name(pair, won)
