"""Write-audit-publish on a real PostgreSQL server (tests/postgres_server.py): versions as schemas
behind one view per mart, swapped in one transaction; rollback; readers that never see half a
version nor a deadlock; a reader role that reads the marts and nothing else; one run per target;
and a publish killed at any point, which leaves one whole version published.

One real run builds the base warehouse (v1) once; every test starts from a copy of that database
(CREATE DATABASE ... TEMPLATE), always under the same name, so dbt's partial parse stays valid.
Candidates that only exist to be published are built cheaply from the published version with
CREATE TABLE AS, changed where a test needs different data; what publishes them is the real code."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from dataops.cli.main import main as cli
from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings, load_settings
from dataops.core.errors import DataOpsError
from dataops.history.store import HistoryStore
from dataops.publish.versions import rollback
from dataops.sources.faults import inject
from dataops.sources.generate import generate_tables
from dataops.warehouse import LockHolder, TargetBusy, connect
from dataops.warehouse.postgres import _HOLD_CLASS, PostgresWarehouse

pytestmark = pytest.mark.integration

# The smallest scale whose marts pass the quality suites (customer_analytics needs 1,000 rows).
SCALE = 0.06
MARTS = {
    "customer_analytics": "customer_id",
    "dim_products": "product_id",
    "dim_territories": "territory_id",
    "fct_order_lines": "order_line_id",
    "fct_orders": "order_id",
}
CANDIDATE = "marts__candidate"
BASE_DATABASE = "publish_base"
# Every customer's lifetime value is the sum of their orders' totals, and every order has a
# customer: across the two marts the sums are equal in any one version (checked on the real data).
INVARIANT = (
    "select (select sum(lifetime_value) from marts.customer_analytics) "
    "- (select sum(total_due) from marts.fct_orders), (select sum(total_due) from marts.fct_orders)"
)
READER_ROLE = "marts_reader"
# Made up per session: no password, not even a test one, is written in the repository.
READER_PASSWORD = secrets.token_urlsafe(12)


# Fixtures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    settings: Settings
    checksums: dict[str, tuple[int, str]]
    run_id: str
    folder: Path


@pytest.fixture(scope="module")
def base(postgres_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    """A real run, published as v1, kept as the template database every test copies."""
    from postgres_server import recreate_database  # loaded by tests/conftest.py

    folder = tmp_path_factory.mktemp("publish")
    patch = pytest.MonkeyPatch()
    try:
        for name, value in postgres_env.items():
            patch.setenv(name, value)
        patch.setenv("DATAOPS_WAREHOUSE_DIR", str(folder / "warehouse"))  # dbt's artifacts, shared
        patch.setenv("DATAOPS_HISTORY_URL", f"sqlite:///{folder / 'base-history.sqlite'}")
        for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET"):
            patch.delenv(name, raising=False)
        recreate_database(postgres_env)
        settings = load_settings("postgres")
        summary = Pipeline(settings).run(RunOptions(scale=SCALE, seed=1, docs=False))
        assert summary.exit_code == 0, summary.findings
        assert summary.publish is not None and summary.publish.status == "published"
        assert summary.publish.version == 1
        checksums = _checksums(settings)
        assert set(checksums) == set(MARTS) and all(rows > 0 for rows, _ in checksums.values())
        with _sql(settings, "postgres") as cursor:
            _end_sessions(cursor, settings.connection()["dbname"])
            cursor.execute(f'DROP DATABASE IF EXISTS "{BASE_DATABASE}"')
            cursor.execute(f'CREATE DATABASE "{BASE_DATABASE}" TEMPLATE "{settings.connection()["dbname"]}"')
        yield Base(settings, checksums, summary.run_id, folder)
    finally:
        patch.undo()


@pytest.fixture
def target(base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The target's database as the base run left it (v1 published), and a run history of its own."""
    monkeypatch.setenv("DATAOPS_HISTORY_URL", f"sqlite:///{tmp_path / 'history.sqlite'}")
    dbname = base.settings.connection()["dbname"]
    with _sql(base.settings, "postgres") as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{BASE_DATABASE}"')
    return base.settings


# Helpers -------------------------------------------------------------------------------------


def _connection(settings: Settings, dbname: str | None = None, **extra: Any) -> Any:
    """An autocommit connection as the warehouse's owner."""
    fields = settings.connection()
    connection = psycopg2.connect(
        host=fields["host"],
        port=fields["port"],
        user=fields["user"],
        password=fields["password"],
        dbname=dbname or fields["dbname"],
        **extra,
    )
    connection.autocommit = True
    return connection


@contextmanager
def _sql(settings: Settings, dbname: str | None = None) -> Iterator[Any]:
    """A cursor on an autocommit connection, closed after the block (psycopg2's own `with
    connection` opens a transaction instead, even in autocommit)."""
    connection = _connection(settings, dbname)
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def _end_sessions(cursor: Any, dbname: str) -> None:
    cursor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    )


def _checksum_sql(schema: str) -> str:
    return " UNION ALL ".join(
        f"SELECT '{mart}', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.{key}), '')) "
        f"FROM {schema}.{mart} t"
        for mart, key in MARTS.items()
    )


