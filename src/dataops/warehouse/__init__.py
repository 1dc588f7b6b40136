"""The warehouse seen from the pipeline: load source tables, check what is there, run a read-only
query. Each engine implements it in its own module; nothing else in dataops speaks an engine's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class Warehouse(Protocol):
    def replace_source_tables(self, tables: dict[str, pa.Table]) -> None:
        """Replace every given `Schema.Table` at once: all of them or, on any error, none."""

    def missing_source_tables(self) -> list[str]:
        """The contract tables that are not in the warehouse yet."""

    def missing_relations(self, schema: str, names: list[str]) -> list[str]:
        """`schema.name` of each of `names` that is no table or view there, as an unquoted name in
        a query would be looked up (a missing warehouse misses them all)."""

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        """Rows per `schema.table` (a source table or a model) of those that exist; a missing one
        is left out."""

    def read_only_query(self, sql: str) -> QueryResult:
        """Run one statement on a connection that cannot write."""

    def ping(self) -> str:
        """Connect and return the server's version; raise DataOpsError with its own error."""

    def gx_datasource(self, context: Any, name: str) -> Any:
        """A Great Expectations SQL datasource on this warehouse, for checks that run in it."""


def release_dbt_connections(settings: Settings) -> None:
    """Let go of what a dbt adapter keeps open in this process once its command has finished,
    so the warehouse can be opened again (DuckDB allows one configuration per file)."""
    if settings.engine == "duckdb":
        from dataops.warehouse.duckdb import release_dbt_connections as release

        release()


def connect(settings: Settings) -> Warehouse:
    if settings.engine == "duckdb":
        from dataops.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(settings.duckdb_path)
    if settings.engine == "sqlserver":
        from dataops.warehouse.sqlserver import SqlServerWarehouse

        return SqlServerWarehouse(settings.connection())
    if settings.engine == "postgres":
        from dataops.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(settings.connection())
    raise DataOpsError(
        f"target '{settings.target}' uses engine '{settings.engine}', which dataops cannot load yet"
    )
