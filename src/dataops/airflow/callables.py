"""The pipeline's steps as single calls, for an orchestrator: each raises DataOpsError with a
readable message when its check fails, and returns a one-line account when it passes."""

from __future__ import annotations

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


def check_freshness(settings: Settings | None = None) -> str:
    """dbt source freshness, judged by the environment's stale-data policy."""
    from dataops.project.results import interpret_freshness
    from dataops.project.runner import DbtProject

    settings = settings or load_settings()
    result = DbtProject(settings).source_freshness()
    _, findings = interpret_freshness(result, settings.stale_data)
    return _verdict("source freshness", findings)


def check_quality(settings: Settings | None = None, run_id: str | None = None) -> str:
    """The Great Expectations checkpoint on the marts."""
    from dataops.quality.suites import run_quality

    settings = settings or load_settings()
    report = run_quality(settings, run_id=run_id)
    return _verdict(f"quality ({report.passed}/{len(report.outcomes)} expectations passed)", report.findings)


def check_dbt_artifacts(settings: Settings | None = None) -> str:
    """The target's latest run in the run history: errored models, failed tests, stale sources, a
    crash, or no run for longer than the pipeline's schedule allows."""
    from dataops.ops.monitor import check_history

    return check_history(settings or load_settings())
