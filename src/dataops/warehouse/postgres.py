"""A PostgreSQL warehouse (psycopg2), reached with the target's profile fields (the PG* variables).

Published versions are schemas: publishing renames the candidate schema dbt built to
`<consumer>__v<N>` and, in the same transaction, points one view per mart in the consumer schema at
it (`marts.fct_orders` is `SELECT * FROM marts__v7.fct_orders`), so every consumer query sees one
whole version: a statement locks the views it reads before it reads them, and the swap needs all of
them at once. Which version is published, and which were, is recorded in `dataops_publish` in the
same transaction. One run at a time holds the target with a session-level advisory lock on a
connection of its own, which the server releases when the run ends or its connection dies."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

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
    limited_select,
    mart_diff,
    new_load_id,
)

_SOURCE_LOAD = f"{SOURCE_LOAD_SCHEMA}.{SOURCE_LOAD_TABLE}"  # lower case: no quotes needed
_SOURCE_LOAD_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {SOURCE_LOAD_SCHEMA}; "
    f"CREATE TABLE IF NOT EXISTS {_SOURCE_LOAD} (load_id text NOT NULL, loaded_at timestamptz NOT NULL)"
)

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

# Where publishing keeps its records: not `dataops`, which would be the first schema of the default
# search_path ("$user", public) of a user named dataops and so catch every unqualified name.
_METADATA = "dataops_publish"
# The advisory lock that holds a target is (this, the consumer schema's crc32): advisory locks are
# per database already. The run history uses 724511 to 724513.
_HOLD_CLASS = 724520
# Taken while the records' tables are created (a publish that runs without holding the target).
_METADATA_LOCK_CLASS = 724521
_HOLDER_COMMENT = re.compile(r"/\* dataops holder (\{.*?\}) \*/", re.S)
_HOLDER_APPLICATION = re.compile(r"^dataops (\S+) pid (\d+) on (.*)$")
# PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name.
_APPLICATION_NAME_BYTES = 63
# How often a run that waits for the target asks again (a blocking pg_advisory_lock could not be
# interrupted with Ctrl-C: psycopg2 waits in C).
_HOLD_POLL_SECONDS = 0.25
# A swap that could not take the consumer views' locks in time: lock_not_available (lock_timeout),
# query_canceled (the LOCK statement's statement_timeout), deadlock_detected (never expected).
_BUSY = frozenset({"55P03", "57014", "40P01"})

_T = TypeVar("_T")


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
        self,
        connection: dict[str, Any],
        on_table_loaded: Callable[[str], None] | None = None,
        consumer_schema: str = "marts",
        lock_timeout: float = 2.0,
        publish_attempts: int = 6,
        on_swapped: Callable[[], None] | None = None,
    ) -> None:
        self.host = str(connection.get("host") or "localhost")
        self.port = str(connection.get("port") or "5432")
        self.user = str(connection.get("user") or "")
        self.password = str(connection.get("password") or "")
        self.dbname = str(connection.get("dbname") or connection.get("database") or "")
        self.on_table_loaded = on_table_loaded
        self.consumer_schema = consumer_schema
        # The longest a swap waits for the consumer views per try (capped below the server's
        # deadlock_timeout, see _swap), and how many tries before it gives up.
        self.lock_timeout = lock_timeout
        self.publish_attempts = max(1, publish_attempts)
        # Called inside the swap's transaction once it is all done, before its commit (a seam for
        # tests that kill a publish in the middle of it).
        self.on_swapped = on_swapped
        self._hold_key = (_HOLD_CLASS, zlib.crc32(consumer_schema.encode("utf-8")) & 0x7FFFFFFF)

    @property
    def location(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def _connect(self, read_only: bool = False, application_name: str = "dataops", **extra: Any) -> Connection:
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
                application_name=application_name,
                client_encoding="UTF8",
                options=options,
                **extra,
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
                    cursor.execute(_SOURCE_LOAD_DDL)
                    cursor.execute(f"DELETE FROM {_SOURCE_LOAD}")
                    cursor.execute(
                        f"INSERT INTO {_SOURCE_LOAD} (load_id, loaded_at) VALUES (%s, now())", (new_load_id(),)
                    )
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
        typed = data.select(table.column_names).cast(pa.schema([pa.field(c.name, c.type.arrow) for c in table.columns]))
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

    def gx_datasource(self, context: Any, name: str, published: bool = False) -> Any:
        # add_sql, not add_postgres: GX's PostgresDatasource only narrows the URL to a network DSN,
        # which demands a host and rejects the socket form ("URL host invalid"); the checks run
        # the same either way, in PostgreSQL's dialect. An ephemeral GX context keeps the URL in
        # memory only: the password is never written out.
        return context.data_sources.add_sql(name=name, connection_string=self.gx_connection_url())

    def source_load(self) -> str | None:
        exists = self._read(f"SELECT to_regclass('{_SOURCE_LOAD}') IS NOT NULL").rows
        if not exists or not exists[0][0]:
            return None
        loaded = self._read(f"SELECT load_id FROM {_SOURCE_LOAD}").rows
        return str(loaded[0][0]) if loaded else None

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
        exists = self._read(
            "SELECT "
            + ", ".join(
                f"to_regclass('{_qualified(name).replace(chr(39), chr(39) * 2)}') IS NOT NULL"
                for name in qualified_names
            )
        ).rows[0]
        names = [name for name, present in zip(qualified_names, exists, strict=True) if present]
        if not names:
            return {}
        counts = self._read("SELECT " + ", ".join(f"(SELECT count(*) FROM {_qualified(name)})" for name in names)).rows[
            0
        ]
        return dict(zip(names, (int(count) for count in counts), strict=True))

    def read_only_query(self, sql: str) -> QueryResult:
        """The warehouse as it is; the consumer schema's marts are views on the published version."""
        try:
            return self._read(sql)
        except DataOpsError as error:
            cause = error.__cause__
            missing_mart = (
                isinstance(cause, psycopg2.Error)
                and cause.pgcode == "42P01"
                and f'"{self.consumer_schema}.' in str(cause)
            )
            if missing_mart and self._published_schema() is None:
                raise DataOpsError(
                    f"nothing is published in {self.consumer_schema} yet: `dataops run` publishes the marts "
                    f"once every check passed (the last build is in {self.consumer_schema}__candidate)"
                ) from cause
            raise

    def sample_rows(self, sql: str, limit: int) -> QueryResult:
        return self._read(limited_select(sql, limit))

    def _reading(self, read: Callable[[Cursor], _T]) -> _T:
        """`read` with a cursor in a read-only transaction that is rolled back, on one connection."""
        connection = self._connect(read_only=True)
        try:
            with connection.cursor() as cursor:
                return read(cursor)
        except psycopg2.Error as error:
            raise DataOpsError(f"query on PostgreSQL {self.location} failed: {_one_line(error)}") from error
        finally:
            self._rollback(connection)
            connection.close()

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

    # One writer per target -------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, holder: LockHolder, wait: bool) -> Iterator[None]:
        """A session-level advisory lock on a connection of its own, open for the whole block: the
        server releases it when the block ends, or when the connection dies with the process. The
        lock statement carries the holder in a comment, which pg_stat_activity shows another run
        (its `query`, the session's last statement); application_name carries a short form."""
        document = json.dumps(holder.__dict__).replace("*/", "* /")
        application = _truncated(f"dataops {holder.run_id} pid {holder.pid} on {holder.host}", _APPLICATION_NAME_BYTES)
        # Keepalives on both ends: a holder whose machine vanished is noticed within about a minute.
        connection = self._connect(
            application_name=application, keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3
        )
        try:
            try:
                self._lock_target(connection, document, wait)
            except psycopg2.Error as error:
                raise DataOpsError(
                    f"cannot hold the target on PostgreSQL {self.location}: {_one_line(error)}"
                ) from error
            _HELD[self._held_id] = (connection, document)
            try:
                yield
            finally:
                _HELD.pop(self._held_id, None)
        finally:
            # Closing the session releases its advisory locks; a dead one released them already.
            with contextlib.suppress(psycopg2.Error):
                connection.close()

    def _lock_target(self, connection: Connection, document: str, wait: bool) -> None:
        connection.autocommit = True
        with connection.cursor() as cursor:
            # No timeout of the server's or the role's may end the session that holds the lock.
            cursor.execute(
                "SET statement_timeout = 0; SET lock_timeout = 0; "
                "SET idle_in_transaction_session_timeout = 0; SET tcp_keepalives_idle = 30; "
                "SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
            )
            if connection.server_version >= 140000:
                cursor.execute("SET idle_session_timeout = 0")
            try_lock = (
                f"SELECT pg_try_advisory_lock({self._hold_key[0]}, {self._hold_key[1]}) /* dataops holder {document} */"
            )
            while True:
                cursor.execute(try_lock)
                if cursor.fetchone()[0]:
                    return
                if not wait:
                    found = self._holder(cursor)
                    # Released between the two statements: try again rather than name nobody.
                    cursor.execute(try_lock)
                    if cursor.fetchone()[0]:
                        return
                    raise TargetBusy(found)
                time.sleep(_HOLD_POLL_SECONDS)

    @property
    def _held_id(self) -> tuple[str, str, str, int, int]:
        return (self.host, self.port, self.dbname, *self._hold_key)

    def _holder(self, cursor: Cursor) -> LockHolder | None:
        """Who holds the target's lock, from its session in pg_stat_activity."""
        cursor.execute(
            "SELECT a.pid, a.application_name, a.query, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = %s AND l.objid = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            self._hold_key,
        )
        row = cursor.fetchone()
        if row is None:
            return None
        backend_pid, application, query, backend_start = row
        found = _HOLDER_COMMENT.search(query or "")
        if found:
            with contextlib.suppress(ValueError, TypeError):
                return LockHolder(**json.loads(found.group(1)))
        # Another role's session shows no query to us: its application_name still says who it is.
        since = backend_start.astimezone(UTC).isoformat(timespec="seconds") if backend_start else "?"
        named = _HOLDER_APPLICATION.match(application or "")
        if named:
            return LockHolder(named.group(1), named.group(3), int(named.group(2)), since)
        return LockHolder(
            f"unknown (server process {backend_pid}, {application or 'no application name'})", "?", 0, since
        )

    def _check_hold(self) -> None:
        """When this process holds the target, make sure it still does before changing what
        consumers read: a session ended by the server (an administrator, a restart) has lost it."""
        found = _HELD.get(self._held_id)
        if found is None:
            return
        connection, document = found
        try:
            with connection.cursor() as cursor:
                # The session's last statement names its holder to other runs: this one must too.
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                    f"AND classid = {self._hold_key[0]} AND objid = {self._hold_key[1]} AND pid = pg_backend_pid() "
                    f"/* dataops holder {document} */"
                )
                held = cursor.fetchone()[0] > 0
        except psycopg2.Error:
            held = False
        if not held:
            raise DataOpsError(
                f"this run lost its hold on PostgreSQL {self.location} (the session that held it ended), "
                "so another run may be under way: nothing was published; run again"
            )

    # Publishing ------------------------------------------------------------------------------

    def _version_schema(self, number: int) -> str:
        return f"{self.consumer_schema}__v{number}"

    def _version_number(self, schema: str) -> int | None:
        found = re.fullmatch(re.escape(self.consumer_schema) + r"__v(\d+)", schema)
        return int(found.group(1)) if found else None

    def _published_schema(self, cursor: Cursor | None = None) -> str | None:
        if cursor is None:
            return self._reading(self._published_schema)
        number = self._published_number(cursor)
        return None if number is None else self._version_schema(number)

    def _published_number(self, cursor: Cursor) -> int | None:
        cursor.execute(f"SELECT to_regclass('{_METADATA}.published') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            f"SELECT number FROM {_quote(_METADATA)}.published WHERE consumer_schema = %s", (self.consumer_schema,)
        )
        row = cursor.fetchone()
        return None if row is None else int(row[0])

    def columns(self, schema: str, marts: Sequence[str], published: bool = False) -> dict[str, list[Column]]:
        def read(cursor: Cursor) -> dict[str, list[Column]]:
            found = self._published_schema(cursor) if published else schema
            return {} if found is None else self._columns_of(cursor, found, marts)

        return self._reading(read)

    @staticmethod
    def _columns_of(cursor: Cursor, schema: str, marts: Sequence[str]) -> dict[str, list[Column]]:
        cursor.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            (schema,),
        )
        by_relation: dict[str, list[Column]] = {}
        for relation, column, type_ in cursor.fetchall():
            by_relation.setdefault(relation, []).append(Column(column, type_))
        found = {}
        for mart in marts:
            columns = by_relation.get(mart, by_relation.get(mart.lower()))
            if columns is not None:
                found[mart] = columns
        return found

    def published_row_counts(self, marts: Sequence[str]) -> dict[str, int]:
        def read(cursor: Cursor) -> dict[str, int]:
            schema = self._published_schema(cursor)
            present = [] if schema is None else list(self._columns_of(cursor, schema, marts))
            if schema is None or not present:
                return {}
            cursor.execute(
                "SELECT " + ", ".join(f"(SELECT count(*) FROM {_quote(schema)}.{_quote(mart)})" for mart in present)
            )
            return dict(zip(present, (int(count) for count in cursor.fetchone()), strict=True))

        return self._reading(read)

    def data_diff(self, candidate_schema: str, mart: str, key: Sequence[str], columns: Sequence[str]) -> MartDiff:
        def read(cursor: Cursor) -> MartDiff:
            schema = self._published_schema(cursor)
            if schema is None:
                raise DataOpsError(
                    f"nothing is published in {self.consumer_schema} yet: there is nothing to compare with"
                )
            cursor.execute(
                diff_sql(
                    _quote,
                    f"{_quote(candidate_schema)}.{_quote(mart)}",
                    f"{_quote(schema)}.{_quote(mart)}",
                    key,
                    columns,
                )
            )
            return mart_diff(mart, key, columns, cursor.fetchone())

        return self._reading(read)

    def versions(self) -> list[Version]:
        return self._reading(self._versions)

    def _versions(self, cursor: Cursor) -> list[Version]:
        cursor.execute(f"SELECT to_regclass('{_METADATA}.versions') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute(
            f"SELECT v.number, v.run_id, v.built_at, v.row_counts, v.published_at, p.number IS NOT NULL "
            f"FROM {_quote(_METADATA)}.versions v LEFT JOIN {_quote(_METADATA)}.published p "
            "ON p.consumer_schema = v.consumer_schema AND p.number = v.number "
            "WHERE v.consumer_schema = %s ORDER BY v.number DESC",
            (self.consumer_schema,),
        )
        return [
            Version(
                int(number),
                run_id,
                _iso(built_at),
                {k: int(n) for k, n in counts.items()},
                _iso(published_at),
                bool(current),
            )
            for number, run_id, built_at, counts, published_at, current in cursor.fetchall()
        ]

    def publish(
        self,
        candidate_schema: str,
        marts: Sequence[str],
        run_id: str,
        row_counts: dict[str, int],
        grant_to: str | None = None,
    ) -> Version:
        names = sorted(dict.fromkeys(marts))
        if not names:
            raise DataOpsError(f"nothing to publish from {candidate_schema}: the run built no marts")
        self._check_hold()
        built_at = datetime.now(UTC)

        def change(cursor: Cursor, lock_ms: int) -> Version:
            missing = self._missing_in(cursor, candidate_schema, names)
            if missing:
                if missing == names and not self._schema_exists(cursor, candidate_schema):
                    problem = "there is no such schema"
                else:
                    problem = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in it"
                raise DataOpsError(f"cannot publish {candidate_schema}: {problem}; `dataops run` builds it")
            number = self._next_number(cursor)
            schema = self._version_schema(number)
            relations, swap = self._view_swap(cursor, candidate_schema, schema, names, grant_to)
            cursor.execute("SELECT now()")
            published_at = cursor.fetchone()[0]  # the transaction's: when it commits, all of it is
            # Nobody reads a version but through the consumer views, which run with their owner's rights.
            revoke = [f"REVOKE ALL ON SCHEMA {_quote(schema)} FROM PUBLIC"]
            if grant_to:
                revoke.append(f"REVOKE ALL ON SCHEMA {_quote(schema)} FROM {_quote(grant_to)}")
            record = cursor.mogrify(
                f"INSERT INTO {_quote(_METADATA)}.versions (consumer_schema, number, run_id, built_at, row_counts, "
                "marts, published_at) VALUES (%s, %s, %s, %s, %s, %s, now())",
                (self.consumer_schema, number, run_id, built_at, json.dumps(row_counts), names),
            ).decode()
            self._lock_and_run(
                cursor,
                relations,
                [
                    f"ALTER SCHEMA {_quote(candidate_schema)} RENAME TO {_quote(schema)}",
                    *revoke,
                    *swap,
                    record,
                    *self._switch_statements(cursor, number, "publish", run_id),
                ],
                lock_ms,
            )
            return Version(number, run_id, _iso(built_at), dict(row_counts), _iso(published_at), True)

        return self._swap(f"publishing {candidate_schema}", change, grant_to)

    def fill_candidate(self, candidate_schema: str, marts: Sequence[str]) -> list[str]:
        return self._copy_published(candidate_schema, marts, replace=False)

    def prepare_incremental(self, candidate_schema: str, marts: Sequence[str]) -> None:
        """A copy of each published mart, by CREATE TABLE AS in one transaction: PostgreSQL has no
        cheaper clone of a table, and a version's tables are its own (dropping it drops them)."""
        if not self._copy_published(candidate_schema, marts, replace=True):
            raise DataOpsError("an incremental build needs a published version to start from: run a full one first")

    def _copy_published(self, candidate_schema: str, marts: Sequence[str], replace: bool) -> list[str]:
        """Each of `marts` the candidate lacks (all of them when `replace`: what a failed run
        left goes first) copied from the published version; the marts copied."""
        connection = self._connect()
        try:
            try:
                with connection.cursor() as cursor:
                    published = self._published_schema(cursor)
                    if published is None:
                        return []
                    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(candidate_schema)}")
                    for mart in marts if replace else ():
                        cursor.execute(f"DROP TABLE IF EXISTS {_quote(candidate_schema)}.{_quote(mart)}")
                    missing = list(marts) if replace else self._missing_in(cursor, candidate_schema, marts)
                    for mart in missing:
                        cursor.execute(
                            f"CREATE TABLE {_quote(candidate_schema)}.{_quote(mart)} AS "
                            f"TABLE {_quote(published)}.{_quote(mart)}"
                        )
                connection.commit()
                return missing
            except psycopg2.Error as error:
                self._rollback(connection)
                raise DataOpsError(
                    f"copying the published marts into {candidate_schema} on PostgreSQL {self.location} "
                    f"failed, nothing was changed: {_one_line(error)}"
                ) from error
        finally:
            connection.close()

    def switch_to(self, number: int, grant_to: str | None = None) -> Version:
        self._check_hold()

        def change(cursor: Cursor, lock_ms: int) -> Version:
            cursor.execute(
                f"SELECT number, run_id, built_at, row_counts, marts, published_at FROM {_quote(_METADATA)}.versions "
                "WHERE consumer_schema = %s ORDER BY number DESC",
                (self.consumer_schema,),
            )
            kept = {int(row[0]): row for row in cursor.fetchall()}
            if number not in kept:
                raise DataOpsError(
                    f"there is no version {number} to publish (kept: "
                    f"{', '.join(f'v{n}' for n in sorted(kept)) or 'none'}): list them with `dataops versions`"
                )
            _, run_id, built_at, counts, names, published_at = kept[number]
            schema = self._version_schema(number)
            missing = self._missing_in(cursor, schema, names)
            if missing:
                raise DataOpsError(
                    f"v{number} is incomplete ({', '.join(missing)} missing from {schema}): "
                    "it cannot be published again"
                )
            relations, swap = self._view_swap(cursor, schema, schema, names, grant_to)
            self._lock_and_run(
                cursor, relations, [*swap, *self._switch_statements(cursor, number, "rollback", run_id)], lock_ms
            )
            return Version(
                number, run_id, _iso(built_at), {k: int(n) for k, n in counts.items()}, _iso(published_at), True
            )

        return self._swap(f"publishing v{number} again", change, grant_to)

    def drop_versions(self, keep: int) -> list[int]:
        """Each version goes in a transaction of its own with its record; one still in use (a lock
        held on it past the lock timeout) is left for the next time rather than waited for. Never
        one a consumer view reads, whatever the records say."""
        connection = self._connect()
        dropped = []
        try:
            deadlock_ms = self._lock_wait_ms(connection)
            with connection.cursor() as cursor:
                versions = self._versions(cursor)
                in_use = set(self._referenced_versions(cursor))
                schemas = [
                    number
                    for name in self._schemas_like(f"{self.consumer_schema}__v%", cursor)
                    if (number := self._version_number(name)) is not None
                ]
            connection.rollback()
            current = next((v.number for v in versions if v.current), None)
            others = [v.number for v in versions if v.number != current]  # newest first
            keeping = {current, *others[: max(keep - 1, 0)], *in_use}
            recorded = {v.number for v in versions}
            # A schema with no record is what something outside dataops left, or a record lost.
            doomed = sorted(n for n in recorded | set(schemas) if n not in keeping)
            for number in doomed:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(f"SET LOCAL lock_timeout = '{max(1, deadlock_ms // 2)}ms'")
                        cursor.execute(f"DROP SCHEMA IF EXISTS {_quote(self._version_schema(number))} CASCADE")
                        if number in recorded:
                            cursor.execute(
                                f"DELETE FROM {_quote(_METADATA)}.versions WHERE consumer_schema = %s AND number = %s",
                                (self.consumer_schema, number),
                            )
                    connection.commit()
                    dropped.append(number)
                except psycopg2.Error as error:
                    self._rollback(connection)
                    if error.pgcode not in _BUSY:
                        raise DataOpsError(
                            f"dropping v{number} from PostgreSQL {self.location} failed: {_one_line(error)}"
                        ) from error
        except psycopg2.Error as error:
            raise DataOpsError(
                f"dropping old versions from PostgreSQL {self.location} failed: {_one_line(error)}"
            ) from error
        finally:
            connection.close()
        return dropped

    # The swap --------------------------------------------------------------------------------

    def _prepare_publishing(self, connection: Connection, grant_to: str | None) -> None:
        """What the swap needs and readers never wait for, committed before it: the records' tables
        and the consumer schema; and the reader role must exist."""
        with connection.cursor() as cursor:
            if grant_to:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (grant_to,))
                if cursor.fetchone() is None:
                    raise DataOpsError(
                        f"the reader role '{grant_to}' (reader_role in environments.yml) does not exist on "
                        f"PostgreSQL {self.location}: create it (CREATE ROLE {grant_to} LOGIN ...) or leave "
                        "reader_role out; nothing was published"
                    )
            cursor.execute(
                f"SELECT to_regclass('{_METADATA}.publish_log') IS NOT NULL, "
                f"to_regnamespace({_literal(_quote(self.consumer_schema))}) IS NOT NULL"
            )
            metadata, consumer = cursor.fetchone()
            if not metadata:
                # Two sessions creating them at once would collide in the catalogs.
                cursor.execute(f"SELECT pg_advisory_xact_lock({_METADATA_LOCK_CLASS}, 0)")
                cursor.execute(_METADATA_DDL)
            if not consumer:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.consumer_schema)}")
        connection.commit()

    @staticmethod
    def _lock_wait_ms(connection: Connection) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'")
            deadlock_ms = int(cursor.fetchone()[0])
        connection.rollback()
        return deadlock_ms

    def _swap(self, what: str, change: Callable[[Cursor, int], _T], grant_to: str | None) -> _T:
        """`change` in one transaction, tried again with a growing pause while readers keep the
        consumer views locked past the lock timeout. The wait for the locks is kept below the
        server's deadlock_timeout, so that a reader caught in a cycle with the swap is never the
        one the deadlock detector cancels: the swap gives up first, and its reader goes on."""
        connection = self._connect()
        try:
            try:
                self._prepare_publishing(connection, grant_to)
                deadlock_ms = self._lock_wait_ms(connection)
            except psycopg2.Error as error:
                raise DataOpsError(
                    f"cannot prepare publishing on PostgreSQL {self.location}: {_one_line(error)}"
                ) from error
            except BaseException:
                self._rollback(connection)
                raise
            lock_ms = max(1, min(int(self.lock_timeout * 1000), deadlock_ms // 2))
            for attempt in range(1, self.publish_attempts + 1):
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(f"SET LOCAL lock_timeout = '{lock_ms}ms'")
                        result = change(cursor, lock_ms)
                    if self.on_swapped is not None:
                        self.on_swapped()
                except psycopg2.Error as error:
                    self._rollback(connection)
                    if error.pgcode not in _BUSY:
                        # Another object built on a consumer view the swap must recreate: say which.
                        detail = getattr(error.diag, "message_detail", None) if error.pgcode == "2BP01" else None
                        raise DataOpsError(
                            f"{what} on PostgreSQL {self.location} failed, the published version is unchanged: "
                            f"{_one_line(error)}" + (f" ({' '.join(detail.split())})" if detail else "")
                        ) from error
                    if attempt == self.publish_attempts:
                        raise DataOpsError(
                            f"{what} on PostgreSQL {self.location} failed, the published version is unchanged: "
                            f"the {self.consumer_schema} views stayed in use through {attempt} tries of "
                            f"{lock_ms} ms each; {self._readers(connection)}"
                        ) from error
                    time.sleep(min(3.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25))
                    continue
                except BaseException:
                    self._rollback(connection)
                    raise
                try:
                    connection.commit()
                except psycopg2.Error as error:
                    raise DataOpsError(
                        f"committing ({what}) on PostgreSQL {self.location} failed: {_one_line(error)}; "
                        "consumers read either the version published before or the new one, whole: "
                        "`dataops versions` says which"
                    ) from error
                return result
            raise AssertionError("unreachable")
        finally:
            connection.close()

    def _readers(self, connection: Connection) -> str:
        """The sessions that hold a lock on a consumer view, longest first, for the error."""
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT DISTINCT a.pid, a.usename, a.application_name, host(a.client_addr), a.xact_start, "
                    "a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120) FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE l.locktype = 'relation' AND l.granted AND a.pid <> pg_backend_pid() "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND n.nspname = %s ORDER BY a.xact_start NULLS LAST, a.pid",
                    (self.consumer_schema,),
                )
                rows = cursor.fetchall()
            connection.rollback()
        except psycopg2.Error:
            rows = []
        if not rows:
            return "readers kept them busy, none of them for long: publish again"
        described = []
        for pid, user, application, client, started, state, query in rows[:3]:
            since = f"in a transaction since {_iso(started)}" if started else "in a transaction"
            source = f" from {client}" if client else ""
            described.append(
                f"server process {pid} (user {user}, application '{application or ''}'{source}, "
                f"{since}, {state}: {query})"
            )
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        return (
            f"held by {'; '.join(described)}{more}: end that transaction (SELECT pg_terminate_backend(pid) "
            "if it hangs) or publish when it has finished"
        )

    def _missing_in(self, cursor: Cursor, schema: str, names: Sequence[str]) -> list[str]:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
            (schema,),
        )
        present = {row[0] for row in cursor.fetchall()}
        return [name for name in names if name not in present]

    @staticmethod
    def _schema_exists(cursor: Cursor, schema: str) -> bool:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return cursor.fetchone() is not None

    @staticmethod
    def _schemas_like(pattern: str, cursor: Cursor) -> list[str]:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (pattern,))
        return [row[0] for row in cursor.fetchall()]

    def _next_number(self, cursor: Cursor) -> int:
        cursor.execute(
            f"SELECT max(number) FROM {_quote(_METADATA)}.versions WHERE consumer_schema = %s", (self.consumer_schema,)
        )
        recorded = cursor.fetchone()[0] or 0
        leftovers = [
            self._version_number(name) or 0 for name in self._schemas_like(f"{self.consumer_schema}__v%", cursor)
        ]
        return max([recorded, *leftovers]) + 1

    def _referenced_versions(self, cursor: Cursor) -> dict[int, set[str]]:
        """Version number -> the consumer views that read it (the truth of what consumers see)."""
        sql = (
            "SELECT DISTINCT tn.nspname, v.relname FROM pg_class v "
            "JOIN pg_namespace vn ON vn.oid = v.relnamespace JOIN pg_rewrite r ON r.ev_class = v.oid "
            "JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid "
            "AND d.refclassid = 'pg_class'::regclass "
            "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
            f"WHERE vn.nspname = {_literal(self.consumer_schema)} AND v.relkind = 'v' "
            f"AND tn.nspname LIKE {_literal(self.consumer_schema + '__v%')}"
        )
        cursor.execute(sql)
        found: dict[int, set[str]] = {}
        for schema, view in cursor.fetchall():
            number = self._version_number(schema)
            if number is not None:
                found.setdefault(number, set()).add(view)
        return found

    def _view_swap(
        self, cursor: Cursor, source: str, schema: str, names: Sequence[str], grant_to: str | None
    ) -> tuple[list[str], list[str]]:
        """What the swap locks and runs, worked out before it locks anything: the consumer relations
        it replaces or drops (in name order), and its statements. `source` holds the marts now, and
        `schema` will (the candidate and its version's name, or a kept version twice).

        Each mart's view reads `schema`; a view of a mart the version has not is dropped. A view
        whose columns the new ones only extend is replaced in place (CREATE OR REPLACE keeps its
        grants and whatever was built on it); any other relation is dropped and created anew, with
        the grants it had."""
        ours = {view for views in self._referenced_versions(cursor).values() for view in views}
        cursor.execute(
            "SELECT c.relname, c.relkind, c.relacl IS NOT NULL FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
            (self.consumer_schema,),
        )
        existing = {name: (kind, has_acl) for name, kind, has_acl in cursor.fetchall() if name in names or name in ours}
        columns = self._columns_by_relation(cursor, [self.consumer_schema, source])
        consumer = _quote(self.consumer_schema)
        statements = []
        for name in names:
            view = f"{consumer}.{_quote(name)}"
            select = f"SELECT * FROM {_quote(schema)}.{_quote(name)}"
            kind, has_acl = existing.get(name, (None, False))
            old = columns.get((self.consumer_schema, name), []) if kind == "v" else None
            if old is not None and old == columns.get((source, name), [])[: len(old)]:
                statements.append(f"CREATE OR REPLACE VIEW {view} AS {select}")
            else:
                if kind is not None:
                    statements.append(f"DROP {_DROP_KIND[kind]} {view}")
                statements.append(f"CREATE VIEW {view} AS {select}")
                if has_acl:
                    statements.extend(self._grants(cursor, self.consumer_schema, name, view))
            if grant_to:
                statements.append(f"GRANT SELECT ON {view} TO {_quote(grant_to)}")
        statements.extend(
            f"DROP VIEW {consumer}.{_quote(name)}" for name in sorted(existing) if name not in names and name in ours
        )
        if grant_to:
            statements.append(f"GRANT USAGE ON SCHEMA {consumer} TO {_quote(grant_to)}")
        return sorted(existing), statements

    def _lock_and_run(self, cursor: Cursor, relations: Sequence[str], statements: Sequence[str], lock_ms: int) -> None:
        """Lock every consumer relation the swap changes at once, in name order, by one LOCK
        statement whose whole wait is bounded by `lock_ms`; then the swap, in one round trip."""
        if relations:
            listed = ", ".join(f"{_quote(self.consumer_schema)}.{_quote(name)}" for name in relations)
            # lock_timeout bounds each wait; statement_timeout the sum of them, which is what keeps
            # the swap's wait, holding the views it already has, shorter than deadlock_timeout.
            cursor.execute(f"SET LOCAL statement_timeout = '{lock_ms}ms'")
            cursor.execute(f"LOCK TABLE {listed} IN ACCESS EXCLUSIVE MODE")
            cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
        cursor.execute(";\n".join(statements))

    @staticmethod
    def _columns_by_relation(cursor: Cursor, schemas: Sequence[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(schema, relation) -> its columns (name, type) in order, for every relation of `schemas`."""
        cursor.execute(
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY n.nspname, c.relname, a.attnum",
            (list(schemas),),
        )
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, relation, column, type_ in cursor.fetchall():
            found.setdefault((schema, relation), []).append((column, type_))
        return found

    @staticmethod
    def _grants(cursor: Cursor, schema: str, name: str, relation: str) -> list[str]:
        """GRANT statements that give others on `relation` what they had on `schema.name`."""
        cursor.execute(
            "SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END, "
            "g.privilege_type, g.is_grantable FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
            "aclexplode(c.relacl) g WHERE n.nspname = %s AND c.relname = %s AND g.grantee <> c.relowner",
            (schema, name),
        )
        return [
            f"GRANT {privilege} ON {relation} TO {grantee}{' WITH GRANT OPTION' if grantable else ''}"
            for grantee, privilege, grantable in cursor.fetchall()
        ]

    def _switch_statements(self, cursor: Cursor, number: int, action: str, run_id: str) -> list[str]:
        """Records the switch: the published pointer and the publish log."""
        return [
            cursor.mogrify(
                f"INSERT INTO {_quote(_METADATA)}.published (consumer_schema, number, switched_at) "
                "VALUES (%s, %s, now()) ON CONFLICT (consumer_schema) DO UPDATE SET number = excluded.number, "
                "switched_at = excluded.switched_at",
                (self.consumer_schema, number),
            ).decode(),
            cursor.mogrify(
                f"INSERT INTO {_quote(_METADATA)}.publish_log (consumer_schema, number, action, run_id) "
                "VALUES (%s, %s, %s, %s)",
                (self.consumer_schema, number, action, run_id),
            ).decode(),
        ]


_DROP_KIND = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}

_METADATA_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {_quote(_METADATA)};
REVOKE ALL ON SCHEMA {_quote(_METADATA)} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {_quote(_METADATA)}.versions (
    consumer_schema text NOT NULL,
    number integer NOT NULL,
    run_id text NOT NULL,
    built_at timestamptz NOT NULL,
    row_counts jsonb NOT NULL,
    marts text[] NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (consumer_schema, number)
);
CREATE TABLE IF NOT EXISTS {_quote(_METADATA)}.published (
    consumer_schema text PRIMARY KEY,
    number integer NOT NULL,
    switched_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {_quote(_METADATA)}.publish_log (
    id bigserial PRIMARY KEY,
    consumer_schema text NOT NULL,
    number integer NOT NULL,
    action text NOT NULL,
    run_id text,
    at timestamptz NOT NULL DEFAULT now()
);
"""

# The hold connections of this process (and the holder each names), by server, database and lock key.
_HELD: dict[tuple[str, str, str, int, int], tuple[Connection, str]] = {}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _truncated(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")[:limit]
    return encoded.decode("utf-8", errors="ignore")
