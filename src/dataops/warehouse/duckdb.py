"""The embedded DuckDB warehouse: a single file, one writer at a time."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataops.core.config import DUCKDB_PATH_ENV_VAR, WAREHOUSE_DIR_ENV_VAR
from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType, SourceTable
from dataops.warehouse import QueryResult

SQL_TYPES: dict[ColumnType, str] = {
    ColumnType.TINYINT: "SMALLINT",
    ColumnType.SMALLINT: "SMALLINT",
    ColumnType.INT: "INTEGER",
    ColumnType.BIT: "BOOLEAN",
    ColumnType.MONEY: "DECIMAL(19,4)",
    ColumnType.LINE_TOTAL: "DECIMAL(38,6)",
    ColumnType.WEIGHT: "DECIMAL(8,2)",
    ColumnType.DATETIME: "TIMESTAMP",
    ColumnType.STRING: "VARCHAR",
    ColumnType.GUID: "VARCHAR",
}


# Every DuckDB database file carries these bytes at offset 8, after a checksum.
_DUCKDB_MAGIC = b"DUCK"
_DUCKDB_MAGIC_OFFSET = 8
# DuckDB's IOException text: `IO Error: Cannot open file "<path>": <reason>[ See also <url>]`;
# the path is in our message already.
_IO_ERROR = re.compile(r'^(?:IO Error: )?(?:[^"]*"[^"]*": )?(?P<reason>.*?)(?: See also \S+)?$', re.S)
_PATH_FIX = f"point {DUCKDB_PATH_ENV_VAR} at a database file (or {WAREHOUSE_DIR_ENV_VAR} at a folder)"


def _is_duckdb_file(path: Path) -> bool:
    """False only when the file can be read and is not DuckDB's: an unreadable one proves nothing."""
    try:
        with path.open("rb") as file:
            head = file.read(_DUCKDB_MAGIC_OFFSET + len(_DUCKDB_MAGIC))
    except OSError:
        return True
    return head[_DUCKDB_MAGIC_OFFSET:] == _DUCKDB_MAGIC


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    """`schema.table` (a source table such as `Sales.Customer`, or a mart) as a quoted relation."""
    return ".".join(_quote(part) for part in name.split(".", 1))


def _relation(table: SourceTable) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def create_table_sql(table: SourceTable) -> str:
    columns = ",\n    ".join(
        f"{_quote(c.name)} {SQL_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}"
        for c in table.columns
    )
    return f"CREATE TABLE {_relation(table)} (\n    {columns}\n)"


def release_dbt_connections() -> None:
    """dbt-duckdb keeps its database open for the life of the process; close it."""
    if "dbt.adapters.duckdb.connections" not in sys.modules:
        return  # dbt never ran here; importing it just to find nothing open costs a second
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if environment is not None:
        environment.close()


