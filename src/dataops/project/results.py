"""What a pipeline run found, in the terms people act on: stages, counts and named findings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, cast

from dbt.artifacts.schemas.freshness import FreshnessResult, SourceFreshnessResult
from dbt.artifacts.schemas.results import NodeStatus
from dbt.artifacts.schemas.run import RunExecutionResult, RunResult
from dbt.cli.main import dbtRunnerResult

from dataops.core.config import Settings, Severity
from dataops.core.errors import DataOpsError, ExitCode
from dataops.core.findings import Finding, Level, errors_in, failed_test_text, node_status_level, warnings_in
from dataops.history.records import (
    FindingRecord,
    NodeRecord,
    PublishRecord,
    RunRecord,
    RunStatus,
    StageRecord,
    Trigger,
)
from dataops.sources.contract import SOURCE_TABLES
from dataops.warehouse import connect

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest

StageStatus = Literal["ok", "warn", "failed", "skipped"]
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
    unique_id: str = ""
    seconds: float | None = None

    def to_node(self) -> NodeRecord:
        return NodeRecord(
            unique_id=self.unique_id,
            kind="source",
            name=f"freshness of {self.source}",
            status=self.status,
            level=self.level,
            seconds=self.seconds,
            message=self.message,
            age_seconds=round(self.age_hours * 3600, 1) if self.age_hours is not None else None,
        )


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
    kind: str = "run"
    trigger: Trigger = field(default_factory=lambda: Trigger("cli"))
    git_commit: str | None = None
    nodes: list[NodeRecord] = field(default_factory=list)  # build and expectations; sources from freshness
    row_counts: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    publish: PublishRecord | None = None
    source_load: str | None = None

    @property
    def checks_run(self) -> int:
        c, q = self.counts, self.quality
        return (
            c.tests_passed
            + c.tests_warned
            + c.tests_failed
            + q.expectations_passed
            + q.expectations_warned
            + q.expectations_failed
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
        # A run in which no stage ran did nothing: that is no pass.
        failed = self.failures or not self.stages or any(s.status == "failed" for s in self.stages)
        return ExitCode.FAILURES if failed else ExitCode.SUCCESS

    @property
    def status(self) -> RunStatus:
        """The run's one verdict: passed, passed with warnings, failed (a check failed, or a user
        error stopped a stage), or crashed (an internal error stopped it)."""
        code = self.exit_code
        if code == ExitCode.INTERNAL:
            return "crashed"
        if code != ExitCode.SUCCESS:
            return "failed"
        return "warned" if self.warnings else "passed"

    def to_record(self) -> RunRecord:
        """The run as the history keeps it."""
        return RunRecord(
            run_id=self.run_id,
            target=self.target,
            kind=self.kind,
            trigger=self.trigger,
            started_at=self.started_at,
            finished_at=self.finished_at,
            status=self.status,
            exit_code=int(self.exit_code),
            git_commit=self.git_commit,
            error=self.error,
            stages=[StageRecord(s.name, s.status, round(s.seconds, 3), s.detail) for s in self.stages],
            nodes=unique_node_ids([*(outcome.to_node() for outcome in self.freshness), *self.nodes]),
            findings=[FindingRecord(f.level, f.check, f.message) for f in self.findings],
            row_counts=dict(self.row_counts),
            quality_score=self.quality_score,
            cpu_seconds=self.cpu_seconds,
            peak_memory_bytes=self.peak_memory_bytes,
            publish=self.publish,
            source_load=self.source_load,
        )

    @classmethod
    def from_record(cls, record: RunRecord) -> RunSummary:
        """A run assembled from its record: the pipeline DAG's tasks each add their stage to one
        record, in processes of their own, and the last one judges it here, so that its status,
        exit code and quality score are the CLI's. Counts come back from the nodes as
        interpret_build counted them; what stopped the run, from its status (crashed: internal)."""
        counts, quality = BuildCounts(), QualityCounts()
        for node in record.nodes:
            prefix = "expectations" if node.kind == "expectation" else _COUNTED.get(node.kind)
            if prefix is not None:
                _count(quality if prefix == "expectations" else counts, prefix, node.level)
        error_kind: StopKind | None = None
        if record.error is not None:
            error_kind = "internal" if record.status == "crashed" else "usage"
        return cls(
            run_id=record.run_id,
            target=record.target,
            started_at=record.started_at,
            kind=record.kind,
            stages=[StageResult(s.name, cast(StageStatus, s.status), s.seconds, s.detail) for s in record.stages],
            counts=counts,
            quality=quality,
            findings=[Finding(cast(Level, f.level), f.check, f.message) for f in record.findings],
            finished_at=record.finished_at,
            error=record.error,
            error_kind=error_kind,
            trigger=record.trigger,
            git_commit=record.git_commit,
            nodes=list(record.nodes),
            row_counts=dict(record.row_counts),
            cpu_seconds=record.cpu_seconds,
            peak_memory_bytes=record.peak_memory_bytes,
            publish=record.publish,
            source_load=record.source_load,
        )


def what_stopped(error: BaseException) -> tuple[StopKind, str]:
    """Whose fault an error that stopped a run is (a DataOpsError names a problem the user can fix:
    usage; anything else is internal), and the error on one line, as the record keeps it."""
    text = " ".join(str(error).split())
    if isinstance(error, DataOpsError):
        return "usage", text
    return "internal", f"{type(error).__name__}: {text}" if text else type(error).__name__


def stage_status(findings: list[Finding]) -> StageStatus:
    """A stage's status from what it found: failed on an error, warn on a warning."""
    if errors_in(findings):
        return "failed"
    return "warn" if findings else "ok"


