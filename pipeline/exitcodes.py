"""Exit codes: the one place that decides them.

Library functions say what happened — an error, or an outcome's `Verdict` — and the CLI
turns that into a process exit code with `exit_code()`, and nowhere else::

    0   OK           everything asked for was done (or was already fresh)
    1   FAILED       some output stayed invalid, items failed, a diff is material, a check found problems
    2   USAGE        a usage, configuration, catalogue, source, provider or store error
    75  BUSY         the store stayed busy, or Batch API runs are still running: try again later (EX_TEMPFAIL)
    130 INTERRUPTED  Ctrl-C or SIGTERM; what had arrived is stored (resume with --resume)
"""

from __future__ import annotations

from enum import Enum, IntEnum

from pipeline.errors import AnsweredError, InterruptedRun, OutputInvalidError, PipelineError, StoreBusyError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    BUSY = 75
    INTERRUPTED = 130


class Verdict(Enum):
    """What an outcome (a batch run, a collect pass, a diff, a check) amounts to."""

    DONE = "done"
    FAILED = "failed"  # some items failed, a change is material, a check found problems
    WAITING = "waiting"  # work is still running elsewhere (submitted Batch API runs)
    INTERRUPTED = "interrupted"


_BY_VERDICT = {
    Verdict.DONE: ExitCode.OK,
    Verdict.FAILED: ExitCode.FAILED,
    Verdict.WAITING: ExitCode.BUSY,
    Verdict.INTERRUPTED: ExitCode.INTERRUPTED,
}


def exit_code(outcome: Verdict | BaseException | None) -> ExitCode:
    """The exit code of an outcome's verdict or of the error that ended a command."""
    if outcome is None:
        return ExitCode.OK
    if isinstance(outcome, Verdict):
        return _BY_VERDICT[outcome]
    if isinstance(outcome, KeyboardInterrupt | InterruptedRun):
        return ExitCode.INTERRUPTED
    if isinstance(outcome, StoreBusyError):
        return ExitCode.BUSY
    if isinstance(outcome, OutputInvalidError | AnsweredError):
        return ExitCode.FAILED
    if isinstance(outcome, PipelineError):
        return ExitCode.USAGE
    raise TypeError(f"no exit code for {type(outcome).__name__}: a bug, not a user error")
