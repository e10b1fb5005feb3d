"""Doctor: check the store and the reports on disk.

- every migration is applied;
- every stored generation parses and validates against the schema it was made
  with (kept in the store by sha256) and the content gates (generations made
  before the gates were enforced: the consistency rules they were made under);
- every report file on disk matches what its latest stored generation renders to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import CatalogueError
from pipeline.exitcodes import Verdict
from pipeline.models import SourceRecord
from pipeline.overrides import check_overrides

if TYPE_CHECKING:
    from pipeline.workspace import Workspace


@dataclass
class Finding:
    where: str
    problem: str


@dataclass
class Report:
    checked_generations: int = 0
    checked_files: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def verdict(self) -> Verdict:
        return Verdict.DONE if self.ok else Verdict.FAILED


def check(ws: Workspace) -> Report:
    from jsonschema import Draft202012Validator

    from pipeline.generation import gates
    from pipeline.generation.validate import semantic_problems
    from pipeline.store import migrations

    report = Report()
    add = report.findings.append
    applied, schemas, rows = ws.store.checked_rows()
    # Generations stored before the schemas table existed can still be checked when they were
    # made with the schema file the workspace has now.
    canonical, canonical_sha = ws.canonical
    schemas.setdefault(canonical_sha, json.dumps(canonical))
    for name in migrations.names():
        if name not in applied:
            add(Finding("store", f"migration {name} is not applied"))
    for problem in check_overrides(ws.settings.config_dir, ws.catalogue):
        add(Finding("overrides", problem))
    for gid, pair_key, schema_sha, raw, params_raw, sources_raw, kind in rows:
        report.checked_generations += 1
        where = f"generation {gid} ({pair_key})"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            add(Finding(where, f"stored data is not JSON: {exc.msg}"))
            continue
        if schema_sha not in schemas:
            add(Finding(where, f"the schema it was made with ({schema_sha[:12]}) is not in the store"))
            continue
        errors = list(Draft202012Validator(json.loads(schemas[schema_sha])).iter_errors(data))
        if errors:
            add(Finding(where, f"does not validate against its schema: {errors[0].message[:200]}"))
            continue
        if kind == "profile":
            made_under = int(json.loads(params_raw).get("gates") or gates.VERSION)
            problems = _profile_problems(ws, pair_key, data, json.loads(sources_raw), schemas[schema_sha], made_under)
            if problems:
                add(Finding(where, f"breaks a semantic rule: {problems[0]}"))
            continue
        if kind == "pair":
            continue  # a pair's texts are checked on their page (`pipeline quality`), with the profiles they complete
        try:
            pair = ws.pair(pair_key, cross_category=True)
        except CatalogueError as exc:
            add(Finding(where, f"cannot be checked against the catalogue: {exc}"))
            continue
        made_under = int(json.loads(params_raw).get("gates") or 0)
        if made_under:
            scopes = _scopes(pair_key, json.loads(sources_raw))
            problems = semantic_problems(data, pair, scopes, gates.caps_of(schemas[schema_sha]), made_under)
        else:
            problems = gates.page_consistency(data, pair)
        if problems:
            add(Finding(where, f"breaks a semantic rule: {problems[0]}"))
    _check_files(ws, report)
    return report


def _profile_problems(
    ws: Workspace, unit: str, data: dict[str, Any], stored: list[Any], schema: str, version: int
) -> list[Any]:
    from pipeline.generation import gates

    category_id, _, subject_id = unit.partition("/")
    category = ws.catalogue.categories.get(category_id)
    if category is None or subject_id not in ws.catalogue.subjects:
        return [f"{unit} is no longer in the catalogue"]
    scope = frozenset(
        p.id for s in (SourceRecord.from_json(x) for x in stored if isinstance(x, dict)) for p in s.passages
    )
    return gates.check_profile(data, category, scope or None, gates.caps_of(schema), version)


def _scopes(pair_key: str, stored: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    a, b = pair_key.split(",", 1)
    sources = [SourceRecord.from_json(s) for s in stored if isinstance(s, dict)]
    ids = {side: tuple(p.id for s in sources if s.subject == side for p in s.passages) for side in (a, b)}
    return (ids[a], ids[b]) if ids[a] or ids[b] else None


def _check_files(ws: Workspace, report: Report) -> None:
    pairs = ws.publisher.pages()
    for pair_key, problem in ws.publisher.unrenderable:
        report.findings.append(Finding(f"page {pair_key}", f"cannot be rendered: {problem}"))
    existing = frozenset(c.pair_key for c, _ in pairs)
    _check_unheld(ws, report, existing)
    for comparison, previous in pairs:
        try:
            rendered = ws.renderer.render(comparison, existing, previous)
        except CatalogueError:
            continue  # already reported above
        except (KeyError, TypeError, ValueError) as exc:
            where = f"generation {comparison.generation_id} ({comparison.pair_key})"
            report.findings.append(Finding(where, f"cannot be rendered: {type(exc).__name__}: {exc}"))
            continue
        folder = ws.settings.reports_dir / rendered.pair.category.id
        for ext, text in sorted(rendered.files.items()):
            path = folder / f"{rendered.pair.slug}.{ext}"
            report.checked_files += 1
            where = str(path.relative_to(ws.root)) if path.is_relative_to(ws.root) else str(path)
            if not path.exists():
                report.findings.append(Finding(where, "missing; run `pipeline render`"))
            elif path.read_text(encoding="utf-8") != text:
                report.findings.append(
                    Finding(
                        where, "differs from its stored generation (edited by hand, or stale); run `pipeline render`"
                    )
                )


def _check_unheld(ws: Workspace, report: Report, held: frozenset[str]) -> None:
    """Report files on disk for pairs the store publishes nothing for: `render` keeps them as they are,
    but nothing can re-render or vouch for them (a fresh clone without the store, a moved store)."""
    for path in sorted(ws.settings.reports_dir.glob("*/*-vs-*.json")):
        try:
            key = str(json.loads(path.read_text(encoding="utf-8"))["pair"])
        except (OSError, ValueError, KeyError, TypeError):
            key = ""
        if key not in held:
            where = str(path.relative_to(ws.root)) if path.is_relative_to(ws.root) else str(path)
            report.findings.append(Finding(where, "the store holds no generation for this report (kept as it is by "
                                                  "`pipeline render`); regenerate it with `pipeline run --pair "
                                                  f"{key or '<pair>'}` or restore the store"))  # fmt: skip
