"""Prompt: render `prompts/*.j2` into chat messages.

Instructions come first and the pair's sources last, so the long shared prefix
is the same for every pair (provider prompt caching applies). Source text is
fenced in `<source>` tags and anything that could close or open a fence inside
it is neutralised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.generation.schema import sha256_of
from pipeline.generation.selection import Plan
from pipeline.grounding import Claim, Passage
from pipeline.models import Messages, Pair, Problem

_FENCE_TAG = re.compile(r"<(/?)(source)", re.IGNORECASE)
TEMPLATES = (
    "system.j2",
    "user.j2",
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
        self.template_sha256 = sha256_of({name: (prompts_dir / name).read_text(encoding="utf-8") for name in TEMPLATES})

    def build(
        self,
        pair: Pair,
        passages: Sequence[Passage],
        schema: dict[str, Any] | None,
        alternatives: Sequence[str] = (),
    ) -> Messages:
        """The chat messages; the sources arrive as numbered passages the answer cites by id."""
        names = {pair.a.id: pair.a.name, pair.b.id: pair.b.name}
        groups: list[dict[str, Any]] = []
        for p in passages:
            if not groups or (groups[-1]["subject_id"], groups[-1]["label"]) != (p.subject_id, p.label):
                name = names[p.subject_id]
                groups.append({"subject_id": p.subject_id, "name": name, "label": p.label, "passages": []})
            groups[-1]["passages"].append(p)
        system = self.env.get_template("system.j2").render(
            a_name=pair.a.name,
            b_name=pair.b.name,
            schema=json.dumps(schema, ensure_ascii=False, sort_keys=True) if schema else "",
        )
        user = self.env.get_template("user.j2").render(
            a=pair.a,
            b=pair.b,
            category=pair.category,
            sources=groups,
            alternatives=list(alternatives),
        )
        return self._messages(system, user)

    def build_select(self, pair: Pair, plan: Plan, schema: dict[str, Any] | None) -> Messages:
        """Selection mode: each dimension with the passages and values it may take, then pros and cons."""
        sides = []
        for key, side in (("a", plan.a), ("b", plan.b)):
            slots = []
            for slot in side.slots:
                d = slot.dimension
                if d.kind == "level":
                    values = ", ".join(d.levels)
                elif d.kind == "percent":
                    values = "a percentage stated in the passage"
                else:
                    values = "words from the passage"
                slots.append({
                    "name": d.name, "description": d.description or d.name,
                    "direction": "more is better" if d.higher_is_better else "less is better",
                    "offered": values, "passages": [_passage(plan, pid) for pid in slot.candidates],
                })  # fmt: skip
            sides.append({
                "key": key, "subject": side.subject, "slots": slots,
                "strengths": [_passage(plan, pid) for pid in side.strengths],
                "limitations": [_passage(plan, pid) for pid in side.limitations],
            })  # fmt: skip
        system = self.env.get_template("select_system.j2").render(
            schema=json.dumps(schema, ensure_ascii=False, sort_keys=True) if schema else ""
        )
        user = self.env.get_template("select_user.j2").render(a=pair.a, b=pair.b, category=pair.category, sides=sides)
        return self._messages(system, user)

    def judge(self, pair: Pair, claims: Sequence[Claim], texts: dict[str, str]) -> Messages:
        """The judge's messages: each cited claim with the passages it cites."""
        shown = [
            {"path": c.path, "text": c.text, "passages": [{"id": i, "text": texts[i]} for i in c.cited]} for c in claims
        ]
        system = self.env.get_template("judge_system.j2").render()
        user = self.env.get_template("judge_user.j2").render(a_name=pair.a.name, b_name=pair.b.name, claims=shown)
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


def _passage(plan: Plan, pid: str) -> dict[str, str]:
    return {"id": pid, "text": plan.text(pid)}


def fence(text: str) -> str:
    """Neutralise `<source` / `</source` inside untrusted text so it cannot end its fence, and its quotes."""
    return _unfenced(str(text)).replace('"', "'")


def _unfenced(text: str) -> str:
    return _FENCE_TAG.sub(lambda m: f"<{m.group(1)}\u200b{m.group(2)}", text)
