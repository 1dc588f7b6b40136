"""The pipeline DAG's one record, assembled across its tasks in the run history (dataops.airflow.
recording): each stage adds its share, a retried task replaces its earlier attempt's, and the last
task judges the run as `dataops run` is judged. A real SQLite store and DuckDB warehouse; the
Airflow DAG runs themselves are in tests/integration/test_airflow.py."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from dataops.airflow.recording import PipelineRun, finish, publish_blockers, recorded_stage
from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.core.findings import Finding
from dataops.history.records import FindingRecord, NodeRecord, RunRecord, StageRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.project.results import RunSummary, StageResult

RUN = PipelineRun(
    "adventureworks_pipeline", "manual__2026-11-25T03:00:00.123456+00:00", datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
)
RUN_ID = "airflow-dev-manual__2026-11-25T03-00-00.123456-00-00"


@pytest.fixture
def store(warehouse_dir: Path) -> HistoryStore:
    return HistoryStore()


@pytest.fixture
def manifest(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest as the DAG renders from, with one mart and one ephemeral model; a warehouse
    with the mart and one source table."""
    models = {
        "model.adventureworks.fct_orders": {
            "name": "fct_orders",
            "alias": "fct_orders",
            "schema": "marts__candidate",
            "config": {"materialized": "table"},
            "resource_type": "model",
        },
        "model.adventureworks.int_lines": {
            "name": "int_lines",
            "alias": None,
            "schema": "marts__candidate",
            "config": {"materialized": "ephemeral"},
            "resource_type": "model",
        },
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"nodes": models}), encoding="utf-8")
    monkeypatch.setenv("DATAOPS_DBT_MANIFEST", str(path))
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.duckdb_path)) as db:
        db.execute('create schema "Sales"; create table "Sales"."Customer" as select * from range(5)')
    with duckdb.connect(str(settings.duckdb_candidate_path)) as db:  # where dbt builds the marts
        db.execute("create schema marts__candidate; create table marts__candidate.fct_orders as select * from range(3)")


def _node(kind: str, name: str, level: str = "ok") -> NodeRecord:
    return NodeRecord(f"{kind}.adventureworks.{name}", kind, name, "pass" if level == "ok" else "fail", level)


def _stage(
    settings: Settings,
    store: HistoryStore,
    name: str,
    nodes: list[NodeRecord],
    findings: list[Finding],
    error: BaseException | None = None,
) -> None:
    """A task's stage as a callable records it; `error` stops it, and goes on to the task."""
    raised = pytest.raises(type(error)) if error is not None else contextlib.nullcontext()
    with raised, recorded_stage(RUN, settings, name, store) as stage:
        stage.nodes, stage.findings, stage.detail = nodes, findings, f"{len(nodes)} nodes"
        if error is not None:
            raise error


def _record(store: HistoryStore) -> RunRecord:
    record = store.get(RUN_ID)
    assert record is not None
    return record


def test_the_tasks_shares_make_one_run_judged_as_the_cli_judges_one(
    settings: Settings, store: HistoryStore, manifest: None
) -> None:
    stale = Finding("warn", "freshness of sales.Customer", "newest row 2026-11-24 20:00:00, 7.0 hours old")
    failed = Finding("error", "assert_no_negative_revenue", "1 failing row")
    _stage(settings, store, "freshness", [_node("source", "freshness of sales.Customer", "warn")], [stale])
    # Until the last task judges it, a run that dies here is no pass.
    started = _record(store)
    assert (started.status, started.finished_at, started.trigger) == (
        "crashed",
        None,
        Trigger("airflow", RUN.dag_id, RUN.dag_run_id),
    )
    assert started.started_at == RUN.started_at
    build = [
        _node("model", "fct_orders"),
        _node("test", "assert_no_negative_revenue", "error"),
        _node("unit_test", "test_segments"),
    ]
    _stage(settings, store, "build", build, [failed])
    expectations = [_node("expectation", "expect_column_values_to_be_unique on fct_orders.order_id")] * 2
    _stage(settings, store, "quality", expectations, [])

    record = finish(RUN, settings, ["dbt.fct_orders.test"], store)

    assert record == _record(store)
    assert (record.status, record.exit_code, record.error) == ("failed", 1, None)
    assert [(s.name, s.status) for s in record.stages] == [
        ("freshness", "warn"),
        ("build", "failed"),
        ("quality", "ok"),
    ]
    assert [n.kind for n in record.nodes] == ["source", "model", "test", "unit_test", "expectation", "expectation"]
    # The same expectation twice on one column: one node each, as `dataops run` numbers them.
    assert record.nodes[-1].unique_id.endswith("#2")
    # The failed test task is explained by the test's own finding, so it adds none.
    assert [(f.level, f.check) for f in record.findings] == [("warn", stale.check), ("error", failed.check)]
    assert record.quality_score == pytest.approx(2 / 3)  # the test failed, both expectations passed
    assert record.row_counts == {"Sales.Customer": 5, "marts.fct_orders": 3}
    assert record.finished_at is not None and record.cpu_seconds is not None
    # One verdict: the record judged again from itself is the same record.
    assert RunSummary.from_record(record).to_record() == record


