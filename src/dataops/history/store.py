"""The run history store: one record per run in a SQL database, SQLite beside the warehouse by
default, or any SQLAlchemy URL in DATAOPS_HISTORY_URL (one PostgreSQL store for every worker of a
distributed deployment).

The schema is versioned and upgraded in place (`MIGRATIONS`): a store written by an older dataops
is brought up to date the first time a newer one opens it. Each run is written in one transaction,
so a reader sees a run whole or not at all, and concurrent writers wait for each other instead of
failing (SQLite: WAL journal and a busy timeout; PostgreSQL: row locks and an advisory lock while
the schema is upgraded)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dataops.config import warehouse_dir
from dataops.errors import DataOpsError
from dataops.history.records import RunRecord, RunSummaryRow

HISTORY_URL_ENV_VAR = "DATAOPS_HISTORY_URL"
DEFAULT_FILE = "history.sqlite"
# SQLite waits this long for another writer before it gives up; a run is written in milliseconds.
BUSY_TIMEOUT_MS = 60_000

metadata = sa.MetaData()
schema_version = sa.Table("dataops_schema", metadata, sa.Column("version", sa.Integer, nullable=False))
runs = sa.Table(
    "dataops_runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    # ISO 8601 in UTC with microseconds: sorts as it reads, on every engine.
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("seconds", sa.Float),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=False),
    sa.Column("models_built", sa.Integer, nullable=False),
    sa.Column("tests_failed", sa.Integer, nullable=False),
    sa.Column("quality_score", sa.Float),
    sa.Column("cpu_seconds", sa.Float),
    sa.Column("peak_memory_bytes", sa.BigInteger),
    sa.Column("document", sa.Text, nullable=False),  # the whole record, RunRecord.to_dict()
    sa.Index("ix_dataops_runs_target_started", "target", "started_at"),
)
nodes = sa.Table(
    "dataops_nodes", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("dataops_runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("unique_id", sa.String(512), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("seconds", sa.Float),
    sa.Column("rows_affected", sa.BigInteger),
    sa.Column("failures", sa.BigInteger),
    sa.Column("message", sa.Text, nullable=False),
)
row_counts = sa.Table(
    "dataops_row_counts", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("dataops_runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("relation", sa.String(256), primary_key=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
)


def _v1(connection: Connection) -> None:
    """The first store: runs and their node results."""
    for statement in (
        "create table dataops_runs (run_id varchar(64) primary key, target varchar(64) not null, "
        "kind varchar(16) not null, trigger varchar(16) not null, started_at varchar(32) not null, "
        "finished_at varchar(32), seconds float, status varchar(16) not null, exit_code integer not null, "
        "models_built integer not null, tests_failed integer not null, quality_score float, document text not null)",
        "create index ix_dataops_runs_target_started on dataops_runs (target, started_at)",
        "create table dataops_nodes (run_id varchar(64) not null references dataops_runs (run_id) on delete cascade, "
        "unique_id varchar(512) not null, kind varchar(16) not null, name varchar(512) not null, "
        "status varchar(32) not null, level varchar(8) not null, seconds float, rows_affected bigint, "
        "failures bigint, message text not null, primary key (run_id, unique_id))",
    ):
        connection.exec_driver_sql(statement)


def _v2(connection: Connection) -> None:
    """Row counts per source and mart, and what each run cost (CPU seconds, peak memory)."""
    connection.exec_driver_sql("alter table dataops_runs add column cpu_seconds float")
    connection.exec_driver_sql("alter table dataops_runs add column peak_memory_bytes bigint")
    connection.exec_driver_sql(
        "create table dataops_row_counts (run_id varchar(64) not null references dataops_runs (run_id) "
        "on delete cascade, relation varchar(256) not null, rows bigint not null, primary key (run_id, relation))"
    )


# Version N is reached by running MIGRATIONS[N - 1]; append, never edit, once released.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


def history_url() -> str:
    return os.environ.get(HISTORY_URL_ENV_VAR) or f"sqlite:///{warehouse_dir() / DEFAULT_FILE}"


class HistoryStore:
    """The store at `url` (default: `history_url()`), its schema brought up to date on first use."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or history_url()
        try:
            parsed = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as error:
            raise DataOpsError(
                f"{HISTORY_URL_ENV_VAR} is not a database URL ({error}); e.g. "
                "postgresql+psycopg2://user@host/dataops, or unset it for the SQLite file beside the warehouse"
            ) from error
        self.shown_url = parsed.render_as_string(hide_password=True)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        if self._sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = sa.create_engine(self.url, **self._engine_options())
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
            raise DataOpsError(f"{HISTORY_URL_ENV_VAR}={self.shown_url}: {error}") from error
        if self._sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite would start transactions lazily and commit DDL on its own; let SQLAlchemy
            # issue BEGIN itself, so that a write transaction takes its lock at the start.
            sa.event.listen(self.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
        self._upgraded = False

    def _engine_options(self) -> dict[str, Any]:
        if self._sqlite:
            return {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None}}
        return {"pool_pre_ping": True}

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                if not self._upgraded:
                    self._upgrade(connection)
                yield connection
        except sa.exc.OperationalError as error:
            reason = " ".join(str(error.orig).split())
            raise DataOpsError(f"the run history at {self.shown_url} cannot be used: {reason}") from error

    def _upgrade(self, connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Two workers opening a new store at once must not both create its tables.
            connection.exec_driver_sql("select pg_advisory_xact_lock(724511)")
        version = self.schema_version(connection)
        if version > SCHEMA_VERSION:
            raise DataOpsError(
                f"the run history at {self.shown_url} has schema version {version}, newer than this dataops "
                f"({SCHEMA_VERSION}): upgrade dataops"
            )
        for migration in MIGRATIONS[version:]:
            migration(connection)
        if version == 0:
            connection.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif version < SCHEMA_VERSION:
            connection.execute(schema_version.update().values(version=SCHEMA_VERSION))
        self._upgraded = True

    @staticmethod
    def schema_version(connection: Connection) -> int:
        if not sa.inspect(connection).has_table(schema_version.name):
            schema_version.create(connection)
            return 0
        return int(connection.execute(sa.select(schema_version.c.version)).scalar_one_or_none() or 0)

    def record(self, run: RunRecord) -> None:
        """Write one run (again, if its id is known: a run recorded when it started, then when it ended)."""
        document = run.to_dict()
        with self._transaction() as connection:
            connection.execute(runs.delete().where(runs.c.run_id == run.run_id))
            connection.execute(runs.insert().values(
                run_id=run.run_id, target=run.target, kind=run.kind, trigger=run.trigger.kind,
                started_at=_timestamp(run.started_at),
                finished_at=_timestamp(run.finished_at) if run.finished_at else None,
                seconds=run.seconds, status=run.status, exit_code=run.exit_code,
                models_built=run.models_built, tests_failed=run.tests_failed, quality_score=run.quality_score,
                cpu_seconds=run.cpu_seconds, peak_memory_bytes=run.peak_memory_bytes,
                document=json.dumps(document, default=str),
            ))
            if run.nodes:
                connection.execute(nodes.insert(), [{"run_id": run.run_id, **node.__dict__} for node in run.nodes])
            if run.row_counts:
                connection.execute(
                    row_counts.insert(),
                    [{"run_id": run.run_id, "relation": name, "rows": rows} for name, rows in run.row_counts.items()],
                )

    def runs(self, target: str | None = None, limit: int = 20, kind: str | None = None) -> list[RunSummaryRow]:
        """The newest runs first, of one target (or all)."""
        query = sa.select(*(runs.c[name] for name in RunSummaryRow.__dataclass_fields__))
        if target is not None:
            query = query.where(runs.c.target == target)
        if kind is not None:
            query = query.where(runs.c.kind == kind)
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)
        with self._transaction() as connection:
            return [RunSummaryRow(**row._mapping) for row in connection.execute(query)]

    def get(self, run_id: str) -> RunRecord | None:
        with self._transaction() as connection:
            document = connection.execute(sa.select(runs.c.document).where(runs.c.run_id == run_id)).scalar()
        return None if document is None else RunRecord.from_dict(json.loads(document))

    def latest(self, target: str, kind: str | None = "run") -> RunRecord | None:
        found = self.runs(target, limit=1, kind=kind)
        return self.get(found[0].run_id) if found else None

    def dispose(self) -> None:
        self.engine.dispose()


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL: readers (the exporter, `dataops history`) never block a run that is being recorded.
    cursor.execute("pragma journal_mode=wal")
    cursor.execute(f"pragma busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("pragma synchronous=normal")
    cursor.execute("pragma foreign_keys=on")
    cursor.close()
