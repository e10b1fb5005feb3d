"""Text helpers every stage shares: normalised source text, inert Markdown, URLs safe to show, and
the one timestamp format (UTC, `2026-06-15T09:30:00Z`). They sit below the stages, so gather, fetch,
render and diff use them without importing each other."""

from __future__ import annotations

import calendar
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.untrusted import clean, clean_block

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")
# GFM turns these into links on its own (autolinks): the scheme's colon and www's dot are escaped,
# and an invisible word joiner (as an entity, so the .md source shows it) keeps an e-mail address inert.
_AUTOLINK_SCHEME = re.compile(r"(?i)(https?|ftp|mailto|xmpp|irc|file)(:)")  # anywhere: "0http://x" links too
_AUTOLINK_WWW = re.compile(r"(?i)(www)(\.)")


def normalise(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces, no control or bidi characters (pipeline.untrusted)."""
    return clean_block(text)


def md_escape(value: Any) -> str:
    """Inert text for Markdown: one line; no raw HTML, emphasis, strikethrough, link, table or autolink syntax."""
    text = clean(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK_SCHEME.sub(r"\1\\\2", text)
    text = _AUTOLINK_WWW.sub(r"\1\\\2", text)
    return text.replace("@", "&#8288;@")


def safe_url(url: str) -> str:
    """A URL for logs, messages and reports: no user name, password, query or fragment (never raises)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def utc_now() -> str:
    return time.strftime(UTC_FORMAT, time.gmtime())


def parse_utc(stamp: str) -> time.struct_time:
    return time.strptime(stamp, UTC_FORMAT)


def utc_seconds(stamp: str) -> int:
    """Seconds since the epoch of a UTC_FORMAT timestamp."""
    return calendar.timegm(parse_utc(stamp))