def _checksums(settings: Settings, schema: str = "marts") -> dict[str, tuple[int, str]]:
    """Rows and an md5 of every row, per mart, as consumers read them (through read_only_query)."""
    rows = connect(settings).read_only_query(_checksum_sql(schema)).rows
    return {mart: (int(count), digest) for mart, count, digest in rows}


def _counts(settings: Settings, schema: str) -> dict[str, int]:
    return {f"marts.{mart}": rows for mart, (rows, _) in _checksums(settings, schema).items()}


def _variant_statements(schema: str, source: str) -> list[str]:
    """SQL that builds `schema` as a copy of `source`'s marts with `{delta}` added to the total of the
    first order and to its customer's lifetime value (the invariant holds), one transaction each."""
    first_order = f"(SELECT min(order_id) FROM {source}.fct_orders)"
    return [
        f"DROP SCHEMA IF EXISTS {schema} CASCADE",
        f"CREATE SCHEMA {schema}",
        *(f"CREATE TABLE {schema}.{mart} AS SELECT * FROM {source}.{mart}" for mart in MARTS),
        f"UPDATE {schema}.fct_orders SET total_due = total_due + {{delta}} WHERE order_id = {first_order}",
        f"UPDATE {schema}.customer_analytics SET lifetime_value = lifetime_value + {{delta}} WHERE customer_id = "
        f"(SELECT customer_id FROM {source}.fct_orders WHERE order_id = {first_order})",
    ]


def _build(settings: Settings, delta: int, source: str = "marts", schema: str = CANDIDATE) -> None:
    with _sql(settings) as cursor:
        for statement in _variant_statements(schema, source):
            cursor.execute(statement.replace("{delta}", str(delta)))


def _publish(
    settings: Settings, delta: int, warehouse: PostgresWarehouse | None = None, grant_to: str | None = None
) -> int:
    """A candidate one `delta` away from the published version, published by the real code."""
    _build(settings, delta)
    warehouse = warehouse or _warehouse(settings)
    version = warehouse.publish(CANDIDATE, list(MARTS), f"test-{delta}", _counts(settings, CANDIDATE), grant_to)
    warehouse.drop_versions(settings.keep_versions)
    return version.number


def _warehouse(settings: Settings, **options: Any) -> PostgresWarehouse:
    warehouse = connect(settings)
    assert isinstance(warehouse, PostgresWarehouse)
    if options:
        warehouse = PostgresWarehouse(settings.connection(), consumer_schema=settings.consumer_schema, **options)
    return warehouse


def _view_sources(settings: Settings) -> dict[str, set[str]]:
    """Each consumer view -> the schemas of the relations it reads, from the server's catalogs."""
    rows = (
        connect(settings)
        .read_only_query(
            "SELECT DISTINCT v.relname, tn.nspname FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace "
            "JOIN pg_rewrite r ON r.ev_class = v.oid JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass "
            "AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass JOIN pg_class t ON t.oid = d.refobjid "
            "JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE vn.nspname = 'marts' AND t.oid <> v.oid"
        )
        .rows
    )
    found: dict[str, set[str]] = {}
    for view, schema in rows:
        found.setdefault(view, set()).add(schema)
    return found


def _published_schema(settings: Settings) -> str:
    """The one version schema behind every consumer view; fails on a torn or missing publish."""
    sources = _view_sources(settings)
    assert set(sources) == set(MARTS), sources
    schemas = set().union(*sources.values())
    assert len(schemas) == 1, sources
    return schemas.pop()


def _current(settings: Settings) -> int | None:
    return next((v.number for v in connect(settings).versions() if v.current), None)


def _schemas(settings: Settings, pattern: str) -> set[str]:
    rows = connect(settings).read_only_query(f"SELECT nspname FROM pg_namespace WHERE nspname LIKE '{pattern}'").rows
    return {name for (name,) in rows}


