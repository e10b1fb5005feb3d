"""One rule for untrusted text: catalogue fields, sources, model answers, provider numbers.

Everything that enters from outside goes through here at the boundary where it enters, so the
next field added is safe by default:

- `clean` (one line) and `clean_block` (paragraphs): NFC; lone surrogates (which JSON can carry
  and DuckDB cannot store) become U+FFFD; control characters (ESC, NUL, BEL, ...: terminal escape
  injection) and bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069: text that
  reads differently than it is) are removed; whitespace is collapsed (`clean_block` keeps line
  breaks between paragraphs);
- `clean_tree`: the same for every string of a parsed JSON value, keys included, with a depth and
  size limit checked before recursing (a 100,000-deep answer is refused, not a RecursionError);
- `count`: a bounded whole number (token counts: negative, NaN, infinite or absurd values are 0).

Escaping for an output format (HTML, Markdown) is the renderer's job; this only makes the text
itself harmless and storable.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

MAX_DEPTH = 32  # nesting of a model's answer; the comparison schema needs 7
MAX_NODES = 50_000  # values in one answer
MAX_COUNT = 2**31 - 1  # a token count a real call can have (and an INTEGER column can hold)
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class TooLarge(ValueError):
    """A value nested deeper than MAX_DEPTH or with more than MAX_NODES parts."""


def _strip(text: str) -> str:
    text = _SURROGATE.sub("\ufffd", str(text))
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def clean(text: Any) -> str:
    """One line of untrusted text, made harmless: see the module docstring."""
    return " ".join(_strip(text).split())


def clean_block(text: Any) -> str:
    """Untrusted text of several lines: line breaks kept, trailing spaces and surrounding blank lines removed."""
    text = _strip(str(text).replace("\r\n", "\n").replace("\r", "\n"))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def harmless(text: str) -> str:
    """Control, bidi and surrogate characters out; spacing untouched (for text already laid out)."""
    return _strip(text)


def storable(text: str) -> str:
    """Text DuckDB can store (valid UTF-8): lone surrogates replaced, nothing else touched."""
    return _SURROGATE.sub("\ufffd", text)


def clean_tree(node: Any) -> Any:
    """Every string of a JSON value cleaned (`clean`); raises TooLarge past MAX_DEPTH or MAX_NODES."""
    budget = [MAX_NODES]

    def walk(value: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise TooLarge(f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH else
                           f"more than {MAX_NODES} values")  # fmt: skip
        if isinstance(value, str):
            return clean(value)
        if isinstance(value, dict):
            return {clean(k): walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        return value

    return walk(node, 0)


def count(value: Any) -> int:
    """A token count: a whole number from 0 to MAX_COUNT; anything else (JSON's Infinity, -5, 1e12, "x") is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value or not 0 <= value <= MAX_COUNT:  # NaN, negative, infinite, absurd
        return 0
    return int(value)
