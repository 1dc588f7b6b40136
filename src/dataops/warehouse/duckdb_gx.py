"""Great Expectations on DuckDB, through GX's own extension point: a fluent SQL datasource type.

GX talks to DuckDB through SQLAlchemy (duckdb_engine), and out of the box every check comes back
empty: GX opens a connection per query and reads the result after closing it, SQLAlchemy's close
rolls the connection back, and DuckDB drops a pending result when anything else runs on its
connection. GX already keeps one connection open for SQLite and SQL Server for the same kind of
reason; this engine does it for DuckDB. duckdb_engine's dialect is PostgreSQL's, which is what GX
needs to know to write regular expressions (`~`, a whole-value match in DuckDB).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import duckdb
import sqlalchemy
import sqlalchemy.dialects.postgresql as postgresql_dialect
from great_expectations.datasource.fluent.sql_datasource import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dialect_module = postgresql_dialect
        self._persistent_connection: sqlalchemy.Connection | None = None

    @contextmanager
    def get_connection(self) -> Iterator[sqlalchemy.Connection]:
        if self._persistent_connection is None:
            self._persistent_connection = self.engine.connect()
        yield self._persistent_connection

    def close(self) -> None:
        if self._persistent_connection is not None:
            self._persistent_connection.close()
            self._persistent_connection = None
        self.engine.dispose()


class DuckDBDatasource(SQLDatasource):
    """`context.data_sources.add_duckdb(name=..., connection_string="duckdb:///path")`."""

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment]

    @property
    def execution_engine_type(self) -> type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine


def add_datasource(context: Any, name: str, path: Path) -> DuckDBDatasource:
    """A read-only GX datasource on the DuckDB file at `path`."""
    return context.data_sources.add_duckdb(
        name=name, connection_string=f"duckdb:///{path}", kwargs={"connect_args": {"read_only": True}}
    )


def add_empty_tables_datasource(
    context: Any, name: str, directory: Path, schema: str, tables: dict[str, str]
) -> DuckDBDatasource:
    """A read-only GX datasource on a new DuckDB file in `directory` that holds `tables` (name to
    column definitions), empty, in `schema`."""
    path = directory / f"{name}_empty_tables.duckdb"  # its catalog name must differ from `schema`
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"create schema {schema}")
        for table, columns in tables.items():
            connection.execute(f"create table {schema}.{table} ({columns})")
    return add_datasource(context, name, path)
