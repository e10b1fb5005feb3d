"""Briefs: a Markdown file of neutral facts about one subject, with where they come from.

    # Apache Kafka                  (optional title, not part of the facts)

    Sentences of facts, in paragraphs. Every sentence becomes a numbered passage that
    ratings, pros and cons cite, and that the bundled model quotes.

    ## Strengths                    (optional: facts that are strengths, one sentence a line)
    Consumers track their own offsets, so several groups can read and replay a topic.

    ## Limitations                  (optional: facts that are limitations)
    Ordering is guaranteed only within a partition, not across a whole topic.

    ## Alternatives                 (optional: market alternatives, one name per bullet)
    - Apache Pulsar

    ## References                   (the public sources of the facts, one per bullet)
    - Apache Kafka documentation, "Design", https://kafka.apache.org/documentation/#design

Strengths and limitations are facts like the others (every model sees them as passages); the
small model's selection mode offers them as its possible pros and cons. Any other `## `
section is more facts. A brief is untrusted text like every source: it is fenced in the
prompt and escaped in reports; its references are shown, never fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import SourceError
from pipeline.grounding import split

_BULLET = re.compile(r"^\s*[-*]\s+(.*\S)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
MAX_ALTERNATIVE = 60  # characters; the schema's limit for a market alternative


@dataclass(frozen=True)
class Brief:
    text: str  # the facts: paragraphs joined by blank lines
    alternatives: tuple[str, ...]
    references: tuple[str, ...]
    strengths: tuple[str, ...] = ()  # sentences of the Strengths section
    limitations: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # what is probably a mistake (a misspelt heading, no Strengths/Limitations)


def parse_brief(markdown: str, where: str) -> Brief:
    """The facts, alternatives and references of a brief; `where` names the file in errors."""
    facts: list[str] = []
    lists: dict[str, list[str]] = {"alternatives": [], "references": []}
    leaning: dict[str, list[str]] = {"strengths": [], "limitations": []}
    section = ""
    warnings: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading.group(1)), heading.group(2).strip().lower()
            section = title if level == 2 and title in (*lists, *leaning) else ""
            near = _near_section(title) if level == 2 and not section else ""
            if near:
                shown = heading.group(2).strip()
                warnings.append(f"{where}:{number}: '## {shown}' is not a section the pipeline knows, so its "
                                f"sentences are read as plain facts; did you mean '## {near}'?")  # fmt: skip
            if section not in lists:
                facts.append("")  # a new paragraph; headings of fact sections are not facts
            continue
        if section in leaning:
            leaning[section].append(line)
        elif section:
            bullet = _BULLET.match(line)
            if bullet:
                lists[section].append(bullet.group(1).strip())
            elif line.strip():
                raise SourceError(
                    f"{where}:{number}: the {section} section takes one '- ' bullet per line, not {line.strip()[:40]!r}"
                )
            continue
        facts.append(line)
    for name in lists["alternatives"]:
        if len(name) > MAX_ALTERNATIVE or re.search(r"[.!?;:]\s|[.!?;]$", name):
            raise SourceError(
                f"{where}: alternative {name[:70]!r} is not a name "
                f"(at most {MAX_ALTERNATIVE} characters, no sentence punctuation)"
            )
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(facts)).strip()
    if not text:
        raise SourceError(f"{where}: the brief has no facts; write sentences above its ## sections")
    if not any(leaning.values()):
        warnings.append(f"{where}: no '## Strengths' or '## Limitations' section: the bundled model's pros and "
                        "cons are then guessed from the wording of the other sentences (a limitation may be shown "
                        "as a pro); file them under those headings")  # fmt: skip
    return Brief(
        text=text,
        alternatives=tuple(dict.fromkeys(lists["alternatives"])),
        references=tuple(lists["references"]),
        strengths=tuple(split("\n".join(leaning["strengths"]))),
        limitations=tuple(split("\n".join(leaning["limitations"]))),
        warnings=tuple(warnings),
    )


_SECTIONS = {"strengths": "Strengths", "limitations": "Limitations", "alternatives": "Alternatives",
             "references": "References"}  # fmt: skip
_SYNONYMS = {"pros": "Strengths", "advantages": "Strengths", "benefits": "Strengths", "cons": "Limitations",
             "weaknesses": "Limitations", "drawbacks": "Limitations", "disadvantages": "Limitations",
             "competitors": "Alternatives", "sources": "References"}  # fmt: skip


def _near_section(title: str) -> str:
    """The known section a `## ` heading was probably meant to be ("" when it is just another facts section)."""
    import difflib

    if title in _SYNONYMS:
        return _SYNONYMS[title]
    near = difflib.get_close_matches(title, list(_SECTIONS), n=1, cutoff=0.75)
    return _SECTIONS[near[0]] if near else ""
