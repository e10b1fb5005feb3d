"""The catalogue: subjects and categories loaded from `config/catalogue/*.toml`.

One file per category: a `[category]` table with its `[[category.dimensions]]`
and the `[[subjects]]` that belong to it. Ids are strict slugs because they
become file names; names, vendors and descriptions are free Unicode text.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from pipeline.configfile import check_keys, read_toml
from pipeline.errors import CatalogueError, ConfigError
from pipeline.models import Category, Dimension, Pair, SourceSpec, Subject
from pipeline.untrusted import clean

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
KINDS = ("percent", "level", "list", "text")


@dataclass(frozen=True)
class Catalogue:
    categories: dict[str, Category]
    subjects: dict[str, Subject]
    aliases: dict[str, str]
    # Files that could not be read, with why: their categories are missing, the others work.
    broken: dict[str, str] = field(default_factory=dict)

    def subject(self, ref: str) -> Subject:
        key = ref.strip().lower()
        if key in self.subjects:
            return self.subjects[key]
        if key in self.aliases:
            return self.subjects[self.aliases[key]]
        known = sorted(self.subjects) + sorted(self.aliases)
        near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(near)}?" if near else " Run `pipeline list` to see them."
        raise CatalogueError(f"unknown subject {ref!r}.{hint}{self.broken_note()}")

    def broken_note(self) -> str:
        """What to add to an "unknown" error while some catalogue file cannot be read (it may be defined there)."""
        if not self.broken:
            return ""
        files = ", ".join(Path(p).name for p in sorted(self.broken))
        return f" It may be defined in {files}, which cannot be read (`pipeline list` says why)."

    def pair(self, ref: str, *, allow_cross_category: bool = False) -> Pair:
        parts = [p for p in ref.split(",")]
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise CatalogueError(
                f"a pair is two subject ids separated by a comma, e.g. "
                f"image-classification,image-segmentation (got {ref!r})"
            )
        first, second = (self.subject(p) for p in parts)
        if first.id == second.id:
            raise CatalogueError(f"a pair needs two different subjects (got {first.id} twice)")
        if first.category != second.category and not allow_cross_category:
            raise CatalogueError(
                f"{first.id} is in {first.category} but {second.id} is in {second.category}; "
                "pass --cross-category to compare subjects of different categories"
            )
        a, b = sorted((first, second), key=lambda s: s.id)
        return Pair(a=a, b=b, category=self.categories[a.category])

    def pairs_in_category(self, category_id: str) -> list[Pair]:
        if category_id not in self.categories:
            raise CatalogueError(
                f"unknown category {category_id!r}; known: {', '.join(sorted(self.categories))}.{self.broken_note()}"
            )
        return [Pair(a, b, self.categories[category_id]) for a, b in combinations(self.members(category_id), 2)]

    def related_pairs(self, pair: Pair, limit: int = 6) -> list[Pair]:
        """Other pairs of the same category that share a subject with `pair` ("people also compare")."""
        cache: dict[tuple[str, int], list[Pair]] = self.__dict__.setdefault("_related_cache", {})
        if (pair.key, limit) not in cache:
            cache[(pair.key, limit)] = self._related(pair, limit)
        return cache[(pair.key, limit)]

    def _related(self, pair: Pair, limit: int) -> list[Pair]:
        found: dict[str, tuple[Subject, Subject]] = {}
        for own in (pair.a, pair.b):
            for other in self.members(pair.category.id):
                if other.id != pair.a.id and other.id != pair.b.id:
                    a, b = (own, other) if own.id < other.id else (other, own)
                    found[f"{a.id},{b.id}"] = (a, b)
        return [Pair(*found[k], pair.category) for k in sorted(found)[:limit]]

    def members(self, category_id: str) -> list[Subject]:
        """The subjects of a category, by id."""
        cache: dict[str, list[Subject]] = self.__dict__.setdefault("_members_cache", {})
        if category_id not in cache:
            cache[category_id] = sorted(
                (s for s in self.subjects.values() if s.category == category_id), key=lambda s: s.id
            )
        return cache[category_id]


CATEGORY_KEYS = ("id", "name", "dimensions", "tie_band")
DIMENSION_KEYS = ("name", "kind", "levels", "weight", "higher_is_better", "description", "rubric")
SUBJECT_KEYS = ("id", "name", "vendor", "description", "brief", "aliases", "sources")
SOURCE_KEYS = ("label", "text", "path", "url")


def load_catalogue(config_dir: Path) -> Catalogue:
    """Every category file of `config/catalogue/`. A file that cannot be read (malformed TOML, an
    unknown key, a bad value, an id another file has) is left out and listed in `broken`: its
    category is unavailable, every other category works."""
    folder = config_dir / "catalogue"
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise ConfigError(f"no catalogue files in {folder}; add at least one <category>.toml there")
    categories: dict[str, Category] = {}
    subjects: dict[str, Subject] = {}
    broken: dict[str, str] = {}
    for path in files:
        try:
            category, members = _category_file(path, categories, subjects)
        except ConfigError as exc:
            broken[str(path)] = str(exc)
            continue
        categories[category.id] = category
        subjects.update({s.id: s for s in members})
    if not categories:
        raise CatalogueError("no category of the catalogue can be read: " + "; ".join(broken.values()))
    aliases: dict[str, str] = {}
    for subject in subjects.values():
        for alias in subject.aliases:
            key = alias.lower()
            if key in subjects or aliases.get(key, subject.id) != subject.id:
                raise CatalogueError(f"{subject.defined_in}: alias {alias!r} of {subject.id} is ambiguous")
            aliases[key] = subject.id
    return Catalogue(categories=categories, subjects=subjects, aliases=aliases, broken=broken)


def _category_file(
    path: Path, categories: dict[str, Category], subjects: dict[str, Subject]
) -> tuple[Category, list[Subject]]:
    """One category file, checked against the categories and subjects read before it."""
    doc = read_toml(path)
    check_keys(doc, ("category", "subjects"), path, "the file", CatalogueError)
    category = _category(doc.get("category"), path)
    if category.id in categories:
        raise CatalogueError(f"{path}: category {category.id!r} is defined twice")
    members: list[Subject] = []
    for i, raw in enumerate(_tables(doc, "subjects", str(path))):
        subject = _subject(raw, category.id, path, i)
        if subject.id in subjects or any(s.id == subject.id for s in members):
            first = subjects[subject.id].defined_in if subject.id in subjects else str(path)
            raise CatalogueError(
                f"{path}: subject id {subject.id!r} is already defined in {first}; ids must be unique across files"
            )
        members.append(subject)
    return category, members


def check_slug(value: object, what: str, where: Path) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        shown = repr(value)[:60]
        raise CatalogueError(
            f"{where}: {what} {shown} is not a valid id; use 1-64 lowercase letters, digits "
            "and inner hyphens (e.g. image-classification)"
        )
    return value


MAX_DESCRIPTION = 2000  # characters; longer text belongs in a brief or a source


def _text(raw: dict[str, Any], key: str, where: str, *, required: bool = True, limit: int = 200) -> str:
    """A one-line text field, cleaned (pipeline.untrusted: tabs, newlines and double spaces collapse)."""
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise CatalogueError(f"{where}: `{key}` must be a non-empty string")
    text = clean(value)
    if len(text) > limit:
        raise CatalogueError(f"{where}: `{key}` is {len(text)} characters; keep it under {limit} "
                             "(longer text belongs in a brief or a source)")  # fmt: skip
    return text


_TYPE_NAMES = {str: "a string", list: "an array", dict: "a table", float: "a number", int: "a whole number",
               bool: "true or false"}  # fmt: skip


def _typed(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
    """A field of the expected TOML type, or a one-line error naming the file, the key and the type."""
    value = raw.get(key, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # true is not a number
        expected = (
            "a number" if set(kinds) == {int, float} else " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        )
        raise CatalogueError(f"{where}: `{key}` must be {expected}, not {value!r}"[:300])
    return value


def _tables(raw: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = _typed(raw, key, list, where, [])
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CatalogueError(f"{where}: {key}[{i}] must be a table ([[{key}]] or {{ ... }}), not {item!r}"[:300])
    return list(items)


def _category(raw: Any, path: Path) -> Category:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{path}: missing [category] table")
    check_keys(raw, CATEGORY_KEYS, path, "[category]", CatalogueError)
    cid = check_slug(raw.get("id"), "category id", path)
    dims_raw = _tables(raw, "dimensions", f"{path}: category")
    if not dims_raw:
        raise CatalogueError(f"{path}: category {cid!r} has no dimensions; add [[category.dimensions]] entries")
    dims: list[Dimension] = []
    for i, d in enumerate(dims_raw):
        where = f"{path}: category.dimensions[{i}]"
        check_keys(d, DIMENSION_KEYS, path, f"category.dimensions[{i}]", CatalogueError)
        kind = d.get("kind")
        if kind not in KINDS:
            raise CatalogueError(f"{where}: kind must be one of {', '.join(KINDS)} (got {kind!r})")
        levels_raw = _typed(d, "levels", list, where, [])
        if not all(isinstance(lv, str) and clean(lv) for lv in levels_raw):
            raise CatalogueError(f"{where}: `levels` must be an array of names, lowest first")
        levels = tuple(clean(lv) for lv in levels_raw)
        if kind == "level" and len(levels) < 2:
            raise CatalogueError(f"{where}: a level dimension needs `levels`, lowest first")
        if len(levels) > 10:
            raise CatalogueError(f"{where}: at most 10 `levels` (each level has its own ratings on the 1-10 scale)")
        weight = _typed(d, "weight", (int, float), where, 1.0)
        if weight <= 0:
            raise CatalogueError(f"{where}: weight must be a positive number")
        rubric = _rubric(d.get("rubric"), kind, where)
        dim = Dimension(
            name=_text(d, "name", where),
            kind=kind,
            weight=float(weight),
            higher_is_better=_typed(d, "higher_is_better", bool, where, True),
            levels=levels,
            description=_text(d, "description", where, required=False),
            rubric=rubric,
        )
        if not dim.rated and ("weight" in d or "higher_is_better" in d):
            why = "text is shown as a value" if kind == "text" else "a list is rated only with a rubric"
            fix = "remove them" if kind == "text" else "remove them or give it a rubric"
            raise CatalogueError(f"{where}: {dim.name} is not rated ({why}), so `weight` and `higher_is_better` "
                                 f"have no effect; {fix}")  # fmt: skip
        dims.append(dim)
    names = [d.name for d in dims]
    if not any(d.rated for d in dims):
        raise CatalogueError(f"{path}: category {cid!r} rates nothing; give it a level or percent dimension, or a "
                             "list dimension with a rubric")  # fmt: skip
    if len(set(names)) != len(names):
        raise CatalogueError(f"{path}: category {cid!r} has duplicate dimension names")
    tie_band = _typed(raw, "tie_band", (int, float), f"{path}: category", 0.25)
    if not 0 <= tie_band <= 10:
        raise CatalogueError(f"{path}: category: `tie_band` must be from 0 to 10 (a difference of overall scores)")
    return Category(
        id=cid,
        name=_text(raw, "name", f"{path}: category"),
        dimensions=tuple(dims),
        tie_band=float(tie_band),
    )


def _rubric(raw: object, kind: str, where: str) -> tuple[tuple[int, str], ...]:
    """`rubric = { 1 = "...", 5 = "...", 10 = "..." }`: what ratings mean, 1 and 10 at least."""
    if raw is None:
        return ()
    if kind == "text":
        raise CatalogueError(f"{where}: a text dimension is shown as a value and never rated; remove its `rubric` "
                             'or make it kind = "list"')  # fmt: skip
    if not isinstance(raw, dict) or not raw:
        raise CatalogueError(f'{where}: `rubric` must be a table such as {{ 1 = "...", 5 = "...", 10 = "..." }}')
    points: list[tuple[int, str]] = []
    for key, meaning in raw.items():
        if not (key.isdigit() and 1 <= int(key) <= 10) or not isinstance(meaning, str) or not clean(meaning):
            raise CatalogueError(f"{where}: rubric keys are ratings from 1 to 10, each with what it means "
                                 f"(got {key!r} = {meaning!r})"[:300])  # fmt: skip
        text = clean(meaning)
        if len(text) > 200:
            raise CatalogueError(f"{where}: rubric {key} is {len(text)} characters; keep it under 200")
        points.append((int(key), text))
    points.sort()
    if points[0][0] != 1 or points[-1][0] != 10:
        raise CatalogueError(
            f"{where}: a rubric says what 1 and 10 mean (and 5, ideally); it has {[p for p, _ in points]}"
        )
    return tuple(points)


def _subject(raw: dict[str, Any], category: str, path: Path, index: int) -> Subject:
    sid = check_slug(raw.get("id"), f"subjects[{index}].id", path)
    where = f"{path}: subject {sid}"
    check_keys(raw, SUBJECT_KEYS, path, f"subject {sid}", CatalogueError)
    sources: list[SourceSpec] = []
    for j, s in enumerate(_tables(raw, "sources", where)):
        check_keys(s, SOURCE_KEYS, path, f"subject {sid}: sources[{j}]", CatalogueError)
        if sum(k in s for k in ("text", "path", "url")) > 1:
            raise CatalogueError(f"{where}: sources[{j}] takes one of `text`, `path` or `url`, not several")
        label = _text(s, "label", f"{where}: sources[{j}]") if "label" in s else ""
        if "text" in s:
            text = _typed(s, "text", str, f"{where}: sources[{j}]", "")
            sources.append(SourceSpec(kind="text", label=label or f"note {j + 1}", text=text))
        elif "path" in s:
            rel = _typed(s, "path", str, f"{where}: sources[{j}]", "")
            sources.append(SourceSpec(kind="file", label=label or clean(rel), path=rel))
        elif "url" in s:
            from pipeline.errors import SourceError
            from pipeline.fetch import check_url
            from pipeline.text import safe_url

            url = _typed(s, "url", str, f"{where}: sources[{j}]", "")
            try:
                check_url(url)
            except SourceError as exc:
                raise CatalogueError(f"{where}: sources[{j}]: {exc}") from None
            sources.append(SourceSpec(kind="url", label=label or safe_url(url), path=url))
        else:
            raise CatalogueError(f"{where}: sources[{j}] needs `text`, `path` or `url`")
    brief = _brief(raw.get("brief", ""), path.parent.parent, where)
    aliases = _typed(raw, "aliases", list, where, [])
    if not all(isinstance(a, str) and clean(a) for a in aliases):
        raise CatalogueError(f"{where}: `aliases` must be an array of names")
    return Subject(
        id=sid,
        name=_text(raw, "name", where),
        vendor=_text(raw, "vendor", where),
        category=category,
        description=_text(raw, "description", where, limit=MAX_DESCRIPTION),
        sources=tuple(sources),
        aliases=tuple(clean(a) for a in aliases),
        defined_in=str(path),
        brief=brief,
    )


def _brief(value: object, config_dir: Path, where: str) -> str:
    """A brief's path relative to config/ (e.g. "sources/kafka.md"), checked to stay inside it.

    Whether the file exists is checked when the subject's sources are gathered: a missing brief
    fails the pairs of that subject, not every command of the catalogue."""
    if value == "":
        return ""
    if not isinstance(value, str) or not value.endswith(".md") or Path(value).is_absolute() or "\x00" in value:
        raise CatalogueError(f'{where}: `brief` must be a .md file relative to config/, e.g. "sources/<id>.md"')
    root = config_dir.resolve()
    target = (root / value).resolve()
    if not target.is_relative_to(root):
        raise CatalogueError(f"{where}: brief {value!r} points outside {root}; keep briefs under config/")
    return value
