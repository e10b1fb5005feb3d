"""The Batch API's files: request lines written as JSONL parts, answer lines read back one at a time."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipeline.models import AttemptRecord, Problem, Usage
from pipeline.providers.batch_client import ENDPOINT
from pipeline.settings import BatchAPIPolicy
from pipeline.store.api_runs import PartRow

log = logging.getLogger("pipeline")


def custom_id(pair_key: str, cache_key: str, round_: int) -> str:
    """Stable across runs: the same pair with the same inputs gets the same id (plus the round)."""
    digest = hashlib.sha256(f"{pair_key}|{cache_key}".encode()).hexdigest()[:24]
    return f"cmp-{digest}-r{round_}"


def request_line(cid: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False)


@dataclass
class Part:
    round: int
    part: int
    path: Path
    keys: list[tuple[str, str, str]] = field(default_factory=list)  # (custom id, pair key, cache key)
    size: int = 0

    def row(self) -> PartRow:
        return (self.round, self.part, str(self.path), len(self.keys), self.size)


class PartWriter:
    """Request lines streamed into JSONL files of at most `max_requests` lines and `max_bytes` bytes each.

    Nothing is held in memory but the ids; each file is written under a temporary name and renamed
    when complete, so a file that exists is whole.
    """

    def __init__(self, folder: Path, round_: int, policy: BatchAPIPolicy, first: int = 1):
        self.folder, self.round, self.policy, self.first = folder, round_, policy, first
        self.parts: list[Part] = []
        self._out: IO[str] | None = None

    def add(self, cid: str, pair_key: str, cache_key: str, line: str) -> None:
        size = len(line.encode()) + 1
        last = self.parts[-1] if self.parts else None
        if last is None or len(last.keys) >= self.policy.max_requests or last.size + size > self.policy.max_bytes:
            self._close_file()
            self.folder.mkdir(parents=True, exist_ok=True)
            number = self.first + len(self.parts)
            last = Part(self.round, number, self.folder / f"requests-r{self.round}-p{number}.jsonl")
            self.parts.append(last)
            self._out = last.path.with_suffix(".tmp").open("w", encoding="utf-8")
        assert self._out is not None
        self._out.write(line + "\n")
        last.keys.append((cid, pair_key, cache_key))
        last.size += size

    def close(self) -> list[Part]:
        self._close_file()
        return self.parts

    def _close_file(self) -> None:
        if self._out is not None:
            self._out.close()
            os.replace(self.parts[-1].path.with_suffix(".tmp"), self.parts[-1].path)
            self._out = None


def answer_lines(paths: list[Path | None]) -> Iterator[dict[str, Any]]:
    """The JSON objects of JSONL answer files, one at a time (a line that is not JSON is skipped)."""
    for path in paths:
        if path is None:
            continue
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    log.warning("%s line %d is not JSON; skipped (its request counts as unanswered)", path.name, number)
                    continue
                if isinstance(value, dict):
                    yield value


def record_from(value: dict[str, Any]) -> AttemptRecord:
    """An attempt record kept as JSON in `api_requests.records`."""
    problems = tuple(Problem(**p) for p in value.get("problems", ()))
    return AttemptRecord(**{**value, "problems": problems, "usage": Usage(**value["usage"])})