def test_a_retried_task_replaces_what_its_earlier_attempt_said(
    settings: Settings, store: HistoryStore, manifest: None
) -> None:
    stale = Finding("error", "freshness of sales.Customer", "newest row 13.0 hours old (error after 12 hours)")
    _stage(settings, store, "freshness", [_node("source", "freshness of sales.Customer", "error")], [stale])
    assert _record(store).findings[0].check == stale.check
    # The retry: the warehouse cannot be reached at all; what stopped it is the run's error at once.
    _stage(settings, store, "freshness", [], [], DataOpsError("cannot open the DuckDB warehouse: locked"))
    stopped = _record(store)
    assert (stopped.status, stopped.exit_code) == ("failed", 2)
    assert stopped.error == "cannot open the DuckDB warehouse: locked"
    assert (stopped.nodes, stopped.findings) == ([], [])
    # The next retry finds the data fresh: nothing of the earlier attempts is left.
    _stage(settings, store, "freshness", [_node("source", "freshness of sales.Customer")], [])
    _stage(settings, store, "build", [_node("model", "fct_orders")], [])

    record = finish(RUN, settings, [], store)

    assert (record.status, record.error, record.findings) == ("passed", None, [])
    assert [(s.name, s.status, s.detail) for s in record.stages] == [
        ("freshness", "ok", "1 nodes"),
        ("build", "ok", "1 nodes"),
    ]


def test_an_internal_error_is_a_crash_and_a_failure_nothing_explains_is_named_by_its_task(
    settings: Settings, store: HistoryStore, manifest: None
) -> None:
    _stage(settings, store, "freshness", [_node("source", "freshness of sales.Customer")], [])
    _stage(settings, store, "quality", [], [], RuntimeError("GX gave up"))
    assert (_record(store).status, _record(store).error) == ("crashed", "RuntimeError: GX gave up")
    assert finish(RUN, settings, ["quality_checks"], store).status == "crashed"

    other = PipelineRun(RUN.dag_id, "manual__other", RUN.started_at)
    _stage(settings, store, "freshness", [_node("source", "freshness of sales.Customer")], [])  # not `other`'s
    record = finish(other, settings, ["dbt.fct_orders_model_build"], store)
    # No task of `other` reported anything, and one failed: both said, neither a pass.
    assert record.status == "failed"
    assert [(f.check, f.message) for f in record.findings] == [
        ("task dbt.fct_orders_model_build", "failed; its log in Airflow says why"),
        ("pipeline DAG", "the DAG run recorded no result"),
    ]


def test_a_run_id_is_the_dag_run_s_in_characters_the_store_and_a_shell_take() -> None:
    assert RUN.record_id("dev") == RUN_ID
    long = PipelineRun(RUN.dag_id, "api__" + "x" * 200, RUN.started_at)
    assert len(long.record_id("prod")) == 64 and long.record_id("prod") != long.record_id("staging")
    assert long.record_id("prod").startswith("airflow-prod-api__xxx")


def test_outside_a_dag_run_a_stage_records_nothing(settings: Settings, store: HistoryStore) -> None:
    with recorded_stage(None, settings, "freshness", store) as stage:
        stage.findings = [Finding("warn", "freshness of sales.Customer", "old")]
    assert store.runs() == []


def test_a_cli_summary_comes_back_from_its_record_with_the_same_verdict() -> None:
    summary = RunSummary(
        run_id="r",
        target="dev",
        started_at=datetime(2026, 11, 25, tzinfo=UTC),
        finished_at=datetime.now(UTC),
        stages=[StageResult("build", "failed", 2.0, "1 model")],
        nodes=[_node("model", "fct_orders", "error")],
        findings=[Finding("error", "fct_orders", "Binder Error")],
        error="dbt build failed: gone",
        error_kind="usage",
    )
    record = summary.to_record()
    again = RunSummary.from_record(record)
    assert (again.status, again.exit_code, again.counts.models_errored) == ("failed", 2, 1)
    assert again.to_record() == record


def _record_with(settings: Settings, stages: list[tuple[str, str]], errors: tuple[str, ...] = ()) -> RunRecord:
    return replace(
        RUN.started_record(settings, None),
        stages=[StageRecord(name, status, 1.0) for name, status in stages],
        findings=[FindingRecord("error", check, "failed") for check in errors],
    )


PASSED_TASKS = {
    "source_freshness": "success",
    "dbt.fct_orders_model_build": "success",
    "quality_checks": "success",
    "publish": "running",
    "notify": None,
    "record_run": None,
}


def test_publish_is_blocked_by_each_thing_that_did_not_pass_before_it(settings: Settings) -> None:
    # A clean run: the watcher's build recorded its stage, or (build mode) the dbt tasks passed.
    assert publish_blockers(_record_with(settings, [("freshness", "ok"), ("quality", "ok")]), PASSED_TASKS) == []
    watcher = {task: state for task, state in PASSED_TASKS.items() if not task.startswith("dbt.")}
    assert publish_blockers(_record_with(settings, [("build", "ok"), ("quality", "ok")]), watcher) == []
    # The checks the record names come first, and alone: they say why.
    failed_check = _record_with(settings, [("build", "failed")], errors=("assert_no_negative_revenue",))
    assert publish_blockers(failed_check, {**PASSED_TASKS, "dbt.fct_orders_model_build": "failed"}) == [
        "assert_no_negative_revenue",
        "the quality stage (it did not run)",
    ]
    # Nothing in the record explains it: the failed dbt task and the quality that never ran do.
    failed_task = {**PASSED_TASKS, "dbt.assert_no_negative_revenue_test": "failed", "quality_checks": "upstream_failed"}
    assert publish_blockers(_record_with(settings, [("freshness", "ok")]), failed_task) == [
        "task dbt.assert_no_negative_revenue_test (failed)",
        "task quality_checks (upstream_failed)",
        "the quality stage (it did not run)",
    ]
    # Fail closed: no record, no dbt task and no stage is no build.
    assert publish_blockers(None, watcher) == ["the build stage (it did not run)", "the quality stage (it did not run)"]
    assert publish_blockers(_record_with(settings, [("quality", "failed")]), PASSED_TASKS) == ["the quality stage"]
