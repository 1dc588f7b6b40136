"""The synthetic AdventureWorks generator: contract, determinism, shapes and exact invariants."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType
from dataops.sources.generate import generate_tables, write_tables
from dataops.warehouse.duckdb import SQL_TYPES as DUCKDB_TYPES

AS_OF = datetime(2025, 6, 15, 12, 30, 45, 123000)
SMALL_SCALE = 0.2

_VIEWS = {
    "customer": "Sales.Customer",
    "soh": "Sales.SalesOrderHeader",
    "sod": "Sales.SalesOrderDetail",
    "store": "Sales.Store",
    "territory": "Sales.SalesTerritory",
    "person": "Person.Person",
    "email": "Person.EmailAddress",
    "product": "Production.Product",
    "subcategory": "Production.ProductSubcategory",
    "category": "Production.ProductCategory",
}


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return generate_tables(SMALL_SCALE, seed=7, as_of=AS_OF)


def _connect(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for view, name in _VIEWS.items():
        con.register(view, tables[name])
    return con


@pytest.fixture(scope="module")
def con(tables: dict[str, pa.Table]) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = _connect(tables)
    yield connection
    connection.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    rows = con.execute(sql).fetchall()
    assert len(rows) == 1
    return rows[0][0]


# --- contract -----------------------------------------------------------------------------------


def test_returns_the_ten_tables_in_contract_order(tables: dict[str, pa.Table]) -> None:
    assert list(tables) == [t.qualified_name for t in SOURCE_TABLES]


@pytest.mark.parametrize("name", [t.qualified_name for t in SOURCE_TABLES])
def test_schema_equals_the_contract(tables: dict[str, pa.Table], name: str) -> None:
    table = tables[name]
    contract = SOURCE_TABLES_BY_NAME[name]
    assert table.schema.equals(contract.arrow_schema, check_metadata=True)
    assert table.column_names == contract.column_names
    for column in contract.columns:
        assert table.schema.field(column.name).nullable == column.nullable
        if not column.nullable:
            assert table.column(column.name).null_count == 0, column.name
    assert table.num_rows > 0


def test_tiny_scale_still_gives_consistent_tables() -> None:
    tiny = generate_tables(0.0001, seed=1, as_of=AS_OF)
    for name, table in tiny.items():
        assert table.schema.equals(SOURCE_TABLES_BY_NAME[name].arrow_schema)
        assert table.num_rows >= 2, name
    con = _connect(tiny)
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM soh WHERE CustomerID NOT IN (SELECT CustomerID FROM customer)",
        )
        == 0
    )
    assert _scalar(con, "SELECT count(*) FROM soh WHERE NOT OnlineOrderFlag") >= 2


# --- sizes -------------------------------------------------------------------------------------


def test_scale_1_has_the_row_counts_of_the_real_sample() -> None:
    full = generate_tables(1, seed=42, as_of=AS_OF)
    real = {
        "Sales.Customer": 19_820,
        "Sales.SalesOrderHeader": 31_465,
        "Sales.SalesOrderDetail": 121_317,
        "Sales.Store": 701,
        "Sales.SalesTerritory": 10,
        "Person.Person": 19_972,
        "Person.EmailAddress": 19_972,
        "Production.Product": 504,
        "Production.ProductSubcategory": 37,
        "Production.ProductCategory": 4,
    }
    for name, expected in real.items():
        assert abs(full[name].num_rows - expected) <= 0.03 * expected, name
    con = _connect(full)
    kinds = dict(
        con.execute(
            """SELECT CASE WHEN StoreID IS NULL THEN 'individual'
                           WHEN PersonID IS NULL THEN 'store only' ELSE 'store contact' END,
                      count(*)
               FROM customer GROUP BY ALL"""
        ).fetchall()
    )
    assert kinds == {"individual": 18_484, "store contact": 635, "store only": 701}
    flags = dict(con.execute("SELECT OnlineOrderFlag, count(*) FROM soh GROUP BY ALL").fetchall())
    assert flags == {True: 27_659, False: 3_806}
    assert _scalar(con, "SELECT count(DISTINCT CustomerID) FROM soh") == 19_119
    person_types = dict(con.execute("SELECT PersonType, count(*) FROM person GROUP BY ALL").fetchall())
    assert person_types["IN"] == 18_484
    assert person_types["SC"] >= 635
    assert {"EM", "SP", "VC", "GC"} <= set(person_types)


def test_scale_must_be_positive_and_sane() -> None:
    for scale in (0, -1, 1000.5, 1e9, float("nan"), float("inf")):
        with pytest.raises(DataOpsError, match="scale"):
            generate_tables(scale, as_of=AS_OF)
    with pytest.raises(DataOpsError, match="scale"):
        generate_tables("1", as_of=AS_OF)  # type: ignore[arg-type]


def test_bad_seed_and_as_of_are_refused() -> None:
    with pytest.raises(DataOpsError, match="seed"):
        generate_tables(0.01, seed=-1, as_of=AS_OF)
    with pytest.raises(DataOpsError, match="as_of"):
        generate_tables(0.01, as_of=datetime(1999, 1, 1))


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_and_as_of_give_identical_tables_and_files(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    again = generate_tables(SMALL_SCALE, seed=7, as_of=AS_OF)
    for name, table in tables.items():
        assert table.equals(again[name]), name
    for file_format in ("parquet", "csv"):
        first = write_tables(tables, tmp_path / "a" / file_format, file_format)
        second = write_tables(again, tmp_path / "b" / file_format, file_format)
        assert [p.name for p in first] == [p.name for p in second]
        for a, b in zip(first, second, strict=True):
            assert a.read_bytes() == b.read_bytes(), a.name


def test_a_different_seed_gives_different_data(tables: dict[str, pa.Table]) -> None:
    other = generate_tables(SMALL_SCALE, seed=8, as_of=AS_OF)
    for name in (
        "Sales.Customer",
        "Sales.SalesOrderHeader",
        "Sales.SalesOrderDetail",
        "Person.Person",
    ):
        assert not tables[name].equals(other[name]), name


def test_default_as_of_is_now_in_utc_to_the_second() -> None:
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    generated = generate_tables(0.001, seed=3)
    after = datetime.now(UTC).replace(tzinfo=None)
    newest = pc.max(generated["Sales.SalesOrderHeader"].column("ModifiedDate")).as_py()
    assert before <= newest <= after
    assert newest.microsecond == 0
    assert pc.max(generated["Sales.Customer"].column("ModifiedDate")).as_py() == newest


def test_an_aware_as_of_is_converted_to_naive_utc() -> None:
    aware = datetime(2025, 6, 15, 14, 30, 45, tzinfo=UTC).astimezone()
    generated = generate_tables(0.001, seed=3, as_of=aware)
    newest = pc.max(generated["Sales.SalesOrderHeader"].column("ModifiedDate")).as_py()
    assert newest == datetime(2025, 6, 15, 14, 30, 45)


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "key"),
    [
        ("customer", "CustomerID"),
        ("soh", "SalesOrderID"),
        ("sod", "SalesOrderID, SalesOrderDetailID"),
        ("sod", "SalesOrderDetailID"),
        ("store", "BusinessEntityID"),
        ("territory", "TerritoryID"),
        ("person", "BusinessEntityID"),
        ("email", "BusinessEntityID, EmailAddressID"),
        ("email", "EmailAddress"),
        ("product", "ProductID"),
        ("product", "Name"),
        ("product", "ProductNumber"),
        ("subcategory", "ProductSubcategoryID"),
        ("category", "ProductCategoryID"),
        ("soh", "SalesOrderNumber"),
        ("customer", "AccountNumber"),
        *[(view, "rowguid") for view in _VIEWS],
    ],
)
def test_keys_are_unique(con: duckdb.DuckDBPyConnection, view: str, key: str) -> None:
    duplicates = _scalar(con, f"SELECT count(*) FROM (SELECT {key} FROM {view} GROUP BY ALL HAVING count(*) > 1)")
    assert duplicates == 0


@pytest.mark.parametrize(
    ("child", "column", "parent", "key"),
    [
        ("soh", "CustomerID", "customer", "CustomerID"),
        ("soh", "TerritoryID", "territory", "TerritoryID"),
        ("soh", "SalesPersonID", "person WHERE PersonType = 'SP'", "BusinessEntityID"),
        ("sod", "SalesOrderID", "soh", "SalesOrderID"),
        ("sod", "ProductID", "product", "ProductID"),
        ("customer", "PersonID", "person", "BusinessEntityID"),
        ("customer", "StoreID", "store", "BusinessEntityID"),
        ("customer", "TerritoryID", "territory", "TerritoryID"),
        ("store", "SalesPersonID", "person WHERE PersonType = 'SP'", "BusinessEntityID"),
        ("email", "BusinessEntityID", "person", "BusinessEntityID"),
        ("product", "ProductSubcategoryID", "subcategory", "ProductSubcategoryID"),
        ("subcategory", "ProductCategoryID", "category", "ProductCategoryID"),
    ],
)
def test_foreign_keys_resolve(con: duckdb.DuckDBPyConnection, child: str, column: str, parent: str, key: str) -> None:
    orphans = _scalar(
        con,
        f"SELECT count(*) FROM {child} WHERE {column} IS NOT NULL AND {column} NOT IN (SELECT {key} FROM {parent})",
    )
    assert orphans == 0


def test_stores_and_persons_share_the_business_entity_ids_without_overlap(
    con: duckdb.DuckDBPyConnection,
) -> None:
    assert _scalar(con, "SELECT count(*) FROM store JOIN person USING (BusinessEntityID)") == 0
    assert _scalar(con, "SELECT count(*) FROM person") == _scalar(con, "SELECT count(*) FROM email")


# --- shapes ------------------------------------------------------------------------------------


def test_customer_kinds_and_their_orders(con: duckdb.DuckDBPyConnection) -> None:
    assert _scalar(con, "SELECT min(CustomerID) FROM customer") == 1
    assert _scalar(con, "SELECT count(*) FROM customer WHERE PersonID IS NULL AND StoreID IS NULL") == 0
    # Store-only customers never order; every customer with a person orders at least once.
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM soh JOIN customer USING (CustomerID) WHERE customer.PersonID IS NULL",
        )
        == 0
    )
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM customer WHERE PersonID IS NOT NULL "
            "AND CustomerID NOT IN (SELECT CustomerID FROM soh)",
        )
        == 0
    )
    # Individuals are IN persons, store contacts SC persons.
    mismatched = _scalar(
        con,
        """SELECT count(*) FROM customer JOIN person ON PersonID = BusinessEntityID
           WHERE PersonType <> CASE WHEN StoreID IS NULL THEN 'IN' ELSE 'SC' END""",
    )
    assert mismatched == 0
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM customer WHERE AccountNumber <> 'AW' || lpad(CustomerID::VARCHAR, 8, '0')",
        )
        == 0
    )


def test_online_and_reseller_orders(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        """SELECT soh.OnlineOrderFlag, c.StoreID IS NULL AS individual,
                  soh.SalesPersonID IS NULL AS no_sales_person, soh.ShipMethodID,
                  min(n), max(n), count(*)
           FROM soh JOIN customer c USING (CustomerID)
           JOIN (SELECT SalesOrderID, count(*) AS n FROM sod GROUP BY 1) USING (SalesOrderID)
           GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    assert len(rows) == 2
    reseller, online = rows
    assert reseller[:4] == (False, False, False, 5)
    assert online[:4] == (True, True, True, 1)
    assert online[4] >= 1 and online[5] <= 3
    assert reseller[5] > 3
    assert 5 < online[6] / reseller[6] < 9  # real: 27,659 / 3,806
    # Reseller orders are larger and sold by the store's sales person.
    avg = dict(con.execute("SELECT OnlineOrderFlag, avg(SubTotal) FROM soh GROUP BY 1").fetchall())
    assert avg[False] > 5 * avg[True]
    assert (
        _scalar(
            con,
            """SELECT count(*) FROM soh JOIN customer c USING (CustomerID)
               JOIN store s ON s.BusinessEntityID = c.StoreID
               WHERE soh.SalesPersonID <> s.SalesPersonID""",
        )
        == 0
    )
    assert _scalar(con, "SELECT min(SalesOrderID) FROM soh") == 43_659
    assert _scalar(con, "SELECT count(*) FROM soh WHERE SalesOrderNumber <> 'SO' || SalesOrderID") == 0
    assert _scalar(con, "SELECT count(*) FROM soh WHERE Status <> 5") == 0
    # Lines of an order name distinct products.
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM (SELECT 1 FROM sod GROUP BY SalesOrderID, ProductID HAVING count(*) > 1)",
        )
        == 0
    )
    assert _scalar(con, "SELECT count(*) FROM sod WHERE OrderQty < 1") == 0


