"""Fault injection: each fault changes exactly what it says, reproducibly, and nothing else."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataops.core.errors import DataOpsError, SourceDataError
from dataops.sources.contract import SOURCE_TABLES_BY_NAME
from dataops.sources.faults import _APPLY_ORDER, FAULTS, Fault, inject
from dataops.sources.generate import generate_tables, write_tables
from dataops.sources.readers import read_source_folder

AS_OF = datetime(2025, 6, 15, 12, 30, 45)
SCALE = 0.05

CUSTOMER, HEADER, DETAIL, EMAIL = (
    "Sales.Customer",
    "Sales.SalesOrderHeader",
    "Sales.SalesOrderDetail",
    "Person.EmailAddress",
)
EMAIL_PATTERN = re.compile(r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9.-]+$")  # as in the dbt test

# The tables each fault may change; every other table must come back equal.
CHANGED_TABLES = {
    "null_primary_key": {CUSTOMER},
    "duplicate_order": {HEADER},
    "negative_total": {HEADER, DETAIL},
    "future_order_date": {HEADER},
    "orphan_order": {HEADER},
    "malformed_email": {EMAIL},
    "stale_source": {HEADER, DETAIL, CUSTOMER},
    "dropped_column": {HEADER},
    "renamed_column": {CUSTOMER},
    "changed_column_type": {HEADER},
    "truncated_load": {HEADER, DETAIL},
    "extreme_value": {HEADER, DETAIL},
    "duplicate_customer": {CUSTOMER},
    "order_total_mismatch": {HEADER},
}


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return generate_tables(SCALE, seed=3, as_of=AS_OF)


def _connect(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("customer", tables[CUSTOMER])
    con.register("soh", tables[HEADER])
    con.register("sod", tables[DETAIL])
    return con


Connect = Callable[[dict[str, pa.Table]], duckdb.DuckDBPyConnection]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """`_connect`, with every connection it opened closed after the test."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def open_one(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
        opened.append(_connect(tables))
        return opened[-1]

    yield open_one
    for con in opened:
        con.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _money_invariant_violations(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """How many rows break each money rule the generator guarantees."""
    checks = {
        "LineTotal": "SELECT count(*) FROM sod WHERE LineTotal <> OrderQty * UnitPrice * (1 - UnitPriceDiscount)",
        "SubTotal": """SELECT count(*) FROM soh
                       JOIN (SELECT SalesOrderID, sum(LineTotal) AS lines FROM sod GROUP BY 1) USING (SalesOrderID)
                       WHERE SubTotal <> round(lines, 4)""",
        "TaxAmt": "SELECT count(*) FROM soh WHERE TaxAmt <> round(SubTotal * 0.08, 4)",
        "Freight": "SELECT count(*) FROM soh WHERE Freight <> round(SubTotal * 0.025, 4)",
        "TotalDue": "SELECT count(*) FROM soh WHERE TotalDue <> SubTotal + TaxAmt + Freight",
    }
    return {name: _scalar(con, sql) for name, sql in checks.items()}


def _changed_rows(before: pa.Table, after: pa.Table, column: str) -> np.ndarray:
    """Row indices where `column` differs (NULL vs value counts as different); same row count."""
    assert before.num_rows == after.num_rows
    old, new = before.column(column), after.column(column)
    same = pc.fill_null(pc.equal(old, new), False)
    both_null = pc.and_(pc.is_null(old), pc.is_null(new))
    return np.flatnonzero(~pc.or_(same, both_null).to_numpy(zero_copy_only=False))


def _columns_equal_except(before: pa.Table, after: pa.Table, changed: set[str]) -> None:
    assert before.column_names == after.column_names
    for name in before.column_names:
        if name not in changed:
            assert after.column(name).equals(before.column(name)), name


# --- the registry ------------------------------------------------------------------------------


def test_faults_are_registered_in_the_documented_order() -> None:
    assert list(FAULTS) == list(CHANGED_TABLES)
    assert sorted(_APPLY_ORDER) == sorted(FAULTS)  # every fault has its place when combined


@pytest.mark.parametrize("name", list(FAULTS))
def test_every_fault_is_described_and_names_its_check(name: str) -> None:
    fault = FAULTS[name]
    assert isinstance(fault, Fault)
    assert fault.name == name
    assert fault.description.strip() and "\n" not in fault.description
    assert fault.caught_by and all(check.strip() for check in fault.caught_by)
    assert fault.outcome == ("warn" if name in {"malformed_email", "stale_source"} else "fail")


def test_the_checks_are_named_as_the_pipeline_reports_them() -> None:
    assert FAULTS["duplicate_order"].caught_by == ("unique on stg_orders.order_id", "assert_no_duplicate_orders")
    assert FAULTS["orphan_order"].caught_by == (
        "relationships on stg_orders.customer_id",
        "assert_every_order_has_customer",
    )
    assert FAULTS["stale_source"].caught_by == ("freshness of sales.SalesOrderHeader",)
    assert FAULTS["extreme_value"].caught_by == ("accepted_range on customer_analytics.lifetime_value",)
    for name in ("null_primary_key", "dropped_column", "renamed_column", "changed_column_type"):
        assert FAULTS[name].caught_by == ("load validation",)


# --- each fault changes what it says and only that ---------------------------------------------


@pytest.mark.parametrize("name", list(FAULTS))
def test_only_the_faults_tables_change(tables: dict[str, pa.Table], name: str) -> None:
    out = inject(tables, [name], seed=1)
    assert list(out) == list(tables)
    changed = {table for table in tables if not out[table].equals(tables[table])}
    assert changed == CHANGED_TABLES[name]


def test_null_primary_key(tables: dict[str, pa.Table]) -> None:
    before, after = tables[CUSTOMER], inject(tables, ["null_primary_key"], seed=1)[CUSTOMER]
    assert 1 <= after.column("CustomerID").null_count <= 5
    assert after.schema.field("CustomerID").nullable  # so Arrow and Parquet can hold the NULLs
    _columns_equal_except(before, after, {"CustomerID"})


def test_duplicate_order(tables: dict[str, pa.Table], connect: Connect) -> None:
    out = inject(tables, ["duplicate_order"], seed=1)
    before, after = tables[HEADER], out[HEADER]
    assert 1 <= after.num_rows - before.num_rows <= 5
    assert after.slice(0, before.num_rows).equals(before)
    con = connect(out)
    # Exact copies: the distinct rows are the original ones, and ids and numbers repeat together.
    assert _scalar(con, "SELECT count(*) FROM (SELECT DISTINCT * FROM soh)") == before.num_rows
    assert _scalar(con, "SELECT count(DISTINCT SalesOrderID) FROM soh") == before.num_rows
    assert _scalar(con, "SELECT count(DISTINCT SalesOrderNumber) FROM soh") == before.num_rows


def test_negative_total_keeps_every_money_rule(tables: dict[str, pa.Table], connect: Connect) -> None:
    out = inject(tables, ["negative_total"], seed=1)
    con = connect(out)
    assert _scalar(con, "SELECT count(*) FROM soh WHERE TotalDue < 0") == 1
    negative = _scalar(con, "SELECT SalesOrderID FROM soh WHERE TotalDue < 0")
    [signs] = con.execute(
        f"SELECT SubTotal < 0, TaxAmt <= 0, Freight <= 0 FROM soh WHERE SalesOrderID = {negative}"
    ).fetchall()
    assert signs == (True, True, True)  # a tiny order's tax or freight may round to zero
    assert _scalar(con, f"SELECT bool_and(LineTotal < 0 AND UnitPrice < 0) FROM sod WHERE SalesOrderID = {negative}")
    assert _scalar(con, "SELECT count(*) FROM sod WHERE LineTotal < 0") == _scalar(
        con, f"SELECT count(*) FROM sod WHERE SalesOrderID = {negative}"
    )
    assert _money_invariant_violations(con) == dict.fromkeys(_money_invariant_violations(con), 0)
    assert _scalar(con, "SELECT min(OrderQty) FROM sod") >= 1
    # The customer's other orders outweigh it: no lifetime value drops below zero.
    assert _scalar(con, "SELECT min(s) FROM (SELECT sum(TotalDue) AS s FROM soh GROUP BY CustomerID)") >= 0
    _columns_equal_except(tables[HEADER], out[HEADER], {"SubTotal", "TaxAmt", "Freight", "TotalDue"})
    _columns_equal_except(tables[DETAIL], out[DETAIL], {"UnitPrice", "LineTotal"})
    assert len(_changed_rows(tables[HEADER], out[HEADER], "TotalDue")) == 1


def test_future_order_date(tables: dict[str, pa.Table]) -> None:
    before, after = tables[HEADER], inject(tables, ["future_order_date"], seed=1)[HEADER]
    rows = _changed_rows(before, after, "OrderDate")
    assert 1 <= len(rows) <= 5
    moved = after.take(rows).to_pylist()
    originals = before.take(rows).to_pylist()
    for new, old in zip(moved, originals, strict=True):
        assert new["OrderDate"] >= AS_OF + timedelta(days=30)
        assert new["OrderDate"] == new["OrderDate"].replace(hour=0, minute=0, second=0)
        assert new["DueDate"] - new["OrderDate"] == old["DueDate"] - old["OrderDate"]
        assert new["ShipDate"] is None  # not shipped yet
        assert new["ModifiedDate"] == old["ModifiedDate"]  # freshness is not what this is about
    assert set(_changed_rows(before, after, "DueDate")) == set(rows)
    _columns_equal_except(before, after, {"OrderDate", "DueDate", "ShipDate"})


def test_orphan_order(tables: dict[str, pa.Table]) -> None:
    before, after = tables[HEADER], inject(tables, ["orphan_order"], seed=1)[HEADER]
    known = tables[CUSTOMER].column("CustomerID").combine_chunks()
    orphans = pc.invert(pc.is_in(after.column("CustomerID"), value_set=known))
    assert 1 <= pc.sum(orphans).as_py() <= 5
    assert pc.sum(pc.invert(pc.is_in(before.column("CustomerID"), value_set=known))).as_py() == 0
    rows = _changed_rows(before, after, "CustomerID")
    for row in after.take(rows).to_pylist():  # the account number follows the (missing) customer
        assert row["AccountNumber"].endswith(f"{row['CustomerID']:06d}")
    _columns_equal_except(before, after, {"CustomerID", "AccountNumber"})


def test_malformed_email(tables: dict[str, pa.Table]) -> None:
    before, after = tables[EMAIL], inject(tables, ["malformed_email"], seed=1)[EMAIL]

    def bad(table: pa.Table) -> int:
        return sum(1 for e in table.column("EmailAddress").to_pylist() if e and not EMAIL_PATTERN.match(e))

    rows = _changed_rows(before, after, "EmailAddress")
    assert 1 <= len(rows) <= 5
    assert bad(after) - bad(before) == len(rows)
    assert after.column("EmailAddress").null_count == before.column("EmailAddress").null_count
    _columns_equal_except(before, after, {"EmailAddress"})


def test_stale_source(tables: dict[str, pa.Table], connect: Connect) -> None:
    out = inject(tables, ["stale_source"], seed=1)
    month = timedelta(days=30)
    shifted = {
        HEADER: ("OrderDate", "DueDate", "ShipDate", "ModifiedDate"),
        DETAIL: ("ModifiedDate",),
        CUSTOMER: ("ModifiedDate",),
    }
    for name, columns in shifted.items():
        for column in columns:
            old, new = tables[name].column(column), out[name].column(column)
            assert new.null_count == old.null_count
            assert pc.all(pc.equal(pc.subtract(old, new), pa.scalar(month, pa.duration("ms")))).as_py(), column
        _columns_equal_except(tables[name], out[name], set(columns))
    con = connect(out)
    assert _scalar(con, "SELECT max(ModifiedDate) FROM soh") == AS_OF - month
    assert _scalar(con, "SELECT max(ModifiedDate) FROM customer") == AS_OF - month
    assert _scalar(con, "SELECT count(*) FROM soh WHERE ModifiedDate < OrderDate") == 0


def test_dropped_renamed_and_changed_columns(tables: dict[str, pa.Table]) -> None:
    dropped = inject(tables, ["dropped_column"])[HEADER]
    assert dropped.column_names == [c for c in tables[HEADER].column_names if c != "TotalDue"]
    assert dropped.num_rows == tables[HEADER].num_rows

    renamed = inject(tables, ["renamed_column"])[CUSTOMER]
    names = tables[CUSTOMER].column_names
    assert renamed.column_names == [("Account_Number" if c == "AccountNumber" else c) for c in names]
    assert renamed.column("Account_Number").equals(tables[CUSTOMER].column("AccountNumber"))

    changed = inject(tables, ["changed_column_type"])[HEADER]
    assert changed.column_names == tables[HEADER].column_names
    assert changed.schema.field("TotalDue").type == pa.string()
    text = changed.column("TotalDue").to_pylist()
    assert all(re.fullmatch(r"-?[0-9]+\.[0-9]{2} USD", value) for value in text)
    # The text is the exact amount rounded to cents (never through a float).
    for value, amount in zip(text[:50], tables[HEADER].column("TotalDue").to_pylist()[:50], strict=True):
        assert value == f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)} USD"
    _columns_equal_except(tables[HEADER], changed, {"TotalDue"})


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
@pytest.mark.parametrize(
    ("name", "table", "column"),
    [
        ("null_primary_key", CUSTOMER, "CustomerID"),
        ("dropped_column", HEADER, "TotalDue"),
        ("renamed_column", CUSTOMER, "Account_Number"),
        ("changed_column_type", HEADER, "TotalDue"),
    ],
)
def test_load_validation_refuses_the_written_files(
    tables: dict[str, pa.Table], tmp_path: Path, file_format: str, name: str, table: str, column: str
) -> None:
    write_tables(inject(tables, [name]), tmp_path, file_format)
    with pytest.raises(SourceDataError) as error:
        read_source_folder(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert table in message
    assert column in message


def test_load_validation_messages_say_what_is_wrong(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    def message(name: str, file_format: str) -> str:
        folder = tmp_path / f"{name}-{file_format}"
        write_tables(inject(tables, [name]), folder, file_format)
        with pytest.raises(SourceDataError) as error:
            read_source_folder(folder)
        return str(error.value)

    assert "missing TotalDue" in message("dropped_column", "parquet")
    assert "'Account_Number', expected 'AccountNumber'" in message("renamed_column", "csv")
    assert "USD" in message("changed_column_type", "csv")
    assert "CustomerID cannot be NULL" in message("null_primary_key", "csv")


def test_truncated_load(tables: dict[str, pa.Table]) -> None:
    out = inject(tables, ["truncated_load"], seed=1)
    header, detail = out[HEADER], out[DETAIL]
    assert header.num_rows == round(tables[HEADER].num_rows * 0.02)
    assert header.schema == tables[HEADER].schema
    kept = header.column("SalesOrderID").combine_chunks()
    # The survivors are original rows, in their order, and the newest order is among them.
    original = tables[HEADER].filter(pc.is_in(tables[HEADER].column("SalesOrderID"), value_set=kept))
    assert header.equals(original)
    assert pc.max(header.column("ModifiedDate")).as_py() == AS_OF
    # Exactly the lines of the surviving orders.
    lines = tables[DETAIL].filter(pc.is_in(tables[DETAIL].column("SalesOrderID"), value_set=kept))
    assert detail.equals(lines)
    assert detail.num_rows > 0


def test_extreme_value_keeps_every_money_rule(tables: dict[str, pa.Table], connect: Connect) -> None:
    out = inject(tables, ["extreme_value"], seed=1)
    con = connect(out)
    assert _money_invariant_violations(con) == dict.fromkeys(_money_invariant_violations(con), 0)
    [(customer_id, store_id, lifetime)] = con.execute(
        """SELECT c.CustomerID, c.StoreID, sum(s.TotalDue) FROM soh s JOIN customer c USING (CustomerID)
           GROUP BY ALL HAVING sum(s.TotalDue) > 1000000"""
    ).fetchall()
    assert store_id is not None
    assert 1_000_000 < lifetime < 2_000_000
    assert _scalar(con, "SELECT max(OrderQty) FROM sod") <= 32767
    # One line and one order changed; nothing else.
    line = _changed_rows(tables[DETAIL], out[DETAIL], "OrderQty")
    assert len(line) == 1
    assert list(_changed_rows(tables[DETAIL], out[DETAIL], "LineTotal")) == list(line)
    _columns_equal_except(tables[DETAIL], out[DETAIL], {"OrderQty", "LineTotal"})
    order = _changed_rows(tables[HEADER], out[HEADER], "TotalDue")
    assert len(order) == 1
    assert out[HEADER].column("CustomerID")[int(order[0])].as_py() == customer_id
    _columns_equal_except(tables[HEADER], out[HEADER], {"SubTotal", "TaxAmt", "Freight", "TotalDue"})
    with _connect(tables) as original:  # before, nobody was beyond the limit
        assert _scalar(original, "SELECT max(s) FROM (SELECT sum(TotalDue) s FROM soh GROUP BY CustomerID)") < 1e6


def test_duplicate_customer(tables: dict[str, pa.Table]) -> None:
    before, after = tables[CUSTOMER], inject(tables, ["duplicate_customer"], seed=1)[CUSTOMER]
    assert 1 <= after.num_rows - before.num_rows <= 5
    assert after.slice(0, before.num_rows).equals(before)
    extra = after.slice(before.num_rows)
    copies = before.filter(pc.is_in(before.column("CustomerID"), value_set=extra.column("CustomerID").combine_chunks()))
    assert extra.sort_by("CustomerID").equals(copies.sort_by("CustomerID"))


def test_order_total_mismatch(tables: dict[str, pa.Table], connect: Connect) -> None:
    out = inject(tables, ["order_total_mismatch"], seed=1)
    con = connect(out)
    violations = _money_invariant_violations(con)
    rows = _changed_rows(tables[HEADER], out[HEADER], "SubTotal")
    assert 1 <= len(rows) <= 5
    # Only the comparison with the lines fails; the order is consistent in itself.
    assert violations == {"LineTotal": 0, "SubTotal": len(rows), "TaxAmt": 0, "Freight": 0, "TotalDue": 0}
    diff = pc.subtract(out[HEADER].column("SubTotal").take(rows), tables[HEADER].column("SubTotal").take(rows))
    assert set(diff.to_pylist()) == {Decimal("100.0000")}
    assert list(_changed_rows(tables[HEADER], out[HEADER], "TotalDue")) == list(rows)
    _columns_equal_except(tables[HEADER], out[HEADER], {"SubTotal", "TaxAmt", "Freight", "TotalDue"})


# --- determinism, errors and combinations ------------------------------------------------------


@pytest.mark.parametrize("name", list(FAULTS))
def test_same_seed_gives_identical_tables(tables: dict[str, pa.Table], name: str) -> None:
    first, second = inject(tables, [name], seed=5), inject(tables, [name], seed=5)
    for table in tables:
        assert first[table].equals(second[table])
        assert first[table].schema.equals(second[table].schema)


def test_a_different_seed_may_pick_different_rows(tables: dict[str, pa.Table]) -> None:
    picks = {
        tuple(_changed_rows(tables[HEADER], inject(tables, ["order_total_mismatch"], seed=s)[HEADER], "SubTotal"))
        for s in range(4)
    }
    assert len(picks) > 1


def test_the_same_data_with_the_same_seed_regenerated_gives_the_same_faults(tables: dict[str, pa.Table]) -> None:
    again = generate_tables(SCALE, seed=3, as_of=AS_OF)
    names = ["extreme_value", "negative_total", "malformed_email"]
    first, second = inject(tables, names, seed=9), inject(again, names, seed=9)
    assert all(first[t].equals(second[t]) for t in tables)


def test_unknown_fault_is_named_with_the_valid_ones(tables: dict[str, pa.Table]) -> None:
    with pytest.raises(DataOpsError) as error:
        inject(tables, ["negative_total", "no_such_fault"])
    message = str(error.value)
    assert "'no_such_fault'" in message
    assert all(name in message for name in FAULTS)
    assert "\n" not in message


def test_a_bad_seed_is_refused(tables: dict[str, pa.Table]) -> None:
    with pytest.raises(DataOpsError, match="seed"):
        inject(tables, ["negative_total"], seed=-1)


def test_inject_does_not_mutate_its_input(tables: dict[str, pa.Table]) -> None:
    given = dict(tables)
    pristine = generate_tables(SCALE, seed=3, as_of=AS_OF)
    # Nearly every fault at once: changed_column_type needs the TotalDue that dropped_column removes,
    # and after truncated_load a scale this small may have no store order left for extreme_value.
    inject(given, [n for n in FAULTS if n not in {"truncated_load", "changed_column_type"}], seed=2)
    assert given.keys() == tables.keys()
    assert all(given[t] is tables[t] for t in tables)
    assert all(given[t].equals(pristine[t]) and given[t].schema.equals(pristine[t].schema) for t in tables)


def test_no_faults_changes_nothing(tables: dict[str, pa.Table]) -> None:
    out = inject(tables, [])
    assert all(out[t].equals(tables[t]) for t in tables)


def test_combining_two_faults_applies_both_in_any_order(tables: dict[str, pa.Table], connect: Connect) -> None:
    out = inject(tables, ["negative_total", "duplicate_customer"], seed=4)
    swapped = inject(tables, ["duplicate_customer", "negative_total"], seed=4)
    assert all(out[t].equals(swapped[t]) for t in tables)
    assert out[CUSTOMER].num_rows > tables[CUSTOMER].num_rows
    con = connect(out)
    assert _scalar(con, "SELECT count(*) FROM soh WHERE TotalDue < 0") == 1
    # Each fault picks the same rows alone as combined: it has its own random generator.
    alone = inject(tables, ["negative_total"], seed=4)
    assert out[HEADER].equals(alone[HEADER]) and out[DETAIL].equals(alone[DETAIL])


def test_value_faults_combine_with_a_truncated_load(tables: dict[str, pa.Table]) -> None:
    out = inject(tables, ["truncated_load", "extreme_value", "future_order_date", "orphan_order"], seed=6)
    header = out[HEADER]
    assert header.num_rows == round(tables[HEADER].num_rows * 0.02)
    kept = header.column("SalesOrderID").combine_chunks()
    assert pc.all(pc.is_in(out[DETAIL].column("SalesOrderID"), value_set=kept)).as_py()
    assert pc.max(header.column("OrderDate")).as_py() >= AS_OF + timedelta(days=30)


def test_faults_that_cannot_combine_say_so(tables: dict[str, pa.Table]) -> None:
    with pytest.raises(DataOpsError, match="TotalDue"):
        inject(tables, ["dropped_column", "changed_column_type"])


def test_schema_faulty_tables_no_longer_match_the_contract(tables: dict[str, pa.Table]) -> None:
    out = inject(tables, ["dropped_column", "renamed_column"])
    assert not out[HEADER].schema.equals(SOURCE_TABLES_BY_NAME[HEADER].arrow_schema)
    assert not out[CUSTOMER].schema.equals(SOURCE_TABLES_BY_NAME[CUSTOMER].arrow_schema)
