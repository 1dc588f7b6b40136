"""What a pipeline run found, in the terms people act on: stages, counts and named findings."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from dbt.artifacts.schemas.freshness import FreshnessResult, SourceFreshnessResult
from dbt.artifacts.schemas.results import NodeStatus
from dbt.artifacts.schemas.run import RunExecutionResult, RunResult
from dbt.cli.main import dbtRunnerResult

from dataops.config import Severity
from dataops.errors import ExitCode
from dataops.findings import Finding, Level, errors_in, failed_test_text, node_status_level, warnings_in

StageStatus = Literal["ok", "warn", "failed", "skipped"]
# The run's one verdict: passed, passed with warnings, a check failed or a stage stopped on a user
# error (failed), or an internal error stopped it (crashed).
RunStatus = Literal["passed", "warned", "failed", "crashed"]
StopKind = Literal["usage", "internal"]


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
    finished_at: datetime | None = None
    # Set when a stage raised instead of finishing: what stopped the run, and whose fault it was.
    error: str | None = None
    error_kind: StopKind | None = None

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
        """The verdict as an exit code; every reader of a run (CLI, record, DAGs) goes through it."""
        if self.error_kind == "internal":
            return ExitCode.INTERNAL
        if self.error_kind == "usage":
            return ExitCode.USAGE
        failed = self.failures or any(s.status == "failed" for s in self.stages)
        return ExitCode.FAILURES if failed else ExitCode.SUCCESS

    @property
    def status(self) -> RunStatus:
        code = self.exit_code
        if code == ExitCode.INTERNAL:
            return "crashed"
        if code != ExitCode.SUCCESS:
            return "failed"
        return "warned" if self.warnings else "passed"

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["started_at"] = self.started_at.isoformat()
        document["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        document["status"] = self.status
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


def interpret_build(outcome: dbtRunnerResult) -> tuple[BuildCounts, list[Finding]]:
    """Counts and named findings of a `dbt build`. Fails closed: a build that did not succeed
    always has an error finding, even when no node says why, and so does one that ran nothing."""
    counts = BuildCounts()
    findings: list[Finding] = []
    result = outcome.result if isinstance(outcome.result, RunExecutionResult) else None
    for node_result in result.results if result else []:
        resource = node_result.node.resource_type
        status = str(node_result.status)
        level = node_status_level(status)
        name = _display_name(node_result)
        if resource in ("model", "seed", "snapshot"):
            if status == NodeStatus.Skipped:
                counts.models_skipped += 1
            elif level is None:
                counts.models_built += 1
            else:
                counts.models_errored += 1
                findings.append(Finding("error", name, _one_line(node_result.message) or f"dbt status '{status}'"))
        elif resource == "unit_test":
            if status == NodeStatus.Skipped:
                continue
            if level is None:
                counts.unit_tests_passed += 1
            else:
                counts.unit_tests_failed += 1
                findings.append(Finding("error", f"unit test {name}", _one_line(node_result.message)))
        elif resource == "test":
            if status == NodeStatus.Skipped:
                counts.tests_skipped += 1
            elif level is None:
                counts.tests_passed += 1
            elif level == "warn":
                counts.tests_warned += 1
                findings.append(Finding("warn", name, _failure_text(node_result)))
            else:
                counts.tests_failed += 1
                findings.append(Finding("error", name, _failure_text(node_result)))
    if not outcome.success and not errors_in(findings):
        findings.append(Finding("error", "dbt build", _unexplained_failure(outcome)))
    elif result is None or not result.results:
        findings.append(Finding("error", "dbt build", "dbt built and tested nothing: an empty run is no pass"))
    return counts, findings


def _unexplained_failure(outcome: dbtRunnerResult) -> str:
    if outcome.exception is not None:
        return f"dbt did not succeed: {_one_line(str(outcome.exception))}"
    return "dbt did not succeed, and no node says why; see the dbt log"


def _failure_text(result: RunResult) -> str:
    if result.status == NodeStatus.Error:
        return _one_line(result.message)
    metadata = getattr(result.node, "test_metadata", None)
    if metadata is None:
        return failed_test_text(None, result.failures, {})
    return failed_test_text(metadata.name, result.failures, {**metadata.kwargs, **result.node.config.meta})


def interpret_freshness(
    outcome: dbtRunnerResult, stale_data: Severity
) -> tuple[list[FreshnessOutcome], list[Finding]]:
    """Stale sources become warnings or failures by the environment's policy; a source that
    cannot be read at all is always a failure, and so is a freshness check that checked nothing."""
    outcomes: list[FreshnessOutcome] = []
    findings: list[Finding] = []
    result = outcome.result if isinstance(outcome.result, FreshnessResult) else None
    if result is None or not result.results:
        reason = _unexplained_failure(outcome) if not outcome.success else "dbt checked no source"
        return outcomes, [Finding("error", "source freshness", reason)]
    for source_result in result.results:
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
