"""Incremental builds, for real, on DuckDB and on a real PostgreSQL server: the first run builds
every row; the next day's data (new orders for old and new customers, changed old orders) is merged
into a copy of the published version and published through the same audit; a change that reached
the source late, older than the newest one built but within the lookback, is picked up; and a
`--full-refresh` on the same data publishes exactly the same marts (data diff: zero rows). What an
increment cannot merge right (a change older than the lookback, a deleted row) is built whole."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings
from dataops.project.results import RunSummary
from dataops.sources.edits import decimal, ids, ms, replace_rows, round_div, set_order_money, timestamps, units
from dataops.sources.generate import generate_tables, next_day
from dataops.warehouse import QueryResult, connect

pytestmark = pytest.mark.integration

# The smallest scale whose clean data passes every check.
SCALE = 0.06
SEED = 11
APPEND, UPDATE = 2.0, 1.0
MARTS = {
    "customer_analytics": "customer_id",
    "dim_products": "product_id",
    "dim_territories": "territory_id",
    "fct_order_lines": "order_line_id",
    "fct_orders": "order_id",
}
LOOKBACK_DAYS = 3  # dbt_project.yml's incremental_lookback_days
INCREMENTAL_MARTS = ("customer_analytics", "fct_order_lines", "fct_orders")
_WATERMARK = re.compile(r"incremental from (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


@pytest.fixture(params=["duckdb", "postgres"])
def engine_settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")


def _run(settings: Settings, **options: object) -> RunSummary:
    summary = Pipeline(settings).run(RunOptions(docs=False, **options))  # type: ignore[arg-type]
    failed = [f"{f.check}: {f.message}" for f in summary.findings if f.level == "error"]
    assert int(summary.exit_code) == 0 and summary.publish is not None and summary.publish.status == "published", (
        failed or summary.stages
    )
    return summary


def _build_detail(summary: RunSummary) -> str:
    return next(stage.detail for stage in summary.stages if stage.name == "build")


def _diffs(summary: RunSummary) -> dict[str, tuple[int, int, int]]:
    assert summary.publish is not None
    return {d.mart: (d.added, d.removed, d.changed) for d in summary.publish.diffs}


def _compiled_test(settings: Settings, name: str) -> str:
    """The SQL dbt ran for a data test of the marts in the last build."""
    folder = settings.artifacts_dir / "dbt" / "run" / "adventureworks" / "models" / "marts" / "_marts__models.yml"
    return (folder / f"{name}.sql").read_text(encoding="utf-8")


def _published(settings: Settings) -> dict[str, QueryResult]:
    """Every row of every published mart, as a consumer reads it."""
    warehouse = connect(settings)
    return {
        mart: warehouse.read_only_query(f"SELECT * FROM {settings.consumer_schema}.{mart} ORDER BY {key}")
        for mart, key in MARTS.items()
    }


def _merged_rows_before(before: dict[str, QueryResult], after: dict[str, QueryResult], cutoff: datetime) -> list[str]:
    """The rows an incremental build added or changed whose `modified_at` is older than its
    cutoff: the changed-rows tests would not read them. There must be none."""
    older = []
    for mart in INCREMENTAL_MARTS:
        column = after[mart].columns.index("modified_at")
        for row in set(after[mart].rows) - set(before[mart].rows):
            if row[column] < cutoff:
                older.append(f"{mart}: {row}")
    return older


def _late_change(tables: dict[str, pa.Table], modified: datetime) -> tuple[dict[str, pa.Table], int]:
    """One old order cancelled and moved to the other sales channel, in its header alone, with a
    ModifiedDate older than the newest in the data (it reached the source late): its id. Its lines
    carry the channel, so they change too, with their own ModifiedDates as they were."""
    headers = tables["Sales.SalesOrderHeader"]
    row = int(np.argmin(ms(headers.column("ModifiedDate"))))  # the order changed longest ago
    order_id = headers.column("SalesOrderID")[row].as_py()
    status = 6 if headers.column("Status")[row].as_py() != 6 else 5
    online = not headers.column("OnlineOrderFlag")[row].as_py()
    headers = _edit_row(headers, row, modified, Status=status, OnlineOrderFlag=online)
    return {**tables, "Sales.SalesOrderHeader": headers}, order_id


def _edit_row(table: pa.Table, row: int, modified: datetime, **values: object) -> pa.Table:
    """One row of a source table with new `values` (column: value) and ModifiedDate `modified`."""
    rows = np.array([row])
    for column, value in values.items():
        table = replace_rows(table, column, rows, pa.array([value], table.schema.field(column).type))
    modified_ms = int((modified - datetime(1970, 1, 1)).total_seconds() * 1000)
    return replace_rows(table, "ModifiedDate", rows, timestamps(np.array([modified_ms])))


def test_an_incremental_run_publishes_what_a_full_refresh_does(engine_settings: Settings) -> None:
    settings = engine_settings
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    day_0 = generate_tables(SCALE, seed=SEED, as_of=now - timedelta(hours=30))
    load_tables(settings, day_0, "day 0")
    first = _run(settings)
    assert "full refresh (nothing published to start from)" in _build_detail(first)

    # The next day: new orders and lines, new customers, changed old orders; merged incrementally.
    day_1 = next_day(day_0, APPEND, UPDATE, seed=SEED, as_of=now - timedelta(hours=6))
    load_tables(settings, day_1, "day 1")
    second = _run(settings)
    assert "incremental from" in _build_detail(second), _build_detail(second)
    orders = day_0["Sales.SalesOrderHeader"].num_rows
    new_orders, changed_orders = round(orders * APPEND / 100), round(orders * UPDATE / 100)
    assert _diffs(second)["fct_orders"] == (new_orders, 0, changed_orders)
    assert _diffs(second)["customer_analytics"][1] == 0 and _diffs(second)["customer_analytics"][0] > 0
    # The row-level tests and the merge key's uniqueness read the changed rows only; the row count
    # and the dimensions (rebuilt whole) read every row.
    assert "modified_at >= " in _compiled_test(settings, "not_null_fct_orders_order_id")
    assert "modified_at >= " in _compiled_test(settings, "unique_fct_orders_order_id")
    assert "modified_at" not in _compiled_test(settings, "equal_rowcount_customer_analytics_ref_stg_customers_")
    assert "modified_at" not in _compiled_test(settings, "unique_dim_products_product_id")

    # A change that reached the source late: older than the newest row built, within the lookback.
    newest = pc.max(day_1["Sales.SalesOrderHeader"].column("ModifiedDate")).as_py()
    day_1_late, late_order = _late_change(day_1, newest - timedelta(days=LOOKBACK_DAYS - 1))
    load_tables(settings, day_1_late, "day 1, with a late change")
    before = _published(settings)
    third = _run(settings)
    assert "incremental from" in _build_detail(third)
    assert _diffs(third)["fct_orders"] == (0, 0, 1)
    late_lines = sum(row[1] == late_order for row in before["fct_order_lines"].rows)
    assert late_lines > 0 and _diffs(third)["fct_order_lines"] == (0, 0, late_lines)
    incremental = _published(settings)
    assert any(row[0] == late_order and row[8] in ("Cancelled", "Shipped") for row in incremental["fct_orders"].rows)
    # Every row the build merged is one of the changed rows its tests read.
    watermark = datetime.strptime(_WATERMARK.search(_build_detail(third)).group(1), "%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]
    assert _merged_rows_before(before, incremental, watermark - timedelta(days=LOOKBACK_DAYS)) == []

    # The same data rebuilt whole: nothing differs, row by row, from what the increments published.
    refreshed = _run(settings, full_refresh=True)
    assert "full refresh (--full-refresh)" in _build_detail(refreshed)
    assert "where 1 = 1" in _compiled_test(settings, "not_null_fct_orders_order_id")
    assert _diffs(refreshed) == {mart: (0, 0, 0) for mart in MARTS}
    assert _published(settings) == incremental

    # A change older than the lookback, which no increment reads: seen, and built whole.
    newest = pc.max(day_1_late["Sales.SalesOrderHeader"].column("ModifiedDate")).as_py()
    too_late, _ = _late_change(day_1_late, newest - timedelta(days=LOOKBACK_DAYS + 2))
    load_tables(settings, too_late, "day 1, with a change older than the lookback")
    rebuilt = _run(settings)
    assert "orders changed in the source, last modified " in _build_detail(rebuilt), _build_detail(rebuilt)
    assert "the watermark less the 3-day lookback" in _build_detail(rebuilt)
    assert "full refresh" in _build_detail(rebuilt)
    assert _diffs(rebuilt)["fct_orders"] == (0, 0, 1)


def test_sources_that_do_not_continue_the_published_version_are_built_whole(settings: Settings) -> None:
    """Another data set loaded in place of the sources (the same keys, other orders): merging its
    newest rows into the published marts would keep orders that are not in it any more."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    load_tables(settings, generate_tables(SCALE, seed=SEED, as_of=now - timedelta(hours=2)), "one data set")
    _run(settings)
    load_tables(settings, generate_tables(SCALE, seed=SEED + 1, as_of=now - timedelta(hours=1)), "another")
    rebuilt = _run(settings)
    assert "do not continue the published version" in _build_detail(rebuilt), _build_detail(rebuilt)
    assert "full refresh" in _build_detail(rebuilt)