def freshness_detail(outcomes: list[FreshnessOutcome]) -> str:
    fresh = sum(1 for o in outcomes if o.status == "pass")
    return f"{fresh} of {len(outcomes)} sources fresh"


def build_detail(counts: BuildCounts) -> str:
    tests = counts.tests_passed + counts.tests_warned + counts.tests_failed
    return (
        f"{counts.models_built} models, {tests} tests ({counts.tests_warned} warned, "
        f"{counts.tests_failed} failed), {counts.unit_tests_passed + counts.unit_tests_failed} unit tests"
    )


def quality_detail(quality: QualityCounts, score: float | None = None) -> str:
    """`score`: the run's quality score so far, when the caller knows it (the CLI does)."""
    checked = quality.expectations_passed + quality.expectations_warned + quality.expectations_failed
    detail = f"{checked} expectations ({quality.expectations_warned} warned, {quality.expectations_failed} failed)"
    return detail if score is None else f"{detail}; score {score:.1%}"


class ModelRelation(NamedTuple):
    """A model as the warehouse holds it: its relation's name, schema and materialisation."""

    name: str
    schema: str
    materialized: str


def manifest_models(manifest: Manifest) -> list[ModelRelation]:
    return [
        ModelRelation(node.alias or node.name, node.schema, node.config.materialized)
        for node in manifest.nodes.values()
        if node.resource_type == "model"
    ]


def mart_names(settings: Settings, models: Iterable[ModelRelation]) -> list[str]:
    """The marts: the models dbt builds into the candidate schema (what a version publishes)."""
    return sorted(
        model.name
        for model in models
        if model.schema == settings.candidate_schema and model.materialized != "ephemeral"
    )


def row_counts(settings: Settings, models: Iterable[ModelRelation]) -> dict[str, int]:
    """Rows per source table and per mart as this run built them (the candidate, named as consumers
    know it: `marts.<mart>`): `dataops run` and the pipeline DAG's last task count the same
    relations. Only what exists is counted, and nothing where the warehouse cannot say (a dead
    server): the run is recorded anyway."""
    names: list[str] = []
    if not settings.source_database:
        names.extend(table.qualified_name for table in SOURCE_TABLES)
    marts = mart_names(settings, models)
    names.extend(f"{settings.candidate_schema}.{mart}" for mart in marts)
    try:
        counted = connect(settings).row_counts(names)
    except DataOpsError:
        return {}
    prefix = f"{settings.candidate_schema}."
    return {
        (f"{settings.consumer_schema}.{name[len(prefix) :]}" if name.startswith(prefix) else name): count
        for name, count in counted.items()
    }


def unique_node_ids(nodes: list[NodeRecord]) -> list[NodeRecord]:
    """A suite may hold the same expectation on the same column twice: number the second one."""
    seen: dict[str, int] = {}
    unique = []
    for node in nodes:
        seen[node.unique_id] = seen.get(node.unique_id, 0) + 1
        count = seen[node.unique_id]
        unique.append(node if count == 1 else replace(node, unique_id=f"{node.unique_id}#{count}"))
    return unique


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


class BuildInterpretation(NamedTuple):
    counts: BuildCounts
    findings: list[Finding]
    nodes: list[NodeRecord]


