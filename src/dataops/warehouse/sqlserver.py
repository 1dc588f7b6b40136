"""SQL Server: the production warehouse, loaded with mssql-python's Arrow bulk copy.

Bulk copy streams over its own connection, outside any transaction we hold, so a load writes into
`<table>__incoming` copies first and then swaps all of them in at once: SQL Server's DDL is
transactional, so readers see either every old table or every new one.

Published versions are schemas, `<consumer>__v<N>`, which consumers read through views in the
consumer schema; one run at a time holds the warehouse with an application lock (sp_getapplock).
The T-SQL of both is made by pure functions (below), which `dataops compile --validate` checks
offline.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType, SourceTable
from dataops.warehouse import (
    SOURCE_LOAD_SCHEMA,
    SOURCE_LOAD_TABLE,
    Column,
    LockHolder,
    MartDiff,
    QueryResult,
    TargetBusy,
    Version,
    diff_sql,
    mart_diff,
    new_load_id,
)

_SOURCE_LOAD = f"{SOURCE_LOAD_SCHEMA}.{SOURCE_LOAD_TABLE}"
# Inside the load's swap transaction (SQL Server allows CREATE SCHEMA and CREATE TABLE there).
_SOURCE_LOAD_STATEMENTS = (
    f"IF SCHEMA_ID(N'{SOURCE_LOAD_SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA {SOURCE_LOAD_SCHEMA}')",
    f"IF OBJECT_ID(N'{_SOURCE_LOAD}', N'U') IS NULL "
    f"CREATE TABLE {_SOURCE_LOAD} (load_id NVARCHAR(64) NOT NULL, loaded_at DATETIME2 NOT NULL)",
    f"DELETE FROM {_SOURCE_LOAD}",
)

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


# Publishing and the lock, as T-SQL -----------------------------------------------------------------
#
# Every statement dataops runs to publish, roll back, drop a version or hold the target is made by
# one of the pure functions below, one statement a line, so that `dataops compile --validate`
# renders and checks them for the project's marts without a server (sqlserver_dialect.batch_problems).
#
# A version is a schema, `<consumer>__v<N>`, holding that build's marts as tables: SQL Server cannot
# rename a schema, so publishing moves each candidate table into the new version schema
# (`ALTER SCHEMA ... TRANSFER`, a metadata operation: no row is copied). Consumers read views in
# the consumer schema, `<consumer>.<mart>` = `SELECT * FROM <consumer>__v<N>.<mart>`. Creating the
# version schema, the transfers, the consumer views, the grants and the metadata rows all happen in
# ONE transaction (SET XACT_ABORT ON: any error, a lock timeout included, rolls all of it back; a
# publish killed mid-way is rolled back by the server when its session dies). So there is never a
# half-made version to see: the published version is the one before, whole, or the new one, whole.
# The transfers are inside the transaction because outside it a killed publish would leave the
# candidate emptied and a version schema that no metadata names. drop_versions removes such a
# schema all the same (one made by hand), but no publish of ours can leave one.

METADATA_SCHEMA = "dataops"
# How long the swap waits for a lock (a consumer's query still running on a view it replaces)
# before the whole transaction gives up, rather than stall every later reader queued behind it.
LOCK_TIMEOUT_MS = 5000
SWAP_ATTEMPTS = 3
# THROW's user error number: dataops' own refusals inside a transaction.
_REFUSED = 50000
# The server's words for error 1222 (LOCK_TIMEOUT expired).
_LOCK_TIMEOUT_TEXT = "lock request time out period exceeded"
# sp_getapplock's answers below zero.
_APPLOCK_ERRORS = {
    -1: "timed out",
    -2: "was cancelled",
    -3: "was chosen as a deadlock victim",
    -999: "was refused (a parameter or call error)",
}


@dataclass(frozen=True)
class Script:
    """T-SQL dataops sends as one batch: `statements`, each on a line of its own. `atomic`: one
    transaction, all or nothing."""

    name: str
    statements: tuple[str, ...]
    atomic: bool = False

    @property
    def sql(self) -> str:
        return "\n".join(f"{statement};" for statement in self.statements)


def version_schema(consumer_schema: str, number: int) -> str:
    return f"{consumer_schema}__v{number}"


def _version_number(consumer_schema: str, schema: str) -> int | None:
    found = re.fullmatch(re.escape(consumer_schema) + r"__v(\d+)", schema, re.IGNORECASE)
    return int(found.group(1)) if found else None


def _literal(value: str) -> str:
    return "N'" + value.replace("'", "''") + "'"


def _name(schema: str, name: str) -> str:
    return f"{_quote(schema)}.{_quote(name)}"


def _dynamic(statement: str) -> str:
    """A statement that must open a batch of its own (CREATE SCHEMA, CREATE VIEW), run inside this
    one, and so inside its transaction."""
    return f"EXEC sys.sp_executesql {_literal(statement)}"


def _refuse(message: str) -> str:
    return f"THROW {_REFUSED}, {_literal(message)}, 1"


def _transaction(statements: list[str], lock_timeout_ms: int) -> tuple[str, ...]:
    return (
        "SET NOCOUNT ON",
        "SET XACT_ABORT ON",
        f"SET LOCK_TIMEOUT {int(lock_timeout_ms)}",
        "BEGIN TRANSACTION",
        *statements,
        "COMMIT TRANSACTION",
    )


def metadata_script() -> Script:
    """The tables that say which versions there are and which one is published, and who holds the
    target; created once, idempotently (under the target's lock)."""
    meta = _quote(METADATA_SCHEMA)
    return Script(
        "metadata",
        (
            f"IF SCHEMA_ID({_literal(METADATA_SCHEMA)}) IS NULL {_dynamic(f'CREATE SCHEMA {meta}')}",
            f"IF OBJECT_ID({_literal(f'{meta}.[versions]')}, N'U') IS NULL CREATE TABLE {meta}.[versions] ("
            "[consumer_schema] NVARCHAR(128) NOT NULL, [number] INT NOT NULL, [run_id] NVARCHAR(100) NOT NULL, "
            "[built_at] NVARCHAR(40) NOT NULL, [row_counts] NVARCHAR(MAX) NOT NULL, "
            "[published_at] NVARCHAR(40) NOT NULL, "
            "CONSTRAINT [pk_dataops_versions] PRIMARY KEY ([consumer_schema], [number]))",
            f"IF OBJECT_ID({_literal(f'{meta}.[published]')}, N'U') IS NULL CREATE TABLE {meta}.[published] ("
            "[consumer_schema] NVARCHAR(128) NOT NULL CONSTRAINT [pk_dataops_published] PRIMARY KEY, "
            "[number] INT NOT NULL, [switched_at] NVARCHAR(40) NOT NULL)",
            f"IF OBJECT_ID({_literal(f'{meta}.[lock_holders]')}, N'U') IS NULL CREATE TABLE {meta}.[lock_holders] ("
            "[resource] NVARCHAR(255) NOT NULL CONSTRAINT [pk_dataops_lock_holders] PRIMARY KEY, "
            "[run_id] NVARCHAR(100) NOT NULL, [host] NVARCHAR(255) NOT NULL, [pid] INT NOT NULL, "
            "[since] NVARCHAR(40) NOT NULL, [session_id] INT NOT NULL)",
        ),
    )


def _consumer_views(
    consumer_schema: str, version: str, marts: Sequence[str], retired: Sequence[str], grant_to: str | None
) -> list[str]:
    """Point every consumer view at `version`, grant them, drop those of marts it does not have."""
    statements = [
        f"IF SCHEMA_ID({_literal(consumer_schema)}) IS NULL {_dynamic(f'CREATE SCHEMA {_quote(consumer_schema)}')}"
    ]
    for mart in marts:
        view = _name(consumer_schema, mart)
        # A table of that name is a build from before versions (dbt built into the consumer schema).
        statements.append(f"IF OBJECT_ID({_literal(view)}, N'U') IS NOT NULL DROP TABLE {view}")
        statements.append(_dynamic(f"CREATE OR ALTER VIEW {view} AS SELECT * FROM {_name(version, mart)}"))
        if grant_to:
            statements.append(f"GRANT SELECT ON OBJECT::{view} TO {_quote(grant_to)}")
    statements.extend(f"DROP VIEW IF EXISTS {_name(consumer_schema, mart)}" for mart in retired)
    return statements


def _point_at(consumer_schema: str, number: int, at: str) -> list[str]:
    published = f"{_quote(METADATA_SCHEMA)}.[published]"
    return [
        f"DELETE FROM {published} WHERE [consumer_schema] = {_literal(consumer_schema)}",
        f"INSERT INTO {published} ([consumer_schema], [number], [switched_at]) "
        f"VALUES ({_literal(consumer_schema)}, {int(number)}, {_literal(at)})",
    ]


def publish_script(
    consumer_schema: str,
    candidate_schema: str,
    number: int,
    marts: Sequence[str],
    run_id: str,
    built_at: str,
    row_counts: dict[str, int],
    published_at: str,
    retired: Sequence[str] = (),
    grant_to: str | None = None,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> Script:
    """The candidate's marts become version `number` and the published version, in one transaction.
    `retired`: marts of the version published now that this one does not have (their views go).
    Each candidate table moves into the version schema; in its place the candidate keeps a view of
    it, so the candidate still shows the last build (dbt docs, queries) until dbt rebuilds it."""
    version = version_schema(consumer_schema, number)
    statements = [
        f"IF SCHEMA_ID({_literal(version)}) IS NOT NULL "
        + _refuse(f"schema {version} exists already: nothing was published"),
        _dynamic(f"CREATE SCHEMA {_quote(version)}"),
    ]
    for mart in marts:
        built = _name(candidate_schema, mart)
        statements.append(
            f"IF OBJECT_ID({_literal(built)}, N'U') IS NULL "
            + _refuse(f"{candidate_schema}.{mart} is no table dbt built in this run: nothing was published")
        )
        statements.append(f"ALTER SCHEMA {_quote(version)} TRANSFER {built}")
        statements.append(_dynamic(f"CREATE VIEW {built} AS SELECT * FROM {_name(version, mart)}"))
    statements += _consumer_views(consumer_schema, version, marts, retired, grant_to)
    statements.append(
        f"INSERT INTO {_quote(METADATA_SCHEMA)}.[versions] ([consumer_schema], [number], [run_id], [built_at], "
        f"[row_counts], [published_at]) VALUES ({_literal(consumer_schema)}, {int(number)}, {_literal(run_id)}, "
        f"{_literal(built_at)}, {_literal(json.dumps(row_counts, sort_keys=True))}, {_literal(published_at)})"
    )
    statements += _point_at(consumer_schema, number, published_at)
    return Script(f"publish {version}", _transaction(statements, lock_timeout_ms), atomic=True)


def switch_script(
    consumer_schema: str,
    number: int,
    marts: Sequence[str],
    switched_at: str,
    retired: Sequence[str] = (),
    grant_to: str | None = None,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> Script:
    """A kept version (its `marts`) becomes the published one again, in one transaction."""
    version = version_schema(consumer_schema, number)
    statements = [
        f"IF SCHEMA_ID({_literal(version)}) IS NULL " + _refuse(f"schema {version} is gone: nothing was switched")
    ]
    statements += [
        f"IF OBJECT_ID({_literal(_name(version, mart))}, N'U') IS NULL "
        + _refuse(f"{version}.{mart} is gone: nothing was switched")
        for mart in marts
    ]
    statements += _consumer_views(consumer_schema, version, marts, retired, grant_to)
    statements += _point_at(consumer_schema, number, switched_at)
    return Script(f"switch to {version}", _transaction(statements, lock_timeout_ms), atomic=True)


def incremental_copy_script(
    consumer_schema: str,
    candidate_schema: str,
    number: int,
    marts: Sequence[str],
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> Script:
    """Before an incremental build: each of `marts` in the candidate becomes a table copy of
    version `number`'s (SELECT INTO, minimally logged where the recovery model allows), in place
    of the view publishing left there or what a failed run built; in one transaction. dbt merges
    into a table only: over a view it would rebuild every row."""
    version = version_schema(consumer_schema, number)
    statements = [
        f"IF SCHEMA_ID({_literal(candidate_schema)}) IS NULL {_dynamic(f'CREATE SCHEMA {_quote(candidate_schema)}')}"
    ]
    for mart in marts:
        built = _name(candidate_schema, mart)
        statements.append(f"DROP VIEW IF EXISTS {built}")
        statements.append(f"DROP TABLE IF EXISTS {built}")
        statements.append(f"SELECT * INTO {built} FROM {_name(version, mart)}")
    return Script(f"copy {version} into {candidate_schema}", _transaction(statements, lock_timeout_ms), atomic=True)


def drop_version_script(
    consumer_schema: str,
    number: int,
    tables: Sequence[str],
    views: Sequence[str] = (),
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> Script:
    """Drop one version: its objects (SQL Server has no DROP SCHEMA ... CASCADE), its schema and
    its row, in one transaction; never the published one."""
    version = version_schema(consumer_schema, number)
    statements = [
        f"IF EXISTS (SELECT 1 FROM {_quote(METADATA_SCHEMA)}.[published] WHERE [consumer_schema] = "
        f"{_literal(consumer_schema)} AND [number] = {int(number)}) "
        + _refuse(f"{version} is the published version: it is not dropped"),
        *(f"DROP VIEW IF EXISTS {_name(version, view)}" for view in views),
        *(f"DROP TABLE IF EXISTS {_name(version, table)}" for table in tables),
        f"DROP SCHEMA IF EXISTS {_quote(version)}",
        f"DELETE FROM {_quote(METADATA_SCHEMA)}.[versions] WHERE [consumer_schema] = {_literal(consumer_schema)} "
        f"AND [number] = {int(number)}",
    ]
    return Script(f"drop {version}", _transaction(statements, lock_timeout_ms), atomic=True)


def lock_script(resource: str, wait: bool) -> Script:
    """Take the target's application lock for this session: at once or not at all, or waiting for
    it (`wait`). The answer, one row: sp_getapplock's result (0 or 1 granted, below 0 not)."""
    return Script(
        "take the lock",
        (
            "SET NOCOUNT ON",
            "DECLARE @result INT",
            f"EXEC @result = sys.sp_getapplock @Resource = {_literal(resource)}, @LockMode = N'Exclusive', "
            f"@LockOwner = N'Session', @LockTimeout = {-1 if wait else 0}",
            "SELECT @result AS [result]",
        ),
    )


def holder_script(resource: str, holder: LockHolder) -> Script:
    """Say who holds the lock, where a session that is refused it can read it."""
    table = f"{_quote(METADATA_SCHEMA)}.[lock_holders]"
    return Script(
        "name the holder",
        (
            "SET NOCOUNT ON",
            f"DELETE FROM {table} WHERE [resource] = {_literal(resource)}",
            f"INSERT INTO {table} ([resource], [run_id], [host], [pid], [since], [session_id]) VALUES "
            f"({_literal(resource)}, {_literal(holder.run_id)}, {_literal(holder.host)}, {int(holder.pid)}, "
            f"{_literal(holder.since)}, @@SPID)",
        ),
    )


def lock_holder_query(resource: str) -> str:
    return (
        f"SELECT [run_id], [host], [pid], [since] FROM {_quote(METADATA_SCHEMA)}.[lock_holders] "
        f"WHERE [resource] = {_literal(resource)}"
    )


def release_script(resource: str) -> Script:
    return Script(
        "release the lock",
        (
            "SET NOCOUNT ON",
            f"DELETE FROM {_quote(METADATA_SCHEMA)}.[lock_holders] WHERE [resource] = {_literal(resource)} "
            "AND [session_id] = @@SPID",
            f"EXEC sys.sp_releaseapplock @Resource = {_literal(resource)}, @LockOwner = N'Session'",
        ),
    )


def versions_query(consumer_schema: str) -> str:
    meta = _quote(METADATA_SCHEMA)
    return (
        "SELECT v.[number], v.[run_id], v.[built_at], v.[row_counts], v.[published_at], "
        "CASE WHEN p.[number] = v.[number] THEN 1 ELSE 0 END AS [current] "
        f"FROM {meta}.[versions] AS v LEFT JOIN {meta}.[published] AS p ON p.[consumer_schema] = v.[consumer_schema] "
        f"WHERE v.[consumer_schema] = {_literal(consumer_schema)} ORDER BY v.[number] DESC"
    )


def published_number_query(consumer_schema: str) -> str:
    return (
        f"SELECT [number] FROM {_quote(METADATA_SCHEMA)}.[published] "
        f"WHERE [consumer_schema] = {_literal(consumer_schema)}"
    )


def version_schemas_query(consumer_schema: str) -> str:
    """Every schema named like a version of `consumer_schema` (`_` is a LIKE wildcard: escaped)."""
    pattern = consumer_schema.replace("[", "[[]").replace("_", "[_]").replace("%", "[%]") + "[_][_]v%"
    return f"SELECT [name] FROM sys.schemas WHERE [name] LIKE {_literal(pattern)}"


def schema_objects_query(schema: str) -> str:
    """The tables and views in `schema` (what its drop must drop first)."""
    return (
        f"SELECT [name], RTRIM([type]) FROM sys.objects WHERE [schema_id] = SCHEMA_ID({_literal(schema)}) "
        "AND [type] IN ('U', 'V') ORDER BY [name]"
    )


def columns_query(schema: str) -> str:
    return (
        "SELECT [TABLE_NAME], [COLUMN_NAME], [DATA_TYPE], [CHARACTER_MAXIMUM_LENGTH], [NUMERIC_PRECISION], "
        "[NUMERIC_SCALE], [DATETIME_PRECISION] FROM INFORMATION_SCHEMA.COLUMNS "
        f"WHERE [TABLE_SCHEMA] = {_literal(schema)} ORDER BY [TABLE_NAME], [ORDINAL_POSITION]"
    )


def row_counts_query(schema: str, marts: Sequence[str]) -> str:
    return "SELECT " + ", ".join(f"(SELECT COUNT_BIG(*) FROM {_name(schema, mart)})" for mart in marts)


def _distinct(left: str, right: str) -> str:
    """`left IS DISTINCT FROM right` as every SQL Server has it (the operator itself is 2022's):
    two NULLs are not distinct, a NULL and a value are."""
    return f"NOT EXISTS (SELECT {left} INTERSECT SELECT {right})"


def mart_diff_query(candidate: str, published: str, key: Sequence[str], columns: Sequence[str]) -> str:
    return diff_sql(_quote, candidate, published, key, columns, distinct=_distinct)


_CHARACTER_TYPES = {"char", "varchar", "nchar", "nvarchar", "binary", "varbinary"}
_FRACTIONAL_SECOND_TYPES = {"datetime2", "datetimeoffset", "time"}


def _column_type(
    data_type: str, length: int | None, precision: int | None, scale: int | None, fraction: int | None
) -> str:
    """INFORMATION_SCHEMA's parts as the type a column was declared with: `nvarchar(max)`,
    `numeric(38,6)`, `datetime2(6)`; a change of length or precision is a change of type."""
    kind = data_type.lower()
    if kind in _CHARACTER_TYPES and length is not None:
        return f"{kind}({'max' if length == -1 else length})"
    if kind in ("decimal", "numeric") and precision is not None:
        return f"{kind}({precision},{scale or 0})"
    if kind in _FRACTIONAL_SECOND_TYPES and fraction is not None:
        return f"{kind}({fraction})"
    return kind


def publishing_scripts(
    consumer_schema: str,
    candidate_schema: str,
    marts: Sequence[str],
    grant_to: str | None,
    database: str,
    keys: dict[str, Sequence[str]] | None = None,
    columns: dict[str, Sequence[str]] | None = None,
) -> list[Script]:
    """Everything dataops runs to publish, roll back, drop versions and hold the target, rendered
    for `marts` as a run would (v2 published over v1, one retired mart), for offline validation.
    A read query is a one-statement script. `keys` and `columns`: what the data diff compares."""
    at = "2000-01-01T00:00:00+00:00"
    resource = lock_resource(database)
    holder = LockHolder("20000101T000000Z-000000", "host", 1, at)
    retired = ["a_retired_mart"]
    scripts = [
        metadata_script(),
        lock_script(resource, wait=False),
        lock_script(resource, wait=True),
        holder_script(resource, holder),
        release_script(resource),
        publish_script(
            consumer_schema,
            candidate_schema,
            2,
            marts,
            holder.run_id,
            at,
            {f"{consumer_schema}.{mart}": 0 for mart in marts},
            at,
            retired,
            grant_to,
        ),
        switch_script(consumer_schema, 1, marts, at, retired, grant_to),
        drop_version_script(consumer_schema, 1, marts),
        incremental_copy_script(consumer_schema, candidate_schema, 1, marts),
    ]
    reads = [
        ("lock holder", lock_holder_query(resource)),
        ("versions", versions_query(consumer_schema)),
        ("published version", published_number_query(consumer_schema)),
        ("version schemas", version_schemas_query(consumer_schema)),
        ("version objects", schema_objects_query(version_schema(consumer_schema, 1))),
        ("columns", columns_query(candidate_schema)),
        ("published rows", row_counts_query(version_schema(consumer_schema, 1), marts)),
    ]
    for mart, key in (keys or {}).items():
        if key:
            reads.append(
                (
                    f"data diff of {mart}",
                    mart_diff_query(
                        _name(candidate_schema, mart),
                        _name(version_schema(consumer_schema, 1), mart),
                        key,
                        (columns or {}).get(mart) or key,
                    ),
                )
            )
    return scripts + [Script(name, (sql,)) for name, sql in reads]


def limited_select(sql: str, limit: int) -> str:
    """At most `limit` rows of `sql` with TOP. T-SQL allows no WITH inside a derived table, and
    dbt's generic tests start with one: sqlglot's T-SQL writer lifts the CTEs to the top."""
    import sqlglot
    from sqlglot import exp

    query = sqlglot.parse_one(sql, read="tsql")
    if not isinstance(query, exp.Query):
        raise DataOpsError(f"not a query that returns rows: {query.key.upper()}")
    return exp.select("*").from_(query.subquery("limited")).limit(int(limit)).sql(dialect="tsql")


def lock_resource(database: str) -> str:
    """The application lock one run holds on a warehouse. Application locks are scoped to their
    database, and everything a run writes (sources, staging, the candidate, versions) is in it:
    two targets on one database are one warehouse, and share its lock."""
    return f"dataops:{database}"[:255]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SqlServerWarehouse:
    def __init__(self, connection: dict[str, str], consumer_schema: str = "marts") -> None:
        self.consumer_schema = consumer_schema
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
        return sqlalchemy.URL.create("mssql+pyodbc", query={"odbc_connect": odbc}).render_as_string(hide_password=False)

    @property
    def location(self) -> str:
        return f"{self.server}:{self.port}/{self.database}"

    @property
    def lock_resource(self) -> str:
        return lock_resource(self.database)

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
            raise self._error("connecting (check DBT_<TARGET>_SERVER / _PORT / _USER / _PASSWORD)", error) from error

    def ping(self) -> str:
        connection = self._connect(autocommit=True)
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT @@VERSION")
            return " ".join(str(cursor.fetchone()[0]).split())[:120]
        finally:
            connection.close()

    def gx_datasource(self, context: Any, name: str, published: bool = False) -> Any:
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
                cursor.execute(f"IF SCHEMA_ID(N'{table.schema}') IS NULL EXEC(N'CREATE SCHEMA {_quote(table.schema)}')")
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
                cursor.execute(f"EXEC sp_rename N'{table.schema}.{table.name}{INCOMING_SUFFIX}', N'{table.name}'")
            for statement in _SOURCE_LOAD_STATEMENTS:
                cursor.execute(statement)
            cursor.execute(
                f"INSERT INTO {_SOURCE_LOAD} (load_id, loaded_at) VALUES (?, SYSUTCDATETIME())", new_load_id()
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

    def source_load(self) -> str | None:
        if f"{SOURCE_LOAD_SCHEMA}.{SOURCE_LOAD_TABLE}" not in self._relations():
            return None
        rows = self.read_only_query(f"SELECT TOP 1 load_id FROM {_SOURCE_LOAD}").rows
        return str(rows[0][0]) if rows else None

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
            for name in qualified_names
            if name.lower() in present
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

    def sample_rows(self, sql: str, limit: int) -> QueryResult:
        return self.read_only_query(limited_select(sql, limit))

    # One writer per target -------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, holder: LockHolder, wait: bool) -> Iterator[None]:
        """An application lock owned by a session of its own, kept open for the block: the server
        releases it when that session ends, however the run ends (a killed run's session dies with
        its connection). Its holder is written to dataops.lock_holders for a refused run to name."""
        import mssql_python

        connection = self._connect(autocommit=True)
        cursor = connection.cursor()
        taken = False
        try:
            try:
                cursor.execute(lock_script(self.lock_resource, wait).sql)
                result = int(cursor.fetchone()[0])
            except mssql_python.Error as error:
                raise self._error("taking the target's lock", error) from error
            if result < 0:
                if result == -1 and not wait:
                    raise TargetBusy(self._lock_holder(cursor))
                raise DataOpsError(
                    f"taking the target's lock on SQL Server {self.location}: sp_getapplock "
                    f"{_APPLOCK_ERRORS.get(result, f'answered {result}')}"
                )
            taken = True
            try:
                self._run(cursor, metadata_script())
                self._run(cursor, holder_script(self.lock_resource, holder))
            except mssql_python.Error as error:
                raise self._error("naming the target's holder", error) from error
            yield
        finally:
            if taken:
                # Pooled connections outlive close(): let go of the lock here, not with the session.
                with contextlib.suppress(mssql_python.Error):
                    self._run(cursor, release_script(self.lock_resource))
            connection.close()

    def _lock_holder(self, cursor: Any) -> LockHolder | None:
        import mssql_python

        try:
            cursor.execute(lock_holder_query(self.lock_resource))
            row = cursor.fetchone()
        except mssql_python.Error:
            return None  # the holder has not said yet (or nothing ever made the table)
        return LockHolder(str(row[0]), str(row[1]), int(row[2]), str(row[3])) if row else None

    # Publishing ------------------------------------------------------------------------------

    @staticmethod
    def _run(cursor: Any, script: Script) -> None:
        """Send one batch, and read every result it has: an error in a later statement of a batch
        reaches the client only as it reads on."""
        cursor.execute(script.sql)
        while cursor.nextset():
            pass

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.read_only_query(sql).rows

    def _has_metadata(self) -> bool:
        return bool(
            self._rows(
                f"SELECT 1 WHERE OBJECT_ID({_literal(f'{_quote(METADATA_SCHEMA)}.[published]')}, N'U') IS NOT NULL"
            )
        )

    def _published_number(self) -> int | None:
        if not self._has_metadata():
            return None
        rows = self._rows(published_number_query(self.consumer_schema))
        return int(rows[0][0]) if rows else None

    def _version_schemas(self) -> dict[int, str]:
        schemas = {}
        for (name,) in self._rows(version_schemas_query(self.consumer_schema)):
            number = _version_number(self.consumer_schema, name)
            if number is not None:
                schemas[number] = name
        return schemas

    def _objects(self, schema: str) -> dict[str, str]:
        """Name to type (`U` table, `V` view) of what `schema` holds."""
        return {str(name): str(kind) for name, kind in self._rows(schema_objects_query(schema))}

    def _tables(self, schema: str) -> list[str]:
        return sorted(name for name, kind in self._objects(schema).items() if kind == "U")

    def _swap(self, script: Script, doing: str, number: int) -> None:
        """Run one atomic script, again when a consumer's lock timed it out (it changed nothing),
        and check that it committed: `number` is the published version."""
        import mssql_python

        for attempt in range(1, SWAP_ATTEMPTS + 1):
            connection = self._connect(autocommit=True)
            cursor = connection.cursor()
            try:
                self._run(cursor, script)
                cursor.execute(published_number_query(self.consumer_schema))
                row = cursor.fetchone()
                if row is None or int(row[0]) != number:
                    raise DataOpsError(f"{doing} on SQL Server {self.location} did not commit: nothing was changed")
                return
            except mssql_python.Error as error:
                with contextlib.suppress(mssql_python.Error):
                    cursor.execute("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
                if _LOCK_TIMEOUT_TEXT in str(error).lower() and attempt < SWAP_ATTEMPTS:
                    time.sleep(attempt)
                    continue
                raise self._error(f"{doing} (nothing was changed)", error) from error
            finally:
                connection.close()

    def columns(self, schema: str, marts: Sequence[str], published: bool = False) -> dict[str, list[Column]]:
        if published:
            number = self._published_number()
            if number is None:
                return {}
            schema = version_schema(self.consumer_schema, number)
        wanted = {mart.lower(): mart for mart in marts}
        found: dict[str, list[Column]] = {}
        for table, column, data_type, length, precision, scale, fraction in self._rows(columns_query(schema)):
            if str(table).lower() in wanted:
                found.setdefault(wanted[str(table).lower()], []).append(
                    Column(str(column), _column_type(str(data_type), length, precision, scale, fraction))
                )
        return found

    def published_row_counts(self, marts: Sequence[str]) -> dict[str, int]:
        number = self._published_number()
        if number is None:
            return {}
        schema = version_schema(self.consumer_schema, number)
        present = {name.lower(): name for name in self._tables(schema)}
        names = [mart for mart in marts if mart.lower() in present]
        if not names:
            return {}
        counts = self._rows(row_counts_query(schema, [present[m.lower()] for m in names]))[0]
        return {mart: int(count) for mart, count in zip(names, counts, strict=True)}

    def data_diff(self, candidate_schema: str, mart: str, key: Sequence[str], columns: Sequence[str]) -> MartDiff:
        """Compared: the columns both sides have, with the same type (a column added, dropped or
        retyped is the column check's finding, not a changed value in every row)."""
        number = self._published_number()
        if number is None:
            return MartDiff(mart, tuple(key), 0, 0, 0)
        published = version_schema(self.consumer_schema, number)
        before = {c.name.lower(): c.type for c in self.columns(published, [mart]).get(mart, [])}
        now = {c.name.lower(): c.type for c in self.columns(candidate_schema, [mart]).get(mart, [])}
        if any(before.get(k.lower()) is None or before.get(k.lower()) != now.get(k.lower()) for k in key):
            return MartDiff(mart, tuple(key), 0, 0, 0)  # no common key to join on
        compared = [c for c in columns if c.lower() in before and before[c.lower()] == now.get(c.lower())]
        row = self._rows(mart_diff_query(_name(candidate_schema, mart), _name(published, mart), key, compared))
        return mart_diff(mart, key, compared, row[0] if row else ())

    def versions(self) -> list[Version]:
        if not self._has_metadata():
            return []
        return [
            Version(int(number), str(run_id), str(built_at), json.loads(counts or "{}"), published_at, bool(current))
            for number, run_id, built_at, counts, published_at, current in self._rows(
                versions_query(self.consumer_schema)
            )
        ]

    def _retired(self, current: int | None, marts: Sequence[str]) -> list[str]:
        """The marts of the published version that `marts` has not: their consumer views go."""
        if current is None:
            return []
        keep = {mart.lower() for mart in marts}
        return [m for m in self._tables(version_schema(self.consumer_schema, current)) if m.lower() not in keep]

    def publish(
        self,
        candidate_schema: str,
        marts: Sequence[str],
        run_id: str,
        row_counts: dict[str, int],
        grant_to: str | None = None,
    ) -> Version:
        import mssql_python

        if not marts:
            raise DataOpsError("nothing to publish: the project has no marts")
        connection = self._connect(autocommit=True)
        try:
            self._run(connection.cursor(), metadata_script())
        except mssql_python.Error as error:
            raise self._error("creating dataops' metadata tables", error) from error
        finally:
            connection.close()
        current = self._published_number()
        known = set(self._version_schemas()) | {v.number for v in self.versions()}
        number = max(known, default=0) + 1
        built_at = published_at = _now()
        script = publish_script(
            self.consumer_schema,
            candidate_schema,
            number,
            marts,
            run_id,
            built_at,
            row_counts,
            published_at,
            self._retired(current, marts),
            grant_to,
        )
        self._swap(script, f"publishing {version_schema(self.consumer_schema, number)}", number)
        return Version(number, run_id, built_at, dict(row_counts), published_at, True)

    def fill_candidate(self, candidate_schema: str, marts: Sequence[str]) -> list[str]:
        # Nothing to copy: publishing leaves in the candidate a view of each table it moved into
        # the version (publish_script), so the candidate already shows every published mart.
        return []

    def prepare_incremental(self, candidate_schema: str, marts: Sequence[str]) -> None:
        import mssql_python

        number = self._published_number()
        if number is None:
            raise DataOpsError("an incremental build needs a published version to start from: run a full one first")
        connection = self._connect(autocommit=True)
        cursor = connection.cursor()
        try:
            self._run(cursor, incremental_copy_script(self.consumer_schema, candidate_schema, number, marts))
        except mssql_python.Error as error:
            with contextlib.suppress(mssql_python.Error):
                cursor.execute("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
            raise self._error(f"copying v{number} into {candidate_schema} for an incremental build", error) from error
        finally:
            connection.close()

    def switch_to(self, number: int, grant_to: str | None = None) -> Version:
        kept = {version.number: version for version in self.versions()}
        if number not in kept:
            raise DataOpsError(
                f"there is no version {number} to publish (kept: "
                f"{', '.join(f'v{n}' for n in sorted(kept)) or 'none'}): list them with `dataops versions`"
            )
        marts = self._tables(version_schema(self.consumer_schema, number))
        if not marts:
            raise DataOpsError(f"v{number} has no marts left in {version_schema(self.consumer_schema, number)}")
        script = switch_script(
            self.consumer_schema,
            number,
            marts,
            _now(),
            self._retired(self._published_number(), marts),
            grant_to,
        )
        self._swap(script, f"switching to v{number}", number)
        version = kept[number]
        return Version(version.number, version.run_id, version.built_at, version.row_counts, version.published_at, True)

    def drop_versions(self, keep: int) -> list[int]:
        """A version a consumer's query still reads (it began before the switch) times its drop
        out: it is left for the next run to drop. A schema named like a version that no metadata
        names goes too, but only once a version is published (the metadata is there to tell)."""
        import mssql_python

        current = self._published_number()
        if current is None:
            return []  # nothing published: no metadata to tell a version from a schema someone made
        recorded = {version.number for version in self.versions()}
        schemas = self._version_schemas()
        others = sorted((n for n in recorded if n != current), reverse=True)
        keeping = {current, *others[: max(keep - 1, 0)]}
        dropped = []
        for number in sorted((recorded | set(schemas)) - keeping):
            objects = self._objects(schemas[number]) if number in schemas else {}
            script = drop_version_script(
                self.consumer_schema,
                number,
                tables=sorted(n for n, kind in objects.items() if kind == "U"),
                views=sorted(n for n, kind in objects.items() if kind == "V"),
            )
            connection = self._connect(autocommit=True)
            cursor = connection.cursor()
            try:
                self._run(cursor, script)
            except mssql_python.Error as error:
                with contextlib.suppress(mssql_python.Error):
                    cursor.execute("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
                if _LOCK_TIMEOUT_TEXT in str(error).lower():
                    continue
                raise self._error(f"dropping v{number} (it is kept)", error) from error
            finally:
                connection.close()
            dropped.append(number)
        return dropped
