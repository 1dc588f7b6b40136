"""The pipeline's steps as single calls, for an orchestrator: each raises DataOpsError with a
readable message when its check fails, and returns a one-line account when it passes. Given the
pipeline DAG's run, a step adds what it found to that run's record in the run history (see
`recording`), however it ends."""

from __future__ import annotations

from typing import Any

from dataops.airflow.recording import (
    PipelineRun,
    failed_tasks,
    finish,
    holding_target,
    publish_blockers,
    recorded_stage,
    task_states,
)
from dataops.core.config import Settings, load_settings
from dataops.core.errors import DataOpsError
from dataops.core.findings import Finding, errors_in, warnings_in

# dbt, Great Expectations and the warehouse drivers are imported inside each step: DAG files import
# this module, and the scheduler parses them often.


def _verdict(step: str, findings: list[Finding]) -> str:
    failures, warnings = errors_in(findings), warnings_in(findings)
    if failures:
        lines = "; ".join(f"{f.check}: {f.message}" for f in failures)
        raise DataOpsError(f"{step} failed: {lines}")
    if warnings:
        return f"{step} passed with warnings: " + "; ".join(f"{f.check}: {f.message}" for f in warnings)
    return f"{step} passed"


def check_freshness(settings: Settings | None = None, run: PipelineRun | None = None) -> str:
    """dbt source freshness, judged by the environment's stale-data policy."""
    from dataops.project.results import freshness_detail, interpret_freshness
    from dataops.project.runner import DbtProject

    settings = settings or load_settings()
    with holding_target(run, settings), recorded_stage(run, settings, "freshness") as stage:
        result = DbtProject(settings).source_freshness()
        outcomes, stage.findings = interpret_freshness(result, settings.stale_data)
        stage.nodes = [outcome.to_node() for outcome in outcomes]
        stage.detail = freshness_detail(outcomes)
    return _verdict("source freshness", stage.findings)


def check_quality(
    settings: Settings | None = None,
    run_id: str | None = None,
    run: PipelineRun | None = None,
    published: bool = False,
) -> str:
    """The Great Expectations checkpoint on the marts: the pipeline's candidate, or (`published`, for
    data_quality_checks) the version consumers read."""
    from dataops.project.results import QualityCounts, quality_detail
    from dataops.quality.suites import run_quality

    settings = settings or load_settings()
    with holding_target(run, settings), recorded_stage(run, settings, "quality") as stage:
        report = run_quality(settings, run_id=run_id, published=published)
        stage.findings = report.findings
        stage.nodes = [outcome.to_node() for outcome in report.outcomes]
        stage.detail = quality_detail(QualityCounts(report.passed, report.warned, report.failed))
    return _verdict(f"quality ({report.passed}/{len(report.outcomes)} expectations passed)", report.findings)


def publish_marts(run: PipelineRun, ti: Any, settings: Settings | None = None) -> str:
    """The pipeline DAG's publish, after quality however it ended: the candidate becomes the
    published version only if the DAG run's record has no failure, no task before it failed, and
    its dbt tasks and quality ran; otherwise the published version stays as it was and the task is
    skipped, saying why. Its own smoke checks failing fail it."""
    from dataops.airflow.recording import manifest_document, models_of_manifest
    from dataops.history.store import HistoryStore
    from dataops.project.results import row_counts
    from dataops.publish.audit import marts_of
    from dataops.publish.versions import publish_candidate
    from dataops.warehouse import release_dbt_connections

    settings = settings or load_settings()
    run_id = run.record_id(settings.target)
    # `airflow dags test` runs every task in one process, and Cosmos's dbt tasks leave dbt-duckdb's
    # connection open: the warehouse cannot be opened beside it in another configuration.
    release_dbt_connections(settings)
    with holding_target(run, settings), recorded_stage(run, settings, "publish") as stage:
        history = HistoryStore()
        record = history.get(run_id)
        blocked = publish_blockers(record, task_states(ti, run))
        models = models_of_manifest(settings)
        prefix = f"{settings.consumer_schema}."
        candidate_rows = {
            name[len(prefix) :]: count
            for name, count in row_counts(settings, models).items()
            if name.startswith(prefix)
        }
        outcome = publish_candidate(
            settings,
            run_id,
            marts_of(manifest_document(settings), settings),
            candidate_rows,
            blocked,
            started_at=record.started_at if record else run.started_at,
            freshness=[node for node in record.nodes if node.kind == "source"] if record else [],
            history=history,
        )
        own_failures = errors_in(outcome.findings)
        stage.publish, stage.findings, stage.detail = outcome.record, outcome.findings, outcome.record.reason
        stage.nodes = outcome.nodes
        stage.status = "ok" if outcome.published else ("failed" if own_failures else "skipped")
    if own_failures:
        _verdict("publish", outcome.findings)  # raises, naming them
    if not outcome.published:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(outcome.record.reason)
    return outcome.record.reason


def record_pipeline_run(run: PipelineRun, ti: Any, settings: Settings | None = None) -> str:
    """The pipeline DAG's last task, whatever became of the others: the run's verdict and end in
    its record. Returns it in one line; the run's own failures fail the tasks that found them."""
    settings = settings or load_settings()
    record = finish(run, settings, failed_tasks(ti, run))
    failed = [f"{f.check}: {f.message}" for f in record.findings if f.level == "error"]
    return f"run {record.run_id} recorded: {record.status}" + (f" ({'; '.join(failed)})" if failed else "")


def check_dbt_artifacts(settings: Settings | None = None) -> str:
    """The target's latest run in the run history: errored models, failed tests, stale sources, a
    crash, or no run for longer than the pipeline's schedule allows."""
    from dataops.ops.monitor import check_history

    return check_history(settings or load_settings())
