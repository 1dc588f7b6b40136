"""A warning or failure, named by the check that raised it: the one shape every stage reports in.
Kept free of heavy imports so the quality worker can use it without loading dbt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["warn", "error"]


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
