"""The run history store, on both stores it supports: the SQLite file beside the warehouse and a real
PostgreSQL server (DATAOPS_HISTORY_URL). The same tests run on each."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from dataops.core.errors import DataOpsError
from dataops.history.records import IncidentRecord, NodeRecord, RunRecord, StageRecord, Trigger
from dataops.history.store import MIGRATIONS, SCHEMA_VERSION, HistoryStore, Lease, schema_version

# tests/postgres_server.py: tests/ is on sys.path under pytest's default import mode.
from postgres_server import recreate_database

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite'}"
        return
    env: dict[str, str] = request.getfixturevalue("postgres_env")
    recreate_database(env, "history")
    password = quote(env["PGPASSWORD"], safe="")
    yield f"postgresql+psycopg2://{env['PGUSER']}:{password}@{env['PGHOST']}:{env['PGPORT']}/history"


def run(run_id: str, minutes: int = 0, status: str = "passed", target: str = "dev") -> RunRecord:
    started = START + timedelta(minutes=minutes)
    return RunRecord(
        run_id=run_id,
        target=target,
        kind="run",
        trigger=Trigger("airflow", "adventureworks_pipeline", "manual__1"),
        started_at=started,
        finished_at=started + timedelta(seconds=42),
        status=status,
        exit_code=0 if status in ("passed", "warned") else 1,
        git_commit="0123abc",
        stages=[StageRecord("build", "ok", 40.5, "17 models")],
        nodes=[
            NodeRecord("model.adventureworks.fct_orders", "model", "fct_orders", "success", "ok", 1.2, 31_465),
            NodeRecord(
                "test.adventureworks.unique_fct_orders_order_id.1",
                "test",
                "unique on fct_orders.order_id",
                "fail" if status == "failed" else "pass",
                "error" if status == "failed" else "ok",
                0.1,
                None,
                2 if status == "failed" else 0,
                "2 failing rows" if status == "failed" else "",
            ),
        ],
        row_counts={"Sales.Customer": 19_820, "marts.customer_analytics": 19_820},
        quality_score=0.98,
        cpu_seconds=12.5,
        peak_memory_bytes=512 * 2**20,
    )


def test_a_run_reads_back_exactly_as_it_was_recorded(history_url: str) -> None:
    store = HistoryStore(history_url)
    recorded = run("r1", status="failed")
    store.record(recorded)

    assert store.get("r1") == recorded
    assert store.get("nope") is None
    [row] = store.runs("dev")
    assert (row.run_id, row.trigger, row.status) == ("r1", "airflow", "failed")
    assert (row.models_built, row.tests_failed) == (1, 1)
    assert row.seconds == 42.0


def test_runs_are_listed_newest_first_per_target(history_url: str) -> None:
    store = HistoryStore(history_url)
    for minutes, run_id in ((5, "b"), (0, "a"), (10, "c")):
        store.record(run(run_id, minutes))
    store.record(run("other", 20, target="prod"))

    assert [row.run_id for row in store.runs("dev")] == ["c", "b", "a"]
    assert [row.run_id for row in store.runs("dev", limit=2)] == ["c", "b"]
    assert [row.run_id for row in store.runs()] == ["other", "c", "b", "a"]
    latest = store.latest("dev")
    assert latest is not None and latest.run_id == "c"


def test_recording_a_run_again_replaces_it_whole(history_url: str) -> None:
    store = HistoryStore(history_url)
    store.record(run("r1", status="failed"))
    store.record(run("r1", status="passed"))

    record = store.get("r1")
    assert record is not None and record.status == "passed"
    assert [row.tests_failed for row in store.runs("dev")] == [0]


def test_a_store_of_the_first_version_is_upgraded_in_place(history_url: str) -> None:
    old = run("old")
    with HistoryStore(history_url).transaction(upgrade=False) as db:
        assert schema_version(db) == 0  # a new store; this creates the version table
        MIGRATIONS[0](db)
        db.execute("insert into dataops_schema (version) values (1)")
        db.execute(
            "insert into dataops_runs (run_id, target, kind, trigger, started_at, status, exit_code, models_built, "
            "tests_failed, document) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                "old",
                "dev",
                "run",
                "cli",
                "2026-01-01T00:00:00.000000+00:00",
                "passed",
                0,
                1,
                0,
                json.dumps(old.to_dict(), default=str),
            ],
        )

    store = HistoryStore(history_url)
    store.record(run("new", 5))

    with store.transaction() as db:
        assert schema_version(db) == SCHEMA_VERSION == 6
        assert db.has_table("dataops_row_counts") and db.has_table("dataops_leases")
        assert db.execute("select count(*) from dataops_nodes where age_seconds is not null or score is not null") == [
            (0,)
        ]
        [(cpu, rows)] = db.execute(
            "select r.cpu_seconds, count(c.relation) from dataops_runs r join dataops_row_counts c "
            "on c.run_id = r.run_id where r.run_id = ? group by r.cpu_seconds",
            ["new"],
        )
    assert (cpu, rows) == (12.5, 2)
    assert [row.run_id for row in store.runs("dev")] == ["new", "old"]
    assert store.get("old") == old


def test_incidents_are_kept_once_listed_newest_first_and_resolved_in_place(history_url: str) -> None:
    store = HistoryStore(history_url)
    assert store.incidents() == []  # no store yet: nothing, and nothing created
    store.record(run("r1", status="failed"))
    first = IncidentRecord(
        "2026-11-25-negative-revenue",
        "dev",
        "Negative revenue in fct_orders",
        "major",
        START,
        run_id="r1",
        path="incidents/2026-11-25-negative-revenue.md",
    )
    later = IncidentRecord("2026-11-26-stale-orders", "prod", "Stale orders", "critical", START + timedelta(days=1))
    store.record_incident(first)
    store.record_incident(later)
    assert [i.incident_id for i in store.incidents()] == [later.incident_id, first.incident_id]
    assert store.incidents("dev") == [first]
    assert store.incidents(since=START + timedelta(hours=1)) == [later]
    resolved = replace(first, resolved_at=START + timedelta(hours=3), resolution="v1 rolled back; fixed in #42")
    store.record_incident(resolved)
    assert store.incident(first.incident_id) == resolved and resolved.seconds_open == 3 * 3600
    assert store.incidents(open_only=True) == [later]


def test_a_store_newer_than_this_dataops_is_refused(history_url: str) -> None:
    store = HistoryStore(history_url)
    store.record(run("r1"))
    with store.transaction() as db:
        db.execute("update dataops_schema set version = ?", [SCHEMA_VERSION + 1])

    with pytest.raises(DataOpsError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this dataops"):
        HistoryStore(history_url).record(run("r2"))
    # Reading changes nothing, so an older dataops may still list what a newer one wrote.
    assert [row.run_id for row in HistoryStore(history_url).runs()] == ["r1"]


WRITER = """
import sys
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/.."]
from test_history_store import run
from dataops.history.store import HistoryStore

