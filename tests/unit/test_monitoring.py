"""dataops.ops.monitor on the run history: the latest run of a target, however it was started, and
whether runs still come as often as the schedule says. A real SQLite store in a temporary folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.core.findings import Finding
from dataops.history.records import FindingRecord, RunRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.ops.monitor import allowed_gap, check_history, monitor

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def settings_for(warehouse: Path, target: str = "dev") -> Settings:
    return Settings(target=target, engine="duckdb", stale_data="warn", threads=1, warehouse_dir=warehouse)


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")


def record(
    store: HistoryStore,
    run_id: str,
    hours_ago: float,
    status: str = "passed",
    findings: list[FindingRecord] | None = None,
    error: str | None = None,
    trigger: Trigger | None = None,
    target: str = "dev",
) -> None:
    ended = NOW - timedelta(hours=hours_ago)
    store.record(
        RunRecord(
            run_id=run_id,
            target=target,
            kind="run",
            trigger=trigger or Trigger("cli"),
            started_at=ended - timedelta(minutes=5),
            finished_at=ended,
            status=status,
            exit_code={"passed": 0, "warned": 0, "failed": 1, "crashed": 3}[status],
            findings=findings or [],
            error=error,
        )
    )


def test_a_target_that_never_ran_is_an_error_naming_it(store: HistoryStore, tmp_path: Path) -> None:
    report = monitor(settings_for(tmp_path), now=NOW, store=store)
    assert report.failed and report.run_id is None
    assert report.findings == [
        Finding(
            "error", "run history", "no run of dev in the run history: has the pipeline run? (`dataops run` or its DAG)"
        )
    ]


def test_a_recent_clean_run_has_no_findings(store: HistoryStore, tmp_path: Path) -> None:
    record(store, "old-bad", 30, "failed", [FindingRecord("error", "unique on fct_orders.order_id", "2 failing rows")])
    record(store, "new-good", 2)
    report = monitor(settings_for(tmp_path), now=NOW, store=store)
    assert (report.run_id, report.findings) == ("new-good", [])


def test_the_latest_run_s_failures_and_warnings_are_named_as_the_run_named_them(
    store: HistoryStore, tmp_path: Path
) -> None:
    record(
        store,
        "r1",
        1,
        "failed",
        [
            FindingRecord("error", "assert_no_negative_revenue", "30 failing rows"),
            FindingRecord("error", "model fct_orders", "Binder Error: column total_due not found"),
            FindingRecord("warn", "freshness of sales.Customer", "newest row 2014-06-30, 4,457 days old"),
        ],
        trigger=Trigger("airflow", "adventureworks_pipeline", "scheduled__2026-11-25"),
    )

    report = monitor(settings_for(tmp_path), now=NOW, store=store)

    assert [(f.level, f.check) for f in report.findings] == [
        ("error", "assert_no_negative_revenue"),
        ("error", "model fct_orders"),
        ("warn", "freshness of sales.Customer"),
    ]
    with pytest.raises(DataOpsError, match="assert_no_negative_revenue: 30 failing rows") as raised:
        check_history(settings_for(tmp_path), store=store, now=NOW)
    assert "latest run r1" in str(raised.value)


def test_a_crashed_run_is_an_error_with_what_stopped_it(store: HistoryStore, tmp_path: Path) -> None:
    record(store, "r1", 1, "crashed", error="InternalError: the quality worker stopped without an answer")
    report = monitor(settings_for(tmp_path), now=NOW, store=store)
    assert report.findings == [
        Finding("error", "run r1", "crashed: InternalError: the quality worker stopped without an answer")
    ]


def test_no_run_for_longer_than_the_schedule_allows_is_an_error(store: HistoryStore, tmp_path: Path) -> None:
    record(store, "r1", 27)
    [finding] = monitor(settings_for(tmp_path), "@daily", now=NOW, store=store).findings
    assert finding.check == "run age"
    assert "ended 27.0 hours ago" in finding.message and "the 26.0 hours the schedule @daily allows" in finding.message
    assert monitor(settings_for(tmp_path), "@weekly", now=NOW, store=store).findings == []


@pytest.mark.parametrize(
    ("schedule", "allowed"),
    [
        ("@daily", timedelta(hours=26)),
        ("@hourly", timedelta(minutes=70)),
        ("0 6 * * *", timedelta(hours=26)),
        # Weekdays only: the longest gap is Friday to Monday.
        ("0 6 * * 1-5", timedelta(days=3) + timedelta(hours=6)),
    ],
)
def test_the_allowed_gap_comes_from_the_schedule(schedule: str, allowed: timedelta) -> None:
    assert allowed_gap(schedule) == allowed


def test_a_schedule_that_is_no_schedule_is_a_usage_error() -> None:
    with pytest.raises(DataOpsError, match="'every day' is neither an Airflow preset"):
        allowed_gap("every day")


def test_only_the_target_s_own_runs_count(store: HistoryStore, tmp_path: Path) -> None:
    record(store, "prod-run", 1, target="prod")
    assert monitor(settings_for(tmp_path), now=NOW, store=store).findings[0].check == "run history"


def _unfinished(store: HistoryStore, run_id: str, hours_ago: float) -> None:
    """A pipeline DAG run's record before its last task: no end, crashed until it is judged."""
    store.record(
        RunRecord(
            run_id=run_id,
            target="dev",
            kind="run",
            trigger=Trigger("airflow", "adventureworks_pipeline", run_id),
            started_at=NOW - timedelta(hours=hours_ago),
            finished_at=None,
            status="crashed",
            exit_code=3,
        )
    )


def test_a_dag_run_in_flight_is_not_judged_until_it_ends(store: HistoryStore, tmp_path: Path) -> None:
    record(store, "yesterday", 25.5)
    _unfinished(store, "airflow-dev-today", 1)

    report = monitor(settings_for(tmp_path), now=NOW, store=store)

    # The run before it is judged; it ended 25.5 hours ago, but the schedule's next run is under way.
    assert (report.run_id, report.in_flight, report.findings) == ("yesterday", "airflow-dev-today", [])
    assert report.summary().endswith("latest run yesterday in " + store.shown_url + ", run airflow-dev-today in flight")
    # The first run of a target, still running, is no missing run either.
    first = HistoryStore(f"sqlite:///{tmp_path / 'first.sqlite'}")
    _unfinished(first, "airflow-dev-first", 1)
    report = monitor(settings_for(tmp_path), now=NOW, store=first)
    assert (report.run_id, report.in_flight, report.failed) == (None, "airflow-dev-first", False)


def test_a_dag_run_that_never_ended_is_judged_crashed_once_the_schedule_s_gap_is_past(
    store: HistoryStore, tmp_path: Path
) -> None:
    record(store, "before", 60)
    _unfinished(store, "airflow-dev-died", 27)

    report = monitor(settings_for(tmp_path), now=NOW, store=store)

    assert (report.run_id, report.in_flight) == ("airflow-dev-died", None)
    assert [(f.check, f.message.split(" (")[0]) for f in report.findings] == [
        ("run airflow-dev-died", "crashed without a named cause"),
        ("run age", "the latest run airflow-dev-died ended 27.0 hours ago"),
    ]