def test_an_order_moved_to_another_customer_is_built_whole(settings: Settings) -> None:
    """An order that moves to another customer, with a newer ModifiedDate: the increment would
    recompute the customer it moved to and keep the old metrics of the one it left."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    day_0 = generate_tables(SCALE, seed=SEED, as_of=now - timedelta(hours=30))
    load_tables(settings, day_0, "day 0")
    _run(settings)
    headers = day_0["Sales.SalesOrderHeader"]
    customers = headers.column("CustomerID").to_pylist()
    other = next(customer for customer in customers if customer != customers[0])
    modified = pc.max(headers.column("ModifiedDate")).as_py() + timedelta(hours=1)
    headers = _edit_row(headers, 0, modified, CustomerID=other)
    load_tables(settings, {**day_0, "Sales.SalesOrderHeader": headers}, "one order moved")
    moved = _run(settings)
    assert "1 published orders have another customer in the source" in _build_detail(moved), _build_detail(moved)
    assert "full refresh" in _build_detail(moved)
    assert _diffs(moved)["fct_orders"] == (0, 0, 1)
    # What it published is what a full refresh does: both customers' metrics as they now are.
    assert _diffs(_run(settings, full_refresh=True)) == {mart: (0, 0, 0) for mart in MARTS}


Tables = dict[str, pa.Table]


def _without_row(table: pa.Table, row: int) -> pa.Table:
    return table.filter(pa.array(np.arange(table.num_rows) != row))


def _a_line_of_the_largest_order(day_0: Tables) -> tuple[int, int, int, pa.Table]:
    """The first line of the order with the most lines: its row, that order's row and line count,
    and the headers with that order's totals less the line's (SubTotal and what follows from it)."""
    lines, headers = day_0["Sales.SalesOrderDetail"], day_0["Sales.SalesOrderHeader"]
    line_orders = ids(lines.column("SalesOrderID"))
    order_ids, line_counts = np.unique(line_orders, return_counts=True)
    line = int(np.flatnonzero(line_orders == int(order_ids[np.argmax(line_counts)]))[0])
    order = int(np.flatnonzero(ids(headers.column("SalesOrderID")) == line_orders[line])[0])
    line_total = units(lines.column("LineTotal"))[line]  # 1e-6 units; SubTotal has 1e-4
    sub_total = units(headers.column("SubTotal"))[order] - round_div(np.array([line_total]), 100)
    return line, order, int(line_counts.max()), set_order_money(headers, np.array([order]), sub_total)


def _an_hour_after(table: pa.Table) -> datetime:
    return pc.max(table.column("ModifiedDate")).as_py() + timedelta(hours=1)


def _line_deleted(day_0: Tables) -> tuple[Tables, Tables, dict[str, tuple[int, int, int]]]:
    """A line deleted from the order with the most lines, whose header AdventureWorks then updates
    (its SubTotal less the line, a newer ModifiedDate): the order's other lines carry that date."""
    deleted, order, line_count, headers = _a_line_of_the_largest_order(day_0)
    headers = _edit_row(headers, order, _an_hour_after(headers))
    lines = _without_row(day_0["Sales.SalesOrderDetail"], deleted)
    day_1 = {**day_0, "Sales.SalesOrderDetail": lines, "Sales.SalesOrderHeader": headers}
    return day_0, day_1, {"fct_order_lines": (0, 1, line_count - 1), "fct_orders": (0, 0, 1)}


