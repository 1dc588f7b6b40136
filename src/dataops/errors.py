"""Errors a user can act on, and the exit codes they and the checks map to. The CLI prints
their message on one line and exits 2; anything else is a bug and keeps its traceback."""


from enum import IntEnum


class ExitCode(IntEnum):
    """`dataops` exit codes, as documented in the README."""

    SUCCESS = 0
    FAILURES = 1
    USAGE = 2


class DataOpsError(Exception):
    """A problem with the user's input, configuration or environment, with the fix in the message."""


class SourceDataError(DataOpsError):
    """A source file or table is missing or malformed."""
