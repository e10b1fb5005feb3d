"""Publish: the one place that writes the published reports, for `run`, `render` and both batch transports.

Which generation a pair shows is the store's publication log (`store.published`): every
command that settles a pair records its choice there, chosen by the pair's inputs' cache key.
This module turns that log into files — a pair's report (with its previous publication for the
"Changes" section), the reports that link to it, and the index pages and feed (which always get
each pair's previous publication, so the feed's change lines never depend on which command ran).

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
from pipeline.models import Comparison
from pipeline.render import Renderer
from pipeline.store import Store

log = logging.getLogger("pipeline")
Published = list[tuple[Comparison, Comparison | None]]


@dataclass(frozen=True)
class Rendered:
    files: list[Path]
    reports: int  # pairs rendered from the store
    kept: list[str]  # pairs whose report files are on disk but not in the store (kept as they are)


class Publisher:
    def __init__(self, store: Store, renderer: Renderer, catalogue: Catalogue):
        self.store, self.renderer, self.catalogue = store, renderer, catalogue

    def pair(self, pair_key: str) -> list[Path]:
        """After `run`: the pair's report, the reports that link to it ("people also compare"), the index."""
        published = self.store.published_with_previous()
        by_key = {c.pair_key: (c, prev) for c, prev in published}
        existing = frozenset(by_key)
        own, previous = by_key[pair_key]
        files = self.renderer.write(own, existing, previous)
        # Reports that link to this pair change when it first appears; the render manifest leaves
        # every other report untouched.
        pair = self.catalogue.pair(pair_key, allow_cross_category=True)
        for related in self.catalogue.related_pairs(pair):
            if related.key in by_key:
                self.renderer.write(by_key[related.key][0], existing, by_key[related.key][1])
        self.index(published)
        return files

    def everything(self) -> Rendered:
        """`pipeline render`: every published report (pairs of categories that cannot be read are
        skipped with a warning), then the index."""
        published = [(c, prev) for c, prev in self.store.published_with_previous() if self._renderable(c)]
        existing = frozenset(c.pair_key for c, _ in published)
        files = [p for c, prev in published for p in self.renderer.write(c, existing, prev, force=True)]
        index, kept = self.index(published)
        return Rendered(files + index, len(published), kept)

    def index(self, published: Published) -> tuple[list[Path], list[str]]:
        """The index pages, category pages, feed and sitemap, and which on-disk reports they kept."""
        kept = self._kept(frozenset(c.pair_key for c, _ in published))
        paths = self.renderer.write_index([c for c, _ in published], {c.pair_key: p for c, p in published}, kept)
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


class BatchReports:
    """A batch's reports, written as its items settle; links settled at the end.

    Each report links to every pair expected to exist at the end ("people also compare"); when
    the batch is over, `settle` rewrites the few whose links assumed an item that did not arrive,
    then the index. Only ids are kept per item, so memory stays flat over large batches.
    """

    def __init__(self, publisher: Publisher, items: Iterable[str]):
        self.publisher = publisher
        self.expected = frozenset(publisher.store.published_keys()) | frozenset(items)
        self.rendered: set[str] = set()

    def write(self, pair_key: str) -> None:
        """An item's report, once its publication is committed (a new generation or a fresh one)."""
        found = self.publisher.store.published(pair_key)
        if found is not None:
            self.publisher.renderer.write(found[0], self.expected, found[1])
            self.rendered.add(pair_key)

    def settle(self) -> None:
        """Rewrite the reports that linked to a pair which did not arrive; then the index."""
        published = self.publisher.store.published_with_previous()
        by_key = {c.pair_key: (c, prev) for c, prev in published}
        missing = self.expected - frozenset(by_key)
        existing = frozenset(by_key)
        catalogue = self.publisher.catalogue
        for key in sorted(self.rendered) if missing else ():
            related = {p.key for p in catalogue.related_pairs(catalogue.pair(key, allow_cross_category=True))}
            if related & missing:
                self.publisher.renderer.write(by_key[key][0], existing, by_key[key][1])
        self.publisher.index(published)