def _hold_pids(settings: Settings) -> list[int]:
    """Server processes that hold a target's advisory lock in this database."""
    rows = (
        connect(settings)
        .read_only_query(
            f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = {_HOLD_CLASS} "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        .rows
    )
    return [pid for (pid,) in rows]


def _wait_for(condition: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _dataops(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dataops", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches its quality worker too
    )


# 1. Write-audit-publish and rollback ---------------------------------------------------------


def test_a_faulty_run_is_not_published_and_rollback_restores_a_version_exactly(target: Settings, base: Base) -> None:
    assert _checksums(target) == base.checksums
    assert [(v.number, v.current, v.run_id) for v in connect(target).versions()] == [(1, True, base.run_id)]
    assert _published_schema(target) == "marts__v1"

    # A run whose data the quality checks reject: its marts are built, tested and not published.
    faulty = inject(generate_tables(SCALE, seed=1), ["extreme_value"], seed=1)
    load_tables(target, faulty, "generated data with extreme_value")
    summary = Pipeline(target).run(RunOptions(docs=False))
    assert summary.exit_code == 1
    assert summary.publish is not None and summary.publish.status == "not published"
    assert "accepted_range on customer_analytics.lifetime_value" in summary.publish.reason
    # The fault reached the candidate, which consumers never saw.
    over = (
        connect(target)
        .read_only_query(f"SELECT count(*) FROM {CANDIDATE}.customer_analytics WHERE lifetime_value > 1000000")
        .rows[0][0]
    )
    assert over >= 1
    assert _checksums(target) == base.checksums
    assert _current(target) == 1 and len(connect(target).versions()) == 1

    # Nothing earlier to roll back to: a user error, exit code 2.
    with pytest.raises(DataOpsError, match="nothing to roll back to"):
        rollback(target)
    assert cli(["rollback", "--target", "postgres"]) == 2

    # v2 (from a candidate one cent away), then back to v1: exactly v1's rows again.
    assert _publish(target, 1) == 2
    second = _checksums(target)
    assert second != base.checksums and second["fct_orders"][0] == base.checksums["fct_orders"][0]
    record = rollback(target)
    assert record.publish is not None and (record.publish.version, record.publish.previous_version) == (1, 2)
    assert _checksums(target) == base.checksums
    assert _published_schema(target) == "marts__v1"
    assert [(v.number, v.current) for v in connect(target).versions()] == [(2, False), (1, True)]
    assert cli(["rollback", "--target", "postgres"]) == 2  # v1 is the oldest kept
    rollback(target, to=2)
    assert _checksums(target) == second
    # Each switch is in the history, as a run of kind rollback.
    assert [row.kind for row in HistoryStore().runs("postgres")][:2] == ["rollback", "rollback"]


# 2. Readers see one whole version, never an error ----------------------------------------------

READER = r"""
import json, os, sys, time
import psycopg2

stop_file, query = sys.argv[1], sys.argv[2]
connection = psycopg2.connect(application_name="invariant reader")
connection.autocommit = True
cursor = connection.cursor()
reads, errors, inconsistent, seen, slow = 0, [], [], {}, []
while not os.path.exists(stop_file):
    started = time.time()
    try:
        cursor.execute(query)
        difference, total = cursor.fetchone()
    except psycopg2.Error as error:
        errors.append([started, f"{error.pgcode}: {error}".strip()])
        connection = psycopg2.connect(application_name="invariant reader")
        connection.autocommit = True
        cursor = connection.cursor()
        continue
    finished = time.time()
    reads += 1
    seen[str(total)] = seen.get(str(total), 0) + 1
    if difference != 0:
        inconsistent.append([started, finished, str(difference), str(total)])
    if finished - started > 0.02:
        slow.append([started, finished - started])
    time.sleep(0.002)
print(json.dumps({"reads": reads, "errors": errors, "inconsistent": inconsistent, "seen": seen, "slow": slow}))
"""


def test_readers_see_one_whole_version_through_ten_publishes(target: Settings, tmp_path: Path) -> None:
    difference, total = connect(target).read_only_query(INVARIANT).rows[0]
    assert difference == 0 and total > 0  # the invariant holds on the real marts
    warehouse = _warehouse(target)
    stop = tmp_path / "stop"
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, str(stop), INVARIANT], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        _wait_for(
            lambda: (
                len(
                    connect(target)
                    .read_only_query("SELECT pid FROM pg_stat_activity WHERE application_name = 'invariant reader'")
                    .rows
                )
                == 4
            ),
            30,
            "the four readers to connect",
        )
        time.sleep(0.3)
        published = {str(total)}
        timings = []
        for delta in range(1, 11):
            _build(target, delta)
            started = time.time()
            warehouse.publish(CANDIDATE, list(MARTS), f"test-{delta}", _counts(target, CANDIDATE))
            timings.append((started, time.time()))
            warehouse.drop_versions(target.keep_versions)
            total += delta
            published.add(str(total))
            time.sleep(0.15)  # let the readers read this version
        swaps_ended = time.time()

        # The control: a swap done in two transactions, as a publish must not. The readers catch it.
        current = _published_schema(target)
        _build(target, 1000, source=current, schema="torn")
        with _sql(target) as cursor:
            cursor.execute("CREATE OR REPLACE VIEW marts.customer_analytics AS SELECT * FROM torn.customer_analytics")
            time.sleep(0.5)
            cursor.execute("CREATE OR REPLACE VIEW marts.fct_orders AS SELECT * FROM torn.fct_orders")
            time.sleep(0.2)
            warehouse.switch_to(_current(target) or 0)  # every view onto the published version again
            cursor.execute("DROP SCHEMA torn CASCADE")
        time.sleep(0.2)
    finally:
        stop.touch()
        results = [json.loads(reader.communicate(timeout=60)[0]) for reader in readers]

    during = [r for result in results for r in result["inconsistent"] if r[1] <= swaps_ended]
    control = [r for result in results for r in result["inconsistent"] if r[0] > swaps_ended]
    errors = [e for result in results for e in result["errors"]]
    seen = {total for result in results for total, n in result["seen"].items()}

    def overlaps(started: float, latency: float) -> bool:
        return any(started < end and started + latency > begin for begin, end in timings)

    slow = [(started, latency) for result in results for started, latency in result["slow"] if started < swaps_ended]
    during_publish = max((latency for started, latency in slow if overlaps(started, latency)), default=0.0)
    otherwise = max((latency for started, latency in slow if not overlaps(started, latency)), default=0.0)
    seconds = sorted(end - begin for begin, end in timings)
    print(
        f"\nreads {sum(r['reads'] for r in results)}; publish {seconds[0]:.3f}-{seconds[-1]:.3f} s "
        f"(median {seconds[len(seconds) // 2]:.3f}); the longest read overlapping a publish {during_publish:.3f} s, "
        f"otherwise {otherwise:.3f} s; {len(control)} torn reads in the control"
    )
    assert during_publish < 2.0  # a reader waits for a swap at most its lock timeout and its commit
    assert errors == []
    assert during == []
    assert control, "the readers would not have noticed a torn swap"
    assert all(result["reads"] > 50 for result in results)
    # Every value a reader saw was one published version's (the torn control adds one more), and
    # the readers saw several of them.
    assert len(seen & published) >= 5, (seen, published)
    assert seen - published <= {str(Decimal(t) + 1000) for t in published}
    assert _current(target) == 11 and len(connect(target).versions()) == target.keep_versions


def test_a_long_reader_is_named_and_no_reader_is_ever_the_deadlock_victim(target: Settings) -> None:
    quick = _warehouse(target, lock_timeout=0.3, publish_attempts=3)
    _build(target, 5)

    # A report that keeps its transaction open on fct_orders past every try: the publish gives up,
    # names it, and the published version is as it was.
    report = _connection(target, application_name="long report")
    report.autocommit = False
    with report.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM marts.fct_orders")
        cursor.execute("SELECT pg_backend_pid()")
        report_pid = cursor.fetchone()[0]
    stalls: list[float] = []
    stop = threading.Event()

    def read_customers() -> None:  # a short reader of the view the swap locks first
        with _sql(target) as cursor:
            while not stop.is_set():
                started = time.perf_counter()
                cursor.execute("SELECT count(*) FROM marts.customer_analytics")
                stalls.append(time.perf_counter() - started)
                time.sleep(0.005)

    reader = threading.Thread(target=read_customers)
    reader.start()
    try:
        with pytest.raises(DataOpsError) as failed:
            quick.publish(CANDIDATE, list(MARTS), "blocked", _counts(target, CANDIDATE))
    finally:
        stop.set()
        reader.join()
    message = str(failed.value)
    assert "the published version is unchanged" in message and "3 tries" in message
    assert f"server process {report_pid}" in message and "long report" in message
    assert _checksums(target) == _checksums(target, "marts__v1") and _current(target) == 1
    print(
        f"\nwith a long reader: the longest wait of a short reader {max(stalls):.3f} s "
        f"(lock timeout {quick.lock_timeout} s)"
    )
    assert max(stalls) < 1.0  # each try holds the short readers up at most its lock timeout
    report.rollback()
    report.close()

    # A reader that waits for the swap waits at most the swap's lock timeout, kept below
    # deadlock_timeout (1 s): never long enough to be cancelled as a deadlock's victim, whatever the
    # swap waits for after it took that reader's view. The swap takes customer_analytics first,
    # then waits for dim_products, dim_territories and fct_order_lines, which three reports release
    # one after the other, each before a lock timeout would end the wait for it; `first` holds
    # fct_orders and asks for customer_analytics meanwhile. With only a lock_timeout per lock, the
    # swap would hold customer_analytics through all three waits and `first` would wait over a second.
    first, *reports = (_connection(target) for _ in range(4))
    for connection, mart in zip(
        [first, *reports], ["fct_orders", "dim_products", "dim_territories", "fct_order_lines"], strict=True
    ):
        connection.autocommit = False
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM marts.{mart} LIMIT 1")
    outcome: dict[str, Any] = {}
    swap = threading.Thread(
        target=lambda: outcome.update(
            version=_warehouse(target).publish(CANDIDATE, list(MARTS), "cycle", _counts(target, CANDIDATE))
        )
    )
    with _sql(target) as watch:
        swap.start()

        def swap_waits() -> bool:
            watch.execute("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND NOT granted")
            return watch.fetchone()[0] > 0

        _wait_for(swap_waits, 10, "the swap to wait for dim_products", every=0.005)
    releases = [threading.Timer(delay, report.commit) for delay, report in zip((0.3, 0.7, 1.1), reports, strict=True)]
    for release in releases:
        release.start()
    started = time.perf_counter()
    with first.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM marts.customer_analytics")  # waits for the swap, never fails
        waited = time.perf_counter() - started
        assert cursor.fetchone()[0] > 0
    first.commit()
    swap.join(30)
    for release in releases:
        release.join()
    for connection in (first, *reports):
        connection.close()
    print(f"in the cycle, the reader waited {waited:.3f} s")
    assert waited < 0.9
    assert outcome["version"].number == 2
    assert _published_schema(target) == "marts__v2"


# 3. The reader role --------------------------------------------------------------------------


def test_the_reader_role_reads_the_published_marts_and_nothing_else(target: Settings) -> None:
    with _sql(target) as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,))
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE ROLE {READER_ROLE} LOGIN PASSWORD '{READER_PASSWORD}'")
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bi_team'")
        if cursor.fetchone() is None:
            cursor.execute("CREATE ROLE bi_team NOLOGIN")
    settings = replace(target, reader_role=READER_ROLE)
    fields = settings.connection()

    def as_reader(sql: str) -> list[tuple[Any, ...]]:
        connection = psycopg2.connect(
            host=fields["host"],
            port=fields["port"],
            dbname=fields["dbname"],
            user=READER_ROLE,
            password=READER_PASSWORD,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                rows = cursor.fetchall() if cursor.description else []
            connection.commit()
            return rows
        finally:
            connection.close()

    def denied(sql: str) -> None:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            as_reader(sql)

    def reads_every_mart() -> None:
        counts = {mart: as_reader(f"SELECT count(*) FROM marts.{mart}")[0][0] for mart in MARTS}
        assert counts == {mart: rows for mart, (rows, _) in _checksums(settings).items()}

    denied("SELECT count(*) FROM marts.fct_orders")  # v1 was published with no reader role
    assert _publish(settings, 1, grant_to=READER_ROLE) == 2
    reads_every_mart()
    _build(settings, 2)  # a candidate waiting for the next publish
    for relation in (
        "marts__v2.fct_orders",
        "marts__v1.fct_orders",
        f"{CANDIDATE}.fct_orders",
        '"Sales"."Customer"',
        "staging.stg_orders",
        "dataops_publish.versions",
    ):
        denied(f"SELECT count(*) FROM {relation}")
    for statement in (
        "INSERT INTO marts.dim_territories SELECT * FROM marts.dim_territories",
        "UPDATE marts.fct_orders SET total_due = 0",
        "DELETE FROM marts.fct_orders",
        "CREATE TABLE marts.mine (id int)",
        "CREATE TABLE public.mine (id int)",
        "CREATE VIEW marts.mine AS SELECT 1",
        "CREATE SCHEMA mine",
        "ALTER SCHEMA marts__v2 RENAME TO stolen",
        "DROP VIEW marts.fct_orders",
    ):
        with pytest.raises((psycopg2.errors.InsufficientPrivilege, psycopg2.errors.WrongObjectType)):
            as_reader(statement)
    assert as_reader("SELECT has_schema_privilege('marts__v2', 'USAGE'), has_schema_privilege('marts', 'USAGE')") == [
        (False, True)
    ]

    # A grant given by hand to another role survives a publish that has to recreate the view.
    with _sql(settings) as cursor:
        cursor.execute("GRANT SELECT ON marts.dim_territories TO bi_team")
        cursor.execute(f"ALTER TABLE {CANDIDATE}.dim_territories DROP COLUMN territory_name")
    warehouse = _warehouse(settings)
    warehouse.publish(CANDIDATE, list(MARTS), "narrower", _counts(settings, CANDIDATE), grant_to=READER_ROLE)
    reads_every_mart()
    assert "territory_name" not in {c.name for c in warehouse.columns("marts", ["dim_territories"])["dim_territories"]}
    assert connect(settings).read_only_query(
        "SELECT has_table_privilege('bi_team', 'marts.dim_territories', 'SELECT')"
    ).rows == [(True,)]

    # And after a rollback, onto the view with the column back.
    rollback(settings)
    reads_every_mart()
    assert as_reader("SELECT count(territory_name) FROM marts.dim_territories")[0][0] > 0
    assert connect(settings).read_only_query(
        "SELECT has_table_privilege('bi_team', 'marts.dim_territories', 'SELECT')"
    ).rows == [(True,)]
    denied("SELECT count(*) FROM marts__v2.fct_orders")


def test_publish_edge_cases(target: Settings) -> None:
    warehouse = _warehouse(target)
    # No candidate: a clear error, nothing changed, and holding the target is not affected.
    with pytest.raises(DataOpsError, match=f"cannot publish {CANDIDATE}: there is no such schema"):
        warehouse.publish(CANDIDATE, list(MARTS), "nothing", {})
    holder = LockHolder("edge-run", "edge-host", os.getpid(), "2026-12-02T00:00:00+00:00")
    with warehouse.hold(holder, wait=False):
        assert _current(target) == 1
        # A publish under the hold checks it is still held; another run is then told who holds it.
        _build(target, 11)
        assert warehouse.publish(CANDIDATE, list(MARTS), "under the hold", {}).number == 2
        with pytest.raises(TargetBusy) as busy, _warehouse(target).hold(LockHolder("other", "h", 1, "s"), wait=False):
            pass
        assert busy.value.holder == holder
        # The server ends the hold's session: the run must not publish any more.
        with _sql(target) as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                "'%dataops holder%edge-run%' AND pid <> pg_backend_pid()"
            )
        _build(target, 12)
        with pytest.raises(DataOpsError, match="lost its hold"):
            warehouse.publish(CANDIDATE, list(MARTS), "lost", {})
    warehouse.switch_to(1)
    # A view someone built on a consumer view: kept by a publish with the same columns; a publish
    # that must recreate the view stops, naming it.
    with _sql(target) as cursor:
        cursor.execute("CREATE SCHEMA reports")
        cursor.execute("CREATE VIEW reports.territories AS SELECT territory_id FROM marts.dim_territories")
    assert warehouse.publish(CANDIDATE, list(MARTS), "kept", {}).number == 3
    assert connect(target).read_only_query("SELECT count(*) FROM reports.territories").rows[0][0] > 0
    _build(target, 13)
    with _sql(target) as cursor:
        cursor.execute(f"ALTER TABLE {CANDIDATE}.dim_territories DROP COLUMN territory_group")
    with pytest.raises(DataOpsError, match=r"the published version is unchanged.*view reports\.territories depends"):
        warehouse.publish(CANDIDATE, list(MARTS), "narrower", {})
    assert _published_schema(target) == "marts__v3"
    with _sql(target) as cursor:
        cursor.execute("DROP SCHEMA reports CASCADE")
    warehouse.switch_to(1)
    # A mart missing from the candidate.
    _build(target, 1)
    with _sql(target) as cursor:
        cursor.execute(f"DROP TABLE {CANDIDATE}.dim_products")
    with pytest.raises(DataOpsError, match="dim_products is not in it"):
        warehouse.publish(CANDIDATE, list(MARTS), "partial", {})
    assert _checksums(target) == _checksums(target, "marts__v1")
    # A version without a mart: its view goes, the others point at the new version.
    kept = [mart for mart in MARTS if mart != "dim_products"]
    assert warehouse.publish(CANDIDATE, kept, "fewer", {}).number == 4
    assert set(_view_sources(target)) == set(kept)
    assert warehouse.columns("marts", ["dim_products"], published=True) == {}
    # A rollback brings it back.
    warehouse.switch_to(1)
    assert _published_schema(target) == "marts__v1"
    with pytest.raises(DataOpsError, match="there is no version 9"):
        warehouse.switch_to(9)
    # A reader role that does not exist is named before anything changes.
    _build(target, 3)
    with pytest.raises(DataOpsError, match="the reader role 'nobody_here'"):
        warehouse.publish(CANDIDATE, list(MARTS), "role", {}, grant_to="nobody_here")
    # The layout before publishing: marts as tables in the consumer schema, nothing recorded.
    with _sql(target) as cursor:
        cursor.execute("DROP SCHEMA dataops_publish CASCADE")
        for mart in MARTS:
            cursor.execute(f"DROP VIEW marts.{mart}")
            cursor.execute(f"CREATE TABLE marts.{mart} AS SELECT * FROM marts__v1.{mart}")
        for number in range(1, 5):
            cursor.execute(f"DROP SCHEMA marts__v{number} CASCADE")
    assert warehouse.versions() == [] and warehouse.published_row_counts(list(MARTS)) == {}
    before = _checksums(target)
    version = warehouse.publish(CANDIDATE, list(MARTS), "first", _counts(target, CANDIDATE))
    assert version.number == 1 and _published_schema(target) == "marts__v1"
    assert _checksums(target) != before and _checksums(target) == _checksums(target, "marts__v1")
    assert warehouse.published_row_counts(list(MARTS)) == {m: n for m, (n, _) in before.items()}
    # What the smoke checks read: the published version's columns, and a diff against it.
    _build(target, 7)
    published = warehouse.columns("marts", list(MARTS), published=True)
    assert published == warehouse.columns(CANDIDATE, list(MARTS))
    diff = warehouse.data_diff(CANDIDATE, "fct_orders", ["order_id"], [c.name for c in published["fct_orders"]])
    assert (diff.added, diff.removed, diff.changed, diff.changed_columns) == (0, 0, 1, {"total_due": 1})


