"""The PostgreSQL warehouse against a real server (tests/postgres_server.py): exact loads, atomic
replacement (a bad row, a killed connection), dbt views kept, read-only queries, clear errors."""

from __future__ import annotations

import socket
from datetime import datetime
from decimal import Decimal

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME
from dataops.sources.generate import generate_tables
from dataops.warehouse import connect
from dataops.warehouse.postgres import PostgresWarehouse

pytestmark = pytest.mark.integration

AS_OF = datetime(2024, 6, 30, 12, 0, 0)
NAMES = [t.qualified_name for t in SOURCE_TABLES]


def _tables(scale: float, seed: int) -> dict[str, pa.Table]:
    return generate_tables(scale, seed=seed, as_of=AS_OF)


def _relation(name: str) -> str:
    table = SOURCE_TABLES_BY_NAME[name]
    return f'"{table.schema}"."{table.name}"'


def _snapshot(warehouse: PostgresWarehouse) -> dict[str, tuple[int, str]]:
    """Rows and a checksum of every row of every source table."""
    return {
        name: warehouse.read_only_query(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {_relation(name)} t"
        ).rows[0]
        for name in NAMES
    }


def _admin(settings: Settings) -> psycopg2.extensions.connection:
    fields = settings.connection()
    connection = psycopg2.connect(**{k: fields[k] for k in ("host", "port", "user", "password", "dbname")})
    connection.autocommit = True
    return connection


def _with_null(table: pa.Table, column: str, row: int) -> pa.Table:
    index = table.schema.get_field_index(column)
    values = table.column(index)
    mask = pa.array([i == row for i in range(table.num_rows)])
    return table.set_column(index, table.schema.field(index), pc.if_else(mask, None, values))


