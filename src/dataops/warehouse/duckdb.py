"""The embedded DuckDB warehouse: a single file, one writer at a time.

The marts are built into a file of their own, `<name>_candidate.duckdb` (dbt attaches it as
`candidate`; the tables are in the candidate schema). Publishing adds the consumer schema's views
over them and the version's metadata to that file, renames it to `<name>_versions/v<N>.duckdb`,
then replaces `<name>_published.duckdb`, a symbolic link to the published version that consumers
open read-only, in one rename: nothing is copied. A consumer that has the published file open
keeps reading the version it opened (that file is never written again), and the run that
publishes never needs a file a consumer holds, so a reader cannot make the next run fail. One run
at a time holds the target with an flock on `<name>.duckdb.lock`, released by the kernel if the
run dies."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataops.core.config import CANDIDATE_SUFFIX, DUCKDB_PATH_ENV_VAR, WAREHOUSE_DIR_ENV_VAR
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

_SOURCE_LOAD = f"{SOURCE_LOAD_SCHEMA}.{SOURCE_LOAD_TABLE}"

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


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _relation(table: SourceTable) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def create_table_sql(table: SourceTable) -> str:
    columns = ",\n    ".join(
        f"{_quote(c.name)} {SQL_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
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


_VERSION_FILE = re.compile(r"v(\d+)\.duckdb")
# How the version files name their metadata table.
_METADATA = '"dataops"."version"'


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class DuckDBWarehouse:
    def __init__(
        self,
        path: Path,
        on_table_loaded: Callable[[str], None] | None = None,
        consumer_schema: str = "marts",
    ) -> None:
        self.path = path
        # Called with each table's name once it is written, before the commit (a test seam).
        self.on_table_loaded = on_table_loaded
        self.consumer_schema = consumer_schema
        self.candidate_schema = f"{consumer_schema}{CANDIDATE_SUFFIX}"
        self.candidate_path = path.with_name(f"{path.stem}_candidate.duckdb")
        self.published_path = path.with_name(f"{path.stem}_published.duckdb")
        self.versions_dir = path.with_name(f"{path.stem}_versions")
        # Every switch of the published link, one JSON line each: which versions were ever published.
        self.journal = self.versions_dir / "published.jsonl"
        self.lock_path = path.with_name(f"{path.name}.lock")
        # The smoke checks ask several questions of the candidate and the published version: one
        # connection answers them all (opening a DuckDB file costs 30-50 ms); publishing closes it.
        self._audit: duckdb.DuckDBPyConnection | None = None

    def _connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise DataOpsError(f"no warehouse at {self.path}: run `dataops run` (or `dataops load`) first")
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
        return DataOpsError(f"cannot create the folder of the DuckDB warehouse {self.path}: {reason}; {_PATH_FIX}")

    def _open_error(self, error: duckdb.Error) -> DataOpsError:
        """DuckDB raises the same IOException for every reason it cannot open a file; tell them
        apart by looking at the path itself, and keep DuckDB's own words where they are the news."""
        path = self.path
        found = _IO_ERROR.match(str(error).strip())
        reason = found.group("reason") if found else str(error)
        if path.is_dir():
            return DataOpsError(f"the DuckDB warehouse {path} is a directory, not a database file; {_PATH_FIX}")
        if path.is_file() and not _is_duckdb_file(path):
            return DataOpsError(
                f"{path} is not a DuckDB database (the file holds something else); {_PATH_FIX}, or move the file away"
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
                    f"INSERT INTO {_relation(table)} ({column_list}) SELECT {column_list} FROM incoming_rows"
                )
                connection.unregister("incoming_rows")
                if self.on_table_loaded is not None:
                    self.on_table_loaded(qualified_name)
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(SOURCE_LOAD_SCHEMA)}")
            connection.execute(
                f"CREATE OR REPLACE TABLE {_SOURCE_LOAD} AS SELECT ?::VARCHAR AS load_id, now() AS loaded_at",
                [new_load_id()],
            )
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

    def gx_datasource(self, context: Any, name: str, published: bool = False) -> Any:
        from dataops.warehouse import duckdb_gx  # registers the `duckdb` datasource type with GX

        return duckdb_gx.add_datasource(context, name, self.published_path if published else self.candidate_path)

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

    def source_load(self) -> str | None:
        if f"{SOURCE_LOAD_SCHEMA}.{SOURCE_LOAD_TABLE}" not in self._relations():
            return None
        connection = self._connect(read_only=True)
        try:
            row = connection.execute(f"SELECT load_id FROM {_SOURCE_LOAD}").fetchone()
            return str(row[0]) if row else None
        finally:
            connection.close()

    def missing_source_tables(self) -> list[str]:
        present = self._relations()
        return [t.qualified_name for t in SOURCE_TABLES if t.qualified_name.lower() not in present]

    def missing_relations(self, schema: str, names: list[str]) -> list[str]:
        if schema.lower() in (self.consumer_schema.lower(), self.candidate_schema.lower()):
            found = self.columns(schema, names, published=schema.lower() == self.consumer_schema.lower())
            self._close_audit()  # asked before a check opens the file its own way (GX)
            return [f"{schema}.{name}" for name in names if name not in found]
        present = self._relations()
        return [f"{schema}.{name}" for name in names if f"{schema}.{name}".lower() not in present]

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        """Source tables and models in the warehouse file; `<candidate schema>.<mart>`, in the
        candidate file."""
        candidate = [n for n in qualified_names if n.split(".", 1)[0].lower() == self.candidate_schema.lower()]
        elsewhere = [n for n in qualified_names if n not in candidate]
        counts = self._count(self.path, elsewhere)
        counts.update(self._count(self.candidate_path, candidate))
        return {name: counts[name] for name in qualified_names if name in counts}

    def _count(self, path: Path, qualified_names: list[str]) -> dict[str, int]:
        if not qualified_names or not path.exists():
            return {}
        connection = self._connect(read_only=True) if path == self.path else duckdb.connect(str(path), read_only=True)
        try:
            present = self._relations(connection)
            names = [name for name in qualified_names if name.lower() in present]
            if not names:
                return {}
            counts = connection.execute(
                "SELECT " + ", ".join(f"(SELECT count(*) FROM {_qualified(name)})" for name in names)
            ).fetchone()
            return dict(zip(names, counts or (), strict=True))
        finally:
            connection.close()

    def read_only_query(self, sql: str) -> QueryResult:
        """The warehouse as it is (sources, staging, the candidate), except that the consumer
        schema's marts are the published version's, as consumers read them."""
        connection = self._connect(read_only=True)
        try:
            sql = self._on_published_marts(connection, sql)
            cursor = connection.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns=columns, rows=cursor.fetchall())
        except duckdb.Error as error:
            raise DataOpsError(f"query failed: {error}".replace("\n", " ")) from error
        finally:
            connection.close()

    def sample_rows(self, sql: str, limit: int) -> QueryResult:
        """dbt's SQL names the candidate file by the alias its profile attaches it under."""
        connection = self._connect(read_only=True)
        try:
            if self.candidate_path.exists():
                connection.execute(f"ATTACH {_literal(str(self.candidate_path))} AS candidate (READ_ONLY)")
            cursor = connection.execute(limited_select(sql, limit))
            return QueryResult(columns=[d[0] for d in cursor.description or []], rows=cursor.fetchall())
        except duckdb.Error as error:
            raise DataOpsError(f"query failed: {error}".replace("\n", " ")) from error
        finally:
            connection.close()

    def _on_published_marts(self, connection: duckdb.DuckDBPyConnection, sql: str) -> str:
        """Marts named `<consumer schema>.<mart>` are read from the published version, and
        `<candidate schema>.<mart>` from the candidate file."""
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(sql, read="duckdb")
        tables = [table for table in tree.find_all(exp.Table) if not table.catalog]
        published = [t for t in tables if t.db.lower() == self.consumer_schema.lower()]
        candidate = [t for t in tables if t.db.lower() == self.candidate_schema.lower()]
        if published and self._published_number() is None:
            raise DataOpsError(
                f"nothing is published in {self.consumer_schema} yet: `dataops run` publishes the marts "
                f"once every check passed (the last build is in {self.candidate_schema})"
            )
        for found, alias, path in (
            (published, "published", self.published_path),
            (candidate, "candidate", self.candidate_path),
        ):
            if found and path.exists():
                connection.execute(f"ATTACH {_literal(str(path))} AS {alias} (READ_ONLY)")
                for table in found:
                    table.set("catalog", exp.to_identifier(alias))
        return tree.sql(dialect="duckdb") if published or candidate else sql

    # One writer per target -------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, holder: LockHolder, wait: bool) -> Iterator[None]:
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise self._folder_error(error) from error
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise TargetBusy(self._lock_holder(descriptor)) from None
            # The file's text only tells a waiting run who it waits for; the kernel's lock decides.
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, json.dumps(holder.__dict__).encode(), 0)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    @staticmethod
    def _lock_holder(descriptor: int) -> LockHolder | None:
        try:
            document = json.loads(os.pread(descriptor, 4096, 0) or b"null")
            return LockHolder(**document) if isinstance(document, dict) else None
        except (ValueError, TypeError):
            return None

    # Publishing ------------------------------------------------------------------------------

    def _version_path(self, number: int) -> Path:
        return self.versions_dir / f"v{number:06d}.duckdb"

    def _published_number(self) -> int | None:
        try:
            target = os.readlink(self.published_path)
        except OSError:
            return None
        found = _VERSION_FILE.fullmatch(Path(target).name)
        return int(found.group(1)) if found else None

    def _version_files(self) -> dict[int, Path]:
        if not self.versions_dir.is_dir():
            return {}
        files = {}
        for path in self.versions_dir.iterdir():
            found = _VERSION_FILE.fullmatch(path.name)
            if found:
                files[int(found.group(1))] = path
        return files

    def _journal(self) -> list[dict[str, Any]]:
        try:
            lines = self.journal.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line a killed run left half-written
                entries.append(json.loads(line))
        return entries

    def _log_switch(self, number: int, action: str, **about: Any) -> None:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps({"version": number, "at": _now(), "action": action, **about}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def _switch_link(self, number: int) -> None:
        """The atomic step: a new link in place of the old one, by rename."""
        staged = self.published_path.with_name(f".{self.published_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        os.symlink(os.path.relpath(self._version_path(number), self.published_path.parent), staged)
        os.replace(staged, self.published_path)
        _fsync_directory(self.published_path.parent)

    def _reconcile(self) -> None:
        """A run killed between switching the link and writing the journal: the link is the truth."""
        current = self._published_number()
        if current is None or current in {e["version"] for e in self._journal()}:
            return
        about: dict[str, Any] = {}
        with contextlib.suppress(duckdb.Error, TypeError):  # the file's own account of itself
            connection = duckdb.connect(str(self._version_path(current)), read_only=True)
            try:
                run_id, built_at, counts = connection.execute(
                    f"SELECT run_id, built_at, row_counts FROM {_METADATA}"
                ).fetchone()  # type: ignore[misc]
                about = {"run_id": run_id, "built_at": built_at, "row_counts": json.loads(counts)}
            finally:
                connection.close()
        self._log_switch(current, "publish", **about)

    def _audit_connection(self) -> duckdb.DuckDBPyConnection | None:
        """The candidate file, with the published version attached as `published` (if any); None
        when there is no candidate."""
        if self._audit is None and self.candidate_path.exists():
            self._audit = duckdb.connect(str(self.candidate_path), read_only=True)
            if self._published_number() is not None:
                self._audit.execute(f"ATTACH {_literal(str(self.published_path))} AS published (READ_ONLY)")
        return self._audit

    def _close_audit(self) -> None:
        if self._audit is not None:
            self._audit.close()
            self._audit = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close_audit()

    def columns(self, schema: str, marts: Sequence[str], published: bool = False) -> dict[str, list[Column]]:
        if published and self._published_number() is None:
            return {}
        connection = self._audit_connection()
        if connection is None:
            if not published:
                return {}
            # No candidate (a rollback, a check of what is published): the published file alone.
            connection = duckdb.connect(str(self.published_path), read_only=True)
            catalog, own = None, connection
        else:
            catalog, own = ("published" if published else None), None
        schema = self.consumer_schema if published else self.candidate_schema
        try:
            rows = connection.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_catalog = coalesce(?, current_database()) "
                "ORDER BY table_name, ordinal_position",
                [schema, catalog],
            ).fetchall()
        finally:
            if own is not None:
                own.close()
        wanted = {m.lower(): m for m in marts}
        found: dict[str, list[Column]] = {}
        for table, column, data_type in rows:
            if table.lower() in wanted:
                found.setdefault(wanted[table.lower()], []).append(Column(column, data_type))
        return found

    def published_row_counts(self, marts: Sequence[str]) -> dict[str, int]:
        present = list(self.columns(self.consumer_schema, marts, published=True))
        if not present:
            return {}
        connection = self._audit_connection()
        prefix = "published." if connection is not None else ""
        own = None if connection is not None else duckdb.connect(str(self.published_path), read_only=True)
        try:
            counts = (
                (connection or own)
                .execute(
                    "SELECT "
                    + ", ".join(  # type: ignore[union-attr]
                        f"(SELECT count(*) FROM {prefix}{_quote(self.consumer_schema)}.{_quote(m)})" for m in present
                    )
                )
                .fetchone()
            )
            return dict(zip(present, counts or (), strict=True))
        finally:
            if own is not None:
                own.close()

    def data_diff(self, candidate_schema: str, mart: str, key: Sequence[str], columns: Sequence[str]) -> MartDiff:
        connection = self._audit_connection()
        if connection is None or self._published_number() is None:
            raise DataOpsError("a data diff needs a candidate and a published version")
        sql = diff_sql(
            _quote,
            f"{_quote(candidate_schema)}.{_quote(mart)}",
            f"published.{_quote(self.consumer_schema)}.{_quote(mart)}",
            key,
            columns,
        )
        return mart_diff(mart, key, columns, connection.execute(sql).fetchone() or ())

    def versions(self) -> list[Version]:
        self._reconcile()
        current = self._published_number()
        published: dict[int, dict[str, Any]] = {}
        for entry in self._journal():
            # The first entry of a version is its publish, with what it holds; later ones, rollbacks.
            published.setdefault(entry["version"], entry)
        return [
            Version(
                number,
                str(published[number].get("run_id", "")),
                str(published[number].get("built_at", "")),
                dict(published[number].get("row_counts", {})),
                published[number]["at"],
                number == current,
            )
            for number in sorted(self._version_files(), reverse=True)
            # A file no switch ever pointed at was left by a run killed before it published it.
            if number in published
        ]

    def publish(
        self,
        candidate_schema: str,
        marts: Sequence[str],
        run_id: str,
        row_counts: dict[str, int],
        grant_to: str | None = None,
    ) -> Version:
        self._close_audit()  # the candidate is about to be written, then renamed
        self._reconcile()
        if not self.candidate_path.exists():
            raise DataOpsError(f"no candidate to publish at {self.candidate_path}: `dataops run` builds one")
        known = set(self._version_files()) | {e["version"] for e in self._journal()}
        number = max(known, default=0) + 1
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        built_at = _now()
        consumer = _quote(self.consumer_schema)
        try:
            connection = duckdb.connect(str(self.candidate_path))
        except duckdb.Error as error:
            raise DataOpsError(f"cannot open the candidate {self.candidate_path} to publish it: {error}") from error
        try:
            # What consumers read: the consumer schema's views over the candidate's tables, in the file.
            connection.begin()
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {consumer}")
            for mart in marts:
                connection.execute(
                    f"CREATE OR REPLACE VIEW {consumer}.{_quote(mart)} AS "
                    f"SELECT * FROM {_quote(candidate_schema)}.{_quote(mart)}"
                )
            connection.execute("CREATE SCHEMA IF NOT EXISTS dataops")
            connection.execute(
                f"CREATE OR REPLACE TABLE {_METADATA} AS SELECT ? AS number, ? AS run_id, "
                "? AS built_at, ? AS row_counts",
                [number, run_id, built_at, json.dumps(row_counts)],
            )
            connection.commit()
            connection.execute("CHECKPOINT")  # one file, no WAL beside it
        finally:
            connection.close()
        with open(self.candidate_path, "rb") as written:
            os.fsync(written.fileno())
        # The candidate becomes the version: a rename, nothing copied. The next run builds a new one.
        os.replace(self.candidate_path, self._version_path(number))
        _fsync_directory(self.versions_dir)
        self._switch_link(number)
        self._log_switch(number, "publish", run_id=run_id, built_at=built_at, row_counts=row_counts)
        return Version(number, run_id, built_at, dict(row_counts), _now(), True)

    def fill_candidate(self, candidate_schema: str, marts: Sequence[str]) -> list[str]:
        self._reconcile()
        if self._published_number() is None:
            return []
        self._close_audit()  # written below, then by dbt
        try:
            connection = duckdb.connect(str(self.candidate_path))
        except duckdb.Error as error:
            raise self._open_error(error) from error
        try:
            present = {
                row[0].lower()
                for row in connection.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                    "AND table_catalog = current_database()",
                    [candidate_schema],
                ).fetchall()
            }
            missing = [mart for mart in marts if mart.lower() not in present]
            if missing:
                connection.execute(f"ATTACH {_literal(str(self.published_path))} AS published (READ_ONLY)")
                connection.begin()
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(candidate_schema)}")
                for mart in missing:
                    connection.execute(
                        f"CREATE TABLE {_quote(candidate_schema)}.{_quote(mart)} AS "
                        f"SELECT * FROM published.{_quote(self.consumer_schema)}.{_quote(mart)}"
                    )
                connection.commit()
            return missing
        except duckdb.Error as error:
            raise DataOpsError(
                f"copying the published marts into the candidate {self.candidate_path} failed: {error}"
            ) from error
        finally:
            connection.close()

    def prepare_incremental(self, candidate_schema: str, marts: Sequence[str]) -> None:
        """A copy of the published version's file becomes the candidate: one file copy (the
        kernel's copy_file_range, a reflink where the file system has them), cheaper than
        rewriting its tables row by row. dbt then merges into the incremental marts, rebuilds the
        others in place, and publishing completes the copy as a version of its own."""
        self._reconcile()
        number = self._published_number()
        if number is None:
            raise DataOpsError("an incremental build needs a published version to start from: run a full one first")
        self._close_audit()  # the candidate is about to be replaced
        staged = self.candidate_path.with_name(f".{self.candidate_path.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(self._version_path(number), staged)
            # A WAL beside the old candidate belongs to it, not to the copy.
            with contextlib.suppress(FileNotFoundError):
                self.candidate_path.with_name(f"{self.candidate_path.name}.wal").unlink()
            os.replace(staged, self.candidate_path)
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
            raise DataOpsError(
                f"copying the published version v{number} into the candidate {self.candidate_path} failed: {error}"
            ) from error

    def switch_to(self, number: int, grant_to: str | None = None) -> Version:
        self._reconcile()
        kept = {v.number: v for v in self.versions()}
        if number not in kept:
            raise DataOpsError(
                f"there is no version {number} to publish (kept: "
                f"{', '.join(f'v{n}' for n in sorted(kept)) or 'none'}): list them with `dataops versions`"
            )
        self._switch_link(number)
        self._log_switch(number, "rollback")
        version = kept[number]
        return Version(version.number, version.run_id, version.built_at, version.row_counts, version.published_at, True)

    def drop_versions(self, keep: int) -> list[int]:
        self._reconcile()
        current = self._published_number()
        published = {e["version"] for e in self._journal()}
        files = self._version_files()
        others = sorted((n for n in files if n != current and n in published), reverse=True)
        keeping = {current, *others[: max(keep - 1, 0)]}
        dropped = sorted(n for n in files if n not in keeping)
        for number in dropped:
            # A consumer that has it open keeps reading it: the kernel frees it when they close it.
            files[number].unlink()
        # A run killed between the two steps of `_switch_link` left its staged link (this run holds
        # the target: no other is switching now).
        for staged in self.published_path.parent.glob(f".{self.published_path.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        return dropped