# 4. One run per target ------------------------------------------------------------------------


def test_a_second_run_is_refused_naming_the_first_or_waits_for_it(target: Settings) -> None:
    # The first run is a short one (one staging model, checked and never published), held up for
    # as long as the test needs by a lock on the source table that model reads: the others are
    # started while it surely holds the target. Every run works on the sources the base run loaded.
    blocker = _connection(target)
    blocker.autocommit = False
    with blocker.cursor() as cursor:
        cursor.execute('LOCK TABLE "Sales"."SalesTerritory" IN ACCESS EXCLUSIVE MODE')
    # (A model none of whose tests reads a mart: the candidate marts are a version by now.)
    first = _dataops("run", "--target", "postgres", "--no-docs", "--no-quality", "--select", "stg_territories")
    refused = waiting = first
    try:
        holder = _wait_for(lambda: _hold_pids(target), 120, "the first run to hold the target")
        refused = _dataops("run", "--target", "postgres", "--no-docs")
        waiting = _dataops("run", "--target", "postgres", "--no-docs", "--wait")
        # Released only once the waiting run has asked for the target (its lock statement names it).
        _wait_for(
            lambda: (
                connect(target)
                .read_only_query(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg\\_try\\_advisory\\_lock%' "
                    f"AND query LIKE '%\"pid\": {waiting.pid}%' AND pid <> ALL(ARRAY{holder})"
                )
                .rows[0][0]
                > 0
            ),
            120,
            "the second run to wait",
        )
        refused_out, refused_err = refused.communicate(timeout=120)
        released = time.time()
        blocker.rollback()
        first_out, first_err = first.communicate(timeout=300)
        waiting_out, waiting_err = waiting.communicate(timeout=300)
    finally:
        blocker.close()
        for process in (first, refused, waiting):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert first.returncode == 0, first_out + first_err
    assert refused.returncode == 2, refused_out + refused_err
    assert waiting.returncode == 0, waiting_out + waiting_err
    history = HistoryStore()
    runs = sorted((history.get(row.run_id) for row in history.runs("postgres")), key=lambda r: r.started_at)
    assert len(runs) == 2  # the refused run did nothing, and is not recorded
    ran_first, ran_second = runs
    error = " ".join(refused_err.split())
    assert f"target 'postgres' is busy: run {ran_first.run_id} (pid {first.pid} on " in error, error
    assert f"waiting for run {ran_first.run_id} (pid {first.pid}" in " ".join(waiting_out.split())
    # The waiting run only ran once the first had finished, which it could only after the release.
    assert released < ran_first.finished_at.timestamp() <= ran_second.started_at.timestamp()
    assert [r.publish.status for r in runs] == ["not published", "published"]
    assert ran_second.publish.version == 2 and _published_schema(target) == "marts__v2"
    assert _hold_pids(target) == []


