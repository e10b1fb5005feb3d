"""What a batch asks for: a batch file or flags, resolved to the catalogue's pairs (and a shard of them)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.catalogue import Catalogue
from pipeline.configfile import check_keys, read_toml
from pipeline.errors import CatalogueError, ConfigError
from pipeline.models import Pair
from pipeline.settings import check_samples

LIMIT_KEYS = ("concurrency", "requests_per_minute", "tokens_per_minute", "max_cost")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


@dataclass(frozen=True)
class BatchSpec:
    name: str
    pairs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    provider: str | None = None
    model: str | None = None
    concurrency: int = 4
    requests_per_minute: float = 0
    tokens_per_minute: float = 0
    max_cost: float = 0
    max_age_s: float | None = None
    samples: int | None = None  # `[generation] samples` of the batch file (None: the profile's or config's)
    seed: int | None = None  # `[generation] seed` of the batch file or `--seed` (None: config's)

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def with_flags(
        self,
        *,
        category: str | None = None,
        concurrency: int | None = None,
        shard: tuple[int, int] | None = None,
        samples: int | None = None,
        seed: int | None = None,
    ) -> BatchSpec:
        """The spec as the command line changes it: flags win over the batch file."""
        spec = self
        if samples:
            spec = replace(spec, samples=samples)
        if seed is not None:
            spec = replace(spec, seed=seed)
        if category:
            spec = replace(spec, categories=(*spec.categories, category))
        if concurrency:
            spec = replace(spec, concurrency=concurrency)
        if shard:
            spec = replace(spec, name=f"{spec.name} (shard {shard[0]}/{shard[1]})")
        return spec

    def budget(self, max_cost: float | None) -> float:
        """`--max-cost` if given, else the batch file's `[limits] max_cost` (0: none)."""
        return self.max_cost if max_cost is None else max_cost


def parse_age(text: str, where: str) -> float | None:
    if not text:
        return None
    match = _AGE.match(text)
    if not match:
        raise ConfigError(f"{where}: max_age {text!r} must look like 90s, 30m, 12h or 7d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def load_batch(path: Path) -> BatchSpec:
    if not path.is_file():
        raise ConfigError(f"batch file {path} does not exist")
    doc = read_toml(path)
    limits, fresh = doc.get("limits", {}), doc.get("freshness", {})
    check_keys(doc, ("name", "pairs", "select", "limits", "freshness", "provider", "model", "generation"), path,
               "the batch file")  # fmt: skip
    for table, keys in (("limits", LIMIT_KEYS), ("freshness", ("max_age",)), ("generation", ("samples", "seed"))):
        if not isinstance(doc.get(table, {}), dict):
            raise ConfigError(f"{path}: [{table}] must be a table")
        check_keys(doc.get(table, {}), keys, path, f"[{table}]")
    selects = doc.get("select", [])
    if not isinstance(selects, list) or not all(isinstance(s, dict) for s in selects):
        raise ConfigError(f"{path}: write each selection as a [[select]] table")
    for i, entry in enumerate(selects):
        check_keys(entry, ("category", "subject"), path, f"select[{i}]")
    generation = doc.get("generation", {})
    seed = generation.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"{path}: [generation] seed must be a whole number, not {seed!r}")
    samples = generation.get("samples")
    if samples is not None:
        if not isinstance(samples, int) or isinstance(samples, bool):
            raise ConfigError(f"{path}: [generation] samples must be a whole number, not {samples!r}")
        check_samples(samples, f"{path}: [generation] samples")
    spec = BatchSpec(
        name=str(doc.get("name") or path.stem),
        pairs=tuple(str(p) for p in doc.get("pairs", [])),
        categories=tuple(s["category"] for s in selects if "category" in s),
        subjects=tuple(s["subject"] for s in selects if "subject" in s),
        provider=doc.get("provider"),
        model=doc.get("model"),
        concurrency=int(limits.get("concurrency", 4)),
        requests_per_minute=float(limits.get("requests_per_minute", 0)),
        tokens_per_minute=float(limits.get("tokens_per_minute", 0)),
        max_cost=float(limits.get("max_cost", 0)),
        max_age_s=parse_age(str(fresh.get("max_age", "")), str(path)),
        samples=samples,
        seed=seed,
    )
    if spec.concurrency < 1:
        raise ConfigError(f"{path}: limits.concurrency must be at least 1")
    if not (spec.pairs or spec.categories or spec.subjects):
        raise ConfigError(f"{path}: names no pairs; add `pairs = [...]` or [[select]] category/subject entries")
    return spec


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (1 ≤ i ≤ n): this machine's share of a batch split n ways."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ConfigError(f"--shard {text!r} must look like i/n with 1 ≤ i ≤ n, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def shard_of(pair_key: str, shards: int) -> int:
    """Which of `shards` shards (1-based) a pair belongs to: a stable hash of the pair, the same on every machine."""
    return int.from_bytes(hashlib.sha256(pair_key.encode()).digest()[:8], "big") % shards + 1


def resolve_pairs(spec: BatchSpec, catalogue: Catalogue) -> list[Pair]:
    found: dict[str, Pair] = {}
    for ref in spec.pairs:
        pair = catalogue.pair(ref)
        found[pair.key] = pair
    for category in spec.categories:
        for pair in catalogue.pairs_in_category(category):
            found[pair.key] = pair
    for ref in spec.subjects:
        subject = catalogue.subject(ref)
        for pair in catalogue.pairs_in_category(subject.category):
            if subject.id in (pair.a.id, pair.b.id):
                found[pair.key] = pair
    if not found:
        raise CatalogueError(f"batch {spec.name!r} selects no pairs")
    return [found[k] for k in sorted(found)]
