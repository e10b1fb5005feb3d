"""Diff: semantic differences between two comparisons (two generations or two report files).

Both sides are report documents (the JSON report's shape), so a stored
generation and a file from another git revision compare the same way. List
items are matched by similarity, so a reworded pro is reported as reworded,
not as a removal plus an addition. Changes below the materiality threshold
are listed but do not count as material.

Generations made with several samples (pipeline.generation.consensus) carry each rating's spread. A move
is noise, not material, when the two generations' sample ranges overlap (a generation without
samples counts as its one value): some rating lies within both spreads, so the samples cannot
tell the two generations apart, the rule a winner's standing uses for the overall scores. A
move within the previous generation's spread is the simplest case. A changed feature value is
noise when one of the other generation's samples gave it. The same holds for the overall
scores (their sample ranges), and an overall score whose ratings moved only by noise moved only
by noise itself; a winner that changes between two results that were both only leaning (or a
tie) is a close call, not a change.
`threshold` applies on top: a move smaller than it is not material either way.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.exitcodes import Verdict
from pipeline.grounding import point_text
from pipeline.text import md_escape

REWORD_SIMILARITY = 0.6
LISTS = (("a", "pros"), ("a", "cons"), ("b", "pros"), ("b", "cons"))


@dataclass(frozen=True)
class Change:
    kind: str  # rating, value, overall, winner, verdict, item, source
    where: str
    old: Any
    new: Any
    material: bool
    note: str = ""


@dataclass
class Diff:
    old_label: str
    new_label: str
    changes: list[Change] = field(default_factory=list)

    @property
    def material(self) -> bool:
        return any(c.material for c in self.changes)

    @property
    def verdict(self) -> Verdict:
        """A material change asks for review: the command fails so that a scheduler notices."""
        return Verdict.FAILED if self.material else Verdict.DONE

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.old_label,
            "to": self.new_label,
            "material": self.material,
            "changes": [asdict(c) for c in self.changes],
        }


def load_report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read report {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not a JSON report: {exc.msg}") from exc
    if not isinstance(doc, dict) or not {"data", "computed", "provenance", "subjects"} <= set(doc):
        raise ConfigError(f"{path} is not a comparison report (.json written by `pipeline run`)")
    return doc


def diff_reports(old: dict[str, Any], new: dict[str, Any], threshold: float = 1.0) -> Diff:
    result = Diff(_label(old), _label(new))
    add = result.changes.append
    names = {side: new["subjects"][side]["name"] for side in ("a", "b")}
    old_spread, new_spread = old["computed"].get("spread"), new["computed"].get("spread")
    for side in ("a", "b"):
        old_dims, new_dims = old["data"][side]["dimensions"], new["data"][side]["dimensions"]
        for dim in new_dims:
            if dim not in old_dims:
                add(Change("value", f"{dim} / {names[side]}", None, new_dims[dim]["value"], True, "new dimension"))
                continue
            o, n = old_dims[dim], new_dims[dim]
            if o["value"] != n["value"]:
                noise = _value_noise(
                    o["value"], n["value"], _values(old_spread, side, dim), _values(new_spread, side, dim)
                )
                add(Change("value", f"{dim} / {names[side]}", _show(o["value"]), _show(n["value"]), not noise, noise))
            if "rating" not in o or "rating" not in n:
                continue  # a dimension shown as a value, not rated (or rated on one side only: the value says it)
            delta = n["rating"] - o["rating"]
            if delta:
                ranges = (_range(old_spread, "ratings", side, dim), _range(new_spread, "ratings", side, dim))
                noise = _noise(o["rating"], n["rating"], *ranges)
                add(Change("rating", f"{dim} / {names[side]}", o["rating"], n["rating"],
                           abs(delta) >= threshold and not noise, f"{delta:+d}{noise}"))  # fmt: skip
        for dim in old_dims:
            if dim not in new_dims:
                add(Change("value", f"{dim} / {names[side]}", _show(old_dims[dim]["value"]), None, True, "removed"))
    for side in ("a", "b"):
        o, n = old["computed"]["overall"][side], new["computed"]["overall"][side]
        if o != n:
            noise = _noise(o, n, _range(old_spread, "overall", side), _range(new_spread, "overall", side))
            if not noise and old_spread and new_spread and not _moved(result, names[side]):
                noise = ", every rating move behind it is noise: not material"
            add(Change("overall", names[side], o, n, abs(n - o) >= threshold / 10 and not noise,
                       f"{n - o:+.2f}{noise}"))  # fmt: skip
    if old["computed"]["winner_name"] != new["computed"]["winner_name"]:
        close = old_spread and new_spread and "firm" not in (old_spread["standing"], new_spread["standing"])
        note = "both results were close calls (leaning or a tie across the samples): noise, not material"
        add(Change("winner", "verdict", old["computed"]["winner_name"], new["computed"]["winner_name"], not close,
                   note if close else ""))  # fmt: skip
    old_reason, new_reason = old["data"]["verdict"]["reasoning"], new["data"]["verdict"]["reasoning"]
    if old_reason != new_reason:
        add(Change("verdict", "verdict reasoning", old_reason, new_reason, False,
                   f"{_similarity(old_reason, new_reason):.0%} similar"))  # fmt: skip
    for side, kind in LISTS:
        _items(result, f"{names[side]} {kind}", _texts(old["data"][side][kind]), _texts(new["data"][side][kind]))
    _items(result, "FAQ", [f["question"] for f in old["data"]["faq"]], [f["question"] for f in new["data"]["faq"]])
    _items(result, "alternatives", old["data"]["alternatives"], new["data"]["alternatives"])
    _sources(result, old["provenance"]["sources"], new["provenance"]["sources"])
    return result


def _moved(result: Diff, name: str) -> bool:
    """Whether a subject has a material rating or value change so far (its overall score follows them)."""
    return any(c.material and c.kind in ("rating", "value") and c.where.endswith(f" / {name}") for c in result.changes)


def _range(spread: dict[str, Any] | None, kind: str, side: str, dim: str = "") -> tuple[float, float] | None:
    """A generation's sample range of one rating (`dim`) or overall score; None without samples."""
    if not spread:
        return None
    found = spread[kind][side].get(dim) if dim else spread[kind][side]
    return (found[0], found[1]) if found else None


