"""Reading the workspace's TOML files: a problem is one line that names the file, line and column.

TOML tables carry no positions once parsed, so `check_keys` finds the line of an unknown key
by looking for it in the file's text: `higher_is_beter = false` is reported at its line with
"did you mean `higher_is_better`?".
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{match.group(1)}:{match.group(2)}" if match else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{where}: malformed TOML: {message}") from exc


def check_keys(
    table: Mapping[str, Any],
    allowed: Iterable[str],
    path: Path,
    where: str,
    error: type[ConfigError] = ConfigError,
) -> None:
    """Refuse keys a table does not take, naming the file, the line and the nearest known key.

    A misspelt optional key would otherwise be ignored and its default used in silence
    (`higher_is_beter = false` would leave the direction inverted)."""
    known = sorted(set(allowed))
    unknown = sorted(set(table) - set(known))
    if not unknown:
        return
    key = unknown[0]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean `{near[0]}`?" if near else f"it takes {', '.join(f'`{k}`' for k in known)}"
    line = key_line(path, key)
    more = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
    raise error(f"{path}{f':{line}' if line else ''}: {where}: unknown key `{key}`{more}; {hint}")


def key_line(path: Path, key: str) -> int | None:
    """The first line of a TOML file that sets `key` (bare or quoted, in a table or an inline table)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    pattern = re.compile(rf"(^|[{{,\s])[\"']?{re.escape(key)}[\"']?\s*=|^\s*\[+\s*[\"']?{re.escape(key)}[\"']?\s*\]")
    for number, line in enumerate(lines, start=1):
        if pattern.search(line):
            return number
    return None
