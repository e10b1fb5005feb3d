"""Progress of a generation on a terminal: tokens generated and elapsed time.

Nothing is shown when stderr is not a terminal (cron, CI, pipes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.providers.base import ProgressFn
from pipeline.wording import count


@contextmanager
def token_progress(label: str) -> Iterator[ProgressFn | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.status import Status

    started = time.monotonic()
    status = Status(f"{label}: waiting for the model", console=Console(stderr=True))

    def update(tokens: int) -> None:
        status.update(f"{label}: {tokens} tokens, {time.monotonic() - started:.1f} s")

    with status:
        yield update


@contextmanager
def batch_progress(total: int, label: str) -> Iterator[Callable[[Any, int, int], None]]:
    """A progress bar on a terminal; one quiet line per item otherwise (cron, CI logs)."""
    counts = {"ok": 0, "failed": 0, "tokens": 0}

    def tally(outcome: Any) -> None:
        counts["ok" if outcome.status in ("generated", "fresh") else "failed"] += 1
        counts["tokens"] += outcome.usage.total_tokens

    if not sys.stderr.isatty():

        def line(outcome: Any, done: int, total_: int) -> None:
            tally(outcome)
            attempts = count(outcome.attempts, "attempt")
            detail = f" ({attempts}, {outcome.usage.total_tokens} tokens)" if outcome.attempts else ""
            reason = f": {outcome.error}" if outcome.error else ""
            print(f"[{done}/{total_}] {outcome.pair_key} {outcome.status}{detail}{reason}", file=sys.stderr, flush=True)

        yield line
        return

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
    )  # fmt: skip
    task = progress.add_task(label, total=total, stats="")

    def bar(outcome: Any, done: int, total_: int) -> None:
        tally(outcome)
        stats = f"ok {counts['ok']} failed {counts['failed']} tokens {counts['tokens']}"
        progress.update(task, completed=done, stats=stats)

    with progress:
        yield bar
