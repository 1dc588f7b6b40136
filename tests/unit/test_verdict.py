"""One verdict for every reader: a dbt node's status, a dbt call that did not succeed or did
nothing, and a whole run, judged in one place (dataops.core.findings, RunSummary)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dbt.artifacts.schemas.freshness import FreshnessResult
from dbt.artifacts.schemas.run import RunExecutionResult
from dbt.cli.main import dbtRunnerResult

from dataops.core.errors import ExitCode
from dataops.core.findings import Finding, failed_test_text, node_status_level
from dataops.project.results import RunSummary, StageResult, interpret_build, interpret_freshness


@pytest.mark.parametrize(
    ("status", "level"),
    [
        ("success", None),
        ("pass", None),
        ("skipped", None),
        ("no-op", None),
        ("warn", "warn"),
        ("fail", "error"),
        ("error", "error"),
        ("runtime error", "error"),
        # A microbatch model built without some of its batches: incomplete data is no warning.
        ("partial success", "error"),
        # A status this code has never seen is not a pass.
        ("reticulating", "error"),
    ],
)
def test_every_dbt_status_has_one_level(status: str, level: str | None) -> None:
    assert node_status_level(status) == level


def _empty_build() -> RunExecutionResult:
    return RunExecutionResult(results=[], elapsed_time=0.1, generated_at=datetime.now(UTC), args={})


def test_a_build_that_did_not_succeed_is_a_failure_even_when_no_node_says_why() -> None:
    counts, findings, _ = interpret_build(dbtRunnerResult(success=False, result=None))
    assert findings == [Finding("error", "dbt build", "dbt did not succeed, and no node says why; see the dbt log")]
    assert counts.models_built == 0

    _, findings, _ = interpret_build(dbtRunnerResult(success=False, exception=RuntimeError("adapter\n  gone")))
    assert findings == [Finding("error", "dbt build", "dbt did not succeed: adapter gone")]


def test_a_build_that_ran_nothing_is_no_pass() -> None:
    for result in (None, _empty_build()):
        _, findings, _ = interpret_build(dbtRunnerResult(success=True, result=result))
        assert [f.level for f in findings] == ["error"]
        assert "nothing" in findings[0].message


def test_freshness_that_checked_nothing_is_no_pass() -> None:
    empty = FreshnessResult(results=[], elapsed_time=0.1, metadata=None)  # type: ignore[arg-type]
    for outcome in (dbtRunnerResult(success=True, result=empty), dbtRunnerResult(success=False, result=None)):
        outcomes, findings = interpret_freshness(outcome, "warn")
        assert outcomes == []
        assert [(f.level, f.check) for f in findings] == [("error", "source freshness")]


def test_recency_says_the_whole_table_is_stale_and_how_old_it_is() -> None:
    details = {"column_name": "modified_at", "interval_days": 7}
    assert failed_test_text("recency", 4_457, details) == (
        "the whole table is stale: its newest modified_at is 4,457 days old (must be within 7 days)"
    )
    assert failed_test_text("recency", -1, details).startswith("the whole table is stale: it has no modified_at")
    # Every other test counts rows.
    assert failed_test_text("unique", 1, {}) == "1 failing row"
    assert failed_test_text(None, 1_234, {}) == "1,234 failing rows"


def _summary(**fields: object) -> RunSummary:
    ran = {"stages": [StageResult("build", "ok", 1.0)], **fields}
    return RunSummary(run_id="r", target="dev", started_at=datetime.now(UTC), **ran)  # type: ignore[arg-type]


def test_one_run_verdict_from_findings_stages_and_what_stopped_it() -> None:
    # A run in which no stage ran did nothing: no pass.
    assert _summary(stages=[]).exit_code == ExitCode.FAILURES
    assert (_summary().status, _summary().exit_code) == ("passed", ExitCode.SUCCESS)
    warned = _summary(findings=[Finding("warn", "freshness of sales.Customer", "old")])
    assert (warned.status, warned.exit_code) == ("warned", ExitCode.SUCCESS)
    failed = _summary(findings=[Finding("error", "unique on fct_orders.order_id", "2 failing rows")])
    assert (failed.status, failed.exit_code) == ("failed", ExitCode.FAILURES)
    stage_failed = _summary(stages=[StageResult("docs", "failed", 1.0)])
    assert stage_failed.exit_code == ExitCode.FAILURES
    stopped = _summary(error="bad file", error_kind="usage")
    assert (stopped.status, stopped.exit_code) == ("failed", ExitCode.USAGE)
    crashed = _summary(error="RuntimeError: boom", error_kind="internal")
    assert (crashed.status, crashed.exit_code) == ("crashed", ExitCode.INTERNAL)
    record = crashed.to_record()
    assert (record.status, record.exit_code, record.error) == ("crashed", 3, "RuntimeError: boom")
