"""Progress events from a running dbt command, for displays. Free of dbt imports, so the CLI can
draw progress without loading dbt before it has to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeProgress:
    """One dbt node started or finished."""

    unique_id: str
    finished: bool
    total: int | None = None


ProgressCallback = Callable[[NodeProgress], None]
