"""A warning or failure, named by the check that raised it: the one shape every stage reports in,
and the one verdict on a dbt node's status that every reader (the run, the monitor, the DAGs) uses.
Kept free of heavy imports so the quality worker and the monitor can use it without loading dbt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["warn", "error"]

# dbt's node statuses (NodeStatus values, as run_results.json spells them) that are not a problem.
# "skipped" is not one either: dbt skips what depends on a failure, and that failure is reported.
_CLEAN_STATUSES = frozenset({"success", "pass", "skipped", "no-op"})


@dataclass
class Finding:
    """A warning or failure with the name of the check that raised it."""

    level: Level
    check: str
    message: str


def errors_in(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.level == "error"]


def warnings_in(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.level == "warn"]


def node_status_level(status: str) -> Level | None:
    """What a dbt node's status counts as. "warn" is a warning; everything else that is not clean
    is an error: "fail", "error", "runtime error", "partial success" (a microbatch model built
    without some of its batches: its data is incomplete) and any status this code does not know."""
    if status in _CLEAN_STATUSES:
        return None
    return "warn" if status == "warn" else "error"


def failed_test_text(test_name: str | None, failures: int | None, details: Mapping[str, Any]) -> str:
    """What a failed or warned data test found, in the terms of the test: most tests return one
    row per bad row, but `recency` returns the age of the whole table (see its macro). `details`
    are the test's arguments and meta (where recency keeps its rendered limit)."""
    if test_name == "recency" and isinstance(failures, int):
        column = details.get("column_name", "the modified date")
        limit = details.get("interval_days")
        within = f" (must be within {limit} days)" if limit is not None else ""
        if failures < 0:
            return f"the whole table is stale: it has no {column} at all (empty, or every value null){within}"
        return f"the whole table is stale: its newest {column} is {failures:,} days old{within}"
    count = failures or 0
    return f"{count:,} failing row{'s' if count != 1 else ''}"
