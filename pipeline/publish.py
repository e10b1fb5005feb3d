"""Publish: the one place that writes the published reports, for `run`, `render` and both batch transports.

What each unit shows is the store's publication log (`store.published`): every command that
settles a subject's profile or a pair's texts records its choice there, chosen by the unit's
inputs' cache key. A pair page is composed from the pair's published texts and the two subjects'
published profiles (`pipeline.generation.compose`), so every page shows the same profile of a
subject. This module turns that into files — a page (with its previous publication for the
"Changes" section), the pages that link to it, the index pages and feed (which always get each
page's previous publication, so the feed's change lines never depend on which command ran).
Pairs generated whole by earlier releases are shown as they were until they are generated again.

Reports already on disk that the store does not hold (a fresh clone of a repository that
commits `reports/`, a store that was moved away) are kept and stay in the index: rendering
never drops a page it cannot rebuild.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.catalogue import Catalogue
from pipeline.errors import PipelineError
from pipeline.generation.compose import compose
from pipeline.models import Comparison
from pipeline.render import Renderer
from pipeline.store import Store
from pipeline.units import units_of

log = logging.getLogger("pipeline")
Pages = list[tuple[Comparison, Comparison | None]]


@dataclass(frozen=True)
class Rendered:
    files: list[Path]
    reports: int  # pages rendered from the store
    kept: list[str]  # pairs whose report files are on disk but not in the store (kept as they are)


class Publisher:
    def __init__(self, store: Store, renderer: Renderer, catalogue: Catalogue):
        self.store, self.renderer, self.catalogue = store, renderer, catalogue
        self.unrenderable: list[tuple[str, str]] = []  # pages the last `pages()` could not compose, and why

    def pages(self, pair_keys: Iterable[str] | None = None) -> Pages:
        """Every published page (or those of `pair_keys`), composed, with the page published before it."""
        wanted = None if pair_keys is None else set(pair_keys)
        if wanted is None:
            published = self.store.published_with_previous()
        else:  # a few pages (a batch item's): only their units are read
            shown = {u for key in wanted for u in units_of(self.catalogue.pair(key, allow_cross_category=True))}
            published = self.store.published_with_previous(sorted(wanted | shown))
        profiles = {c.pair_key: c for c, _ in published if c.kind == "profile"}
        texts = [(c, prev) for c, prev in published if c.kind != "profile" and (wanted is None or c.pair_key in wanted)]
        pinned = self.store.by_ids([gid for c, prev in texts for g in (c, prev) if g is not None
                                    for gid in _written_for(g)])  # fmt: skip
        out = []
        self.unrenderable = []
        for current, previous in texts:
            if not self._renderable(current):
                continue
            try:
                page = self._page(current, profiles, pinned)
                before = self._page(previous, {}, pinned) if previous is not None else None
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a stored row that is not what it says
                log.warning("%s: its page cannot be composed (%s: %s); its report is left as it is",
                            current.pair_key, type(exc).__name__, exc)  # fmt: skip
                self.unrenderable.append((current.pair_key, f"{type(exc).__name__}: {exc}"))
                continue
            if page is not None:
                out.append((page, before))
        return out

    def _page(
        self, texts: Comparison, profiles: dict[str, Comparison], pinned: dict[str, Comparison]
    ) -> Comparison | None:
        """A page from a pair's texts and the published profiles (`profiles`; without them, the profiles
        the texts were written for). Earlier releases' whole-pair generations are their own page."""
        if texts.kind != "pair":
            return texts
        pair = self.catalogue.pair(texts.pair_key, allow_cross_category=True)
        ids = _written_for(texts)
        written = tuple(pinned.get(gid) for gid in ids)
        current = tuple(profiles.get(unit) for unit in units_of(pair))
        a, b = (now or then for now, then in zip(current, written, strict=True))
        if a is None or b is None:
            log.warning("%s: the profiles of its page are not in the store; its report is left as it is", pair.key)
            return None
        then = (written[0].data, written[1].data) if written[0] and written[1] else None
        return compose(pair, texts, a, b, then)

    def history(self, pair_key: str) -> list[Comparison]:
        """Every version of a pair's page, oldest first: each of its texts' generations on the profiles they
        were written for (an earlier release's whole-pair generation as it was)."""
        generations = self.store.history(pair_key)
        pinned = self.store.by_ids([gid for g in generations for gid in _written_for(g)])
        pages = [self._page(g, {}, pinned) for g in generations]
        return [p for p in pages if p is not None]

    def pair(self, pair_key: str, also: Iterable[str] = ()) -> list[Path]:
        """After `run`: the pair's page, the pages in `also` (others showing a profile that changed), the
        pages that link to it ("people also compare"), the index."""
        pages = self.pages()
        by_key = {c.pair_key: (c, prev) for c, prev in pages}
        existing = frozenset(by_key)
        own, previous = by_key[pair_key]
        files = self.renderer.write(own, existing, previous)
        # Pages that link to this pair change when it first appears, and pages showing one of its profiles
        # change with it; the render manifest leaves every other report untouched.
        pair = self.catalogue.pair(pair_key, allow_cross_category=True)
        for key in sorted({*(p.key for p in self.catalogue.related_pairs(pair)), *also} - {pair_key}):
            if key in by_key:
                self.renderer.write(by_key[key][0], existing, by_key[key][1])
        self.index(pages)
        return files

    def everything(self) -> Rendered:
        """`pipeline render`: every published page (pairs of categories that cannot be read are skipped
        with a warning), then the index."""
        pages = self.pages()
        existing = frozenset(c.pair_key for c, _ in pages)
        files = [p for c, prev in pages for p in self.renderer.write(c, existing, prev, force=True)]
        index, kept = self.index(pages)
        return Rendered(files + index, len(pages), kept)

    def index(self, pages: Pages) -> tuple[list[Path], list[str]]:
        """The index pages, category pages, feed and sitemap, and which on-disk reports they kept."""
        kept = self._kept(frozenset(c.pair_key for c, _ in pages))
        paths = self.renderer.write_index([c for c, _ in pages], {c.pair_key: p for c, p in pages}, kept)
        return paths, [k["pair"] for k in kept]

    def batch(self, items: Iterable[str]) -> BatchReports:
        return BatchReports(self, items)

    def _renderable(self, comparison: Comparison) -> bool:
        a, b = comparison.pair_key.split(",")
        if a in self.catalogue.subjects and b in self.catalogue.subjects:
            return True
        log.warning("%s is in the store but not in the catalogue; its report is left as it is%s",
                    comparison.pair_key, self.catalogue.broken_note())  # fmt: skip
        return False

    def _kept(self, known: frozenset[str]) -> list[dict[str, Any]]:
        """Report JSON files on disk for pairs the store does not publish (and the catalogue still has)."""
        kept = []
        for path in sorted(self.renderer.reports_dir.glob("*/*-vs-*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                key = str(doc["pair"])
                pair = self.catalogue.pair(key, allow_cross_category=True)
            except (OSError, ValueError, KeyError, TypeError, PipelineError):
                continue  # not a report of a pair the catalogue has: nothing to list
            if key in known or path.stem != pair.slug or path.parent.name != pair.category.id:
                continue
            kept.append({"pair": key, "doc": doc})
        return kept


def _written_for(texts: Comparison) -> tuple[str, ...]:
    """The profile generations a pair's texts were written for (none for other generations)."""
    ids = texts.params.get("profiles") if texts.kind == "pair" else None
    return (str(ids.get("a", "")), str(ids.get("b", ""))) if isinstance(ids, dict) else ()


class BatchReports:
    """A batch's pages, written as its pairs settle; links settled at the end.

    Each page links to every pair expected to exist at the end ("people also compare"); when the
    batch is over, `settle` rewrites the few whose links assumed a pair that did not arrive, then
    the index. Only keys are kept per item, so memory stays flat over large batches.
    """

    def __init__(self, publisher: Publisher, items: Iterable[str]):
        self.publisher = publisher
        self.expected = frozenset(k for k in publisher.store.published_keys() if "," in k) | frozenset(
            k for k in items if "," in k
        )
        self.rendered: set[str] = set()

    def write(self, unit: str) -> None:
        """A settled pair's page (profiles have no page of their own)."""
        if "," not in unit:
            return
        for page, previous in self.publisher.pages([unit]):
            self.publisher.renderer.write(page, self.expected, previous)
            self.rendered.add(unit)

    def settle(self) -> None:
        """Rewrite the pages that linked to a pair which did not arrive; then the index."""
        pages = self.publisher.pages()
        by_key = {c.pair_key: (c, prev) for c, prev in pages}
        missing = self.expected - frozenset(by_key)
        existing = frozenset(by_key)
        catalogue = self.publisher.catalogue
        for key in sorted(self.rendered) if missing else ():
            related = {p.key for p in catalogue.related_pairs(catalogue.pair(key, allow_cross_category=True))}
            if related & missing and key in by_key:
                self.publisher.renderer.write(by_key[key][0], existing, by_key[key][1])
        self.publisher.index(pages)
