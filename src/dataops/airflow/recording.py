"""The pipeline DAG's run in the run history: one record per DAG run, as `dataops run` leaves one.

The DAG's tasks run in processes of their own (on other machines, in a deployment), so the record
is assembled in the store, under an id derived from the DAG run: the freshness task starts it, the
watcher's one `dbt build` adds every dbt node's result (it has dbt's results in process), the
quality task adds the expectations, and the last task, which runs however the others ended, judges
the run as the CLI judges one (RunSummary) and writes its end. Until then the record says
`crashed` with no end: a DAG run that dies midway is never shown as passed.

Each task's share is a stage with its nodes and findings. A retried task replaces what its earlier
attempt said: its stage, the nodes of the kinds it reports and the findings about them."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dataops.core.config import Settings
from dataops.core.errors import ExitCode
from dataops.core.findings import Finding, errors_in
from dataops.history.provenance import Usage, git_commit
from dataops.history.records import FindingRecord, NodeRecord, PublishRecord, RunRecord, StageRecord, Trigger
from dataops.history.store import HistoryStore

if TYPE_CHECKING:
    from dataops.project.results import ModelRelation

# dbt and the project's results are imported inside the functions that need them: DAG files import
# this module, and the scheduler parses them often.

log = logging.getLogger(__name__)

# The id column's width in the store.
_RUN_ID_LENGTH = 64


@dataclass(frozen=True)
class Stage:
    """A stage of the pipeline DAG, the node kinds it reports, and the checks it names that are
    about no node (interpret_freshness and interpret_build's fail-closed findings)."""

    name: str
    kinds: frozenset[str]
    checks: frozenset[str] = frozenset()


# In pipeline order, which is the order of the record's stages.
STAGES = {
    stage.name: stage
    for stage in (
        Stage("freshness", frozenset({"source"}), frozenset({"source freshness"})),
        Stage("build", frozenset({"model", "seed", "snapshot", "test", "unit_test"}), frozenset({"dbt build"})),
        Stage("quality", frozenset({"expectation"})),
        Stage("publish", frozenset({"anomaly"}), frozenset({"smoke: rows per mart", "smoke: columns per mart"})),
    )
}


@dataclass(frozen=True)
class PipelineRun:
    """The DAG run a task belongs to, whose record it adds to."""

    dag_id: str
    dag_run_id: str
    started_at: datetime

    @classmethod
    def of(cls, dag_run: Any) -> PipelineRun:
        """From Airflow's `dag_run` (a task's context)."""
        return cls(dag_run.dag_id, dag_run.run_id, dag_run.start_date or datetime.now(UTC))

    @property
    def trigger(self) -> Trigger:
        return Trigger("airflow", self.dag_id, self.dag_run_id)

    def record_id(self, target: str) -> str:
        """`airflow-<target>-<DAG run id>`, in characters a shell and a URL take as they are. The
        target is in it because one store may serve several deployments, whose scheduled runs
        have the same ids; an id too long for the store is cut and made unique again by a digest."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", self.dag_run_id)
        run_id = f"airflow-{target}-{safe}"
        if len(run_id) <= _RUN_ID_LENGTH:
            return run_id
        digest = hashlib.sha256(f"{target}/{self.dag_run_id}".encode()).hexdigest()[:8]
        return f"{run_id[: _RUN_ID_LENGTH - 9]}-{digest}"

    def started_record(self, settings: Settings, commit: str | None) -> RunRecord:
        """The record before any task has added to it: crashed, with no end, until the last task
        judges it."""
        return RunRecord(
            run_id=self.record_id(settings.target),
            target=settings.target,
            kind="run",
            trigger=self.trigger,
            started_at=self.started_at,
            finished_at=None,
            status="crashed",
            exit_code=int(ExitCode.INTERNAL),
            git_commit=commit,
        )


@dataclass
class StageReport:
    """What a task found, filled in while it runs: its nodes, findings and a one-line account."""

    nodes: list[NodeRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    detail: str = ""
    status: str | None = None  # when not the findings' verdict (a publish stopped by earlier checks)
    publish: PublishRecord | None = None


def _skipped(error: BaseException) -> bool:
    """Airflow's way of saying a task does not run (Cosmos's producer on a retry: its build is done).
    Without Airflow loaded, no error is one: the callables also run outside it, and importing
    Airflow takes seconds."""
    exceptions = sys.modules.get("airflow.sdk.exceptions")
    return exceptions is not None and isinstance(error, exceptions.AirflowSkipException)


@contextmanager
def recorded_stage(
    run: PipelineRun | None, settings: Settings, stage: str, store: HistoryStore | None = None
) -> Iterator[StageReport]:
    """Adds the stage the block fills in to the run's record, however the block ends: an error
    that stops it is the record's error, as in `dataops run`. Records nothing without a run (the
    callables outside the pipeline DAG) or when the task is skipped."""
    report = StageReport()
    if run is None:
        yield report
        return
    usage, started = Usage.start(), time.perf_counter()
    try:
        yield report
    except BaseException as error:
        if not _skipped(error):
            _add_stage(run, settings, STAGES[stage], report, time.perf_counter() - started, usage, error, store)
        raise
    _add_stage(run, settings, STAGES[stage], report, time.perf_counter() - started, usage, None, store)


def _add_stage(
    run: PipelineRun,
    settings: Settings,
    stage: Stage,
    report: StageReport,
    seconds: float,
    usage: Usage,
    error: BaseException | None,
    store: HistoryStore | None,
) -> RunRecord:
    from dataops.project.results import stage_status, unique_node_ids, what_stopped

    stop = what_stopped(error) if error is not None else None
    status = "failed" if stop else (report.status or stage_status(report.findings))
    added = StageRecord(stage.name, status, round(seconds, 3), stop[1] if stop else report.detail)
    cpu_seconds, peak_memory, commit = usage.cpu_seconds(), usage.peak_memory_bytes(), git_commit()

    def add(record: RunRecord | None) -> RunRecord:
        record = record or run.started_record(settings, commit)
        earlier = next((s for s in record.stages if s.name == stage.name), None)
        # An earlier attempt's findings are about its nodes, or are the stage's own checks.
        stale = stage.checks | {_check_of(node) for node in record.nodes if node.kind in stage.kinds}
        stopped, status, exit_code = record.error, record.status, record.exit_code
        if earlier is not None and earlier.status == "failed" and earlier.detail == record.error:
            # What stopped the earlier attempt, which this one replaces: the run goes on.
            stopped, status, exit_code = None, "crashed", int(ExitCode.INTERNAL)
        if stop is not None:
            # What stopped the run is known now: the record says so before the last task judges it.
            internal = stop[0] == "internal"
            stopped, status = stop[1], "crashed" if internal else "failed"
            exit_code = int(ExitCode.INTERNAL if internal else ExitCode.USAGE)
        return replace(
            record,
            stages=sorted(
                [s for s in record.stages if s.name != stage.name] + [added], key=lambda s: list(STAGES).index(s.name)
            ),
            nodes=[n for n in record.nodes if n.kind not in stage.kinds] + unique_node_ids(report.nodes),
            findings=[f for f in record.findings if f.check not in stale]
            + [FindingRecord(f.level, f.check, f.message) for f in report.findings],
            error=stopped,
            status=status,
            exit_code=exit_code,
            publish=report.publish if stage.name == "publish" else record.publish,
            cpu_seconds=round((record.cpu_seconds or 0.0) + cpu_seconds, 3),
            peak_memory_bytes=max(record.peak_memory_bytes or 0, peak_memory),
        )

    return (store or HistoryStore()).update(run.record_id(settings.target), add)


def _check_of(node: NodeRecord) -> str:
    from dataops.project.results import finding_check

    return finding_check(node.kind, node.name)


@contextmanager
def holding_target(run: PipelineRun | None, settings: Settings) -> Iterator[None]:
    """A task of the pipeline DAG holds its target while it works, and the DAG run's lease on it
    between its tasks (released by the last task): a `dataops run` never runs between two of them.
    Held by another run, the task waits for it, and says so in its log."""
    if run is None:
        yield
        return
    from dataops.publish.lock import hold_target

    def waiting(holder: Any) -> None:
        log.warning(
            "waiting for %s, which holds the target %s", holder.describe() if holder else "another run", settings.target
        )

    with hold_target(settings, run.record_id(settings.target), wait=True, on_wait=waiting, lease=True):
        yield


def task_states(ti: Any, run: PipelineRun) -> dict[str, str | None]:
    """Every task of the DAG run and its state, from Airflow (the task instance's own view of it)."""
    return dict(ti.get_task_states(dag_id=run.dag_id, run_ids=[run.dag_run_id]).get(run.dag_run_id, {}))


def failed_tasks(ti: Any, run: PipelineRun) -> list[str]:
    """The tasks of the DAG run that failed."""
    return sorted(task for task, state in task_states(ti, run).items() if state == "failed")


# The tasks that run after publish, or are publish.
_AFTER_PUBLISH = ("publish", "notify", "record_run")


def publish_blockers(record: RunRecord | None, states: dict[str, str | None]) -> list[str]:
    """What stops the DAG run's candidate from being published, fail closed: the record's
    error-level findings, failed stages, and tasks before publish that failed or never ran. The
    watcher's build records its stage; in the other modes the dbt tasks are the build, so their
    states in Airflow say whether it ran and passed."""
    blocked = [f.check for f in record.findings if f.level == "error"] if record else []
    stages = {s.name: s.status for s in record.stages} if record else {}
    if not blocked:
        blocked += [f"the {name} stage" for name, status in stages.items() if status == "failed"]
    before = {task: state for task, state in states.items() if task not in _AFTER_PUBLISH}
    if not blocked:
        blocked += [
            f"task {task} ({state or 'did not run'})"
            for task, state in sorted(before.items())
            if state not in ("success", "skipped")
        ]
    dbt_tasks = [task for task in before if task.startswith("dbt.")]
    if "build" not in stages and not dbt_tasks:
        blocked.append("the build stage (it did not run)")
    if "quality" not in stages:
        blocked.append("the quality stage (it did not run)")
    return blocked


def manifest_document(settings: Settings) -> dict[str, Any]:
    """The precompiled manifest the DAG renders from: the DAG never parses the project."""
    from dataops.airflow.dags import manifest_path

    return dict(json.loads(manifest_path(settings).read_text(encoding="utf-8")))


def models_of_manifest(settings: Settings) -> list[ModelRelation]:
    from dataops.project.results import ModelRelation

    document = manifest_document(settings)
    return [
        ModelRelation(node.get("alias") or node["name"], node["schema"], node["config"]["materialized"])
        for node in document["nodes"].values()
        if node["resource_type"] == "model"
    ]


def _published_rows(settings: Settings, models: list[ModelRelation]) -> dict[str, int]:
    from dataops.core.errors import DataOpsError
    from dataops.project.results import mart_names
    from dataops.warehouse import connect

    try:
        return connect(settings).published_row_counts(mart_names(settings, models))
    except DataOpsError:
        return {}


def finish(run: PipelineRun, settings: Settings, failed: list[str], store: HistoryStore | None = None) -> RunRecord:
    """The last task: the run's end, row counts, git commit and one verdict, the CLI's. Fails closed:
    a DAG run whose tasks failed with no finding or error to say why, or that recorded no result
    at all, is no pass."""
    from dataops.project.results import RunSummary, row_counts
    from dataops.warehouse import release_dbt_connections

    usage = Usage.start()
    release_dbt_connections(settings)  # left open by a dbt task of the same process (see publish_marts)
    # Counted before the store's write lock is taken, not while it is held. A run that published has
    # no candidate left (it became the version): its marts are counted in what it published.
    models = models_of_manifest(settings)
    counts, commit = row_counts(settings, models), git_commit()
    for mart, rows in _published_rows(settings, models).items():
        counts.setdefault(f"{settings.consumer_schema}.{mart}", rows)

    def judge(record: RunRecord | None) -> RunRecord:
        summary = RunSummary.from_record(record or run.started_record(settings, commit))
        if not errors_in(summary.findings) and summary.error is None:
            summary.findings += [
                Finding("error", f"task {task}", "failed; its log in Airflow says why") for task in failed
            ]
        if not summary.nodes:
            summary.findings.append(Finding("error", "pipeline DAG", "the DAG run recorded no result"))
        summary.finished_at = datetime.now(UTC)
        summary.trigger, summary.git_commit, summary.row_counts = run.trigger, commit, counts
        summary.cpu_seconds = round((summary.cpu_seconds or 0.0) + usage.cpu_seconds(), 3)
        summary.peak_memory_bytes = max(summary.peak_memory_bytes or 0, usage.peak_memory_bytes())
        return summary.to_record()

    record = (store or HistoryStore()).update(run.record_id(settings.target), judge)
    from dataops.publish.lock import release_lease

    release_lease(settings, record.run_id, store)
    return record