def test_products(con: duckdb.DuckDBPyConnection) -> None:
    assert _scalar(con, "SELECT count(*) FROM product WHERE ProductSubcategoryID IS NULL") > 100
    sold_without_price = _scalar(
        con,
        "SELECT count(*) FROM product WHERE ProductID IN (SELECT ProductID FROM sod) AND ListPrice <= 0",
    )
    assert sold_without_price == 0
    # Online customers pay list price; resellers pay trade price, 60% of list rounded to 1e-4.
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM sod JOIN soh USING (SalesOrderID) JOIN product USING (ProductID) "
            "WHERE UnitPrice <> CASE WHEN OnlineOrderFlag THEN ListPrice "
            "ELSE round(ListPrice * 0.6, 4) END",
        )
        == 0
    )
    assert _scalar(con, "SELECT count(*) FROM product WHERE StandardCost > ListPrice") == 0
    assert _scalar(con, "SELECT count(DISTINCT ProductCategoryID) FROM subcategory") == 4
    # Nothing is sold outside its selling period.
    assert (
        _scalar(
            con,
            """SELECT count(*) FROM sod JOIN soh USING (SalesOrderID) JOIN product USING (ProductID)
               WHERE OrderDate < SellStartDate OR OrderDate > coalesce(SellEndDate, OrderDate)""",
        )
        == 0
    )


