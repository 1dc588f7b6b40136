"""SQL Server: the production warehouse, loaded with mssql-python's Arrow bulk copy.

Bulk copy streams over its own connection, outside any transaction we hold, so a load writes into
`<table>__incoming` copies first and then swaps all of them in at once: SQL Server's DDL is
transactional, so readers see either every old table or every new one.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType, SourceTable
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


def _qualified(name: str) -> str:
    """`schema.table` (a source table such as `Sales.Customer`, or a mart) as a quoted relation."""
    return ".".join(_quote(part) for part in name.split(".", 1))


def _relation(table: SourceTable, suffix: str = "") -> str:
    return f"{_quote(table.schema)}.{_quote(table.name + suffix)}"


def create_table_sql(table: SourceTable, suffix: str = "") -> str:
    columns = ", ".join(
        f"{_quote(c.name)} {_SQL_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
    )
    return f"CREATE TABLE {_relation(table, suffix)} ({columns})"


def odbc_value(value: str) -> str:
    """`value` as an ODBC connection-string value (MS-ODBCSTR): in braces, with every `}` doubled,
    when it holds `;`, `{`, `}`, `=` or white space (drivers trim a value's outer spaces, and a
    driver name has inner ones), so a password can neither end its attribute early nor add one."""
    if any(character in value for character in ";{}=") or any(character.isspace() for character in value):
        return "{" + value.replace("}", "}}") + "}"
    return value


def odbc_connection_string(attributes: dict[str, str]) -> str:
    """Attributes with a value, each quoted. An empty one is left out: mssql-python refuses
    `Uid=;`, and the driver's default for an absent attribute is what an empty one would mean."""
    return ";".join(f"{key}={odbc_value(value)}" for key, value in attributes.items() if value)


def _yes_no(connection: dict[str, str], field: str, default: bool) -> str:
    """A boolean profile field (dbt-sqlserver's `encrypt`, `trust_cert`) as ODBC's yes/no; the
    defaults are dbt-sqlserver's own, so GX and our loads connect exactly as dbt does."""
    value = str(connection.get(field, default)).strip().lower()
    if value in ("true", "yes", "1"):
        return "yes"
    if value in ("false", "no", "0"):
        return "no"
    raise DataOpsError(f"the SQL Server profile's {field} is '{value}': set it to true or false in dbt/profiles.yml")


class SqlServerWarehouse:
    def __init__(self, connection: dict[str, str]) -> None:
        self.server = connection["server"]
        self.port = connection.get("port", "1433")
        self.database = connection["database"]
        self._password = connection.get("password", "")
        self._driver = connection.get("driver", "ODBC Driver 18 for SQL Server")
        # One set of attributes for mssql-python (loads, queries) and pyodbc (GX), so both reach
        # the server with the encryption and certificate trust the target sets.
        self._attributes = {
            "Server": f"tcp:{self.server},{self.port}",
            "Database": self.database,
            "UID": connection.get("user", ""),
            "PWD": self._password,
            "Encrypt": _yes_no(connection, "encrypt", True),
            "TrustServerCertificate": _yes_no(connection, "trust_cert", False),
        }

    @property
    def connection_string(self) -> str:
        """What mssql-python connects with; it picks its bundled driver itself and refuses a Driver."""
        return odbc_connection_string(self._attributes)

    def gx_connection_url(self) -> str:
        """The SQLAlchemy URL GX connects with: pyodbc gets our own connection string as it is
        (`odbc_connect`), not one SQLAlchemy assembles from URL parts with quoting rules of its own."""
        import sqlalchemy

        odbc = odbc_connection_string({"Driver": self._driver, **self._attributes})
        return sqlalchemy.URL.create("mssql+pyodbc", query={"odbc_connect": odbc}).render_as_string(
            hide_password=False
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
            return mssql_python.connect(self.connection_string, autocommit=autocommit, timeout=15)
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
        """GX reaches SQL Server through SQLAlchemy and pyodbc, like dbt-sqlserver. An ephemeral GX
        context keeps the URL, password included, in memory only."""
        return context.data_sources.add_sql(name=name, connection_string=self.gx_connection_url())

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

    def _relations(self) -> set[str]:
        """Every table and view as `schema.name`, lower-cased (the default collations ignore case)."""
        return {
            f"{schema}.{name}".lower()
            for schema, name in self.read_only_query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM INFORMATION_SCHEMA.TABLES"
            ).rows
        }

    def missing_source_tables(self) -> list[str]:
        present = self._relations()
        return [t.qualified_name for t in SOURCE_TABLES if t.qualified_name.lower() not in present]

    def missing_relations(self, schema: str, names: list[str]) -> list[str]:
        present = self._relations()
        return [f"{schema}.{name}" for name in names if f"{schema}.{name}".lower() not in present]

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        present = self._relations()
        return {
            name: int(self.read_only_query(f"SELECT COUNT(*) FROM {_qualified(name)}").rows[0][0])
            for name in qualified_names if name.lower() in present
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