_COUNTED = {  # resource type -> (counter prefix, how its findings are named)
    "model": "models",
    "seed": "models",
    "snapshot": "models",
    "test": "tests",
    "unit_test": "unit_tests",
}


def interpret_build(outcome: dbtRunnerResult) -> BuildInterpretation:
    """Counts, named findings and every node's result of a `dbt build`. Fails closed: a build that
    did not succeed always has an error finding, even when no node says why, and so does one that
    ran nothing."""
    counts = BuildCounts()
    findings: list[Finding] = []
    nodes: list[NodeRecord] = []
    result = outcome.result if isinstance(outcome.result, RunExecutionResult) else None
    for node_result in result.results if result else []:
        resource = node_result.node.resource_type
        status = str(node_result.status)
        skipped = status == NodeStatus.Skipped
        level = None if skipped else node_status_level(status)
        name = _display_name(node_result)
        message = _node_message(node_result, resource, level)
        prefix = _COUNTED.get(resource)
        if prefix is not None:
            _count(counts, prefix, "skipped" if skipped else (level or "ok"))
        if level is not None and prefix is not None:
            findings.append(Finding(level if resource == "test" else "error", finding_check(resource, name), message))
        nodes.append(
            NodeRecord(
                unique_id=node_result.node.unique_id,
                kind=str(resource),
                name=name,
                status=status,
                level="skipped" if skipped else (level or "ok"),
                seconds=round(node_result.execution_time, 3),
                rows_affected=(node_result.adapter_response or {}).get("rows_affected"),
                failures=node_result.failures,
                message=message,
            )
        )
    if not outcome.success and not errors_in(findings):
        findings.append(Finding("error", "dbt build", _unexplained_failure(outcome)))
    elif result is None or not result.results:
        findings.append(Finding("error", "dbt build", "dbt built and tested nothing: an empty run is no pass"))
    return BuildInterpretation(counts, findings, nodes)


def finding_check(kind: str, name: str) -> str:
    """The check a node's finding names: the node's name, and a unit test says it is one."""
    return f"unit test {name}" if kind == "unit_test" else name


def _count(counts: BuildCounts | QualityCounts, prefix: str, outcome: str) -> None:
    """models_built / _errored / _skipped, tests_passed / _warned / _failed / _skipped, unit_tests_...,
    expectations_passed / _warned / _failed."""
    suffix = {
        "models": {"ok": "built", "warn": "errored", "error": "errored", "skipped": "skipped"},
        "tests": {"ok": "passed", "warn": "warned", "error": "failed", "skipped": "skipped"},
        "unit_tests": {"ok": "passed", "warn": "failed", "error": "failed", "skipped": None},
        "expectations": {"ok": "passed", "warn": "warned", "error": "failed", "skipped": None},
    }[prefix][outcome]
    if suffix is not None:
        setattr(counts, f"{prefix}_{suffix}", getattr(counts, f"{prefix}_{suffix}") + 1)


def _node_message(result: RunResult, resource: str, level: Level | None) -> str:
    if resource == "test" and level is not None:
        return _failure_text(result)
    message = _one_line(result.message)
    if level is not None and not message:
        return f"dbt status '{result.status}'"
    return message


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


def interpret_freshness(outcome: dbtRunnerResult, stale_data: Severity) -> tuple[list[FreshnessOutcome], list[Finding]]:
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
            outcomes.append(
                FreshnessOutcome(
                    name, "runtime error", "error", None, None, message, source.unique_id, source_result.execution_time
                )
            )
            findings.append(Finding("error", f"freshness of {name}", message))
            continue
        status = str(source_result.status)
        age_hours = source_result.age / 3600
        newest = source_result.max_loaded_at.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
        message = f"newest row {newest}, {_age(age_hours)} old"
        node = (source.unique_id, round(source_result.execution_time, 3))
        if status == "pass":
            outcomes.append(FreshnessOutcome(name, status, "ok", newest, round(age_hours, 2), message, *node))
            continue
        limit = source_result.node.freshness
        threshold = limit.error_after if status == "error" else limit.warn_after
        message += f" ({status} after {threshold.count} {threshold.period}s)"
        level: Level = "warn" if status == "warn" or stale_data == "warn" else "error"
        outcomes.append(FreshnessOutcome(name, status, level, newest, round(age_hours, 2), message, *node))
        findings.append(Finding(level, f"freshness of {name}", message))
    outcomes.sort(key=lambda outcome: outcome.source)
    return outcomes, findings


def _age(hours: float) -> str:
    if hours < 1:
        minutes = round(hours * 60)
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:,.0f} days"
