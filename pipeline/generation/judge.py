"""Judge: an optional second opinion on grounding, from a capable model.

With `[grounding] judge = "<profile>"` every new generation gets one extra call: the judge is
shown each cited claim with the passages it cites and answers, per claim, "supported", "partly"
or "unsupported". The answer is schema-checked and re-asked like any answer; its attempts and
tokens are recorded with the generation's (outcomes "judge:..."), so they are costed; its
verdicts are stored with the generation (`params["judge"]`), so a cache hit re-uses them and a
re-render shows them. Reports show them beside the lexical measure. A judge that fails does
not fail the generation: the report says the judge's verdict is missing and why.
"""

from __future__ import annotations

from typing import Any

from pipeline.grounding import Claim
from pipeline.models import Problem

VERDICTS = ("supported", "partly", "unsupported")


def to_judge(found: list[Claim]) -> list[Claim]:
    """The claims a judge can assess: those that cite at least one passage."""
    return [c for c in found if c.cited]


def schema(found: list[Claim]) -> dict[str, Any]:
    paths = [c.path for c in found]
    verdict = {"type": "string", "enum": list(VERDICTS)}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["verdicts"],
        "properties": {
            "verdicts": {
                "type": "object",
                "additionalProperties": False,
                "required": paths,
                "properties": {p: verdict for p in paths},
            }
        },
    }


def accept(found: list[Claim]) -> Any:
    """A Job.accept-like check for the judge's answer: every claim judged with a known verdict."""
    paths = [c.path for c in found]

    def check(answer: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        verdicts = answer.get("verdicts")
        if not isinstance(verdicts, dict):
            return answer, [Problem("verdicts", "give an object with one verdict per claim id")]
        problems = [
            Problem(f"verdicts.{p}", f"give one of {', '.join(VERDICTS)}")
            for p in paths
            if verdicts.get(p) not in VERDICTS
        ]
        problems += [Problem(f"verdicts.{k}", "is not one of the claims") for k in verdicts if k not in paths]
        return {"verdicts": {p: verdicts.get(p) for p in paths}}, problems

    return check


def tally(judgement: dict[str, Any] | None) -> dict[str, int] | None:
    """How many claims the judge found supported, partly supported, unsupported (None: no judge)."""
    if not judgement or "verdicts" not in judgement:
        return None
    values = list(judgement["verdicts"].values())
    return {v: values.count(v) for v in VERDICTS}
