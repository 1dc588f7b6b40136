"""The suites' row-count bounds follow the size of the business: the environment variable the suite
names, else the mart's rows in the run history (a real store), else the suite's default. And every
variable a suite names is documented where the other DATAOPS_ variables are."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from dataops.core.config import PROJECT_ROOT, Settings
from dataops.core.errors import DataOpsError
from dataops.history.records import RunRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.quality.bounds import parse_range, resolve_row_bounds, row_count_expectations
from dataops.quality.config import SuiteDocument, suite_documents

CUSTOMERS, ORDERS = "customer_quality_suite", "order_quality_suite"


def _row_bounds(suites: dict[str, SuiteDocument], name: str) -> tuple[Any, Any, str]:
    """The bounds the suite goes to Great Expectations with, and where they came from."""
    (resolved,) = [e for e in suites[name].expectations if e["type"] == "expect_table_row_count_to_be_between"]
    return resolved["kwargs"]["min_value"], resolved["kwargs"]["max_value"], resolved["meta"]["bounds_from"]


def _record_run(history: HistoryStore, settings: Settings, run_id: str, hours_ago: int, rows: dict[str, int]) -> None:
    started = datetime.now(UTC) - timedelta(hours=hours_ago)
    history.record(
        RunRecord(
            run_id=run_id,
            target=settings.target,
            kind="run",
            trigger=Trigger("cli"),
            started_at=started,
            finished_at=started + timedelta(minutes=1),
            status="passed",
            exit_code=0,
            row_counts={f"{settings.consumer_schema}.{mart}": n for mart, n in rows.items()},
        )
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000..5000000", (1000, 5000000)), ("1000..", (1000, None)), (" ..5_000_000 ", (None, 5000000))],
)
def test_a_range_is_min_dot_dot_max_either_side_optional(text: str, expected: tuple[int | None, int | None]) -> None:
    bounds = parse_range("DATAOPS_CUSTOMER_ROWS", text)
    assert (bounds.min_rows, bounds.max_rows, bounds.source) == (*expected, "DATAOPS_CUSTOMER_ROWS")


@pytest.mark.parametrize("text", ["5000000", "a..b", "..", "10..5", "-1..5"])
def test_anything_else_is_one_line_naming_the_variable_and_the_form(text: str) -> None:
    with pytest.raises(DataOpsError) as raised:
        parse_range("DATAOPS_CUSTOMER_ROWS", text)
    assert str(raised.value) == (
        f"DATAOPS_CUSTOMER_ROWS={text!r} is no row range: give MIN..MAX rows, either may be left out "
        "(e.g. DATAOPS_CUSTOMER_ROWS=1000..5000000)"
    )


def test_without_history_or_variable_the_defaults_are_the_guides_floors_and_no_customer_ceiling(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DATAOPS_CUSTOMER_ROWS", "DATAOPS_ORDER_ROWS"):
        monkeypatch.delenv(variable, raising=False)
    suites = resolve_row_bounds(settings, suite_documents(), "this-run")
    assert _row_bounds(suites, CUSTOMERS) == (1000, None, "1,000 to any rows, from the suite's default")
    assert _row_bounds(suites, ORDERS) == (500, 100_000_000, "500 to 100,000,000 rows, from the suite's default")
    # The files themselves are untouched: the next run resolves them again.
    assert suite_documents()[CUSTOMERS].expectations[0]["kwargs"]["min_value"] == {"$PARAMETER": "min_rows"}


def test_the_history_sets_the_bounds_an_order_of_magnitude_around_the_rows_of_the_good_runs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DATAOPS_CUSTOMER_ROWS", "DATAOPS_ORDER_ROWS"):
        monkeypatch.delenv(variable, raising=False)
    history = HistoryStore()
    # A scale-100 business: far beyond the guide's 1,000,000 customers.
    _record_run(history, settings, "day-1", 48, {"customer_analytics": 1_982_000, "fct_orders": 3_146_500})
    _record_run(history, settings, "day-2", 24, {"customer_analytics": 1_990_000, "fct_orders": 3_160_000})
    suites = resolve_row_bounds(settings, suite_documents(), "this-run", history)
    learnt = "from the history (2 training runs, within 10x)"
    assert _row_bounds(suites, CUSTOMERS) == (198_200, 19_900_000, f"198,200 to 19,900,000 rows, {learnt}")
    assert _row_bounds(suites, ORDERS) == (314_650, 31_600_000, f"314,650 to 31,600,000 rows, {learnt}")


def test_the_variable_wins_over_the_history(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    history = HistoryStore()
    _record_run(history, settings, "day-1", 24, {"customer_analytics": 19_820, "fct_orders": 31_465})
    monkeypatch.setenv("DATAOPS_CUSTOMER_ROWS", "10000..5000000")
    monkeypatch.delenv("DATAOPS_ORDER_ROWS", raising=False)
    suites = resolve_row_bounds(settings, suite_documents(), "this-run", history)
    assert _row_bounds(suites, CUSTOMERS) == (10_000, 5_000_000, "10,000 to 5,000,000 rows, from DATAOPS_CUSTOMER_ROWS")
    assert _row_bounds(suites, ORDERS)[:2] == (3_146, 314_650)


def _suite_variables() -> set[str]:
    return {
        expectation["meta"]["variable"]
        for suite in suite_documents().values()
        for _, expectation in row_count_expectations(suite)
    }


def test_every_variable_a_suite_names_is_documented_and_reaches_the_airflow_components() -> None:
    variables = _suite_variables()
    assert variables == {"DATAOPS_CUSTOMER_ROWS", "DATAOPS_ORDER_ROWS"}
    env_example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.airflow.yml").read_text(encoding="utf-8"))
    for variable in sorted(variables):
        assert re.search(rf"(?m)^# {variable}=", env_example), f".env.example does not list {variable}"
        assert f"`{variable}" in readme, f"the README does not describe {variable}"
        for name, service in compose["services"].items():
            if name.startswith("airflow-") and "environment" in service:
                assert variable in service["environment"], f"{name} does not get {variable}"


def test_the_suites_in_the_repository_have_no_constant_row_count_left() -> None:
    for suite in suite_documents().values():
        for expectation in suite.expectations:
            if expectation["type"] == "expect_table_row_count_to_be_between":
                assert expectation["kwargs"] == {
                    "min_value": {"$PARAMETER": "min_rows"},
                    "max_value": {"$PARAMETER": "max_rows"},
                }, suite.path
