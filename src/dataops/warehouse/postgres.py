"""A PostgreSQL warehouse (psycopg2), reached with the target's profile fields (the PG* variables)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType, SourceTable
from dataops.warehouse import QueryResult

# Spelled as PostgreSQL's format_type() prints them, so an existing table can be compared as is.
_SQL_TYPES: dict[ColumnType, str] = {
    ColumnType.TINYINT: "smallint",
    ColumnType.SMALLINT: "smallint",
    ColumnType.INT: "integer",
    ColumnType.BIT: "boolean",
    ColumnType.MONEY: "numeric(19,4)",
    ColumnType.LINE_TOTAL: "numeric(38,6)",
    ColumnType.WEIGHT: "numeric(8,2)",
    ColumnType.DATETIME: "timestamp without time zone",
    ColumnType.STRING: "text",
    # Not uuid: that type would print GUIDs in lower case, and the sources keep SQL Server's text.
    ColumnType.GUID: "character varying",
}

# Rows rendered to CSV per step of a COPY: bounds memory whatever the table's size.
_BATCH_ROWS = 100_000


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    """`schema.table` (a source table such as `Sales.Customer`, or a mart) as a quoted relation."""
    return ".".join(_quote(part) for part in name.split(".", 1))


def _relation(table: SourceTable) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def _one_line(error: BaseException) -> str:
    """The server's own message on one line (the CLI prints one), with the COPY line it failed on;
    without the echo of the statement and the caret under it."""
    diag = getattr(error, "diag", None)
    message = diag.message_primary if diag is not None else None
    if not message:
        # Raised by libpq rather than the server: its first line says what failed and how.
        lines = str(error).strip().splitlines()
        return " ".join(lines[0].split()) if lines else type(error).__name__
    context = (diag.context or "").split(":", 1)[0]
    return f"{message} ({context})" if context.startswith("COPY") else message


def create_table_sql(table: SourceTable) -> str:
    columns = ",\n    ".join(
        f"{_quote(c.name)} {_SQL_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
    )
    return f"CREATE TABLE {_relation(table)} (\n    {columns}\n)"


class _CsvStream:
    """A read-only file over the CSV rendering of an Arrow table, one batch at a time, for COPY.
    pyarrow writes decimals as exact text, NULL as an empty field and an empty string as "",
    which is how PostgreSQL's CSV format tells them apart."""

    def __init__(self, data: pa.Table) -> None:
        self._batches: Iterator[pa.RecordBatch] = iter(data.to_batches(max_chunksize=_BATCH_ROWS))
        self._current = io.BytesIO()
        self._options = pa_csv.WriteOptions(include_header=False)

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self._current.read(size)
            if chunk:
                return chunk
            batch = next(self._batches, None)
            if batch is None:
                return b""
            self._current = io.BytesIO()
            pa_csv.write_csv(batch, self._current, self._options)
            self._current.seek(0)