# 5. Killed at any point -----------------------------------------------------------------------


def _publish_loop(say: Any, trial: int, iterations: int, pause: float) -> None:
    """In a process of its own: hold the target and publish `iterations` candidates, saying how far
    it got before each step (the test kills it at one of them). Forked from the test process, which
    has imported everything already: a trial costs its work, not an interpreter's start."""
    settings = load_settings("postgres")
    warehouse = _warehouse(settings)
    connection = psycopg2.connect()  # the PG* variables
    connection.autocommit = True
    delta = 0
    if pause:  # inside the swap's transaction, everything done but the commit: stop there a moment
        warehouse.on_swapped = lambda: (say(f"swapped {delta}"), time.sleep(pause))
    with warehouse.hold(LockHolder(f"trial-{trial}", "test", os.getpid(), "now"), wait=True):
        say("ready")
        for i in range(iterations):
            delta = trial * 1000 + i + 1
            say(f"build {delta}")
            with connection.cursor() as cursor:
                for statement in _variant_statements(CANDIDATE, "crash_base"):
                    cursor.execute(statement.replace("{delta}", str(delta)))
            say(f"publish {delta}")
            warehouse.publish(CANDIDATE, list(MARTS), f"delta-{delta}", {})
            say(f"published {delta}")
            warehouse.drop_versions(settings.keep_versions)
            say(f"dropped {delta}")
    say("done")