def _first_customer(day_0: Tables, ordered: bool) -> int:
    """The row of the first customer who ordered (or who never did)."""
    buyers = set(ids(day_0["Sales.SalesOrderHeader"].column("CustomerID")).tolist())
    customers = ids(day_0["Sales.Customer"].column("CustomerID"))
    return next(i for i, customer in enumerate(customers) if (customer in buyers) == ordered)


def _customer_deleted(day_0: Tables) -> tuple[Tables, Tables, dict[str, tuple[int, int, int]]]:
    """A customer who never ordered, deleted."""
    customers = day_0["Sales.Customer"]
    row = _first_customer(day_0, ordered=False)
    return day_0, {**day_0, "Sales.Customer": _without_row(customers, row)}, {"customer_analytics": (0, 1, 0)}


def _second_email(emails: pa.Table, row: int, **values: object) -> pa.Table:
    """The e-mail addresses with one more for the person of `row`, a copy of it under the next
    EmailAddressID (with `values` changed), registered after it and so not the one the mart shows."""
    second = emails.slice(row, 1)
    values = {"EmailAddressID": pc.max(emails.column("EmailAddressID")).as_py() + 1, **values}
    for column, value in values.items():
        second = replace_rows(second, column, np.array([0]), pa.array([value], emails.schema.field(column).type))
    return pa.concat_tables([emails, second])


