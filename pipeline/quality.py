"""Quality: how a published report fares against the content gates and the support measure.

Reports show it in their audit summary and `pipeline quality` lists it for every report. A
generation stored before the gates existed (no `gates` version in its params) is assessed all
the same, but marked as such: its failures are listed, not counted as failures of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.catalogue import Catalogue
from pipeline.exitcodes import Verdict
from pipeline.generation import gates
from pipeline.generation.judge import tally as judge_tally
from pipeline.grounding import Claim, claims, tally
from pipeline.models import Comparison, Pair, Problem
from pipeline.overrides import Overrides, for_page, shown


@dataclass(frozen=True)
class Quality:
    gated: bool  # made by a pipeline that enforced the gates
    problems: dict[str, list[Problem]]  # gate -> its problems, every gate present
    claims: list[Claim] = field(default_factory=list)
    judgement: dict[str, Any] | None = None  # the grounding judge's verdicts, if one was asked
    # The model's verdict reasoning predates a reviewer's override that changed the result: the page
    # marks it (pipeline.overrides.Shown), so it is a note for the reviewer, not a failed gate.
    stale_verdict: bool = False

    @property
    def failed(self) -> list[str]:
        return [g for g, found in self.problems.items() if found]

    @property
    def passed(self) -> int:
        return len(self.problems) - len(self.failed)

    @property
    def counts(self) -> dict[str, int]:
        return tally(self.claims)

    @property
    def fails(self) -> bool:
        """Whether this counts as a failure: a gated generation that breaks a gate."""
        return self.gated and bool(self.failed)

    def line(self) -> str:
        c = self.counts
        total = len(self.claims)
        gates_part = (
            f"{self.passed} of {len(self.problems)} content gates passed"
            if not self.failed
            else f"{self.passed} of {len(self.problems)} content gates passed (failed: {', '.join(self.failed)})"
        )
        if not self.gated:
            gates_part += "; made before the gates were enforced"
        if self.stale_verdict:
            gates_part += "; the verdict reasoning predates a reviewer's override (marked on the page)"
        line = (
            f"{gates_part}; claims: {c['supported']} supported, {c['weak']} weak, {c['unsupported']} unsupported, "
            f"{c['uncited']} uncited (of {total})"
        )
        if self.judgement:
            who = f"{self.judgement.get('model', '?')}"
            counts = judge_tally(self.judgement)
            if counts is None:
                line += f"; judge {who}: no verdict ({self.judgement.get('error', 'unknown error')})"
            else:
                line += (f"; judge {who}: {counts['supported']} supported, {counts['partly']} partly, "
                         f"{counts['unsupported']} unsupported")  # fmt: skip
        return line

    def as_dict(self) -> dict[str, Any]:
        return {
            "gated": self.gated,
            "gates_passed": self.passed,
            "gates_total": len(self.problems),
            "failed": {g: [str(p) for p in self.problems[g]] for g in self.failed},
            "claims": self.counts,
            "judge": judge_tally(self.judgement),
            "stale_verdict": self.stale_verdict,
        }


def passage_texts(c: Comparison) -> tuple[dict[str, str], tuple[frozenset[str], frozenset[str]] | None]:
    """Passage texts by id from a stored generation, and each subject's passage ids (a's, b's)."""
    texts: dict[str, str] = {}
    owners: dict[str, str] = {}
    for source in c.sources:
        for p in source.passages:
            texts[p.id] = p.text
            owners[p.id] = source.subject
    a, b = c.pair_key.split(",", 1)
    if not texts:
        return texts, None
    return texts, (
        frozenset(p for p, s in owners.items() if s == a),
        frozenset(p for p, s in owners.items() if s == b),
    )


def assess(
    c: Comparison, pair: Pair, data: dict[str, Any], caps: dict[str, int], stale_verdict: bool = False
) -> Quality:
    """The gates and the support measure for `data` (a generation's data, overrides applied).

    `stale_verdict`: an override changed what the model's verdict reasoning must say; the page
    marks it, so the verdict gate's complaint about it is a note, not a failure."""
    texts, scopes = passage_texts(c)
    found = gates.by_gate(gates.check(data, pair, scopes, caps, int(c.params.get("gates") or gates.VERSION)))
    if stale_verdict:
        found["verdict"] = []
    judgement = c.params.get("judge")
    return Quality(
        gated=bool(c.params.get("gates")),
        problems=found,
        claims=claims(data, pair, texts),
        judgement=judgement if isinstance(judgement, dict) else None,
        stale_verdict=stale_verdict,
    )


@dataclass(frozen=True)
class Entry:
    pair_key: str
    category: str
    generated_at: str
    model: str
    quality: Quality

    def as_dict(self) -> dict[str, Any]:
        return {"pair": self.pair_key, "category": self.category, "generated_at": self.generated_at,
                "model": self.model, **self.quality.as_dict()}  # fmt: skip


@dataclass(frozen=True)
class Survey:
    entries: list[Entry]
    # A subject and dimension shown with two different values or ratings on different pages: the site
    # contradicts itself (each line names the pages).
    inconsistencies: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Entry]:
        return [e for e in self.entries if e.quality.fails]

    @property
    def verdict(self) -> Verdict:
        return Verdict.FAILED if self.failing or self.inconsistencies else Verdict.DONE

    @property
    def ungated(self) -> list[Entry]:
        return [e for e in self.entries if not e.quality.gated]

    def totals(self) -> dict[str, Any]:
        claims = {
            k: sum(e.quality.counts[k] for e in self.entries) for k in ("supported", "weak", "unsupported", "uncited")
        }
        total = sum(claims.values())
        return {
            "reports": len(self.entries),
            "passing": sum(1 for e in self.entries if not e.quality.failed),
            "failing": len(self.failing),
            "made_before_gates": len(self.ungated),
            "claims": claims,
            "supported_share": round(claims["supported"] / total, 3) if total else 0.0,
            "inconsistent": len(self.inconsistencies),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"reports": [e.as_dict() for e in self.entries], "totals": self.totals(),
                "inconsistencies": self.inconsistencies}  # fmt: skip


def survey(pages: Sequence[Comparison], catalogue: Catalogue, overrides: Overrides, caps: dict[str, int]) -> Survey:
    """The quality of every published page, as a reader sees it, and whether the pages agree on each subject."""
    entries = []
    shown_as: dict[tuple[str, str], dict[str, list[str]]] = {}  # (subject, dimension) -> what it shows -> pages
    for c in sorted(pages, key=lambda c: c.pair_key):
        pair = catalogue.pair(c.pair_key, allow_cross_category=True)
        seen = shown(c.data, c.params, for_page(overrides, pair), pair)
        quality = assess(c, pair, seen.data, caps, seen.stale_verdict)
        entries.append(Entry(c.pair_key, c.category, c.generated_at, c.model, quality))
        for side, subject in (("a", pair.a), ("b", pair.b)):
            for d in pair.category.dimensions:
                cell = seen.data[side]["dimensions"].get(d.name) or {}
                value = cell.get("value")
                what = (", ".join(map(str, value)) if isinstance(value, list) else str(value)) + (
                    f" rated {cell.get('rating')}/10" if d.rated and "rating" in cell else ""
                )
                shown_as.setdefault((subject.name, d.name), {}).setdefault(what, []).append(pair.key)
    lines = []
    for (name, dim), found in sorted(shown_as.items()):
        if len(found) > 1:
            shown_on = "; ".join(f"{what} on {', '.join(keys)}" for what, keys in sorted(found.items()))
            lines.append(f"{name} / {dim}: {shown_on}")
    return Survey(entries, lines)
