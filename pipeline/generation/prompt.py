"""Prompt: render `prompts/*.j2` into chat messages for each unit of generation.

A subject's profile (`profile_*.j2`, or `select_*.j2` for a small model that only chooses), a
pair's texts from two profiles (`pair_*.j2`), a re-ask (`reask.j2`) and the grounding judge
(`judge_*.j2`). Instructions come first and the unit's own data last, so the long shared
prefix is the same for every unit (provider prompt caching applies). Source text is fenced in
`<source>` tags and anything that could close or open a fence inside it is neutralised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.generation.schema import sha256_of
from pipeline.generation.selection import Plan
from pipeline.grounding import Claim, Passage, point_text
from pipeline.models import Category, Messages, Pair, Problem, Subject

_FENCE_TAG = re.compile(r"<(/?)(source)", re.IGNORECASE)
TEMPLATES = (
    "profile_system.j2",
    "profile_user.j2",
    "grid_system.j2",
    "grid_user.j2",
    "pair_system.j2",
    "pair_user.j2",
    "reask.j2",
    "select_system.j2",
    "select_user.j2",
    "judge_system.j2",
    "judge_user.j2",
)


class PromptBuilder:
    def __init__(self, prompts_dir: Path):
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        self.env = Environment(
            loader=FileSystemLoader(str(prompts_dir)),
            undefined=StrictUndefined,
            autoescape=False,  # noqa: S701 - chat text, not HTML; sources are fenced instead
            keep_trailing_newline=False,
            trim_blocks=False,
            # Every value printed into a prompt — subject names, vendors, dimensions as well as sources —
            # is untrusted: none can open or close a <source> fence. (`fence` also turns " into ' for
            # values inside tag attributes.)
            finalize=lambda value: _unfenced(value) if isinstance(value, str) else value,
        )
        self.env.filters["fence"] = fence
        try:
            texts = {name: (prompts_dir / name).read_text(encoding="utf-8") for name in TEMPLATES}
        except OSError as exc:
            raise ConfigError(f"{prompts_dir}: cannot read prompt template {Path(str(exc.filename)).name} "
                              f"({exc.strerror}); copy it from the package's prompts/") from None  # fmt: skip
        self.template_sha256 = sha256_of(texts)

    def profile(
        self, subject: Subject, category: Category, passages: Sequence[Passage], schema: dict[str, Any] | None
    ) -> Messages:
        """A subject's profile: its category's dimensions with their rubrics, its sources as numbered passages.

        Instructions first and the subject last, so the long shared prefix is the same for every
        subject of every category (provider prompt caching applies)."""
        system = self.env.get_template("profile_system.j2").render(schema=_dumped(schema))
        user = self.env.get_template("profile_user.j2").render(subject=subject, category=category,
                                                               sources=_grouped(passages))  # fmt: skip
        return self._messages(system, user)

    def grid(
        self, category: Category, members: Sequence[tuple[Subject, Sequence[Passage]]], schema: dict[str, Any] | None
    ) -> Messages:
        """Several subjects' profiles in one call (grid mode): the dimensions and rubric once, then each
        subject's sources, its passages numbered apart."""
        subjects = [{"subject": subject, "sources": _grouped(passages)} for subject, passages in members]
        system = self.env.get_template("grid_system.j2").render(schema=_dumped(schema))
        user = self.env.get_template("grid_user.j2").render(category=category, subjects=subjects)
        return self._messages(system, user)

    def select(self, plan: Plan, schema: dict[str, Any] | None) -> Messages:
        """Selection mode: each dimension with the passages and values it may take, then pros and cons."""
        slots = []
        for slot in plan.side.slots:
            d = slot.dimension
            if d.kind == "level":
                values = ", ".join(d.levels)
            elif d.kind == "percent":
                values = "a percentage stated in the passage"
            else:
                values = "words from the passage"
            slots.append({
                "name": d.name, "description": d.description or d.name,
                "direction": ("more is better" if d.higher_is_better else "less is better") if d.rated else "not rated",
                "offered": values, "rubric": d.rubric_text() if d.rated else "",
                "passages": [_passage(plan, pid) for pid in slot.candidates],
            })  # fmt: skip
        system = self.env.get_template("select_system.j2").render(schema=_dumped(schema))
        user = self.env.get_template("select_user.j2").render(
            subject=plan.subject, category=plan.category, slots=slots,
            strengths=[_passage(plan, pid) for pid in plan.side.strengths],
            limitations=[_passage(plan, pid) for pid in plan.side.limitations],
        )  # fmt: skip
        return self._messages(system, user)

    def pair(
        self, pair: Pair, page: dict[str, Any], alternatives: Sequence[str], schema: dict[str, Any] | None
    ) -> Messages:
        """A pair's texts, from the two profiles (not the sources again) and the computed result."""
        from pipeline.scoring import dimension_score, winner, winner_name

        won, sa, sb = winner(page, pair.category)
        sides = []
        for key, subject in (("a", pair.a), ("b", pair.b)):
            other = "b" if key == "a" else "a"
            cells = []
            for d in pair.category.dimensions:
                cell = page[key]["dimensions"][d.name]
                rating = cell.get("rating") if d.rated else None
                leads = rating is not None and dimension_score(rating, d) > dimension_score(
                    int(page[other]["dimensions"][d.name]["rating"]), d
                )
                value = cell["value"]
                cells.append({"name": d.name, "value": ", ".join(value) if isinstance(value, list) else str(value),
                              "rating": rating, "leads": leads, "rationale": cell["rationale"]})  # fmt: skip
            sides.append({"subject": subject, "cells": cells,
                          "pros": [point_text(p) for p in page[key]["pros"]],
                          "cons": [point_text(c) for c in page[key]["cons"]]})  # fmt: skip
        system = self.env.get_template("pair_system.j2").render(schema=_dumped(schema))
        user = self.env.get_template("pair_user.j2").render(
            a=pair.a, b=pair.b, category=pair.category, sides=sides, scores={"a": f"{sa:.2f}", "b": f"{sb:.2f}"},
            winner=winner_name(pair, won), alternatives=list(alternatives),
        )  # fmt: skip
        return self._messages(system, user)

    def judge(self, subject: str, claims: Sequence[Claim], texts: dict[str, str]) -> Messages:
        """The judge's messages: each cited claim of a subject's profile with the passages it cites."""
        shown = [
            {"path": c.path, "text": c.text, "passages": [{"id": i, "text": texts[i]} for i in c.cited]} for c in claims
        ]
        system = self.env.get_template("judge_system.j2").render()
        user = self.env.get_template("judge_user.j2").render(subject=subject, claims=shown)
        return self._messages(system, user)

    def _messages(self, system: str, user: str) -> Messages:
        messages = ({"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()})
        return Messages(messages=messages, sha256=sha256_of(list(messages)), template_sha256=self.template_sha256)

    def reask(
        self,
        base: Sequence[dict[str, str]],
        last_raw: str,
        problems: Sequence[Problem],
        *,
        show_previous: bool = True,
    ) -> list[dict[str, str]]:
        """A new message list (the caller's is never changed) asking for a corrected answer.

        Small models copy whatever is in their context, so for them (`show_previous=False`)
        the broken answer is left out and only the problems are named.
        """
        text = self.env.get_template("reask.j2").render(
            problems=[str(p) for p in problems[:12]], show_previous=show_previous
        )
        if not show_previous:
            last = dict(base[-1])
            last["content"] = f"{last['content']}\n\n{text.strip()}"
            return [*(dict(m) for m in base[:-1]), last]
        previous = last_raw if len(last_raw) <= 6000 else last_raw[:6000] + " ..."
        return [
            *(dict(m) for m in base),
            {"role": "assistant", "content": previous},
            {"role": "user", "content": text.strip()},
        ]


def _grouped(passages: Sequence[Passage]) -> list[dict[str, Any]]:
    """Passages grouped by the source they come from, in order."""
    groups: list[dict[str, Any]] = []
    for p in passages:
        if not groups or groups[-1]["label"] != p.label:
            groups.append({"label": p.label, "passages": []})
        groups[-1]["passages"].append(p)
    return groups


def _dumped(schema: dict[str, Any] | None) -> str:
    return json.dumps(schema, ensure_ascii=False, sort_keys=True) if schema else ""


def _passage(plan: Plan, pid: str) -> dict[str, str]:
    return {"id": pid, "text": plan.text(pid)}


def fence(text: str) -> str:
    """Neutralise `<source` / `</source` inside untrusted text so it cannot end its fence, and its quotes."""
    return _unfenced(str(text)).replace('"', "'")


def _unfenced(text: str) -> str:
    return _FENCE_TAG.sub(lambda m: f"<{m.group(1)}\u200b{m.group(2)}", text)
