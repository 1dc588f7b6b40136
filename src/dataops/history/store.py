"""The run history store: one record per run in a SQL database, SQLite beside the warehouse by
default, or the PostgreSQL database that DATAOPS_HISTORY_URL names (one store for every worker of a
distributed deployment).

The schema is versioned and upgraded in place (`MIGRATIONS`): a store written by an older dataops
is brought up to date the first time a newer one opens it. Each run is written in one transaction,
so a reader sees a run whole or not at all, and concurrent writers wait for each other instead of
failing (SQLite: WAL journal, a busy timeout and write transactions that lock at their start;
PostgreSQL: an advisory lock while the schema is upgraded).

Plain DB-API (sqlite3, psycopg2) rather than SQLAlchemy: `dataops history` must answer at once, and
importing SQLAlchemy alone takes longer than the whole answer may."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dataops.core.config import warehouse_dir
from dataops.core.errors import DataOpsError
from dataops.history.records import (
    PIPELINE_KINDS,
    PIPELINE_KINDS_SQL,
    IncidentRecord,
    NodeRecord,
    PublishRecord,
    RunRecord,
    RunSummaryRow,
)

HISTORY_URL_ENV_VAR = "DATAOPS_HISTORY_URL"
DEFAULT_FILE = "history.sqlite"
# A writer waits this long for another one; a run is written in milliseconds.
BUSY_TIMEOUT_SECONDS = 60
_URL_EXAMPLE = "e.g. postgresql://user@host:5432/dataops, or unset it for the SQLite file beside the warehouse"


@dataclass(frozen=True)
class Lease:
    """Who holds a target between the tasks of a run of many processes, and until when."""

    run_id: str
    host: str
    pid: int
    since: str
    expires_at: str = ""


def _utc(moment: datetime) -> str:
    # Fixed width and UTC, so that the store compares them as text.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Database:
    """One transaction on the store, with `?` placeholders whatever the driver's own style."""

    def __init__(self, cursor: Any, placeholder: str, dialect: str) -> None:
        self._cursor = cursor
        self._placeholder = placeholder
        self.dialect = dialect

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql.replace("?", self._placeholder), tuple(parameters))
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def insert_many(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        sql = f"insert into {table} ({', '.join(columns)}) values ({', '.join('?' for _ in columns)})"
        self._cursor.executemany(sql.replace("?", self._placeholder), [tuple(r[c] for c in columns) for r in rows])

    def has_table(self, name: str) -> bool:
        if self.dialect == "sqlite":
            return bool(self.execute("select 1 from sqlite_master where type = 'table' and name = ?", [name]))
        return bool(
            self.execute("select 1 from pg_tables where schemaname = current_schema() and tablename = ?", [name])
        )


def _v1(db: Database) -> None:
    """The first store: runs and their node results."""
    db.execute(
        "create table dataops_runs (run_id varchar(64) primary key, target varchar(64) not null, "
        "kind varchar(16) not null, trigger varchar(16) not null, started_at varchar(32) not null, "
        "finished_at varchar(32), seconds float, status varchar(16) not null, exit_code integer not null, "
        "models_built integer not null, tests_failed integer not null, quality_score float, document text not null)"
    )
    db.execute("create index ix_dataops_runs_target_started on dataops_runs (target, started_at)")
    db.execute(
        "create table dataops_nodes (run_id varchar(64) not null references dataops_runs (run_id) on delete cascade, "
        "unique_id varchar(512) not null, kind varchar(16) not null, name varchar(512) not null, "
        "status varchar(32) not null, level varchar(8) not null, seconds float, rows_affected bigint, "
        "failures bigint, message text not null, primary key (run_id, unique_id))"
    )


def _v2(db: Database) -> None:
    """Row counts per source and mart, and what each run cost (CPU seconds, peak memory)."""
    db.execute("alter table dataops_runs add column cpu_seconds float")
    db.execute("alter table dataops_runs add column peak_memory_bytes bigint")
    db.execute(
        "create table dataops_row_counts (run_id varchar(64) not null references dataops_runs (run_id) "
        "on delete cascade, relation varchar(256) not null, rows bigint not null, primary key (run_id, relation))"
    )


def _v3(db: Database) -> None:
    """Leases: a run of many processes (an Airflow DAG run) holds its target between its tasks."""
    db.execute(
        "create table dataops_leases (target varchar(64) primary key, run_id varchar(64) not null, "
        "host varchar(256) not null, pid integer not null, since varchar(32) not null, "
        "expires_at varchar(32) not null)"
    )


def _v4(db: Database) -> None:
    """A source's freshness age and an anomaly check's score, per node, for the exporter and the
    anomaly detection to read without opening every run's document."""
    db.execute("alter table dataops_nodes add column age_seconds float")
    db.execute("alter table dataops_nodes add column score float")


def _v5(db: Database) -> None:
    """What each run did to the published version, as columns (filled in from the documents of the
    runs recorded before), and indexes that answer the exporter's scrape without reading a single
    document: on SQLite a column after `document` is behind its overflow pages."""
    db.execute("alter table dataops_runs add column publish_status varchar(16)")
    db.execute("alter table dataops_runs add column published_version integer")
    status, version = _publish_from_document(db.dialect)
    db.execute(f"update dataops_runs set publish_status = {status}, published_version = {version}")
    db.execute(
        "create index ix_dataops_runs_latest on dataops_runs (target, started_at, run_id, kind, status, finished_at, "
        "quality_score, publish_status, published_version)"
    )
    db.execute("create index ix_dataops_nodes_kind_status on dataops_nodes (kind, status, name, run_id)")


def _publish_from_document(dialect: str) -> tuple[str, str]:
    """SQL for a run's publish status and the version consumers read after it (the new one when it
    published or rolled back, the one that stayed when it did not), read from its document."""
    if dialect == "sqlite":
        return (
            "json_extract(document, '$.publish.status')",
            "coalesce(json_extract(document, '$.publish.version'), "
            "json_extract(document, '$.publish.previous_version'))",
        )
    publish = "(document::json -> 'publish')"
    return (
        f"{publish} ->> 'status'",
        f"coalesce(({publish} ->> 'version')::integer, ({publish} ->> 'previous_version')::integer)",
    )


# Version N is reached by running MIGRATIONS[N - 1]; append, never edit, once released.
def _v6(db: Database) -> None:
    """Incidents: each one once, with the run that opened it and, once resolved, when."""
    db.execute(
        "create table dataops_incidents (incident_id varchar(128) primary key, target varchar(64) not null, "
        "title varchar(512) not null, severity varchar(16) not null, opened_at varchar(32) not null, "
        "run_id varchar(64), path varchar(512) not null, resolved_at varchar(32), resolution text not null)"
    )
    db.execute("create index ix_dataops_incidents_target_opened on dataops_incidents (target, opened_at)")


MIGRATIONS: list[Callable[[Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6]
SCHEMA_VERSION = len(MIGRATIONS)


def history_url() -> str:
    return os.environ.get(HISTORY_URL_ENV_VAR) or f"sqlite:///{warehouse_dir() / DEFAULT_FILE}"


@dataclass(frozen=True)
class _Location:
    dialect: str  # sqlite or postgresql
    shown: str  # the URL without its password
    path: Path | None = None
    connect_args: dict[str, Any] | None = None


def _locate(url: str) -> _Location:
    """An SQLAlchemy-style URL: sqlite:///relative.sqlite, sqlite:////absolute.sqlite, or
    postgresql[+psycopg2]://user@host:port/database[?host=/socket/dir] (a password in the URL, or
    from PGPASSWORD as libpq reads it)."""
    parts = urlsplit(url)
    shown = _without_password(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite" and parts.path.startswith("/") and len(parts.path) > 1:
        return _Location("sqlite", url, Path(parts.path[1:]))
    if scheme in ("postgresql", "postgres") and parts.path.strip("/"):
        try:
            port = parts.port
        except ValueError as error:
            raise DataOpsError(f"{HISTORY_URL_ENV_VAR}={shown}: the port is not a number; {_URL_EXAMPLE}") from error
        arguments: dict[str, Any] = {"dbname": unquote(parts.path.strip("/")), "connect_timeout": 10}
        for key, value in (
            ("host", parts.hostname),
            ("port", port),
            ("user", parts.username),
            ("password", parts.password),
        ):
            if value is not None:
                arguments[key] = unquote(str(value))
        arguments.update({key: values[-1] for key, values in parse_qs(parts.query).items()})
        return _Location("postgresql", shown, connect_args=arguments)
    raise DataOpsError(f"{HISTORY_URL_ENV_VAR} is not a database URL the history can use: {shown!r}; {_URL_EXAMPLE}")


def _without_password(url: str) -> str:
    """The URL as messages may show it: a password in its user part or its query is masked."""
    shown = re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", shown)


class HistoryStore:
    """The store at `url` (default: `history_url()`), its schema brought up to date on first use."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or history_url()
        self._location = _locate(self.url)
        self.shown_url = self._location.shown
        self._upgraded = False

    def _connect(self) -> Any:
        location = self._location
        if location.path is not None:
            import sqlite3

            location.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level None: this code says BEGIN itself, so a write locks at its start.
            connection = sqlite3.connect(location.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            # WAL: readers (the exporter, `dataops history`) never block a run being recorded.
            for pragma in (
                "journal_mode=wal",
                f"busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}",
                "synchronous=normal",
                "foreign_keys=on",
            ):
                connection.execute(f"pragma {pragma}")
            return connection
        import psycopg2

        return psycopg2.connect(**(location.connect_args or {}))

    @contextmanager
    def transaction(self, upgrade: bool = True, write: bool = True) -> Iterator[Database]:
        """One transaction, committed when the block ends and rolled back when it raises. A read
        (`write=False`) takes no lock and changes nothing, not even the schema: on SQLite in WAL it
        never waits for, nor holds up, a run being recorded, and it works on a read-only copy."""
        try:
            connection = self._connect()
        except self._driver_errors() as error:
            raise self._unusable(error) from error
        try:
            cursor = connection.cursor()
            sqlite = self._location.dialect == "sqlite"
            if sqlite:
                cursor.execute("begin immediate" if write else "begin")
            db = Database(cursor, "?" if sqlite else "%s", self._location.dialect)
            if write and upgrade and not self._upgraded:
                self._upgrade(db)
            yield db
            if sqlite:
                cursor.execute("commit")
            else:
                connection.commit()
        except BaseException as error:
            connection.rollback()
            if isinstance(error, self._driver_errors()):
                raise self._unusable(error) from error
            raise
        finally:
            connection.close()

    def _driver_errors(self) -> tuple[type[Exception], ...]:
        import sqlite3

        if self._location.dialect == "sqlite":
            return (sqlite3.Error, OSError)
        import psycopg2

        return (psycopg2.Error,)

    def _unusable(self, error: BaseException) -> DataOpsError:
        reason = " ".join(str(error).split()) or type(error).__name__
        return DataOpsError(f"the run history at {self.shown_url} cannot be used: {reason}")

    def _upgrade(self, db: Database) -> None:
        if db.dialect == "postgresql":
            # Two workers opening a new store at once must not both create its tables.
            db.execute("select pg_advisory_xact_lock(724511)")
        version = schema_version(db)
        if version > SCHEMA_VERSION:
            raise DataOpsError(
                f"the run history at {self.shown_url} has schema version {version}, newer than this dataops "
                f"({SCHEMA_VERSION}): upgrade dataops"
            )
        for migration in MIGRATIONS[version:]:
            migration(db)
        if version < SCHEMA_VERSION:
            db.execute("delete from dataops_schema")
            db.execute("insert into dataops_schema (version) values (?)", [SCHEMA_VERSION])
        self._upgraded = True

    def _exists(self) -> bool:
        """False for a SQLite store not created yet: reading one must not create it."""
        return self._location.path is None or self._location.path.exists()

    def describe(self) -> str:
        """For `dataops doctor`: where the store is and what it holds, read without creating or
        upgrading anything. Raises DataOpsError when it cannot be used."""
        if not self._exists():
            assert self._location.path is not None
            folder = next(p for p in (self._location.path, *self._location.path.parents) if p.exists())
            if not os.access(folder, os.W_OK):
                raise DataOpsError(f"the run history at {self.shown_url} cannot be created: {folder} is not writable")
            return f"{self.shown_url}: no run recorded yet (the first run creates it)"
        with self.transaction(write=False) as db:
            if not db.has_table("dataops_schema") or not _has_runs(db):
                return f"{self.shown_url}: no run recorded yet"
            [(version,)] = db.execute("select max(version) from dataops_schema")
            [(runs,)] = db.execute("select count(*) from dataops_runs")
        if version > SCHEMA_VERSION:
            raise DataOpsError(
                f"the run history at {self.shown_url} has schema version {version}, newer than "
                f"this dataops ({SCHEMA_VERSION}): upgrade dataops"
            )
        upgrade = f" (the next run upgrades it to v{SCHEMA_VERSION})" if version < SCHEMA_VERSION else ""
        return f"{self.shown_url}: schema v{version}{upgrade}, {runs:,} runs"

    def open_for_writing(self) -> None:
        """Make sure runs can be recorded (the store reachable, writable, its schema current)
        before a run starts, rather than after it has built everything."""
        with self.transaction():
            pass

    def record(self, run: RunRecord) -> None:
        """Write one run (again, if its id is known: the record of a run replaces its earlier one)."""
        with self.transaction() as db:
            _write(db, run)

    def update(self, run_id: str, change: Callable[[RunRecord | None], RunRecord]) -> RunRecord:
        """Read a run (None when there is none yet), change it and write it back, in one
        transaction: a run that several processes add to (the pipeline DAG's tasks) loses nothing
        when two of them add at once. SQLite's write transactions lock at their start; PostgreSQL
        takes a lock on the run id, which holds for a run that does not exist yet too."""
        with self.transaction() as db:
            if db.dialect == "postgresql":
                # Two keys: apart from _upgrade's one-key lock.
                db.execute("select pg_advisory_xact_lock(724512, hashtext(?))", [run_id])
            found = db.execute("select document from dataops_runs where run_id = ?", [run_id])
            run = change(RunRecord.from_dict(json.loads(found[0][0])) if found else None)
            if run.run_id != run_id:
                raise ValueError(f"an update of run {run_id} wrote run {run.run_id}")
            _write(db, run)
        return run

    def runs(
        self, target: str | None = None, limit: int = 20, kind: str | tuple[str, ...] | None = None
    ) -> list[RunSummaryRow]:
        """The newest runs first, of one target (or all), of one kind or several (or all)."""
        columns = list(RunSummaryRow.__dataclass_fields__)
        kinds = (kind,) if isinstance(kind, str) else kind
        where, values = [], []
        if target is not None:
            where.append("target = ?")
            values.append(target)
        if kinds:
            where.append(f"kind in ({', '.join('?' for _ in kinds)})")
            values.extend(kinds)
        sql = (
            f"select {', '.join(columns)} from dataops_runs {'where ' + ' and '.join(where) if where else ''} "
            "order by started_at desc, run_id desc limit ?"
        )
        if not self._exists():
            return []
        with self.transaction(write=False) as db:
            rows = db.execute(sql, [*values, limit]) if _has_runs(db) else []
        return [RunSummaryRow(**dict(zip(columns, row, strict=True))) for row in rows]

    def get(self, run_id: str) -> RunRecord | None:
        if not self._exists():
            return None
        with self.transaction(write=False) as db:
            found = db.execute("select document from dataops_runs where run_id = ?", [run_id]) if _has_runs(db) else []
        if not found:
            return None
        return _read_document(self.shown_url, run_id, found[0][0])

    def latest(self, target: str, kind: str | tuple[str, ...] | None = PIPELINE_KINDS) -> RunRecord | None:
        found = self.runs(target, limit=1, kind=kind)
        return self.get(found[0].run_id) if found else None

    # What the exporter reads at each scrape ---------------------------------------------------

    def target_summaries(self) -> list[TargetSummary] | None:
        """Every target's totals and latest run, read in one transaction from the indexes and one
        document per target. None when there is no store to read (no file, or no run recorded
        yet); DataOpsError when it cannot be read."""
        if not self._exists():
            return None
        with self.transaction(write=False) as db:
            if not _has_runs(db):
                return None
            publish_status, published_version = _publish_columns(db)
            counts: dict[str, dict[tuple[str, str | None], int]] = {}
            for target, status, published, runs in db.execute(
                # Ended runs only: one in flight is recorded as crashed until it ends, and a total
                # must never go down.
                f"select target, status, {publish_status}, count(*) from dataops_runs "
                f"where kind in ({PIPELINE_KINDS_SQL}) and finished_at is not null "
                f"group by target, status, {publish_status}"
            ):
                counts.setdefault(str(target), {})[(str(status), published)] = int(runs)
            failures = _node_failures(db)
            columns = (publish_status, published_version)
            return [
                _summary(db, self.shown_url, target, runs, failures.get(target, {}), columns)
                for target, runs in sorted(counts.items())
            ]

    # Incidents --------------------------------------------------------------------------------

    def record_incident(self, incident: IncidentRecord) -> None:
        """Write an incident (again, if its id is known: it replaces what was kept)."""
        with self.transaction() as db:
            db.execute("delete from dataops_incidents where incident_id = ?", [incident.incident_id])
            db.insert_many(
                "dataops_incidents",
                [
                    {
                        "incident_id": incident.incident_id,
                        "target": incident.target,
                        "title": incident.title,
                        "severity": incident.severity,
                        "opened_at": stored_moment(incident.opened_at),
                        "run_id": incident.run_id,
                        "path": incident.path,
                        "resolved_at": stored_moment(incident.resolved_at) if incident.resolved_at else None,
                        "resolution": incident.resolution,
                    }
                ],
            )

    def incidents(
        self, target: str | None = None, since: datetime | None = None, open_only: bool = False
    ) -> list[IncidentRecord]:
        """Incidents, the newest opened first: of one target (or all), opened at or after `since`."""
        if not self._exists():
            return []
        where, values = [], []
        if target is not None:
            where.append("target = ?")
            values.append(target)
        if since is not None:
            where.append("opened_at >= ?")
            values.append(stored_moment(since))
        if open_only:
            where.append("resolved_at is null")
        sql = (
            "select incident_id, target, title, severity, opened_at, run_id, path, resolved_at, resolution "
            f"from dataops_incidents {'where ' + ' and '.join(where) if where else ''} "
            "order by opened_at desc, incident_id desc"
        )
        with self.transaction(write=False) as db:
            if not db.has_table("dataops_incidents"):
                return []
            rows = db.execute(sql, values)
        return [
            IncidentRecord(
                str(incident_id),
                str(target),
                str(title),
                str(severity),
                datetime.fromisoformat(str(opened)),
                run_id,
                str(path),
                datetime.fromisoformat(str(resolved)) if resolved else None,
                str(resolution),
            )
            for incident_id, target, title, severity, opened, run_id, path, resolved, resolution in rows
        ]

    def incident(self, incident_id: str) -> IncidentRecord | None:
        return next((i for i in self.incidents() if i.incident_id == incident_id), None)

    # Leases -----------------------------------------------------------------------------------

    def take_lease(self, target: str, lease: Lease, seconds: float) -> Lease | None:
        """Take the target's lease for `lease.run_id`, or renew it; None when taken. Held by another
        run and not expired: that run's lease, and nothing changes."""
        now = datetime.now(UTC)
        with self.transaction() as db:
            if db.dialect == "postgresql":
                db.execute("select pg_advisory_xact_lock(724513, hashtext(?))", [target])
            found = db.execute(
                "select run_id, host, pid, since, expires_at from dataops_leases where target = ?", [target]
            )
            if found and found[0][0] != lease.run_id and str(found[0][4]) > _utc(now):
                return _lease_of(found[0])
            since = str(found[0][3]) if found and found[0][0] == lease.run_id else lease.since
            db.execute("delete from dataops_leases where target = ?", [target])
            db.execute(
                "insert into dataops_leases (target, run_id, host, pid, since, expires_at) values (?, ?, ?, ?, ?, ?)",
                [target, lease.run_id, lease.host, lease.pid, since, _utc(now + timedelta(seconds=seconds))],
            )
        return None

    def lease_holder(self, target: str, excluding: str | None = None) -> Lease | None:
        """The run that holds the target's lease now (not expired), unless it is `excluding`."""
        if not self._exists():
            return None
        with self.transaction(write=False) as db:
            if schema_version(db) < 3:
                return None
            found = db.execute(
                "select run_id, host, pid, since, expires_at from dataops_leases where target = ? and expires_at > ?",
                [target, _utc(datetime.now(UTC))],
            )
        if not found or found[0][0] == excluding:
            return None
        return _lease_of(found[0])

    def release_lease(self, target: str, run_id: str) -> None:
        with self.transaction() as db:
            db.execute("delete from dataops_leases where target = ? and run_id = ?", [target, run_id])

    # What the ops modules read with their own SQL (metrics, report) ----------------------------

    @contextmanager
    def reading(self) -> Iterator[Database | None]:
        """One read transaction over the store; None when no run is recorded yet (no file, no
        tables), which a read must not create."""
        if not self._exists():
            yield None
            return
        with self.transaction(write=False) as db:
            yield db if _has_runs(db) else None


def _write(db: Database, run: RunRecord) -> None:
    """One run's rows, replacing those it had."""
    document = run.to_dict()
    for table in ("dataops_row_counts", "dataops_nodes", "dataops_runs"):
        db.execute(f"delete from {table} where run_id = ?", [run.run_id])
    db.insert_many(
        "dataops_runs",
        [
            {
                "run_id": run.run_id,
                "target": run.target,
                "kind": run.kind,
                "trigger": run.trigger.kind,
                "started_at": stored_moment(run.started_at),
                "finished_at": stored_moment(run.finished_at) if run.finished_at else None,
                "seconds": run.seconds,
                "status": run.status,
                "exit_code": run.exit_code,
                "models_built": run.models_built,
                "tests_failed": run.tests_failed,
                "quality_score": run.quality_score,
                "cpu_seconds": run.cpu_seconds,
                "peak_memory_bytes": run.peak_memory_bytes,
                "document": json.dumps(document, default=str),
                "publish_status": run.publish.status if run.publish else None,
                "published_version": _published_version(run.publish),
            }
        ],
    )
    db.insert_many("dataops_nodes", [_node_row(run.run_id, node) for node in run.nodes])
    db.insert_many(
        "dataops_row_counts",
        [{"run_id": run.run_id, "relation": name, "rows": rows} for name, rows in run.row_counts.items()],
    )


def _node_row(run_id: str, node: NodeRecord) -> dict[str, Any]:
    """A node's columns. Its sample of failing rows stays in the run's document only: no query of
    the store filters or counts by it, so it needs no column (nor a schema version)."""
    row = {"run_id": run_id, **node.__dict__}
    del row["sample"]
    return row


def _published_version(publish: PublishRecord | None) -> int | None:
    """The version consumers read once the run was over (as `_publish_from_document` has it)."""
    if publish is None:
        return None
    return publish.version if publish.version is not None else publish.previous_version


@dataclass(frozen=True)
class TargetSummary:
    """One target as the exporter sees it: totals over its whole history, and its latest runs."""

    target: str
    runs: dict[tuple[str, str | None], int]  # runs of kind `run` by (status, publish status)
    latest: RunRecord | None  # the newest run of kind `run` that has ended
    last_success_at: datetime | None  # when the newest run that passed or warned ended
    quality_score: float | None  # of the newest ended run that has one
    published_version: int | None  # what consumers read, after the newest publish record
    node_failures: dict[tuple[str, str], int]  # runs in which a (node kind, name) failed


# dbt's statuses that count as a failure: a model that errored, a test that failed or errored.
_FAILED_NODES = (
    "(n.kind = 'model' and n.status = 'error') or (n.kind in ('test', 'unit_test') and n.status in ('fail', 'error'))"
)


def _node_failures(db: Database) -> dict[str, dict[tuple[str, str], int]]:
    failures: dict[str, dict[tuple[str, str], int]] = {}
    for target, kind, name, runs in db.execute(
        "select r.target, n.kind, n.name, count(distinct n.run_id) from dataops_nodes n "
        "join dataops_runs r on r.run_id = n.run_id "
        f"where r.kind in ({PIPELINE_KINDS_SQL}) and r.finished_at is not null and ({_FAILED_NODES}) "
        "group by r.target, n.kind, n.name"
    ):
        failures.setdefault(str(target), {})[(str(kind), str(name))] = int(runs)
    return failures


def _summary(
    db: Database,
    store: str,
    target: str,
    runs: dict[tuple[str, str | None], int],
    failures: dict[tuple[str, str], int],
    publish_columns: tuple[str, str],
) -> TargetSummary:
    """The latest of each kind walks the target's runs newest first in `ix_dataops_runs_latest`."""
    publish_status, published_version = publish_columns

    def newest(column: str, condition: str, kinds: str = PIPELINE_KINDS_SQL) -> Any:
        found = db.execute(
            f"select {column} from dataops_runs where target = ? and kind in ({kinds}) and {condition} "
            "order by started_at desc, run_id desc limit 1",
            [target],
        )
        return found[0][0] if found else None

    ended = "finished_at is not null"
    latest_id = newest("run_id", ended)
    latest = None
    if latest_id is not None:
        [(document,)] = db.execute("select document from dataops_runs where run_id = ?", [latest_id])
        latest = _read_document(store, str(latest_id), document)
    success = newest("finished_at", f"{ended} and status in ('passed', 'warned')")
    score = newest("quality_score", f"{ended} and quality_score is not null")
    version = newest(published_version, f"{publish_status} is not null", kinds=f"{PIPELINE_KINDS_SQL}, 'rollback'")
    return TargetSummary(
        target=target,
        runs=runs,
        latest=latest,
        last_success_at=datetime.fromisoformat(str(success)) if success else None,
        quality_score=float(score) if score is not None else None,
        published_version=int(version) if version is not None else None,
        node_failures=failures,
    )


def _publish_columns(db: Database) -> tuple[str, str]:
    """The publish status and version columns; read from the documents in a store that an older
    dataops wrote (schema before v5), which a read must not upgrade."""
    found = db.execute("select version from dataops_schema") if db.has_table("dataops_schema") else []
    if found and int(found[0][0]) >= 5:
        return "publish_status", "published_version"
    return _publish_from_document(db.dialect)


def _read_document(store: str, run_id: str, document: str) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(document))
    except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise DataOpsError(
            f"the record of run {run_id} in {store} cannot be read ({error}): it was written by "
            "a newer dataops (upgrade dataops) or damaged"
        ) from error


def _has_runs(db: Database) -> bool:
    """A store no run has been recorded in yet has no tables: it reads as empty, and is not created."""
    return db.has_table("dataops_runs")


def schema_version(db: Database) -> int:
    """The store's schema version; 0 for a new store (whose version table this creates)."""
    if not db.has_table("dataops_schema"):
        db.execute("create table dataops_schema (version integer not null)")
        return 0
    found = db.execute("select version from dataops_schema")
    return int(found[0][0]) if found else 0


def stored_moment(moment: datetime) -> str:
    """A moment as the store writes it (UTC, to the microsecond): such texts compare as the moments
    do, so a query over the store can bound its timestamps with them."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _lease_of(row: Sequence[Any]) -> Lease:
    return Lease(str(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]))
