"""Render: a stored comparison → Markdown and JSON reports, written atomically.

Everything shown is computed from the stored generation and the catalogue, so
rendering the same generation twice is byte-identical. Model and source text
is untrusted: Markdown output neutralises raw HTML and link syntax.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.catalogue import Catalogue
from pipeline.charts import grouped_bars
from pipeline.errors import PipelineError, RenderError, StoreBusyError
from pipeline.generation.consensus import page_spread, spread_of
from pipeline.generation.schema import sha256_of
from pipeline.grounding import point_text
from pipeline.models import Comparison, Pair, Part
from pipeline.overrides import Overrides, for_page, shown
from pipeline.overrides import apply as apply_overrides
from pipeline.providers.local import BUNDLED_MODEL
from pipeline.quality import assess
from pipeline.report_view import (
    REPORT_FORMAT,
    cell_view,
    claim_view,
    description,
    headline,
    number_text,
    passages_of,
    report_json,
    result_label,
    result_line,
    tidy,
)
from pipeline.scoring import winner, winner_label
from pipeline.text import md_escape, parse_utc
from pipeline.untrusted import harmless

HERE = Path(__file__).parent
# What the methodology adds for each way a consensus was made (pipeline.generation.consensus).
METHOD_NOTES = {
    "median": "",
    "median, verdict by code": " No sample's verdict agreed with the median ratings, so code wrote it from them.",
    "closest sample": " The median ratings did not pass the content gates together, so that closest sample is "
    "published whole, its ratings included.",
}
TEMPLATES = HERE / "templates"
log = logging.getLogger("pipeline")
MANIFEST = ".render-manifest.json"  # report -> fingerprint of what it was rendered from


@dataclass(frozen=True)
class Rendered:
    pair: Pair
    files: dict[str, str]  # extension -> text


class Renderer:
    def __init__(
        self,
        catalogue: Catalogue,
        reports_dir: Path,
        overrides: Overrides | None = None,
        caps: dict[str, int] | None = None,
        base_url: str = "",
    ):
        """`caps`: the length limits of the schema's sentence fields, for the quality line's gates;
        `base_url`: where the reports folder is published (`[publish] base_url`), for canonical links,
        the sitemap and the feed."""
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        self.catalogue = catalogue
        self.reports_dir = reports_dir
        self.overrides = overrides or {}
        self.caps = caps or {}
        self.base_url = base_url.rstrip("/")
        options: dict[str, Any] = {
            "loader": FileSystemLoader(str(TEMPLATES)),
            "undefined": StrictUndefined,
            "keep_trailing_newline": True,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "auto_reload": False,  # templates ship with the package; no stat() per render
            # Every value printed is cleaned once more (control and bidi characters, lone surrogates):
            # generations stored before the untrusted-text rule, overrides, anything that slipped past.
            "finalize": _finalize,
        }
        # Markdown: the `md` filter neutralises HTML instead of autoescape.
        self.md_env = Environment(autoescape=False, **options)  # noqa: S701
        self.md_env.filters["md"] = md_escape
        self.html_env = Environment(autoescape=True, **options)
        self._templates_sha256 = sha256_of(
            {p.name: p.read_text(encoding="utf-8") for p in sorted(TEMPLATES.iterdir()) if p.is_file()}
            | {
                "report_format": str(REPORT_FORMAT),
                "renderer": Path(__file__).read_text(encoding="utf-8")
                + (Path(__file__).parent / "report_view.py").read_text(encoding="utf-8"),
            }
        )
        self._manifest_cache: dict[str, str] | None = None

    def render(
        self, comparison: Comparison, existing: frozenset[str] = frozenset(), previous: Comparison | None = None
    ) -> Rendered:
        """All formats of one report.

        `existing`: the pair keys that have reports to link to; `previous`: the generation
        before this one, for the "Changes since the previous generation" section.
        """
        pair = self.catalogue.pair(comparison.pair_key, allow_cross_category=True)
        view = self.view(pair, comparison, existing)
        view["previous"] = None
        if previous is not None:
            from pipeline.diff import diff_reports, summary_lines

            changes = diff_reports(report_json(self.view(pair, previous)), report_json(view))
            view["previous"] = {"generated_at": previous.generated_at, "changes": summary_lines(changes)}
        markdown = tidy(self.md_env.get_template("report.md.j2").render(**view))
        html = tidy(self.html_env.get_template("report.html.j2").render(**view))
        document = json.dumps(report_json(view), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        return Rendered(pair=pair, files={"md": markdown, "html": html, "json": document})

    def write(
        self,
        comparison: Comparison,
        existing: frozenset[str] = frozenset(),
        previous: Comparison | None = None,
        *,
        force: bool = False,
    ) -> list[Path]:
        """Write a report's files, unless the manifest says they already hold exactly this rendering.

        The fingerprint covers everything a report is rendered from (the generation, its
        previous one, which related reports exist, overrides, the catalogue entries and the
        templates), so a fresh item costs a hash and three stat calls instead of a render.
        """
        pair = self.catalogue.pair(comparison.pair_key, allow_cross_category=True)
        overrides = for_page(self.overrides, pair)
        for o in apply_overrides(comparison.data, overrides, pair)[2]:
            log.warning("override in %s for %s not applied, nothing on the page matches it: %s",
                        o.source, pair.key, o.describe())  # fmt: skip
        folder = self.reports_dir / pair.category.id
        paths = [folder / f"{pair.slug}.{ext}" for ext in ("html", "json", "md")]
        key = f"{pair.category.id}/{pair.slug}"
        fingerprint = sha256_of(
            {
                "templates": self._templates_sha256,
                "generation": comparison.generation_id,
                "previous": previous.generation_id if previous else None,
                "links": sorted(p.key for p in self.catalogue.related_pairs(pair) if p.key in existing),
                "overrides": [o.describe() for o in overrides],
                "catalogue": repr((pair.a, pair.b, pair.category)),
            }
        )
        manifest = self._manifest()
        if not force and manifest.get(key) == fingerprint and all(p.exists() for p in paths):
            return paths
        rendered = self.render(comparison, existing, previous)
        for path in paths:
            atomic_write(path, rendered.files[path.suffix[1:]])
        manifest[key] = fingerprint
        return paths

    @contextmanager
    def locked(self, timeout_s: float) -> Iterator[None]:
        """Hold the reports folder's lock: one process at a time reads the store and writes reports."""
        from filelock import FileLock, Timeout

        try:
            self.reports_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.reports_dir / ".render.lock"))
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise StoreBusyError(f"another process is writing the reports in {self.reports_dir}; "
                                 f"waited {timeout_s:g} s, try again later") from None  # fmt: skip
        except OSError as exc:
            raise RenderError(f"cannot write into {self.reports_dir}: {exc.strerror or exc}") from None
        try:
            self._manifest_cache = None  # another process may have written reports meanwhile
            yield
        finally:
            lock.release()

    def _manifest(self) -> dict[str, str]:
        if self._manifest_cache is None:
            try:
                loaded = json.loads((self.reports_dir / MANIFEST).read_text(encoding="utf-8"))
                self._manifest_cache = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._manifest_cache = {}
        return self._manifest_cache

    def write_index(
        self,
        comparisons: list[Comparison],
        previous: dict[str, Comparison | None] | None = None,
        kept: list[dict[str, Any]] | None = None,
    ) -> list[Path]:
        """The index (`index.md`, `index.html`), one page per category (`<category>/index.*`), the Atom
        feed of the published generations (`feed.xml`, each with what changed since `previous`) and,
        with a `[publish] base_url`, `sitemap.xml`. `kept`: reports on disk the store does not hold
        ({"pair": key, "doc": its JSON report}), listed from their own JSON."""
        entries: list[dict[str, Any]] = [self._entry(c) for c in comparisons]
        entries += [e for e in (self._kept_entry(k["doc"]) for k in kept or []) if e is not None]
        entries.sort(key=lambda e: (e["category"].name, e["pair"].key))
        groups: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            groups.setdefault(e["category"].id, []).append(e)
        categories = {e["category"].id: e["category"] for e in entries}
        pages = [(self.reports_dir, "", groups, "Comparison reports")]
        pages += [(self.reports_dir / cid, "../", {cid: groups[cid]}, categories[cid].name) for cid in groups]
        paths = []
        for folder, root, listed, title in pages:
            view = {"groups": listed, "categories": categories, "count": sum(len(v) for v in listed.values()),
                    "root": root, "title": title, "top": not root}  # fmt: skip
            for ext, env in (("md", self.md_env), ("html", self.html_env)):
                path = folder / f"index.{ext}"
                atomic_write(path, tidy(env.get_template(f"index.{ext}.j2").render(**view)))
                paths.append(path)
        paths.append(self._write_feed(entries, previous or {}))
        if self.base_url:
            paths.append(self._write_sitemap(entries, categories))
        else:  # no absolute URLs, no sitemap: one left from when a base_url was set would list stale URLs
            (self.reports_dir / "sitemap.xml").unlink(missing_ok=True)
        if self._manifest_cache is not None:
            # Another process may write it too; losing its entries only costs a re-render later.
            atomic_write(self.reports_dir / MANIFEST, json.dumps(self._manifest_cache, indent=0, sort_keys=True))
        return paths

    def _entry(self, c: Comparison) -> dict[str, Any]:
        """An index and feed row of a published generation, with the overrides a reader sees applied."""
        pair = self.catalogue.pair(c.pair_key, allow_cross_category=True)
        data = shown(c.data, c.params, for_page(self.overrides, pair), pair).data
        won, sa, sb = winner(data, pair.category)
        return {"c": c, "generation_id": c.generation_id, "generated_at": c.generated_at, "category": pair.category,
                "pair": pair, "winner": winner_label(pair, won), "result": result_line(pair, won, sa, sb),
                "date": c.generated_at[:10], "demo": c.provider == "local" and c.model == BUNDLED_MODEL}  # fmt: skip

    def _kept_entry(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The same row read from a report's JSON file (a report the store does not hold)."""
        try:
            pair = self.catalogue.pair(str(doc["pair"]), allow_cross_category=True)
            computed, provenance = doc["computed"], doc["provenance"]
            won = str(computed["winner"])
            sa, sb = float(computed["overall"]["a"]), float(computed["overall"]["b"])
            stamp = str(provenance["generated_at"])
            parse_utc(stamp)
            entry = {"c": None, "generation_id": str(provenance["generation_id"]), "generated_at": stamp,
                     "category": pair.category, "pair": pair, "winner": winner_label(pair, won),
                     "result": result_line(pair, won, sa, sb), "date": stamp[:10],
                     "demo": bool(provenance.get("demo_model"))}  # fmt: skip
        except (KeyError, TypeError, ValueError, PipelineError):
            return None
        return entry if won in ("a", "b", "tie") else None

    def _write_feed(self, entries: list[dict[str, Any]], previous: dict[str, Comparison | None]) -> Path:
        """An Atom feed of each pair's published generation, newest first, with what changed since the one before."""
        from pipeline.diff import diff_reports, summary_lines

        items = []
        for e in sorted(entries, key=lambda e: (e["generated_at"], e["pair"].key), reverse=True)[:200]:
            c, pair = e["c"], e["pair"]
            before = previous.get(pair.key)
            if c is None:
                changes = []  # a report kept from disk: the store has nothing to compare it with
            elif before is None:
                changes = ["First generation."]
            else:
                found = diff_reports(report_json(self.view(pair, before)), report_json(self.view(pair, c)))
                changes = [_sentence(line) for line in summary_lines(found)] or ["No changes in content."]
            items.append({**e, "changes": changes, "href": f"{pair.category.id}/{pair.slug}.html"})
        view = {"items": items, "base": f"{self.base_url}/" if self.base_url else "",
                "updated": items[0]["generated_at"] if items else "1970-01-01T00:00:00Z"}  # fmt: skip
        path = self.reports_dir / "feed.xml"
        atomic_write(path, tidy(self.html_env.get_template("feed.xml.j2").render(**view)))
        return path

    def _write_sitemap(self, entries: list[dict[str, Any]], categories: dict[str, Any]) -> Path:
        newest: dict[str, str] = {}
        for e in entries:
            newest[e["category"].id] = max(newest.get(e["category"].id, ""), e["date"])
        urls = [(f"{self.base_url}/index.html", max(newest.values(), default=""))]
        urls += [(f"{self.base_url}/{cid}/index.html", newest[cid]) for cid in sorted(categories)]
        urls += [(f"{self.base_url}/{e['category'].id}/{e['pair'].slug}.html", e["date"]) for e in entries]
        path = self.reports_dir / "sitemap.xml"
        atomic_write(path, tidy(self.html_env.get_template("sitemap.xml.j2").render(urls=urls)))
        return path

    def view(
        self, pair: Pair, c: Comparison, existing: frozenset[str] = frozenset(), *, overrides: bool = True
    ) -> dict[str, Any]:
        """Everything a report shows; `overrides=False`: the generation as the model made it."""
        seen = shown(c.data, c.params, for_page(self.overrides, pair) if overrides else [], pair)
        data, applied, unresolved = seen.data, seen.applied, seen.unresolved
        dims = pair.category.dimensions
        won, score_a, score_b = winner(data, pair.category)
        winner_name = winner_label(pair, won)
        spread = page_spread(c.params["sides"], data, pair) if c.kind == "page" else spread_of(c.params, data, pair)
        rows: list[dict[str, Any]] = [
            {
                "name": d.name,
                "rated": d.rated,
                "weight": number_text(d.weight),
                "better": "higher" if d.higher_is_better else "lower",
                "a": cell_view(data["a"]["dimensions"][d.name], d),
                "b": cell_view(data["b"]["dimensions"][d.name], d),
            }
            for d in dims
        ]
        passages = passages_of(c, pair)
        quality = assess(c, pair, data, self.caps, seen.stale_verdict)
        found = {cl.path: cl for cl in quality.claims}
        verdicts = (quality.judgement or {}).get("verdicts") or {}
        for r in rows:
            for side in ("a", "b"):
                path = f"{side}.dimensions.{r['name']}"
                r[side].update(claim_view(found.get(path), verdicts.get(path, "")))
                r[side]["spread"] = spread.rating_text(side, r["name"]) if spread else ""
            # who leads on this feature, by feature score (direction applied); unrated features have no leader
            sa, sb = r["a"]["score"], r["b"]["score"]
            r["leader"] = "" if not r["rated"] else "a" if sa > sb else "b" if sb > sa else ""
        points = {
            side: {
                kind: [
                    {
                        "text": point_text(item),
                        **claim_view(found.get(f"{side}.{kind}[{i}]"), verdicts.get(f"{side}.{kind}[{i}]", "")),
                    }
                    for i, item in enumerate(data[side][kind])
                ]
                for kind in ("pros", "cons")
            }
            for side in ("a", "b")
        }
        cited = {i for cl in found.values() for i in cl.cited}
        counts, total = quality.counts, len(found)
        mode = str(c.params.get("mode", "write"))
        generated = parse_utc(c.generated_at)
        related = [
            {"title": f"{p.a.name} vs {p.b.name}", "slug": p.slug, "key": p.key, "exists": p.key in existing}
            for p in self.catalogue.related_pairs(pair)
        ]
        return {
            "pair": pair,
            "c": c,
            "data": data,
            "rows": rows,
            "points": points,
            "passages": [p for p in passages if p["id"] in cited],
            "grounding": {
                **counts,
                "total": total,
                "percent": round(100 * counts["supported"] / total) if total else 0,
                "claims": [  # in path order: a stored generation's keys come back sorted
                    {
                        "claim": cl.path,
                        "status": cl.status,
                        "share": cl.share,
                        "cites": list(cl.cited),
                        **({"judge": verdicts[cl.path]} if cl.path in verdicts else {}),
                    }
                    for cl in sorted(found.values(), key=lambda cl: cl.path)
                ],
            },
            "quality": {**quality.as_dict(), "line": quality.line()},
            "mode": mode,
            "quoted": mode == "select",
            "overall": {"a": f"{score_a:.2f}", "b": f"{score_b:.2f}"},
            "overall_range": {s: f" ({spread.overall_text(s)})" if spread else "" for s in ("a", "b")},
            "spread": spread,
            "method_note": METHOD_NOTES,
            "result_label": result_label(pair, won, spread),
            "winner": won,
            "winner_name": winner_name,
            "tie_band": number_text(pair.category.tie_band),
            "related": related,
            "as_of": time.strftime("%B %Y", generated),
            "generated_exact": time.strftime("%Y-%m-%d %H:%M:%S UTC", generated),
            "demo": c.provider == "local" and c.model == BUNDLED_MODEL,
            "tokens": c.usage.total_tokens,
            "overrides": {"applied": [o.describe() for o in applied], "unresolved": [o.describe() for o in unresolved]},
            "stale_verdict": seen.stale_verdict,
            "stale_texts": bool(c.params.get("stale_texts")),
            "composed": c.kind == "page",
            "rubrics": [{"name": d.name, "text": d.rubric_text()} for d in dims if d.rated and d.rubric],
            "parts": [_part_view(p, pair) for p in c.parts],
            "overall_chart": grouped_bars([("Overall score", score_a, score_b)]),
            # Feature scores, not raw ratings: where less is better the bar is 11 - rating, so a longer bar
            # is always better (a complexity rated 1 is the best, not the shortest, bar).
            "ratings_chart": grouped_bars(
                [
                    (d.name if d.higher_is_better else f"{d.name} (less is better)", r["a"]["score"], r["b"]["score"])
                    for d, r in zip(dims, rows, strict=True)
                    if d.rated
                ]
            ),
            "headline": headline(pair, won, score_a, score_b, spread),
            "scores_line": result_line(pair, won, score_a, score_b, spread).replace(" · ", ", ")
            + " (overall, out of 10)",
            "description": description(pair, won, score_a, score_b),
            "canonical": f"{self.base_url}/{pair.category.id}/{pair.slug}.html" if self.base_url else "",
        }


def _part_view(part: Part, pair: Pair) -> dict[str, Any]:
    """A line of the audit summary for one generation a page is made of."""
    subject = {"a": pair.a, "b": pair.b}.get(part.role)
    label = f"Profile of {subject.name}" if subject else "Pair texts"
    who = (
        "written by code from the two profiles"
        if part.params.get("mode") == "code"
        else f"{part.provider} / {part.model}"
    )
    return {"label": label, "id": part.generation_id, "at": part.generated_at, "who": who, "attempts": part.attempts,
            "tokens": part.usage.total_tokens}  # fmt: skip


def _sentence(line: str) -> str:
    """A change line as a sentence of the feed's summary ("Speed / X: rating 5 → 7 (+2).")."""
    return line if line.endswith((".", "!", "?")) else f"{line}."


def _finalize(value: Any) -> Any:
    from markupsafe import Markup

    # Markup is our own template output (charts, macros): already safe, and cleaning would unmark it.
    return harmless(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def atomic_write(path: Path, text: str) -> bool:
    """Write via a temporary file in the same folder and rename: readers never see half a file.

    A file that already has this exact content is left alone (no write, same mtime), which
    keeps re-renders of unchanged reports cheap. Returns whether the file was written.
    There is no fsync: the rename protects against crashes of this process (SIGKILL, OOM),
    which is what a report needs; after a power loss a re-render restores it from the store.
    """
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            if stat.S_IMODE(path.stat().st_mode) != _mode():
                os.chmod(path, _mode())  # written 0600 by an earlier release
            return False
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RenderError(f"cannot write into {path.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file 0600; a report is for a web server to read, so it gets the mode a
        # plain open() would give it (the umask's).
        os.chmod(tmp, _mode())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise RenderError(f"cannot write {path}: {exc.strerror}") from exc
    return True


def _mode() -> int:
    """The mode a plain open() gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


@functools.cache
def _umask() -> int:
    """The process's umask (read once: reading it means setting it, briefly)."""
    current = os.umask(0o022)
    os.umask(current)
    return current