def test_strings(tables: dict[str, pa.Table]) -> None:
    guid = r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$"
    for name, table in tables.items():
        assert pc.all(pc.match_substring_regex(table.column("rowguid"), guid)).as_py(), name
    emails = tables["Person.EmailAddress"].column("EmailAddress")
    assert pc.all(pc.match_substring_regex(emails, r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")).as_py()
    tracking = tables["Sales.SalesOrderDetail"].column("CarrierTrackingNumber")
    assert pc.all(pc.match_substring_regex(tracking, r"^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{2}$")).as_py()
    assert 0 < tracking.null_count < len(tracking)
    for column in ("FirstName", "LastName"):
        assert pc.min(pc.utf8_length(tables["Person.Person"].column(column))).as_py() > 0


# --- money -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.001, SMALL_SCALE])
def test_money_invariants_hold_exactly_on_every_row(tables: dict[str, pa.Table], scale: float) -> None:
    generated = tables if scale == SMALL_SCALE else generate_tables(scale, seed=11, as_of=AS_OF)
    con = _connect(generated)
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM sod WHERE LineTotal <> OrderQty * UnitPrice * (1 - UnitPriceDiscount)",
        )
        == 0
    )
    assert (
        _scalar(
            con,
            "SELECT count(*) FROM sod WHERE UnitPriceDiscount "
            "NOT IN (0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.35, 0.40)",
        )
        == 0
    )
    assert _scalar(con, "SELECT count(*) FROM sod WHERE UnitPrice <= 0 OR LineTotal <= 0") == 0
    bad_subtotal = _scalar(
        con,
        """SELECT count(*) FROM soh
           JOIN (SELECT SalesOrderID, sum(LineTotal) AS lines FROM sod GROUP BY 1)
           USING (SalesOrderID)
           WHERE SubTotal <> round(lines, 4)""",
    )
    assert bad_subtotal == 0
    assert _scalar(con, "SELECT count(*) FROM soh WHERE TaxAmt <> round(SubTotal * 0.08, 4)") == 0
    assert _scalar(con, "SELECT count(*) FROM soh WHERE Freight <> round(SubTotal * 0.025, 4)") == 0
    assert _scalar(con, "SELECT count(*) FROM soh WHERE TotalDue <> SubTotal + TaxAmt + Freight") == 0
    # Discounts actually occur, and a line with a discount still satisfies the formula above.
    assert _scalar(con, "SELECT count(*) FROM sod WHERE UnitPriceDiscount > 0") > 0


