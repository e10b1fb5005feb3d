"""What code writes in selection mode (small models choose; code writes): the verdict's reasoning and the FAQ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.models import Dimension, Pair
from pipeline.scoring import dimension_score


def _leads(data: dict[str, Any], pair: Pair, side: str) -> list[Dimension]:
    other = "b" if side == "a" else "a"

    def score(s: str, d: Dimension) -> int:
        return dimension_score(int(data[s]["dimensions"][d.name]["rating"]), d)

    gaps = [(score(side, d) - score(other, d), d) for d in pair.category.rated]
    return [d for gap, d in sorted(gaps, key=lambda g: -g[0]) if gap > 0]


def _names(dims: Sequence[Dimension], limit: int = 3) -> str:
    shown = [d.name for d in dims[:limit]]
    if len(dims) > limit:
        shown.append(f"{len(dims) - limit} more")
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def verdict_reasoning(data: dict[str, Any], pair: Pair, won: str, sa: float, sb: float) -> str:
    a_leads, b_leads = _leads(data, pair, "a"), _leads(data, pair, "b")
    if won == "tie":
        text = (f"It is a tie: {pair.a.name} scores {sa:.2f} and {pair.b.name} {sb:.2f} out of 10, within the "
                f"tie band of {pair.category.tie_band:g}.")  # fmt: skip
        parts = [f"{s.name} leads on {_names(lead)}" for s, lead in ((pair.a, a_leads), (pair.b, b_leads)) if lead]
        return text + (" " + "; ".join(parts) + "." if parts else "")
    win, lose = (pair.a, pair.b) if won == "a" else (pair.b, pair.a)
    ws, ls = (sa, sb) if won == "a" else (sb, sa)
    w_leads, l_leads = (a_leads, b_leads) if won == "a" else (b_leads, a_leads)
    text = f"{win.name} comes out ahead with {ws:.2f} against {ls:.2f} out of 10 for {lose.name}."
    text += f" It leads on {_names(w_leads)}"
    return text + (f", while {lose.name} leads on {_names(l_leads)}." if l_leads else ".")


def faq_entries(data: dict[str, Any], pair: Pair, won: str, sa: float, sb: float) -> list[dict[str, str]]:
    a, b = pair.a, pair.b
    if won == "tie":
        overall = (
            f"Neither: {a.name} scores {sa:.2f} and {b.name} {sb:.2f} out of 10, which this comparison counts as a tie."
        )
    else:
        win, lose, ws, ls = (a, b, sa, sb) if won == "a" else (b, a, sb, sa)
        overall = (f"{win.name} scores {ws:.2f} against {ls:.2f} for {lose.name}, the weighted mean of the feature "
                   "scores out of 10.")  # fmt: skip
    dims = pair.category.rated

    def gap(d: Dimension) -> int:
        ra, rb = (int(data[s]["dimensions"][d.name]["rating"]) for s in ("a", "b"))
        return abs(dimension_score(ra, d) - dimension_score(rb, d))

    ranked = sorted(dims, key=lambda d: (-gap(d), dims.index(d)))
    most, least = ranked[0], ranked[-1]

    def ratings(d: Dimension) -> str:
        ra, rb = (data[s]["dimensions"][d.name]["rating"] for s in ("a", "b"))
        better = "more" if d.higher_is_better else "less"
        return f"On {d.name}: {a.name} is rated {ra} and {b.name} {rb} out of 10, where {better} is better."

    faq = [
        {"question": f"Which scores higher overall, {a.name} or {b.name}?", "answer": overall},
        {"question": f"Where do {a.name} and {b.name} differ most?", "answer": ratings(most)},
    ]
    if least is not most:
        faq.append({"question": f"Where are {a.name} and {b.name} closest?", "answer": ratings(least)})
    return faq
