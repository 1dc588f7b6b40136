"""What a pipeline run found, in the terms people act on: stages, counts and named findings."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from dbt.artifacts.schemas.freshness import FreshnessResult, SourceFreshnessResult
from dbt.artifacts.schemas.results import NodeStatus
from dbt.artifacts.schemas.run import RunExecutionResult, RunResult

from dataops.config import Severity
from dataops.errors import ExitCode
from dataops.findings import Finding, Level, errors_in, warnings_in

StageStatus = Literal["ok", "warn", "failed", "skipped"]


@dataclass
class StageResult:
    name: str
    status: StageStatus
    seconds: float
    detail: str = ""


@dataclass
class FreshnessOutcome:
    """dbt's status for one source, and what it counts as here (`level`) by the environment."""

    source: str
    status: str
    level: Literal["ok", "warn", "error"]
    max_loaded_at: str | None
    age_hours: float | None
    message: str


@dataclass
class BuildCounts:
    models_built: int = 0
    models_errored: int = 0
    models_skipped: int = 0
    tests_passed: int = 0
    tests_warned: int = 0
    tests_failed: int = 0
    tests_skipped: int = 0
    unit_tests_passed: int = 0
    unit_tests_failed: int = 0


@dataclass
class QualityCounts:
    expectations_passed: int = 0
    expectations_warned: int = 0
    expectations_failed: int = 0


@dataclass
class RunSummary:
    run_id: str
    target: str
    started_at: datetime
    source_description: str = ""
    stages: list[StageResult] = field(default_factory=list)
    counts: BuildCounts = field(default_factory=BuildCounts)
    quality: QualityCounts = field(default_factory=QualityCounts)
    freshness: list[FreshnessOutcome] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def checks_run(self) -> int:
        c, q = self.counts, self.quality
        return (
            c.tests_passed + c.tests_warned + c.tests_failed
            + q.expectations_passed + q.expectations_warned + q.expectations_failed
        )

    @property
    def quality_score(self) -> float | None:
        """The share of all checks (dbt tests and expectations) that passed; None before any ran.
        A warning is a check that did not pass: the score says how clean the data is, the exit
        code whether it may be published."""
        if not self.checks_run:
            return None
        return (self.counts.tests_passed + self.quality.expectations_passed) / self.checks_run

    @property
    def warnings(self) -> list[Finding]:
        return warnings_in(self.findings)

    @property
    def failures(self) -> list[Finding]:
        return errors_in(self.findings)

    @property
    def exit_code(self) -> ExitCode:
        failed = self.failures or any(s.status == "failed" for s in self.stages)
        return ExitCode.FAILURES if failed else ExitCode.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["started_at"] = self.started_at.isoformat()
        document["exit_code"] = int(self.exit_code)
        document["quality_score"] = self.quality_score
        return document


def _display_name(result: RunResult) -> str:
    """`model.column test` for generic tests; the node name for everything else."""
    node = result.node
    metadata = getattr(node, "test_metadata", None)
    attached = getattr(node, "attached_node", None)
    if metadata is not None and attached:
        model = attached.split(".")[-1]
        column = getattr(node, "column_name", None)
        where = f"{model}.{column}" if column else model
        return f"{metadata.name} on {where}"
    return node.name


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _one_line(text: str | None) -> str:
    """dbt's messages on one line, without the terminal colours of its unit-test diffs."""
    return " ".join(_ANSI_ESCAPE.sub("", text or "").split())


def interpret_build(result: RunExecutionResult | None) -> tuple[BuildCounts, list[Finding]]:
    counts = BuildCounts()
    findings: list[Finding] = []
    for node_result in result.results if result else []:
        resource = node_result.node.resource_type
        status = node_result.status
        name = _display_name(node_result)
        if resource in ("model", "seed", "snapshot"):
            if status == NodeStatus.Success:
                counts.models_built += 1
            elif status == NodeStatus.Skipped:
                counts.models_skipped += 1
            else:
                counts.models_errored += 1
                findings.append(Finding("error", name, _one_line(node_result.message)))
        elif resource == "unit_test":
            if status == NodeStatus.Pass:
                counts.unit_tests_passed += 1
            elif status != NodeStatus.Skipped:
                counts.unit_tests_failed += 1
                findings.append(Finding("error", f"unit test {name}", _one_line(node_result.message)))
        elif resource == "test":
            if status == NodeStatus.Pass:
                counts.tests_passed += 1
            elif status == NodeStatus.Warn:
                counts.tests_warned += 1
                findings.append(Finding("warn", name, _failure_text(node_result)))
            elif status == NodeStatus.Skipped:
                counts.tests_skipped += 1
            else:
                counts.tests_failed += 1
                findings.append(Finding("error", name, _failure_text(node_result)))
    return counts, findings


def _failure_text(result: RunResult) -> str:
    if result.status == NodeStatus.Error:
        return _one_line(result.message)
    failures = result.failures or 0
    return f"{failures:,} failing row{'s' if failures != 1 else ''}"


def interpret_freshness(
    result: FreshnessResult | None, stale_data: Severity
) -> tuple[list[FreshnessOutcome], list[Finding]]:
    """Stale sources become warnings or failures by the environment's policy; a source that
    cannot be read at all is always a failure."""
    outcomes: list[FreshnessOutcome] = []
    findings: list[Finding] = []
    for source_result in result.results if result else []:
        source = source_result.node
        name = f"{source.source_name}.{source.name}"
        if not isinstance(source_result, SourceFreshnessResult):
            message = _one_line(source_result.message)
            outcomes.append(FreshnessOutcome(name, "runtime error", "error", None, None, message))
            findings.append(Finding("error", f"freshness of {name}", message))
            continue
        status = str(source_result.status)
        age_hours = source_result.age / 3600
        newest = source_result.max_loaded_at.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
        message = f"newest row {newest}, {_age(age_hours)} old"
        if status == "pass":
            outcomes.append(FreshnessOutcome(name, status, "ok", newest, round(age_hours, 2), message))
            continue
        limit = source_result.node.freshness
        threshold = limit.error_after if status == "error" else limit.warn_after
        message += f" ({status} after {threshold.count} {threshold.period}s)"
        level: Level = "warn" if status == "warn" or stale_data == "warn" else "error"
        outcomes.append(FreshnessOutcome(name, status, level, newest, round(age_hours, 2), message))
        findings.append(Finding(level, f"freshness of {name}", message))
    outcomes.sort(key=lambda outcome: outcome.source)
    return outcomes, findings


def _age(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} minutes"
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:,.0f} days"