class DuckDBWarehouse:
    def __init__(self, path: Path, on_table_loaded: Callable[[str], None] | None = None) -> None:
        self.path = path
        # Called with each table's name once it is written, before the commit (a test seam).
        self.on_table_loaded = on_table_loaded

    def _connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise DataOpsError(
                f"no warehouse at {self.path}: run `dataops run` (or `dataops load`) first"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._folder_error(error) from error
        try:
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as error:
            raise self._open_error(error) from error

    def _folder_error(self, error: OSError) -> DataOpsError:
        in_the_way = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
        reason = f"{in_the_way} is a file, not a folder" if in_the_way else error.strerror or error
        return DataOpsError(
            f"cannot create the folder of the DuckDB warehouse {self.path}: {reason}; {_PATH_FIX}"
        )

    def _open_error(self, error: duckdb.Error) -> DataOpsError:
        """DuckDB raises the same IOException for every reason it cannot open a file; tell them
        apart by looking at the path itself, and keep DuckDB's own words where they are the news."""
        path = self.path
        found = _IO_ERROR.match(str(error).strip())
        reason = found.group("reason") if found else str(error)
        if path.is_dir():
            return DataOpsError(
                f"the DuckDB warehouse {path} is a directory, not a database file; {_PATH_FIX}"
            )
        if path.is_file() and not _is_duckdb_file(path):
            return DataOpsError(
                f"{path} is not a DuckDB database (the file holds something else); {_PATH_FIX}, "
                f"or move the file away"
            )
        if "lock" in reason.lower():
            return DataOpsError(
                f"the DuckDB warehouse {path} is in use by another process: {reason.rstrip('.')}; "
                f"a DuckDB file that one process writes no other can open: wait for that process "
                f"to finish, or stop it"
            )
        if not path.exists():
            return DataOpsError(
                f"cannot create the DuckDB warehouse {path}: {reason}; point {DUCKDB_PATH_ENV_VAR} "
                f"(or {WAREHOUSE_DIR_ENV_VAR}) at a place you can write"
            )
        return DataOpsError(f"cannot open the DuckDB warehouse {path}: {reason}")

    def replace_source_tables(self, tables: dict[str, pa.Table]) -> None:
        connection = self._connect()
        try:
            # One transaction for every table: a failure anywhere leaves the previous load intact.
            connection.begin()
            for qualified_name, data in tables.items():
                table = SOURCE_TABLES_BY_NAME[qualified_name]
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(table.schema)}")
                connection.execute(f"DROP TABLE IF EXISTS {_relation(table)}")
                connection.execute(create_table_sql(table))
                connection.register("incoming_rows", data)
                column_list = ", ".join(_quote(name) for name in table.column_names)
                connection.execute(
                    f"INSERT INTO {_relation(table)} ({column_list}) "
                    f"SELECT {column_list} FROM incoming_rows"
                )
                connection.unregister("incoming_rows")
                if self.on_table_loaded is not None:
                    self.on_table_loaded(qualified_name)
            connection.commit()
        except duckdb.Error as error:
            connection.rollback()
            raise DataOpsError(
                f"loading {qualified_name} into {self.path} failed, nothing was changed: {error}"
            ) from error
        finally:
            connection.close()

    def ping(self) -> str:
        if not self.path.exists():
            return f"DuckDB {duckdb.__version__}; no warehouse yet (dataops run creates {self.path})"
        connection = self._connect(read_only=True)
        connection.close()
        return f"DuckDB {duckdb.__version__}, {self.path}"

    def gx_datasource(self, context: Any, name: str) -> Any:
        from dataops.warehouse import duckdb_gx  # registers the `duckdb` datasource type with GX

        return duckdb_gx.add_datasource(context, name, self.path)

    def _relations(self, connection: duckdb.DuckDBPyConnection | None = None) -> set[str]:
        """Every table and view as `schema.name`, lower-cased (DuckDB's names are case-insensitive)."""
        if connection is None and not self.path.exists():
            return set()
        own = connection or self._connect(read_only=True)
        try:
            return {
                f"{schema}.{name}".lower()
                for schema, name in own.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                ).fetchall()
            }
        finally:
            if connection is None:
                own.close()

    def missing_source_tables(self) -> list[str]:
        present = self._relations()
        return [t.qualified_name for t in SOURCE_TABLES if t.qualified_name.lower() not in present]

    def missing_relations(self, schema: str, names: list[str]) -> list[str]:
        present = self._relations()
        return [f"{schema}.{name}" for name in names if f"{schema}.{name}".lower() not in present]

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        if not self.path.exists():
            return {}
        connection = self._connect(read_only=True)
        try:
            present = self._relations(connection)
            names = [name for name in qualified_names if name.lower() in present]
            if not names:
                return {}
            counts = connection.execute(
                "SELECT " + ", ".join(f"(SELECT count(*) FROM {_qualified(name)})" for name in names)
            ).fetchone()
            return dict(zip(names, counts, strict=True))
        finally:
            connection.close()

    def read_only_query(self, sql: str) -> QueryResult:
        connection = self._connect(read_only=True)
        try:
            cursor = connection.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns=columns, rows=cursor.fetchall())
        except duckdb.Error as error:
            raise DataOpsError(f"query failed: {error}".replace("\n", " ")) from error
        finally:
            connection.close()
