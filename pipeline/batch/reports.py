"""Reports of a batch, written as its items arrive, for both transports.

Each report links to every pair expected to exist at the end ("people also compare"); when
the batch is over, `settle` rewrites the few whose links assumed an item that did not arrive,
then the index. Only ids are kept per item, so memory stays flat over large batches.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.catalogue import Catalogue
from pipeline.models import Comparison
from pipeline.render import Renderer
from pipeline.store import Store


class ReportWriter:
    def __init__(self, store: Store, renderer: Renderer, catalogue: Catalogue, items: Iterable[str] = ()):
        self.store, self.renderer, self.catalogue = store, renderer, catalogue
        # Every pair's latest generation (and the one before it) as they were when the batch began.
        self.before = {c.pair_key: (c, prev) for c, prev in store.latest_with_previous()}
        self.expected = frozenset(self.before) | frozenset(items)
        self.rendered: dict[str, str] = {}  # pair -> generation whose report was written

    def write(self, comparison: Comparison) -> None:
        """A settled item's report: a new generation, or a fresh one (which may be an older generation)."""
        self._write(comparison, self.expected)
        self.rendered[comparison.pair_key] = comparison.generation_id

    def _write(self, comparison: Comparison, existing: frozenset[str]) -> None:
        latest, prev = self.before.get(comparison.pair_key, (None, None))
        if latest is None:
            previous = None
        elif latest.generation_id == comparison.generation_id:
            previous = prev  # a fresh item that is its pair's latest generation
        elif comparison.generated_at >= latest.generated_at:
            previous = latest  # a new generation: the one stored before the batch is its previous
        else:
            previous = self.store.previous_of(comparison)  # an older generation that is fresh again
        self.renderer.write(comparison, existing, previous)

    def settle(self) -> None:
        """Rewrite the reports that linked to a pair which did not arrive; then the index."""
        latest = self.store.latest_all()
        existing = frozenset(c.pair_key for c in latest)
        missing = self.expected - existing
        if missing:
            by_key = {c.pair_key: c for c in latest}
            for key, generation_id in self.rendered.items():
                pair = self.catalogue.pair(key, allow_cross_category=True)
                related = {p.key for p in self.catalogue.related_pairs(pair)}
                if related & missing:
                    comparison = by_key[key]
                    if comparison.generation_id != generation_id:  # a fresh item that is not its pair's latest
                        comparison = next(c for c in self.store.history(key) if c.generation_id == generation_id)
                    self._write(comparison, existing)
        self.renderer.write_index(latest)