def _run_loop(say: Any, *args: Any) -> None:
    try:
        _publish_loop(say.send, *args)
    except BaseException as error:
        say.send(f"error {type(error).__name__}: {error}")
        raise


@dataclass
class _Loop:
    process: Any
    said: Any

    def next(self, timeout: float = 60) -> str:
        assert self.said.poll(timeout), "the publish loop said nothing"
        return str(self.said.recv())

    def rest(self) -> list[str]:
        lines = []
        while self.said.poll(0.2):
            try:
                lines.append(str(self.said.recv()))
            except EOFError:
                break
        return lines


def _loop(trial: int, iterations: int, pause: float = 0.0) -> _Loop:
    context = multiprocessing.get_context("fork")
    said, say = context.Pipe(duplex=False)
    process = context.Process(target=_run_loop, args=(say, trial, iterations, pause), daemon=True)
    process.start()
    say.close()
    return _Loop(process, said)


# Where a trial kills the loop: after it said this (of its k-th publish), within this many seconds.
KILL_POINTS = {"build": 0.05, "publish": 0.05, "swapped": 0.4, "published": 0.05}
SWAP_PAUSE = 1.0


def _expected(settings: Settings, delta: int, base: Base) -> dict[str, tuple[int, str]]:
    if delta == 0:
        return base.checksums
    _build(settings, delta, source="crash_base", schema="expected")
    return _checksums(settings, "expected")