def test_money_columns_are_exact_decimals(tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        for column in SOURCE_TABLES_BY_NAME[name].columns:
            if column.type in (ColumnType.MONEY, ColumnType.LINE_TOTAL, ColumnType.WEIGHT):
                assert pa.types.is_decimal(table.schema.field(column.name).type)
    # A large exact sum: decimals keep every digit.
    detail = tables["Sales.SalesOrderDetail"]
    total = pc.sum(detail.column("LineTotal")).as_py()
    header_total = pc.sum(tables["Sales.SalesOrderHeader"].column("SubTotal")).as_py()
    assert abs(total - header_total) <= 0.00005 * tables["Sales.SalesOrderHeader"].num_rows


# --- dates -------------------------------------------------------------------------------------


def test_dates_are_relative_to_as_of(con: duckdb.DuckDBPyConnection) -> None:
    as_of = f"TIMESTAMP '{AS_OF.isoformat(sep=' ')}'"
    assert _scalar(con, "SELECT max(ModifiedDate) FROM soh") == AS_OF
    assert _scalar(con, "SELECT max(ModifiedDate) FROM customer") == AS_OF
    assert _scalar(con, f"SELECT min(ModifiedDate) >= {as_of} - INTERVAL 31 DAY FROM customer")
    newest = _scalar(con, "SELECT ModifiedDate FROM soh ORDER BY SalesOrderID DESC LIMIT 1")
    assert newest == AS_OF
    # No date after as_of, except DueDate, which is in the future for the newest orders.
    for view, table in _VIEWS.items():
        columns = [
            c.name
            for c in SOURCE_TABLES_BY_NAME[table].columns
            if c.type is ColumnType.DATETIME and c.name != "DueDate"
        ]
        for column in columns:
            later = _scalar(con, f"SELECT count(*) FROM {view} WHERE {column} > {as_of}")
            earlier = _scalar(con, f"SELECT count(*) FROM {view} WHERE {column} < DATE '2000-01-01'")
            assert (later, earlier) == (0, 0), f"{table}.{column}"
    [span] = con.execute("SELECT min(OrderDate), max(OrderDate) FROM soh").fetchall()
    assert span[1] == datetime(AS_OF.year, AS_OF.month, AS_OF.day)
    assert timedelta(days=2 * 365) < span[1] - span[0] <= timedelta(days=3 * 365 + 2)
    checks = {
        "OrderDate is midnight": "OrderDate <> date_trunc('day', OrderDate)",
        "DueDate": "DueDate <> OrderDate + INTERVAL 12 DAY",
        "ShipDate": "ShipDate IS NOT NULL AND ShipDate <> OrderDate + INTERVAL 7 DAY",
        "unshipped only if too new": f"ShipDate IS NULL AND OrderDate + INTERVAL 7 DAY <= {as_of}",
        "ModifiedDate": "ModifiedDate < OrderDate",
    }
    for label, condition in checks.items():
        assert _scalar(con, f"SELECT count(*) FROM soh WHERE {condition}") == 0, label
    assert _scalar(con, "SELECT count(*) FROM soh WHERE ShipDate IS NULL") > 0
    # Later orders have larger IDs.
    assert (
        _scalar(
            con,
            """SELECT count(*) FROM (
                   SELECT OrderDate < lag(OrderDate) OVER (ORDER BY SalesOrderID) AS back FROM soh
               ) WHERE back""",
        )
        == 0
    )


# --- files -------------------------------------------------------------------------------------


def test_parquet_files_keep_the_contract(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    paths = write_tables(tables, out)
    assert [p.name for p in paths] == [f"{t.qualified_name}.parquet" for t in SOURCE_TABLES]
    for path, (name, table) in zip(paths, tables.items(), strict=True):
        back = pq.read_table(path)
        assert back.schema.equals(SOURCE_TABLES_BY_NAME[name].arrow_schema)
        assert back.equals(table)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files


def test_csv_round_trips_through_duckdb(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    paths = write_tables(tables, tmp_path, "csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    con = _connect(tables)
    for path, (name, table) in zip(paths, tables.items(), strict=True):
        contract = SOURCE_TABLES_BY_NAME[name]
        assert path.name == f"{name}.csv"
        data = path.read_bytes()
        assert data.startswith((",".join(contract.column_names) + "\r\n").encode())
        assert data.count(b"\r\n") >= table.num_rows + 1
        types = ", ".join(f"'{c.name}': '{DUCKDB_TYPES[c.type]}'" for c in contract.columns)
        source = (
            f"read_csv('{path}', header = true, delim = ',', quote = '\"', escape = '\"', "
            f"columns = {{{types}}}, timestampformat = '%Y-%m-%d %H:%M:%S.%g')"
        )
        header = [d[0] for d in con.execute(f"SELECT * FROM {source} LIMIT 0").description]
        assert header == contract.column_names
        con.register("generated", table)
        assert _scalar(con, f"SELECT count(*) FROM {source}") == table.num_rows
        difference = _scalar(con, f"SELECT count(*) FROM (SELECT * FROM generated EXCEPT ALL SELECT * FROM {source})")
        assert difference == 0, name
        con.unregister("generated")
    # Auto-detection reads the header too.
    detected = con.execute(f"SELECT * FROM read_csv('{paths[0]}') LIMIT 0").description
    assert [d[0] for d in detected] == SOURCE_TABLES[0].column_names


def test_csv_text_format(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    paths = {p.name: p for p in write_tables(tables, tmp_path, "csv")}
    detail = paths["Sales.SalesOrderDetail.csv"].read_bytes().decode("utf-8").split("\r\n")
    first = detail[1].split(",")
    assert re.fullmatch(r"\d+\.\d{4}", first[6])  # UnitPrice
    assert re.fullmatch(r"\d+\.\d{6}", first[8])  # LineTotal
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", first[10])
    header = paths["Sales.SalesOrderHeader.csv"].read_bytes().decode("utf-8").split("\r\n")[1]
    assert header.split(",")[6] in {"0", "1"}  # OnlineOrderFlag as a bit
    product = paths["Production.Product.csv"].read_bytes().decode("utf-8")
    assert re.search(r'^\d+,"[^"]+, [^"]+",', product, re.MULTILINE)  # quoted when it has a comma
    assert re.search(r"^\d+,[^,]+,[^,]+,[01],0,,", product, re.MULTILINE)  # NULL Color is empty
    store = paths["Sales.Store.csv"].read_bytes().decode("utf-8")
    assert '"<StoreSurvey xmlns=""http://' in store  # quotes inside a value are doubled


def test_unknown_file_format_is_refused(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    with pytest.raises(DataOpsError, match="format"):
        write_tables(tables, tmp_path / "x", "xlsx")
    assert not (tmp_path / "x").exists()


def test_strings_too_large_for_one_arrow_array_are_chunked(
    tables: dict[str, pa.Table], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scale 1000 needs more than 2 GiB of GUID text; shrink the limit to exercise that path.
    monkeypatch.setattr("dataops.sources.generate._MAX_STRING_BYTES", 36 * 1000)
    chunked = generate_tables(SMALL_SCALE, seed=7, as_of=AS_OF)
    detail = chunked["Sales.SalesOrderDetail"]
    assert detail.column("rowguid").num_chunks > 1
    assert detail.schema.equals(SOURCE_TABLES_BY_NAME["Sales.SalesOrderDetail"].arrow_schema)
    for name, table in chunked.items():
        assert table.equals(tables[name]), name
    csv_a = write_tables(chunked, tmp_path / "a", "csv")
    csv_b = write_tables(tables, tmp_path / "b", "csv")
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(csv_a, csv_b, strict=True))


def test_written_files_get_the_usual_permissions(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for file_format in ("parquet", "csv"):
        for path in write_tables(tables, tmp_path / file_format, file_format):
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_an_unwritable_output_directory_is_a_clear_error(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataOpsError, match="output directory"):
        write_tables(tables, blocker / "out")


def test_a_write_that_fails_half_way_leaves_the_folder_as_it_was(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    """Nothing is renamed into place before every file is written: a failure on the third table
    (here an object that is no table, as a full disk would fail it) keeps the first day whole."""
    write_tables(tables, tmp_path, "csv")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    names = list(tables)
    broken: dict[str, pa.Table] = {names[0]: tables[names[0]].slice(0, 1), names[1]: tables[names[1]].slice(0, 1)}
    broken[names[2]] = "not a table"  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        write_tables(broken, tmp_path, "csv")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