store = HistoryStore(sys.argv[1])
for index in range(25):
    store.record(run(f"{sys.argv[2]}-{index:02d}", index))
"""


def test_four_processes_recording_at_once_lose_nothing(history_url: str) -> None:
    # The store is brand new: the writers also race to create its schema.
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, history_url, f"w{n}", str(Path(__file__).parent)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    errors = [writer.communicate(timeout=300)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0, 0, 0], errors

    listed = HistoryStore(history_url).runs(limit=1_000)
    assert len(listed) == 100
    assert {row.run_id for row in listed} == {f"w{n}-{i:02d}" for n in range(4) for i in range(25)}


def test_a_lease_is_held_by_one_run_until_released_or_expired(history_url: str) -> None:
    store = HistoryStore(history_url)
    assert store.lease_holder("dev") is None  # readable before any write
    first, second = Lease("airflow-dev-a", "host-a", 11, "t0"), Lease("cli-b", "host-b", 22, "t1")
    assert store.take_lease("dev", first, 60) is None
    assert store.take_lease("dev", first, 60) is None  # its own run renews it
    refused = store.take_lease("dev", second, 60)
    assert refused is not None and (refused.run_id, refused.host, refused.pid) == ("airflow-dev-a", "host-a", 11)
    assert store.take_lease("ci", second, 60) is None  # another target is free
    assert store.lease_holder("dev") == refused
    assert store.lease_holder("dev", excluding="airflow-dev-a") is None
    store.release_lease("dev", "cli-b")  # not its lease: nothing happens
    assert store.lease_holder("dev") is not None
    store.release_lease("dev", "airflow-dev-a")
    assert store.lease_holder("dev") is None
    assert store.take_lease("dev", second, -1) is None  # taken, and expired at once (a run that died)
    assert store.lease_holder("dev") is None
    assert store.take_lease("dev", first, 60) is None


def test_a_history_url_that_is_no_url_is_a_one_line_usage_error() -> None:
    for url in ("history.sqlite", "mysql://h/db", "sqlite://"):
        with pytest.raises(DataOpsError, match="DATAOPS_HISTORY_URL is not a database URL the history can use"):
            HistoryStore(url)


def test_a_dead_history_server_is_a_one_line_error_naming_it_without_its_password() -> None:
    store = HistoryStore("postgresql+psycopg2://dataops:s3cret@127.0.0.1:1/history")  # pragma: allowlist secret
    shown = r"the run history at postgresql\+psycopg2://dataops:\*\*\*@127.0.0.1:1"
    with pytest.raises(DataOpsError, match=shown) as error:
        store.runs()
    assert "s3cret" not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # No database; a port that is no number; a password in the query.
        ("postgresql://dataops:hunter2@127.0.0.1:1", "not a database URL the history can"),  # pragma: allowlist secret
        ("postgresql://dataops:hunter2@history:abc/db", "the port is not a number"),  # pragma: allowlist secret
        ("postgresql://dataops@history/db?password=hunter2&sslmode=on", "cannot be used"),  # pragma: allowlist secret
    ],
)
def test_no_message_about_the_history_url_shows_its_password(url: str, expected: str) -> None:
    with pytest.raises(DataOpsError, match=expected) as error:
        HistoryStore(url).runs()
    assert "hunter2" not in str(error.value) and "***" in str(error.value)


def test_a_record_this_dataops_cannot_read_is_a_one_line_error_naming_the_run(tmp_path: Path) -> None:
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")
    store.record(run("r1"))
    with store.transaction() as db:
        db.execute("update dataops_runs set document = ? where run_id = ?", ['{"format": "dataops.run/v9"}', "r1"])
    with pytest.raises(DataOpsError, match=r"the record of run r1 .* cannot be read .*upgrade dataops"):
        store.get("r1")


def test_a_record_with_fields_a_newer_dataops_added_still_reads(tmp_path: Path) -> None:
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")
    document = run("r1").to_dict()
    document["selection"] = ["fct_orders+"]
    document["nodes"][0]["compiled_code_hash"] = "abc"
    store.record(run("r1"))
    with store.transaction() as db:
        db.execute("update dataops_runs set document = ? where run_id = ?", [json.dumps(document), "r1"])
    assert store.get("r1") == run("r1")


def test_reading_a_store_creates_nothing_and_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    store = HistoryStore(f"sqlite:///{path}")
    assert (store.runs(), store.get("r1")) == ([], None)
    assert not path.exists()

    store.record(run("r1"))
    with store.transaction() as db:  # a writer holds the store's write lock ...
        db.execute("update dataops_runs set status = ? where run_id = ?", ["failed", "r1"])
        started = __import__("time").perf_counter()
        # ... and a reader in another connection still answers at once, with what was committed.
        assert [row.status for row in HistoryStore(f"sqlite:///{path}").runs()] == ["passed"]
        assert __import__("time").perf_counter() - started < 5