def _assert_one_whole_version(settings: Settings, base: Base) -> int:
    """The consumer views read one version, the one recorded as published, with exactly the rows
    that version was built with; returns its delta."""
    schema = _published_schema(settings)
    versions = {v.number: v for v in connect(settings).versions()}
    current = next(number for number, v in versions.items() if v.current)
    assert schema == f"marts__v{current}"
    run_id = versions[current].run_id
    delta = 0 if run_id == base.run_id else int(run_id.removeprefix("delta-"))
    assert _checksums(settings) == _expected(settings, delta, base)
    return delta


def test_a_publish_killed_at_any_point_leaves_one_whole_version(target: Settings, base: Base) -> None:
    with _sql(target) as cursor:
        cursor.execute("CREATE SCHEMA crash_base")
        for mart in MARTS:
            cursor.execute(f"CREATE TABLE crash_base.{mart} AS SELECT * FROM marts__v1.{mart}")
    chance = random.Random(20261202)
    published = 0  # the delta of the published version
    killed_after: dict[str, int] = {}
    for trial in range(1, 25):
        point = list(KILL_POINTS)[trial % len(KILL_POINTS)]
        marker = f"{point} {trial * 1000 + chance.randint(1, 3)}"
        # One publish more than the marker can name: a kill after the last named one still finds
        # the loop at work, never already done (a fast machine finished it within the delay).
        loop = _loop(trial, 4, SWAP_PAUSE if point == "swapped" else 0.0)
        seen = []
        while (line := loop.next()) != marker:
            assert not line.startswith(("error", "done")), (line, seen)
            seen.append(line)
        time.sleep(chance.uniform(0.0, KILL_POINTS[point]))
        loop.process.kill()
        loop.process.join(30)
        assert loop.process.exitcode == -signal.SIGKILL
        rest = loop.rest()
        last = [*seen, marker, *rest][-1]
        killed_after[last.split()[0]] = killed_after.get(last.split()[0], 0) + 1
        committed = [int(line.split()[1]) for line in [*seen, marker, *rest] if line.startswith("published ")]
        # The killed process's lock is the server's to release, and it does.
        _wait_for(lambda: not _hold_pids(target), 10, "the killed holder's lock to go")
        now = _assert_one_whole_version(target, base)
        if last.startswith("swapped"):
            # Killed in the open transaction: none of it happened.
            assert now == (committed[-1] if committed else published), (last, now)
        else:
            assert now in {published, *committed, int(marker.split()[1])}, (last, now)
        published = now
    print(f"\nkilled after: {killed_after}")
    assert killed_after.get("swapped", 0) >= 5  # every kill aimed at the open transaction hit it

    # The next publish works, and drop_versions leaves only the kept versions behind.
    loop = _loop(99, 1)
    loop.process.join(120)
    said = loop.rest()
    assert loop.process.exitcode == 0 and said[-1] == "done", said
    assert _assert_one_whole_version(target, base) == 99001
    kept = {f"marts__v{v.number}" for v in connect(target).versions()}
    assert len(kept) == target.keep_versions and _schemas(target, "marts\\_\\_v%") == kept
    assert _schemas(target, CANDIDATE) == set()
    with _sql(target) as cursor:
        cursor.execute("DROP SCHEMA crash_base CASCADE; DROP SCHEMA IF EXISTS expected CASCADE")

    # Runs killed while dbt builds the marts into the candidate: consumers keep the published
    # version, whole. (Runs of the marts alone, on the sources already loaded: that is the build a
    # kill can leave half-done; a full run, below, must then clean up after them.)
    before = _checksums(target)
    published = _current(target)
    built = []
    log = target.artifacts_dir / "logs" / "dbt.log"
    for _ in range(2):
        offset = log.stat().st_size if log.exists() else 0
        run = _dataops("run", "--target", "postgres", "--no-docs", "--no-quality", "--select", "path:models/marts")

        def building(run: subprocess.Popen[str] = run, offset: int = offset) -> bool:
            # dbt's own log says when it starts a mart's table in the candidate: polling the server
            # for the statement misses it on a fast machine (the whole build takes a second).
            assert run.poll() is None, f"the run ended (exit {run.returncode}): {run.communicate()}"
            written = log.read_bytes()[offset:] if log.exists() else b""
            return re.search(rb"START sql table model [^\n]*marts__candidate\.", written) is not None

        try:
            _wait_for(building, 180, "dbt to build the marts", every=0.01)
            time.sleep(chance.uniform(0.0, 0.3))
        finally:
            with contextlib.suppress(ProcessLookupError):  # gone already if it ended by itself
                os.killpg(run.pid, signal.SIGKILL)  # the run and its quality worker
            run.communicate(timeout=30)
        assert run.returncode == -signal.SIGKILL
        _wait_for(lambda: not _hold_pids(target), 10, "the killed run's lock to go")
        assert _current(target) == published and _checksums(target) == before
        built.append(
            sorted(
                name
                for (name,) in connect(target)
                .read_only_query(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    f"WHERE n.nspname = '{CANDIDATE}'"
                )
                .rows
            )
        )
    print(f"the killed builds left in the candidate: {built}")
    summary = Pipeline(target).run(RunOptions(scale=SCALE, seed=7, docs=False, wait=True))
    assert summary.exit_code == 0, summary.findings
    assert summary.publish is not None and summary.publish.version == (published or 0) + 1
    schema = _published_schema(target)
    relations = (
        connect(target)
        .read_only_query(
            f"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'v')"
        )
        .rows
    )
    assert {name for (name,) in relations} == set(MARTS)  # nothing a killed dbt left went along
    assert _checksums(target) == _checksums(target, schema) != before