def test_load_is_exact(postgres_settings: Settings) -> None:
    warehouse = connect(postgres_settings)
    assert isinstance(warehouse, PostgresWarehouse)
    assert warehouse.missing_source_tables() == NAMES
    tables = _tables(1, seed=3)

    warehouse.replace_source_tables(tables)

    assert warehouse.missing_source_tables() == []
    assert warehouse.row_counts(NAMES) == {name: t.num_rows for name, t in tables.items()}
    orders = tables["Sales.SalesOrderHeader"]
    total = warehouse.read_only_query('SELECT sum("TotalDue") FROM "Sales"."SalesOrderHeader"').rows[0][0]
    assert isinstance(total, Decimal)
    assert total == pc.sum(orders.column("TotalDue")).as_py()
    line_total = warehouse.read_only_query('SELECT sum("LineTotal") FROM "Sales"."SalesOrderDetail"').rows[0][0]
    assert line_total == pc.sum(tables["Sales.SalesOrderDetail"].column("LineTotal")).as_py()

    # Whole rows, NULLs, booleans, timestamps and decimal(8,2) included, come back as they went in.
    products = warehouse.read_only_query('SELECT * FROM "Production"."Product" ORDER BY "ProductID"')
    expected = tables["Production.Product"].sort_by("ProductID")
    assert products.columns == expected.column_names
    assert products.rows == [tuple(row.values()) for row in expected.to_pylist()]
    assert any(None in row for row in products.rows)
    spots = [0, orders.num_rows // 2, orders.num_rows - 1]
    ids = [orders.column("SalesOrderID")[i].as_py() for i in spots]
    got = warehouse.read_only_query(
        f'SELECT * FROM "Sales"."SalesOrderHeader" WHERE "SalesOrderID" IN ({", ".join(map(str, ids))}) '
        'ORDER BY "SalesOrderID"'
    ).rows
    assert got == sorted((tuple(orders.slice(i, 1).to_pylist()[0].values()) for i in spots), key=lambda r: r[0])
    assert isinstance(got[0][2], datetime)

    # The DDL follows the contract: PostgreSQL types and NOT NULL where the contract says so.
    columns = warehouse.read_only_query(
        "SELECT table_schema || '.' || table_name, column_name, is_nullable, "
        "format_type(a.atttypid, a.atttypmod) FROM information_schema.columns i "
        "JOIN pg_attribute a ON a.attrelid = format('%I.%I', table_schema, table_name)::regclass "
        "AND a.attname = i.column_name WHERE table_schema IN ('Sales', 'Person', 'Production')"
    ).rows
    declared = {(table, column): (nullable == "YES", type_) for table, column, nullable, type_ in columns}
    for table in SOURCE_TABLES:
        for column in table.columns:
            assert declared[(table.qualified_name, column.name)][0] == column.nullable
    assert declared[("Sales.SalesOrderHeader", "TotalDue")][1] == "numeric(19,4)"
    assert declared[("Sales.SalesOrderHeader", "OnlineOrderFlag")][1] == "boolean"
    assert declared[("Sales.SalesOrderHeader", "OrderDate")][1] == "timestamp without time zone"
    assert declared[("Production.Product", "Weight")][1] == "numeric(8,2)"


def test_reload_replaces_every_table(postgres_settings: Settings) -> None:
    warehouse = connect(postgres_settings)
    warehouse.replace_source_tables(_tables(0.05, seed=1))
    first_load = warehouse.source_load()
    newer = _tables(0.03, seed=2)

    warehouse.replace_source_tables(newer)

    assert warehouse.row_counts(NAMES) == {name: t.num_rows for name, t in newer.items()}
    assert warehouse.source_load() not in (None, first_load)
    total = warehouse.read_only_query('SELECT sum("TotalDue") FROM "Sales"."SalesOrderHeader"').rows[0][0]
    assert total == pc.sum(newer["Sales.SalesOrderHeader"].column("TotalDue")).as_py()


@pytest.mark.parametrize("bad_value", ["null in a NOT NULL column", "NUL character in text"])
def test_a_bad_row_in_the_third_table_changes_nothing(postgres_settings: Settings, bad_value: str) -> None:
    warehouse = connect(postgres_settings)
    warehouse.replace_source_tables(_tables(0.02, seed=1))
    before = _snapshot(warehouse)
    load_id = warehouse.source_load()

    bad = _tables(0.04, seed=2)
    third = list(bad)[2]
    assert third == "Sales.SalesOrderDetail"
    if bad_value.startswith("null"):
        bad[third] = _with_null(bad[third], "SalesOrderID", 5)
    else:
        index = bad[third].schema.get_field_index("CarrierTrackingNumber")
        values = bad[third].column(index).to_pylist()
        values[7] = "4911-403C-\x00"
        bad[third] = bad[third].set_column(index, bad[third].schema.field(index), pa.array(values, pa.string()))

    with pytest.raises(DataOpsError, match=f"loading {third} .* nothing was changed") as raised:
        warehouse.replace_source_tables(bad)

    assert "\n" not in str(raised.value)
    assert _snapshot(warehouse) == before
    assert warehouse.source_load() == load_id is not None


def test_a_connection_killed_half_way_changes_nothing(postgres_settings: Settings) -> None:
    warehouse = connect(postgres_settings)
    warehouse.replace_source_tables(_tables(0.02, seed=1))
    before = _snapshot(warehouse)
    loaded: list[str] = []
    killed: list[int] = []

    def kill_after_second_table(name: str) -> None:
        loaded.append(name)
        if len(loaded) == 2:
            with _admin(postgres_settings) as admin, admin.cursor() as cursor:
                # The loader is the one connection of ours idle inside its open transaction.
                cursor.execute(
                    "SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'dataops' "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
                killed.extend(pid for pid, done in cursor.fetchall() if done)
            admin.close()

    loader = PostgresWarehouse(postgres_settings.connection(), on_table_loaded=kill_after_second_table)
    newer = _tables(0.04, seed=2)
    with pytest.raises(DataOpsError, match=f"loading {NAMES[2]} .* nothing was changed") as raised:
        loader.replace_source_tables(newer)

    assert len(killed) == 1
    assert loaded == NAMES[:2]
    assert "connection" in str(raised.value).split("nothing was changed")[1]
    assert "\n" not in str(raised.value)
    assert _snapshot(warehouse) == before
    warehouse.replace_source_tables(newer)
    assert warehouse.row_counts(NAMES) == {name: t.num_rows for name, t in newer.items()}


def test_reload_keeps_the_views_dbt_built_on_the_sources(postgres_settings: Settings) -> None:
    warehouse = connect(postgres_settings)
    warehouse.replace_source_tables(_tables(0.02, seed=1))
    with _admin(postgres_settings) as admin, admin.cursor() as cursor:
        cursor.execute("CREATE SCHEMA staging")
        cursor.execute(
            'CREATE VIEW staging.stg_customers AS SELECT "CustomerID" AS customer_id FROM "Sales"."Customer"'
        )
    admin.close()
    newer = _tables(0.03, seed=2)

    warehouse.replace_source_tables(newer)

    customers = warehouse.read_only_query("SELECT count(*) FROM staging.stg_customers").rows[0][0]
    assert customers == newer["Sales.Customer"].num_rows


def test_a_table_of_another_shape_is_recreated(postgres_settings: Settings) -> None:
    with _admin(postgres_settings) as admin, admin.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "Sales"')
        cursor.execute('CREATE TABLE "Sales"."Customer" ("CustomerID" bigint, "Old" text)')
        cursor.execute('CREATE VIEW public.old_customers AS SELECT "Old" FROM "Sales"."Customer"')
    admin.close()
    warehouse = connect(postgres_settings)
    tables = _tables(0.02, seed=1)

    warehouse.replace_source_tables(tables)

    assert warehouse.row_counts(["Sales.Customer"]) == {"Sales.Customer": tables["Sales.Customer"].num_rows}
    columns = warehouse.read_only_query('SELECT * FROM "Sales"."Customer" LIMIT 0').columns
    assert columns == SOURCE_TABLES_BY_NAME["Sales.Customer"].column_names
    # The view on the old table went with it (CASCADE); dbt recreates its own views on the next build.
    assert warehouse.read_only_query("SELECT to_regclass('public.old_customers')").rows == [(None,)]


def test_read_only_query_cannot_write_and_keeps_decimals(postgres_settings: Settings) -> None:
    warehouse = connect(postgres_settings)
    warehouse.replace_source_tables(_tables(0.02, seed=1))
    before = _snapshot(warehouse)

    for statement in (
        'DELETE FROM "Sales"."Customer"',
        "CREATE TABLE public.sneaky (id int)",
        'SET default_transaction_read_only = off; DELETE FROM "Sales"."Customer"',
    ):
        with pytest.raises(DataOpsError, match="read-only transaction"):
            warehouse.read_only_query(statement)
    assert _snapshot(warehouse) == before

    result = warehouse.read_only_query("SELECT 12.3400::numeric(19,4) AS money, 'x' AS text")
    assert result.columns == ["money", "text"]
    assert result.rows == [(Decimal("12.3400"), "x")]
    assert isinstance(result.rows[0][0], Decimal)


def test_errors_are_one_line_and_name_the_server(postgres_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = connect(postgres_settings)
    with pytest.raises(DataOpsError, match=r'relation "Sales\.Customer" does not exist'):
        warehouse.read_only_query('select count(*) from "Sales"."Customer"')
    # Row counts leave out what does not exist (a run stopped before its load still records).
    assert warehouse.row_counts(["Sales.Customer"]) == {}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv("PGPORT", str(dead_port))
    dead = connect(postgres_settings)
    for attempt in (dead.missing_source_tables, lambda: dead.replace_source_tables(_tables(0.01, seed=1))):
        with pytest.raises(DataOpsError) as raised:
            attempt()
        message = str(raised.value)
        assert f"127.0.0.1:{dead_port}/adventureworks" in message
        assert "Connection refused" in message
        assert "PGPORT" in message
        assert "\n" not in message and "Traceback" not in message