class PostgresWarehouse:
    """`on_table_loaded` is called with each table's name once its rows are in, before the commit
    (a seam for tests that interrupt a load half-way)."""

    def __init__(
        self, connection: dict[str, Any], on_table_loaded: Callable[[str], None] | None = None
    ) -> None:
        self.host = str(connection.get("host") or "localhost")
        self.port = str(connection.get("port") or "5432")
        self.user = str(connection.get("user") or "")
        self.password = str(connection.get("password") or "")
        self.dbname = str(connection.get("dbname") or connection.get("database") or "")
        self.on_table_loaded = on_table_loaded

    @property
    def location(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def _connect(self, read_only: bool = False) -> Connection:
        # Read-only twice over: psycopg2 opens each transaction with BEGIN READ ONLY, and the session
        # default covers any transaction the statement itself might start. (A string of several
        # statements with its own COMMIT could still undo that: callers pass one SELECT only.)
        options = "-c default_transaction_read_only=on" if read_only else None
        try:
            connection = psycopg2.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.dbname,
                connect_timeout=10,
                application_name="dataops",
                client_encoding="UTF8",
                options=options,
            )
        except psycopg2.Error as error:
            raise DataOpsError(
                f"cannot connect to PostgreSQL at {self.location} as '{self.user}': {_one_line(error)}. "
                "Check PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE"
            ) from error
        if read_only:
            connection.set_session(readonly=True)
        return connection

    def replace_source_tables(self, tables: dict[str, pa.Table]) -> None:
        connection = self._connect()
        qualified_name = "?"
        try:
            try:
                # psycopg2 opens one transaction at the first statement and only commit() ends it, so
                # TRUNCATE, DROP, CREATE and COPY of every table succeed together or not at all.
                with connection.cursor() as cursor:
                    for qualified_name, data in tables.items():
                        self._load_table(cursor, SOURCE_TABLES_BY_NAME[qualified_name], data)
                        if self.on_table_loaded is not None:
                            self.on_table_loaded(qualified_name)
            except (psycopg2.Error, pa.ArrowException, KeyError) as error:
                self._rollback(connection)
                raise DataOpsError(
                    f"loading {qualified_name} into PostgreSQL {self.location} failed, nothing was changed: "
                    f"{_one_line(error)}"
                ) from error
            try:
                connection.commit()
            except psycopg2.Error as error:
                # Lost during COMMIT, the outcome is the server's secret: do not claim either way.
                raise DataOpsError(
                    f"committing the load into PostgreSQL {self.location} failed: {_one_line(error)}; "
                    "the tables hold either all the new rows or all the old ones: run the load again"
                ) from error
        finally:
            connection.close()

    def _load_table(self, cursor: Cursor, table: SourceTable, data: pa.Table) -> None:
        self._prepare(cursor, table)
        # Contract types (zero-copy when they already match); NOT NULL is left to the server.
        typed = data.select(table.column_names).cast(
            pa.schema([pa.field(c.name, c.type.arrow) for c in table.columns])
        )
        columns = ", ".join(_quote(name) for name in table.column_names)
        cursor.copy_expert(
            f"COPY {_relation(table)} ({columns}) FROM STDIN WITH (FORMAT csv)",
            _CsvStream(typed),
            size=1 << 20,
        )

    def _prepare(self, cursor: Cursor, table: SourceTable) -> None:
        """An empty table of the contract's shape, inside the load's transaction."""
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(table.schema)}")
        expected = [(c.name, _SQL_TYPES[c.type], not c.nullable) for c in table.columns]
        if self._columns(cursor, table) == expected:
            # dbt's staging views select from these tables: TRUNCATE keeps them (and is transactional).
            cursor.execute(f"TRUNCATE TABLE {_relation(table)}")
            return
        # A missing table, or one of another shape. CASCADE drops views built on it, which is
        # acceptable: they are dbt's, and the next `dbt build` recreates them over the new table.
        cursor.execute(f"DROP TABLE IF EXISTS {_relation(table)} CASCADE")
        cursor.execute(create_table_sql(table))

    @staticmethod
    def _columns(cursor: Cursor, table: SourceTable) -> list[tuple[str, str, bool]]:
        """(name, type, not null) of an existing ordinary table, in order; [] when there is none."""
        cursor.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r' "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table.schema, table.name),
        )
        return [(name, type_, not_null) for name, type_, not_null in cursor.fetchall()]

    @staticmethod
    def _rollback(connection: Connection) -> None:
        # A killed connection cannot roll back, but the server already discarded its transaction.
        with contextlib.suppress(psycopg2.Error):
            connection.rollback()

    def ping(self) -> str:
        version = self._read("SELECT version()").rows[0][0]
        return f"{' '.join(str(version).split())[:120]}, {self.location}"

    @property
    def over_socket(self) -> bool:
        """libpq's rule: a host that is an absolute path is the folder of a Unix socket (its default
        for a local server, e.g. /var/run/postgresql), one that starts with @ an abstract socket."""
        return self.host.startswith(("/", "@"))

    def gx_connection_url(self) -> str:
        """The SQLAlchemy URL for GX. A socket folder cannot be a URL's host, so it goes where
        SQLAlchemy's psycopg2 dialect takes it from, the query (`@/db?host=/dir&port=5432`); the
        port names the socket file there. psycopg2 then gets host= and port= as libpq would."""
        import sqlalchemy

        socket = self.over_socket
        return sqlalchemy.URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password or None,
            host=None if socket else self.host,
            port=None if socket else int(self.port),
            database=self.dbname,
            query={"host": self.host, "port": self.port} if socket else {},
        ).render_as_string(hide_password=False)

    def gx_datasource(self, context: Any, name: str) -> Any:
        # add_sql, not add_postgres: GX's PostgresDatasource only narrows the URL to a network DSN,
        # which demands a host and rejects the socket form ("URL host invalid"); the checks run
        # the same either way, in PostgreSQL's dialect. An ephemeral GX context keeps the URL in
        # memory only: the password is never written out.
        return context.data_sources.add_sql(name=name, connection_string=self.gx_connection_url())

    def missing_source_tables(self) -> list[str]:
        rows = self._read(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('Sales', 'Person', 'Production')"
        ).rows
        present = {f"{schema}.{name}" for schema, name in rows}
        return [t.qualified_name for t in SOURCE_TABLES if t.qualified_name not in present]

    def missing_relations(self, schema: str, names: list[str]) -> list[str]:
        # pg_class, not information_schema.tables: that one leaves out materialized views. An
        # unquoted name in a query is folded to lower case, so that is the name looked for.
        rows = self._read(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).rows
        present = {f"{namespace}.{relation}" for namespace, relation in rows}
        return [f"{schema}.{name}" for name in names if f"{schema}.{name}".lower() not in present]

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        if not qualified_names:
            return {}
        # A missing relation would fail the whole count at parse time: ask first which exist.
        exists = self._read("SELECT " + ", ".join(
            f"to_regclass('{_qualified(name).replace(chr(39), chr(39) * 2)}') IS NOT NULL" for name in qualified_names
        )).rows[0]
        names = [name for name, present in zip(qualified_names, exists, strict=True) if present]
        if not names:
            return {}
        counts = self._read(
            "SELECT " + ", ".join(f"(SELECT count(*) FROM {_qualified(name)})" for name in names)
        ).rows[0]
        return dict(zip(names, (int(count) for count in counts), strict=True))

    def read_only_query(self, sql: str) -> QueryResult:
        return self._read(sql)

    def _read(self, sql: str) -> QueryResult:
        """One statement in a read-only transaction that is rolled back, never committed."""
        connection = self._connect(read_only=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                columns = [d.name for d in cursor.description or []]
                rows = cursor.fetchall() if cursor.description else []
            return QueryResult(columns=columns, rows=rows)
        except psycopg2.Error as error:
            raise DataOpsError(f"query on PostgreSQL {self.location} failed: {_one_line(error)}") from error
        finally:
            self._rollback(connection)
            connection.close()