def test_a_partial_build_after_a_publish_reads_the_unselected_marts_from_the_published_version(
    target: Settings, base: Base
) -> None:
    # Publishing renamed the candidate schema into v1: nothing is left in marts__candidate.
    with _sql(target) as cursor:
        cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (CANDIDATE,))
        assert cursor.fetchone()[0] == 0

    summary = Pipeline(target).run(RunOptions(select=["fct_orders"], docs=False))

    assert summary.exit_code == 0, summary.findings
    build = next(stage for stage in summary.stages if stage.name == "build")
    # Every mart was missing, fct_orders too: copied first, then rebuilt by dbt.
    assert build.detail.startswith("1 models") and build.detail.endswith(
        "first copied from the published version, missing in the candidate: " + ", ".join(sorted(MARTS))
    ), build.detail
    relationships = [n for n in summary.nodes if n.kind == "test" and n.name.startswith("relationships on fct_orders")]
    assert relationships and {n.level for n in relationships} == {"ok"}, relationships
    assert summary.publish is not None and summary.publish.status == "not published"
    with _sql(target) as cursor:
        cursor.execute(f"SELECT count(*) FROM {CANDIDATE}.customer_analytics")
        assert cursor.fetchone()[0] == base.checksums["customer_analytics"][0]
    assert _checksums(target) == base.checksums
