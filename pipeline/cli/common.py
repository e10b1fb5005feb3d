"""What every command shares: errors to exit codes once, log lines on stderr, the workspace, output helpers."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pipeline.errors import PipelineError
from pipeline.exitcodes import exit_code

if TYPE_CHECKING:
    from pipeline.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("pipeline")


def handles_errors(func: F) -> F:
    """Turn library errors into one line on stderr and their exit code (`exitcodes.exit_code`)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exit_code(exc))
        except KeyboardInterrupt as exc:
            click.echo("error: interrupted; nothing half-written was kept", err=True)
            sys.exit(exit_code(exc))

    return wrapper  # type: ignore[return-value]


_HANDLER_NAME = "pipeline-cli"


def log_to_stderr(level: int) -> None:
    """The pipeline's log lines as `LEVEL: message` on this command's stderr (one handler per process,
    pointed at the current `sys.stderr`: a command run in-process by a test has its own)."""
    handler = next((h for h in log.handlers if h.get_name() == _HANDLER_NAME), None)
    if not isinstance(handler, logging.StreamHandler):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    handler.setStream(sys.stderr)
    log.setLevel(level)


class Context:
    def __init__(self, workspace: str | None, store: str | None):
        self.workspace_flag = workspace
        self.store_flag = store

    def open(self, holder: str, *, offline: bool = False) -> Workspace:
        from pipeline.workspace import Workspace

        return Workspace(self.workspace_flag, store=self.store_flag, holder=holder, offline=offline)


def stop_on_signals() -> None:
    """Ctrl-C and a scheduler's SIGTERM both stop the work the same careful way, even when the process
    was started with SIGINT ignored (as background jobs of a non-interactive shell are)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def details(row: dict[str, Any]) -> str:
    """ " (cached 300, reasoning 500)" for a ledger or attempt row that has them."""
    parts = [f"{k} {row[f'{k}_tokens']}" for k in ("cached", "reasoning") if row.get(f"{k}_tokens")]
    return f" ({', '.join(parts)})" if parts else ""


def write_json(json_path: str, value: Any) -> None:
    """`--json FILE`: the value as JSON into FILE, or on stdout for '-'."""
    import json

    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    if json_path == "-":
        click.echo(text, nl=False)
    else:
        Path(json_path).write_text(text, encoding="utf-8")


def rel(path: Any, root: Any) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
