"""PostgreSQL over a Unix socket (PGHOST=<folder>, libpq's default way to reach a local server):
the load, dbt and the Great Expectations checks all reach a real server that has no TCP listener at
all, so nothing can have quietly gone over TCP instead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings, load_settings
from dataops.quality.suites import run_quality
from dataops.sources.generate import generate_tables
from dataops.warehouse import connect

# tests/postgres_server.py: tests/ is on sys.path under pytest's default import mode, as
# compose_support is for the compose tests; tests/conftest.py loads the same module.
from postgres_server import PostgresServer, start_server

pytestmark = pytest.mark.integration

AS_OF = datetime.now().replace(microsecond=0)  # fresh, so the freshness stage passes


@pytest.fixture(scope="module")
def socket_server() -> Iterator[PostgresServer]:
    try:
        server = start_server(tcp=False)
    except Exception as error:
        pytest.fail(f"cannot start the test PostgreSQL server on a Unix socket: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def socket_settings(socket_server: PostgresServer, warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in socket_server.env.items():
        monkeypatch.setenv(name, value)
    return load_settings("postgres")


def test_the_server_listens_on_its_socket_only(socket_server: PostgresServer) -> None:
    assert socket_server.env["PGHOST"] == str(socket_server.socket_dir)
    assert (socket_server.socket_dir / f".s.PGSQL.{socket_server.port}").is_socket()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(
            host="127.0.0.1",
            port=socket_server.port,
            user=socket_server.env["PGUSER"],
            password=socket_server.env["PGPASSWORD"],
            dbname="postgres",
            connect_timeout=2,
        )


def test_load_dbt_and_quality_checks_run_over_the_socket(
    socket_server: PostgresServer, socket_settings: Settings
) -> None:
    assert socket_settings.connection()["host"] == str(socket_server.socket_dir)
    warehouse = connect(socket_settings)
    # The server sees no client address on a Unix-socket connection.
    assert warehouse.read_only_query("select inet_client_addr() is null").rows == [(True,)]

    tables = generate_tables(0.1, seed=11, as_of=AS_OF)
    load_tables(socket_settings, tables, "generated data, scale 0.1")
    assert warehouse.row_counts(["Sales.Customer"]) == {"Sales.Customer": tables["Sales.Customer"].num_rows}

    # dbt (freshness, build and tests) and the quality stage, as `dataops run --target postgres`.
    summary = Pipeline(socket_settings).run(RunOptions(docs=False))
    assert summary.exit_code == 0, summary.findings
    assert summary.findings == [], summary.findings
    assert summary.counts.models_built == 17 and summary.counts.tests_failed == 0
    assert (summary.quality.expectations_passed, summary.quality.expectations_failed) == (12, 0)

    # GX in this process too, with what it measured in the marts (published: the candidate is a version now).
    report = run_quality(socket_settings, run_id="over-the-socket", published=True)
    assert (report.passed, report.warned, report.failed) == (12, 0, 0)
    customers = warehouse.read_only_query("select count(*) from marts.customer_analytics").rows[0][0]
    row_counts = {
        o.model: o.observed for o in report.outcomes if o.expectation == "expect_table_row_count_to_be_between"
    }
    assert row_counts["customer_analytics"] == customers == tables["Sales.Customer"].num_rows
