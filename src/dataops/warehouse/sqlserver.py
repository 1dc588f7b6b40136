"""SQL Server: the production warehouse, loaded with mssql-python's Arrow bulk copy.

Bulk copy streams over its own connection, outside any transaction we hold, so a load writes into
`<table>__incoming` copies first and then swaps all of them in at once: SQL Server's DDL is
transactional, so readers see either every old table or every new one.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dataops.errors import DataOpsError
from dataops.source_tables import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType, SourceTable
from dataops.warehouse import QueryResult

_SQL_TYPES: dict[ColumnType, str] = {
    ColumnType.TINYINT: "TINYINT",
    ColumnType.SMALLINT: "SMALLINT",
    ColumnType.INT: "INT",
    ColumnType.BIT: "BIT",
    ColumnType.MONEY: "MONEY",
    ColumnType.LINE_TOTAL: "NUMERIC(38,6)",
    ColumnType.WEIGHT: "DECIMAL(8,2)",
    ColumnType.DATETIME: "DATETIME",
    ColumnType.STRING: "NVARCHAR(MAX)",
    ColumnType.GUID: "NVARCHAR(36)",
}
INCOMING_SUFFIX = "__incoming"


def _quote(identifier: str) -> str:
    return "[" + identifier.replace("]", "]]") + "]"


def _relation(table: SourceTable, suffix: str = "") -> str:
    return f"{_quote(table.schema)}.{_quote(table.name + suffix)}"


def create_table_sql(table: SourceTable, suffix: str = "") -> str:
    columns = ", ".join(
        f"{_quote(c.name)} {_SQL_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
    )
    return f"CREATE TABLE {_relation(table, suffix)} ({columns})"


class SqlServerWarehouse:
    def __init__(self, connection: dict[str, str]) -> None:
        self.server = connection["server"]
        self.port = connection.get("port", "1433")
        self.database = connection["database"]
        self._user = connection.get("user", "")
        self._password = connection.get("password", "")
        self._driver = connection.get("driver", "ODBC Driver 18 for SQL Server")
        self._trust_cert = str(connection.get("trust_cert")).lower() == "true"
        self._connection_string = (
            f"Server=tcp:{self.server},{self.port};Database={self.database};"
            f"Uid={connection.get('user', '')};Pwd={self._password};"
            f"Encrypt={'yes' if str(connection.get('encrypt', 'true')).lower() == 'true' else 'no'};"
            f"TrustServerCertificate={'yes' if str(connection.get('trust_cert')).lower() == 'true' else 'no'}"
        )

    @property
    def location(self) -> str:
        return f"{self.server}:{self.port}/{self.database}"

    def _error(self, doing: str, error: Exception) -> DataOpsError:
        message = " ".join(str(error).replace(self._password or "\0", "****").split())
        if "Failed to load the driver" in message:
            message = (
                "mssql-python's bundled ODBC driver cannot load: it needs libltdl "
                "(Debian/Ubuntu: apt-get install libltdl7 libkrb5-3 libgssapi-krb5-2)"
            )
        return DataOpsError(f"{doing} on SQL Server {self.location} failed: {message}")

    def _connect(self, autocommit: bool = False) -> Any:
        import mssql_python

        try:
            return mssql_python.connect(self._connection_string, autocommit=autocommit, timeout=15)
        except mssql_python.Error as error:
            raise self._error(
                "connecting (check DBT_<TARGET>_SERVER / _PORT / _USER / _PASSWORD)", error
            ) from error

    def ping(self) -> str:
        connection = self._connect(autocommit=True)
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT @@VERSION")
            return " ".join(str(cursor.fetchone()[0]).split())[:120]
        finally:
            connection.close()

    def gx_datasource(self, context: Any, name: str) -> Any:
        """GX reaches SQL Server through SQLAlchemy and pyodbc, like dbt-sqlserver."""
        import sqlalchemy

        url = sqlalchemy.URL.create(
            "mssql+pyodbc", username=self._user, password=self._password, host=self.server,
            port=int(self.port), database=self.database,
            query={"driver": self._driver, "TrustServerCertificate": "yes" if self._trust_cert else "no"},
        )
        return context.data_sources.add_sql(name=name, connection_string=url.render_as_string(hide_password=False))

    def replace_source_tables(self, tables: dict[str, pa.Table]) -> None:
        import mssql_python

        connection = self._connect(autocommit=True)
        cursor = connection.cursor()
        contract = [SOURCE_TABLES_BY_NAME[name] for name in tables]
        try:
            for table in contract:
                cursor.execute(
                    f"IF SCHEMA_ID(N'{table.schema}') IS NULL EXEC(N'CREATE SCHEMA {_quote(table.schema)}')"
                )
                cursor.execute(f"DROP TABLE IF EXISTS {_relation(table, INCOMING_SUFFIX)}")
                cursor.execute(create_table_sql(table, INCOMING_SUFFIX))
                cursor.bulkcopy_arrow(
                    f"{table.schema}.{table.name}{INCOMING_SUFFIX}",
                    tables[table.qualified_name].select(table.column_names),
                    timeout=0,
                    table_lock=True,
                    keep_nulls=True,
                )
            # The swap: every table or none.
            cursor.execute("BEGIN TRANSACTION")
            for table in contract:
                cursor.execute(f"DROP TABLE IF EXISTS {_relation(table)}")
                cursor.execute(
                    f"EXEC sp_rename N'{table.schema}.{table.name}{INCOMING_SUFFIX}', N'{table.name}'"
                )
            cursor.execute("COMMIT TRANSACTION")
        except (mssql_python.Error, RuntimeError, ValueError) as error:
            cursor.execute("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
            for table in contract:
                cursor.execute(f"DROP TABLE IF EXISTS {_relation(table, INCOMING_SUFFIX)}")
            raise self._error("loading the source tables (nothing was changed)", error) from error
        finally:
            connection.close()

    def missing_source_tables(self) -> list[str]:
        present = {
            f"{schema}.{name}".lower()
            for schema, name in self.read_only_query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM INFORMATION_SCHEMA.TABLES"
            ).rows
        }
        return [t.qualified_name for t in SOURCE_TABLES if t.qualified_name.lower() not in present]

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        return {
            name: int(
                self.read_only_query(
                    f"SELECT COUNT(*) FROM {_relation(SOURCE_TABLES_BY_NAME[name])}"
                ).rows[0][0]
            )
            for name in qualified_names
        }

    def read_only_query(self, sql: str) -> QueryResult:
        import mssql_python

        connection = self._connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns, [tuple(row) for row in cursor.fetchall()])
        except mssql_python.Error as error:
            raise self._error("the query", error) from error
        finally:
            # Nothing a query did is ever committed.
            connection.rollback()
            connection.close()
