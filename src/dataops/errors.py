"""Errors a user can act on. The CLI prints their message on one line and exits 2; anything else
is a bug and keeps its traceback."""


class DataOpsError(Exception):
    """A problem with the user's input, configuration or environment, with the fix in the message."""


class SourceDataError(DataOpsError):
    """A source file or table is missing or malformed."""