def _email_deleted(day_0: Tables) -> tuple[Tables, Tables, dict[str, tuple[int, int, int]]]:
    """A customer's person with a second e-mail address on day 0 loses the first, the one the mart
    shows, on day 1: the second one takes its place."""
    emails, customers, people = day_0["Person.EmailAddress"], day_0["Sales.Customer"], day_0["Person.Person"]
    # An individual (no store) whose profile is all older than any cutoff: no increment recomputes it.
    old = int(np.max(ms(customers.column("ModifiedDate")))) - 5 * 86_400_000
    people_modified = ms(people.column("ModifiedDate"))
    modified = dict(zip(ids(people.column("BusinessEntityID")).tolist(), people_modified, strict=True))
    old_people = {
        person
        for person, store, customer_modified in zip(
            ids(customers.column("PersonID")),
            ids(customers.column("StoreID")),
            ms(customers.column("ModifiedDate")),
            strict=True,
        )
        if store == -1 and customer_modified < old and modified.get(person, old) < old
    }
    row = next(
        i
        for i, (person, email_modified) in enumerate(
            zip(ids(emails.column("BusinessEntityID")), ms(emails.column("ModifiedDate")), strict=True)
        )
        if person in old_people and email_modified < old
    )
    next_id = pc.max(emails.column("EmailAddressID")).as_py() + 1
    second = _second_email(emails, row, EmailAddress=f"second{next_id}@adventure-works.com")
    day_0 = {**day_0, "Person.EmailAddress": second}
    day_1 = {**day_0, "Person.EmailAddress": _without_row(day_0["Person.EmailAddress"], row)}
    return day_0, day_1, {"customer_analytics": (0, 0, 1)}


def _order_arrived_late(day_0: Tables) -> tuple[Tables, Tables, dict[str, tuple[int, int, int]]]:
    """The order changed longest ago, with its lines, missing from the first day's sources and there
    on the next, with the ModifiedDate it always had: it reached the source late."""
    headers, lines = day_0["Sales.SalesOrderHeader"], day_0["Sales.SalesOrderDetail"]
    row = int(np.argmin(ms(headers.column("ModifiedDate"))))
    order_id = int(ids(headers.column("SalesOrderID"))[row])
    its_lines = ids(lines.column("SalesOrderID")) == order_id
    first = {
        **day_0,
        "Sales.SalesOrderHeader": _without_row(headers, row),
        "Sales.SalesOrderDetail": lines.filter(pa.array(~its_lines)),
    }
    return first, day_0, {"fct_orders": (1, 0, 0), "fct_order_lines": (int(its_lines.sum()), 0, 0)}


