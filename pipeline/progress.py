"""Progress of a generation on a terminal: tokens generated and elapsed time.

Nothing is shown when stderr is not a terminal (cron, CI, pipes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.providers.base import ProgressFn


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
