"""The exit-code taxonomy and the errors that map to it, in one place for every command.

- 0 success (warnings allowed), 1 a check failed: the run's verdict (`RunSummary.exit_code`).
- 2 a usage or configuration error: `DataOpsError`, one line naming the problem and the fix.
- 3 an internal error: `InternalError` or any other exception, one line on stderr naming the
  log file that holds the traceback.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """`dataops` exit codes, as documented in the README."""

    SUCCESS = 0
    FAILURES = 1
    USAGE = 2
    INTERNAL = 3


class DataOpsError(Exception):
    """A problem with the user's input, configuration or environment, with the fix in the message."""


class SourceDataError(DataOpsError):
    """A source file or table is missing or malformed."""


class InternalError(Exception):
    """Something broke that the user cannot fix by changing input or configuration (a bug, a crashed
    worker). `log` names the file that holds the traceback, when one was written elsewhere."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log