def _free_line_moved(day_0: Tables) -> tuple[Tables, Tables, dict[str, tuple[int, int, int]]]:
    """A free line (a promotional item, worth nothing, so no order's totals move) moved to another
    order, with a newer ModifiedDate of its own: the increment brings the line and the order it
    moved to, never the one it left."""
    row, _, _, headers = _a_line_of_the_largest_order(day_0)
    lines = day_0["Sales.SalesOrderDetail"]
    for column in ("UnitPrice", "LineTotal"):
        lines = replace_rows(lines, column, np.array([row]), decimal(np.array([0]), lines.schema.field(column).type))
    first = {**day_0, "Sales.SalesOrderDetail": lines, "Sales.SalesOrderHeader": headers}
    line_orders = ids(lines.column("SalesOrderID"))
    other = int(next(order for order in line_orders if order != line_orders[row]))
    moved = _edit_row(lines, row, _an_hour_after(headers), SalesOrderID=other)
    return first, {**first, "Sales.SalesOrderDetail": moved}, {"fct_order_lines": (0, 0, 1), "fct_orders": (0, 0, 2)}


def _territory_edited_behind_modified_date(day_0: Tables) -> tuple[Tables, Tables, dict[str, tuple[int, int, int]]]:
    """A customer who ordered moved to another territory, its ModifiedDate left as it was."""
    customers = day_0["Sales.Customer"]
    territories = ids(customers.column("TerritoryID"))
    row = _first_customer(day_0, ordered=True)
    other = int(next(t for t in territories if t != territories[row]))
    moved = replace_rows(customers, "TerritoryID", np.array([row]), pa.array([other], pa.int32()))
    return day_0, {**day_0, "Sales.Customer": moved}, {"customer_analytics": (0, 0, 1)}


def test_a_second_copy_of_an_e_mail_address_leaves_the_build_incremental(settings: Settings) -> None:
    """A person's address registered twice: the mart shows the first, which did not change, so
    the increment stays one, run after run."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    day_0 = generate_tables(SCALE, seed=SEED, as_of=now - timedelta(hours=30))
    load_tables(settings, day_0, "day 0")
    _run(settings)
    load_tables(settings, {**day_0, "Person.EmailAddress": _second_email(day_0["Person.EmailAddress"], 0)}, "a copy")
    for _ in range(2):
        again = _run(settings)
        assert "incremental from" in _build_detail(again), _build_detail(again)
        assert _diffs(again) == {mart: (0, 0, 0) for mart in MARTS}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (_line_deleted, "1 published order lines are gone from the source"),
        (_customer_deleted, "1 published customers are gone from the source"),
        (_email_deleted, "customers changed in the source, last modified "),
        (_order_arrived_late, "orders are new in the source, last modified "),
        (_territory_edited_behind_modified_date, "customers changed in the source, last modified "),
        (_free_line_moved, "1 published order lines have another order in the source"),
    ],
    ids=[
        "deleted order line",
        "deleted customer",
        "deleted e-mail",
        "late order",
        "edit behind ModifiedDate",
        "moved line",
    ],
)
def test_what_an_increment_would_not_merge_right_is_built_whole(
    settings: Settings, case: Callable[[Tables], tuple[Tables, Tables, dict[str, tuple[int, int, int]]]], reason: str
) -> None:
    """A deletion has no newer ModifiedDate to bring the rows it changes into a merge, and a merge
    keeps the rows it does not bring: an increment would keep publishing what the source deleted.
    A row new or changed with a ModifiedDate older than the cutoff is never read by an increment."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    day_0, day_1, diffs = case(generate_tables(SCALE, seed=SEED, as_of=now - timedelta(hours=30)))
    load_tables(settings, day_0, "day 0")
    _run(settings)
    load_tables(settings, day_1, "what an increment would not merge right")
    rebuilt = _run(settings)
    assert reason in _build_detail(rebuilt), _build_detail(rebuilt)
    assert "full refresh" in _build_detail(rebuilt)
    assert {mart: _diffs(rebuilt)[mart] for mart in diffs} == diffs
    assert _diffs(_run(settings, full_refresh=True)) == {mart: (0, 0, 0) for mart in MARTS}