def _noise(old: float, new: float, old_range: tuple[float, float] | None, new_range: tuple[float, float] | None) -> str:
    """Why a move is sampling noise ("" when it is not): the two generations' sample ranges overlap.

    A generation without samples counts as its one value, so a move into the other's range is
    noise and a move between two single values never is."""
    if not (old_range or new_range):
        return ""
    before, after = old_range or (old, old), new_range or (new, new)
    if before[0] <= after[1] and after[0] <= before[1]:
        shown = f"{_show_range(before)} before, {_show_range(after)} now"
        return f", the samples' spreads overlap ({shown}): noise, not material"
    return ""


def _values(spread: dict[str, Any] | None, side: str, dim: str) -> list[Any] | None:
    """The values a generation's samples gave for one cell; None without samples."""
    return (spread.get("values") or {}).get(side, {}).get(dim) if spread else None


def _value_noise(old: Any, new: Any, old_values: list[Any] | None, new_values: list[Any] | None) -> str:
    if old_values and new in old_values:
        return "one of the previous samples' values: noise, not material"
    if new_values and old in new_values:
        return "the previous value is one of the new samples' values: noise, not material"
    return ""


def _show_range(r: tuple[float, float]) -> str:
    low, high = (f"{v}" if isinstance(v, int) else f"{v:.2f}" for v in r)
    return low if low == high else f"{low}–{high}"


def _texts(items: list[Any]) -> list[str]:
    return [point_text(i) for i in items]


def _items(result: Diff, where: str, old: list[str], new: list[str]) -> None:
    removed = [o for o in old if o not in new]
    added = [n for n in new if n not in old]
    for o in list(removed):
        best = max(added, key=lambda n: _similarity(o, n), default=None)
        if best is not None and _similarity(o, best) >= REWORD_SIMILARITY:
            result.changes.append(Change("item", where, o, best, False, "reworded"))
            removed.remove(o)
            added.remove(best)
    result.changes += [Change("item", where, o, None, True, "removed") for o in removed]
    result.changes += [Change("item", where, None, n, True, "added") for n in added]


def _sources(result: Diff, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Sources added, removed or changed, a changed one with the sentences it gained and lost (not material:
    what the sources changed shows in the ratings and texts that rest on them)."""
    from pipeline.history import source_changes
    from pipeline.models import SourceRecord

    for line in source_changes([SourceRecord.from_json(s) for s in old], [SourceRecord.from_json(s) for s in new]):
        where, _, what = line.partition(": ")
        if not what:  # "<source> added" / "<source> removed"
            where, _, what = line.rpartition(" ")
        result.changes.append(Change("source", where, None, None, False, what))


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.casefold(), b.casefold()).ratio()


def _show(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _label(doc: dict[str, Any]) -> str:
    p = doc["provenance"]
    return f"{p['generated_at']} ({p['model']}, {p['generation_id']})"


def render_text(d: Diff, color: bool = False) -> str:
    import click

    def paint(text: str, fg: str) -> str:
        return click.style(text, fg=fg) if color else text

    lines = [f"from {d.old_label}", f"  to {d.new_label}"]
    if not d.changes:
        lines.append("no changes")
    for c in d.changes:
        mark = paint("*", "red") if c.material else " "
        lines.append(f"{mark} {c.kind:<8} {c.where}: {_fmt(c)}")
    lines.append(paint("material changes" if d.material else "no material changes", "red" if d.material else "green"))
    return "\n".join(lines) + "\n"


def render_markdown(d: Diff) -> str:

    lines = [f"**Comparison diff** from {md_escape(d.old_label)} to {md_escape(d.new_label)}", ""]
    if not d.changes:
        lines.append("No changes.")
    else:
        lines += ["| | Kind | Where | Change |", "|---|---|---|---|"]
        for c in d.changes:
            lines.append(
                f"| {'**!**' if c.material else ''} | {c.kind} | {md_escape(c.where)} | {md_escape(_fmt(c))} |"
            )
    lines += ["", "Material changes: **yes**." if d.material else "Material changes: no."]
    return "\n".join(lines) + "\n"


def summary_lines(d: Diff, limit: int = 8) -> list[str]:
    """The short list for a report's "Changes since the previous generation" section."""
    ordered = sorted(d.changes, key=lambda c: (not c.material, c.kind == "source"))
    # "value" / "rating" said out loud: "Accuracy / X: value 0 → 7" and "rating 1 → 9 (+8)" read differently.
    lines = [f"{_where(c)}: {c.kind + ' ' if c.kind in ('value', 'rating') else ''}{_fmt(c)}" for c in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"and {len(ordered) - limit} more (pipeline diff lists them all)")
    return lines


def _where(c: Change) -> str:
    return f"Overall / {c.where}" if c.kind == "overall" else c.where


def _fmt(c: Change) -> str:
    if c.kind == "source":
        return c.note
    if c.note in ("added", "removed") and c.kind == "item":
        return f"{c.note} {c.new if c.note == 'added' else c.old!s}"
    text = f"{c.old} → {c.new}"
    return f"{text} ({c.note})" if c.note else text
