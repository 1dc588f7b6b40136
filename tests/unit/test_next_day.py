"""The next day's data (`next_day`): the counts asked for, the old rows kept, changed old orders
whose money still adds up and whose ModifiedDate moved, new rows that keep every contract and every
key unique, and the same bytes from the same seed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES
from dataops.sources.generate import generate_tables, next_day, write_tables

DAY_0 = datetime(2026, 11, 30, 18, 0)
DAY_1 = DAY_0 + timedelta(days=1)
APPEND, UPDATE = 2.0, 1.0


@pytest.fixture(scope="module")
def day_0() -> dict[str, pa.Table]:
    return generate_tables(0.2, seed=9, as_of=DAY_0)


@pytest.fixture(scope="module")
def day_1(day_0: dict[str, pa.Table]) -> dict[str, pa.Table]:
    return next_day(day_0, APPEND, UPDATE, seed=9, as_of=DAY_1)


@pytest.fixture(scope="module")
def con(day_0: dict[str, pa.Table], day_1: dict[str, pa.Table]) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for day, tables in (("old", day_0), ("new", day_1)):
        for name, table in tables.items():
            connection.register(f"{day}_{name.split('.')[1].lower()}", table)
    yield connection
    connection.close()


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    return con.execute(sql).fetchall()[0][0]


def test_the_counts_are_what_was_asked(day_0: dict[str, pa.Table], day_1: dict[str, pa.Table]) -> None:
    orders = day_0["Sales.SalesOrderHeader"].num_rows
    newest = pc.max(day_0["Sales.SalesOrderHeader"].column("ModifiedDate"))
    headers = day_1["Sales.SalesOrderHeader"]
    assert headers.num_rows == orders + round(orders * APPEND / 100)
    moved = pc.sum(pc.greater(headers.column("ModifiedDate"), newest)).as_py()
    assert moved == round(orders * APPEND / 100) + round(orders * UPDATE / 100)
    # New customers came with the day (a share of its online orders), each with a person and an e-mail.
    new_customers = day_1["Sales.Customer"].num_rows - day_0["Sales.Customer"].num_rows
    assert new_customers > 0
    for name in ("Person.Person", "Person.EmailAddress"):
        assert day_1[name].num_rows - day_0[name].num_rows == new_customers, name
    for name in ("Sales.Store", "Sales.SalesTerritory", *(t for t in day_0 if t.startswith("Production."))):
        assert day_1[name].equals(day_0[name]), name


def test_old_rows_stay_but_for_the_changed_orders(con: duckdb.DuckDBPyConnection) -> None:
    changed = _one(
        con,
        "select count(*) from old_salesorderheader o join new_salesorderheader n using (SalesOrderID) "
        "where o.TotalDue <> n.TotalDue or o.ModifiedDate <> n.ModifiedDate or o.RevisionNumber <> n.RevisionNumber",
    )
    assert changed == round(_one(con, "select count(*) from old_salesorderheader") * UPDATE / 100)
    # A changed order: one more unit on one line, a higher total, a later ModifiedDate, the next revision.
    assert (
        _one(
            con,
            "select count(*) from old_salesorderheader o join new_salesorderheader n using (SalesOrderID) "
            "where o.ModifiedDate <> n.ModifiedDate and not (n.TotalDue > o.TotalDue and "
            "n.RevisionNumber = o.RevisionNumber + 1 and n.ModifiedDate > (select max(ModifiedDate) "
            "from old_salesorderheader) and n.OrderDate = o.OrderDate and n.CustomerID = o.CustomerID)",
        )
        == 0
    )
    lines = con.execute(
        "select n.SalesOrderID, n.OrderQty - o.OrderQty, n.ModifiedDate = h.ModifiedDate from old_salesorderdetail o "
        "join new_salesorderdetail n using (SalesOrderDetailID) "
        "join new_salesorderheader h on h.SalesOrderID = n.SalesOrderID "
        "where o.OrderQty <> n.OrderQty or o.LineTotal <> n.LineTotal or o.ModifiedDate <> n.ModifiedDate"
    ).fetchall()
    assert len(lines) == changed and len({order for order, _, _ in lines}) == changed
    assert all(more == 1 and same_moment for _, more, same_moment in lines)


def test_every_row_keeps_the_contract(day_1: dict[str, pa.Table]) -> None:
    assert list(day_1) == [t.qualified_name for t in SOURCE_TABLES]
    for table in SOURCE_TABLES:
        got = day_1[table.qualified_name]
        assert got.schema == table.arrow_schema, table.qualified_name
        for column in table.columns:
            if not column.nullable:
                assert got.column(column.name).null_count == 0, f"{table.qualified_name}.{column.name}"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("salesorderheader", "SalesOrderID"),
        ("salesorderheader", "SalesOrderNumber"),
        ("salesorderheader", "rowguid"),
        ("salesorderdetail", "SalesOrderDetailID"),
        ("salesorderdetail", "rowguid"),
        ("customer", "CustomerID"),
        ("customer", "AccountNumber"),
        ("person", "BusinessEntityID"),
        ("emailaddress", "EmailAddressID"),
        ("emailaddress", "EmailAddress"),
    ],
)
def test_keys_stay_unique(con: duckdb.DuckDBPyConnection, table: str, key: str) -> None:
    assert _one(con, f"select count(*) - count(distinct {key}) from new_{table}") == 0


@pytest.mark.parametrize(
    ("child", "column", "parent", "key"),
    [
        ("salesorderheader", "CustomerID", "customer", "CustomerID"),
        ("salesorderheader", "SalesPersonID", "person where PersonType = 'SP'", "BusinessEntityID"),
        ("salesorderdetail", "SalesOrderID", "salesorderheader", "SalesOrderID"),
        ("salesorderdetail", "ProductID", "product where ListPrice > 0", "ProductID"),
        ("customer", "PersonID", "person", "BusinessEntityID"),
        ("customer", "StoreID", "store", "BusinessEntityID"),
        ("emailaddress", "BusinessEntityID", "person", "BusinessEntityID"),
        # New persons never take a store's BusinessEntityID.
        (
            "person",
            "BusinessEntityID",
            "person where BusinessEntityID not in (select BusinessEntityID from new_store)",
            "BusinessEntityID",
        ),
    ],
)
def test_foreign_keys_resolve(con: duckdb.DuckDBPyConnection, child: str, column: str, parent: str, key: str) -> None:
    table, *condition = parent.split(" ", 1)
    orphans = _one(
        con,
        f"select count(*) from new_{child} where {column} is not null and {column} not in "
        f"(select {key} from new_{table} {condition[0] if condition else ''})",
    )
    assert orphans == 0


def test_money_adds_up_on_every_order(con: duckdb.DuckDBPyConnection) -> None:
    line = "LineTotal <> OrderQty * UnitPrice * (1 - UnitPriceDiscount)"
    assert _one(con, f"select count(*) from new_salesorderdetail where {line}") == 0
    assert (
        _one(
            con,
            "select count(*) from new_salesorderheader join (select SalesOrderID, sum(LineTotal) as lines "
            "from new_salesorderdetail group by 1) using (SalesOrderID) where SubTotal <> round(lines, 4) "
            "or TaxAmt <> round(SubTotal * 0.08, 4) or Freight <> round(SubTotal * 0.025, 4) "
            "or TotalDue <> SubTotal + TaxAmt + Freight",
        )
        == 0
    )


def test_the_new_orders_are_of_the_day_for_old_and_new_customers(con: duckdb.DuckDBPyConnection) -> None:
    new_orders = "new_salesorderheader where SalesOrderID > (select max(SalesOrderID) from old_salesorderheader)"
    newest = "(select max(ModifiedDate) from old_salesorderheader)"
    assert _one(con, f"select count(*) from {new_orders} and not (ModifiedDate > {newest} and ShipDate is null)") == 0
    # Not shipped yet, so in process (status 1), never "shipped" (5) without a ship date.
    assert _one(con, f"select count(*) from {new_orders} and Status <> 1") == 0
    assert _one(con, f"select max(ModifiedDate) from {new_orders}") == DAY_1
    assert _one(con, f"select count(*) from {new_orders} and OrderDate <> date_trunc('day', ModifiedDate)") == 0
    old, new, online, reseller = con.execute(
        f"select count(*) filter (where CustomerID <= (select max(CustomerID) from old_customer)), "
        f"count(*) filter (where CustomerID > (select max(CustomerID) from old_customer)), "
        f"count(*) filter (where OnlineOrderFlag), count(*) filter (where not OnlineOrderFlag) from {new_orders}"
    ).fetchone()
    assert old > 0 and new > 0 and online > 0 and reseller > 0
    assert _one(
        con, "select min(ModifiedDate) from new_customer where CustomerID > (select max(CustomerID) from old_customer)"
    ) > _one(con, "select max(ModifiedDate) from old_customer")


def _digest(tables: dict[str, pa.Table], folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(write_tables(tables, folder, "parquet")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_data(
    day_0: dict[str, pa.Table], day_1: dict[str, pa.Table], tmp_path: Path
) -> None:
    again = next_day(day_0, APPEND, UPDATE, seed=9, as_of=DAY_1)
    assert _digest(again, tmp_path / "again") == _digest(day_1, tmp_path / "first")
    other = next_day(day_0, APPEND, UPDATE, seed=10, as_of=DAY_1)
    assert not other["Sales.SalesOrderHeader"].equals(day_1["Sales.SalesOrderHeader"])
    # The day after next is another day, not this one again.
    day_2 = next_day(day_1, APPEND, UPDATE, seed=9, as_of=DAY_1 + timedelta(days=1))
    assert day_2["Sales.SalesOrderHeader"].num_rows > day_1["Sales.SalesOrderHeader"].num_rows


def test_nothing_asked_is_nothing_changed(day_0: dict[str, pa.Table]) -> None:
    same = next_day(day_0, 0, 0, seed=9, as_of=DAY_1)
    assert all(same[name].equals(day_0[name]) for name in day_0)


@pytest.mark.parametrize(
    ("append", "update", "as_of", "message"),
    [
        (-1, 0, DAY_1, "The append percentage must be between 0 and 100 (of the orders), not -1."),
        (1, 101, DAY_1, "The update percentage must be between 0 and 100 (of the orders), not 101."),
        ("1", 0, DAY_1, "The append percentage must be a number, not '1'."),
        (1, 0, DAY_0, "The data is current up to 2026-11-30 18:00:00: the next day's as_of must be after it."),
    ],
)
def test_a_bad_request_is_one_line(
    day_0: dict[str, pa.Table], append: object, update: object, as_of: datetime, message: str
) -> None:
    with pytest.raises(DataOpsError) as raised:
        next_day(day_0, append, update, seed=9, as_of=as_of)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_all_ten_tables_are_needed(day_0: dict[str, pa.Table]) -> None:
    with pytest.raises(DataOpsError, match=r"missing: Sales\.Store\.$"):
        next_day({k: v for k, v in day_0.items() if k != "Sales.Store"}, 1, seed=9, as_of=DAY_1)
