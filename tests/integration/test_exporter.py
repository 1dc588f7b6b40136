"""`dataops exporter` for real: a `dataops exporter` process on a free port, scraped over HTTP, on
the history of real pipeline runs (one clean, one with faults) and on records written into real
SQLite and PostgreSQL stores. Scrapes are read with prometheus_client's own text parser."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import load_settings
from dataops.history.records import NodeRecord, PublishRecord, RunRecord, StageRecord, Trigger
from dataops.history.store import MIGRATIONS, SCHEMA_VERSION, HistoryStore, schema_version
from dataops.sources.faults import inject
from dataops.sources.generate import generate_tables, write_tables

# tests/postgres_server.py: tests/ is on sys.path under pytest's default import mode.
from postgres_server import recreate_database

pytestmark = pytest.mark.integration

DATAOPS = str(Path(sys.executable).with_name("dataops"))
# Samples keyed (name, sorted labels), as the text parser gives them.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
COUNTERS = (
    "dataops_runs_total",
    "dataops_runs_not_published_total",
    "dbt_model_failures_total",
    "dbt_test_failures_total",
)
FAULTY_TESTS = ("unique on stg_orders.order_id", "assert_no_duplicate_orders")


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (each, labels), v in samples.items() if each == name}


def counters(samples: Samples) -> Samples:
    return {key: v for key, v in samples.items() if key[0] in COUNTERS}


class Exporter:
    """`dataops exporter --port 0` in its own process; its URL from the line it prints."""

    def __init__(self, env: dict[str, str], *arguments: str) -> None:
        self.process = subprocess.Popen(
            [DATAOPS, "exporter", "--port", "0", *arguments],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "/metrics" in line, (line, self.process.communicate(timeout=10))
        self.url = next(word for word in line.split() if word.startswith("http://"))

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            assert response.status == 200
            return str(response.read().decode())

    def stop(self) -> tuple[int, str, str]:
        """Ctrl-C, as a user stops it."""
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=20)
        return self.process.returncode, out, err

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def _env(**overrides: str) -> dict[str, str]:
    env = {key: v for key, v in os.environ.items() if not key.startswith("DATAOPS_")}
    return {**env, **overrides}


@dataclass
class RealHistory:
    clean_run: str
    faulty_run: str
    after_clean: Samples
    after_faulty: Samples
    again: Samples
    restarted: Samples
    stopped: tuple[int, str, str]
    records: dict[str, RunRecord]


@pytest.fixture(scope="module")
def real_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHistory]:
    """A clean scale-0.1 run, scraped; a run with duplicate orders and stale orders, scraped twice;
    the exporter restarted and scraped again."""
    root = tmp_path_factory.mktemp("exporter")
    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(root / "warehouse"))
    for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
        patch.delenv(name, raising=False)
    env = _env(DATAOPS_WAREHOUSE_DIR=str(root / "warehouse"))
    try:
        settings = load_settings("dev")
        clean = Pipeline(settings).run(RunOptions(scale=0.1, docs=False))
        assert clean.exit_code == 0, clean.findings
        faulty_data = root / "faulty"
        write_tables(inject(generate_tables(0.1), ["duplicate_order", "stale_source"]), faulty_data)
        with Exporter(env) as exporter:
            after_clean = parse(exporter.scrape())
            faulty = Pipeline(settings).run(RunOptions(data_dir=faulty_data, docs=False))
            assert faulty.exit_code == 1, faulty.findings
            after_faulty, again = parse(exporter.scrape()), parse(exporter.scrape())
            stopped = exporter.stop()
        with Exporter(env) as exporter:
            restarted = parse(exporter.scrape())
        store = HistoryStore()
        records = {run_id: store.get(run_id) for run_id in (clean.run_id, faulty.run_id)}
        yield RealHistory(
            clean.run_id,
            faulty.run_id,
            after_clean,
            after_faulty,
            again,
            restarted,
            stopped,
            {k: v for k, v in records.items() if v is not None},
        )
    finally:
        patch.undo()


def test_a_clean_run_is_exported(real_history: RealHistory) -> None:
    scrape = real_history.after_clean
    record = real_history.records[real_history.clean_run]
    assert value(scrape, "dataops_history_up") == 1
    assert value(scrape, "dataops_runs_total", target="dev", status="passed") == 1
    assert {v for labels, v in named(scrape, "dataops_runs_total").items() if dict(labels)["status"] != "passed"} == {0}
    assert value(scrape, "dataops_last_run_status", target="dev", status="passed") == 1
    assert record.finished_at is not None and record.seconds is not None
    assert value(scrape, "dataops_last_run_timestamp_seconds", target="dev") == pytest.approx(
        record.finished_at.timestamp()
    )
    assert value(scrape, "dataops_last_success_timestamp_seconds", target="dev") == pytest.approx(
        record.finished_at.timestamp()
    )
    assert value(scrape, "dataops_last_run_duration_seconds", target="dev") == pytest.approx(record.seconds)
    assert value(scrape, "dataops_quality_score", target="dev") == 1.0
    assert value(scrape, "dataops_published_version", target="dev") == 1
    assert value(scrape, "dataops_last_run_published", target="dev") == 1
    assert value(scrape, "dataops_runs_not_published_total", target="dev") == 0
    # Every model, at its status; every test and model at 0 failures, so that a first failure is an increase.
    assert value(scrape, "dbt_models_total", target="dev") == 17
    statuses = {
        dict(labels)["model"]
        for labels, v in named(scrape, "dbt_model_status").items()
        if dict(labels)["status"] == "success" and v == 1
    }
    assert len(statuses) == 17 and "customer_analytics" in statuses
    assert len(named(scrape, "dbt_model_execution_time_seconds")) == 17
    build = next(stage.seconds for stage in record.stages if stage.name == "build")
    assert value(scrape, "dbt_execution_time_seconds", target="dev") == build
    tests = named(scrape, "dbt_test_failures_total")
    assert len(tests) == record.count("test") + record.count("unit_test") and set(tests.values()) == {0}
    assert set(named(scrape, "dbt_model_failures_total").values()) == {0}
    # Rows and freshness as the run counted them.
    assert (
        value(scrape, "dataops_mart_rows", target="dev", mart="customer_analytics")
        == record.row_counts["marts.customer_analytics"]
        > 0
    )
    assert (
        value(scrape, "dataops_source_rows", target="dev", source="Sales.Customer")
        == record.row_counts["Sales.Customer"]
    )
    ages = named(scrape, "dataops_source_freshness_age_seconds")
    assert len(ages) == 10 and all(0 <= age < 400 * 86400 for age in ages.values())
    assert set(named(scrape, "dbt_source_freshness_error").values()) == {0}
    assert 0 < value(scrape, "dataops_exporter_scrape_duration_seconds") < 5


def test_a_failing_run_counts_its_failed_tests_once(real_history: RealHistory) -> None:
    scrape = real_history.after_faulty
    record = real_history.records[real_history.faulty_run]
    assert record.status == "failed"
    assert value(scrape, "dataops_runs_total", target="dev", status="passed") == 1
    assert value(scrape, "dataops_runs_total", target="dev", status="failed") == 1
    assert value(scrape, "dataops_last_run_status", target="dev", status="failed") == 1
    assert value(scrape, "dataops_last_run_status", target="dev", status="passed") == 0
    # The clean run is still the last success; consumers still read v1.
    clean = real_history.records[real_history.clean_run]
    assert clean.finished_at is not None
    assert value(scrape, "dataops_last_success_timestamp_seconds", target="dev") == pytest.approx(
        clean.finished_at.timestamp()
    )
    assert value(scrape, "dataops_last_run_published", target="dev") == 0
    assert value(scrape, "dataops_runs_not_published_total", target="dev") == 1
    assert value(scrape, "dataops_published_version", target="dev") == 1
    failed = {dict(labels)["test"] for labels, v in named(scrape, "dbt_test_failures_total").items() if v}
    assert set(FAULTY_TESTS) <= failed, failed
    assert {v for v in named(scrape, "dbt_test_failures_total").values()} == {0, 1}
    # Stale orders: dbt's freshness check errors on that source, and its age says by how much.
    assert value(scrape, "dbt_source_freshness_error", target="dev", source="Sales.SalesOrderHeader") == 1
    assert (
        value(scrape, "dataops_source_freshness_age_seconds", target="dev", source="Sales.SalesOrderHeader")
        >= 29 * 86400
    )


def test_counters_are_the_same_on_every_scrape_and_after_a_restart(real_history: RealHistory) -> None:
    assert counters(real_history.after_faulty)
    assert counters(real_history.again) == counters(real_history.after_faulty)
    assert counters(real_history.restarted) == counters(real_history.after_faulty)
    without_timing = {
        k: v for k, v in real_history.restarted.items() if k[0] != "dataops_exporter_scrape_duration_seconds"
    }
    assert without_timing == {
        k: v for k, v in real_history.again.items() if k[0] != "dataops_exporter_scrape_duration_seconds"
    }


def test_ctrl_c_stops_the_exporter_cleanly(real_history: RealHistory) -> None:
    code, out, err = real_history.stopped
    assert code == 0, err
    assert "exporter stopped" in out and "Traceback" not in err


# Records written into a store ------------------------------------------------------------------

START = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
MODELS = ("stg_orders", "fct_orders")
TESTS = ("unique on fct_orders.order_id", "not_null on fct_orders.order_id")


def record(
    run_id: str,
    hour: int,
    status: str = "passed",
    test_status: str = "pass",
    model_status: str = "success",
    anomalies: list[NodeRecord] | None = None,
    publish: PublishRecord | None = None,
) -> RunRecord:
    started = START + timedelta(hours=hour)
    nodes = [
        NodeRecord(
            f"model.adventureworks.{name}",
            "model",
            name,
            model_status if name == "fct_orders" else "success",
            "ok",
            1.5,
        )
        for name in MODELS
    ]
    nodes += [
        NodeRecord(f"test.adventureworks.t{index}", "test", name, test_status if index == 0 else "pass", "ok", 0.1)
        for index, name in enumerate(TESTS)
    ]
    nodes += [
        NodeRecord(
            "source.adventureworks.sales.SalesOrderHeader",
            "source",
            "freshness of sales.SalesOrderHeader",
            "pass",
            "ok",
            0.1,
            age_seconds=3600.0,
        )
    ]
    return RunRecord(
        run_id=run_id,
        target="dev",
        kind="run",
        trigger=Trigger("cli"),
        started_at=started,
        finished_at=started + timedelta(seconds=30),
        status=status,
        exit_code=0 if status == "passed" else 1,
        stages=[StageRecord("build", "ok", 12.5)],
        nodes=nodes + (anomalies or []),
        row_counts={"Sales.SalesOrderHeader": 31_465, "marts.fct_orders": 31_465},
        quality_score=0.9,
        publish=publish or PublishRecord("published", version=hour + 1, previous_version=hour or None),
    )


ANOMALIES = [
    NodeRecord(
        "anomaly.volume.Sales.SalesOrderHeader",
        "anomaly",
        "volume anomaly of Sales.SalesOrderHeader",
        "anomalous",
        "warn",
        score=-5.2,
        message="18,879 rows; mean 31,465, stddev 120 over 8 runs",
    ),
    NodeRecord(
        "anomaly.volume.marts.fct_orders",
        "anomaly",
        "volume anomaly of marts.fct_orders",
        "pass",
        "ok",
        score=0.4,
        message="31,465 rows; mean 31,400, stddev 150 over 8 runs",
    ),
    NodeRecord(
        "anomaly.freshness.Sales.SalesOrderHeader",
        "anomaly",
        "freshness anomaly of Sales.SalesOrderHeader",
        "not enough history",
        "skipped",
        message="3 training runs, 7 needed",
    ),
]

# A history of three runs: a test failed in the second and errored in the third, a model errored
# in the third, which flagged a volume anomaly and was not published.
HISTORY = [
    record("r0", 0),
    record(
        "r1",
        1,
        status="failed",
        test_status="fail",
        publish=PublishRecord(
            "not published", previous_version=1, reason="not published: stopped by unique on fct_orders.order_id"
        ),
    ),
    record(
        "r2",
        2,
        status="failed",
        test_status="error",
        model_status="error",
        anomalies=ANOMALIES,
        publish=PublishRecord("not published", previous_version=1, reason="stopped"),
    ),
]


@pytest.fixture(params=["sqlite", "postgres"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite'}"
        return
    env: dict[str, str] = request.getfixturevalue("postgres_env")
    recreate_database(env, "exporter")
    password = quote(env["PGPASSWORD"], safe="")
    yield f"postgresql://{env['PGUSER']}:{password}@{env['PGHOST']}:{env['PGPORT']}/exporter"


def _scrape(env: dict[str, str]) -> Samples:
    with Exporter(env) as exporter:
        return parse(exporter.scrape())


def test_failures_count_fail_and_error_and_anomalies_are_exported(history_url: str, tmp_path: Path) -> None:
    store = HistoryStore(history_url)
    for each in HISTORY:
        store.record(each)
    scrape = _scrape(_env(DATAOPS_HISTORY_URL=history_url, DATAOPS_WAREHOUSE_DIR=str(tmp_path)))

    assert value(scrape, "dbt_test_failures_total", target="dev", test=TESTS[0]) == 2  # fail, then error
    assert value(scrape, "dbt_test_failures_total", target="dev", test=TESTS[1]) == 0
    assert value(scrape, "dbt_model_failures_total", target="dev", model="fct_orders") == 1
    assert value(scrape, "dbt_model_failures_total", target="dev", model="stg_orders") == 0
    assert value(scrape, "dbt_model_status", target="dev", model="fct_orders", status="error") == 1
    assert value(scrape, "dbt_model_status", target="dev", model="fct_orders", status="success") == 0
    assert value(scrape, "dataops_runs_total", target="dev", status="failed") == 2
    assert value(scrape, "dataops_runs_not_published_total", target="dev") == 2
    assert value(scrape, "dataops_published_version", target="dev") == 1
    assert value(scrape, "dataops_anomaly", target="dev", kind="volume", relation="Sales.SalesOrderHeader") == 1
    assert (
        value(scrape, "dataops_anomaly_score", target="dev", kind="volume", relation="Sales.SalesOrderHeader") == -5.2
    )
    assert value(scrape, "dataops_anomaly", target="dev", kind="volume", relation="marts.fct_orders") == 0
    assert value(scrape, "dataops_anomaly_score", target="dev", kind="volume", relation="marts.fct_orders") == 0.4
    # Not enough history: not an anomaly, and no score to export.
    assert value(scrape, "dataops_anomaly", target="dev", kind="freshness", relation="Sales.SalesOrderHeader") == 0
    assert (
        "dataops_anomaly_score",
        (("kind", "freshness"), ("relation", "Sales.SalesOrderHeader"), ("target", "dev")),
    ) not in scrape


def test_a_rollback_is_the_published_version(history_url: str, tmp_path: Path) -> None:
    store = HistoryStore(history_url)
    for hour in range(3):
        store.record(record(f"r{hour}", hour))
    rollback = replace(
        record("rb", 4), kind="rollback", nodes=[], publish=PublishRecord("rolled back", version=2, previous_version=3)
    )
    store.record(rollback)
    scrape = _scrape(_env(DATAOPS_HISTORY_URL=history_url, DATAOPS_WAREHOUSE_DIR=str(tmp_path)))

    assert value(scrape, "dataops_published_version", target="dev") == 2
    assert value(scrape, "dataops_runs_total", target="dev", status="passed") == 3  # a rollback is no run
    assert value(scrape, "dataops_last_run_published", target="dev") == 1


def test_a_deployment_is_a_run_of_the_pipeline_and_its_publish_counts(history_url: str, tmp_path: Path) -> None:
    store = HistoryStore(history_url)
    store.record(record("r0", 0))
    refused = PublishRecord("not published", previous_version=1, reason="not published: stopped by a test")
    store.record(replace(record("deploy-1", 1, status="failed", test_status="fail"), kind="deploy", publish=refused))
    store.record(
        replace(record("deploy-2", 2), kind="deploy", publish=PublishRecord("published", version=2, previous_version=1))
    )
    scrape = _scrape(_env(DATAOPS_HISTORY_URL=history_url, DATAOPS_WAREHOUSE_DIR=str(tmp_path)))

    assert value(scrape, "dataops_published_version", target="dev") == 2
    assert value(scrape, "dataops_runs_total", target="dev", status="passed") == 2
    assert value(scrape, "dataops_runs_total", target="dev", status="failed") == 1
    assert value(scrape, "dbt_test_failures_total", target="dev", test=TESTS[0]) == 1
    assert value(scrape, "dataops_runs_not_published_total", target="dev") == 1


def test_a_store_of_schema_v4_is_read_as_it_is_and_filled_in_when_upgraded(history_url: str, tmp_path: Path) -> None:
    """An older dataops's store: the exporter reads the publish records from the documents and
    changes nothing; the next run recorded upgrades it and fills the columns in from them."""
    with HistoryStore(history_url).transaction(upgrade=False) as db:
        schema_version(db)
        for migration in MIGRATIONS[:4]:
            migration(db)
        db.execute("insert into dataops_schema (version) values (4)")
        for each in HISTORY[:2]:
            db.insert_many(
                "dataops_runs",
                [
                    {
                        "run_id": each.run_id,
                        "target": each.target,
                        "kind": each.kind,
                        "trigger": "cli",
                        "started_at": each.started_at.isoformat(),
                        "finished_at": (each.finished_at or START).isoformat(),
                        "seconds": each.seconds,
                        "status": each.status,
                        "exit_code": each.exit_code,
                        "models_built": 2,
                        "tests_failed": 0,
                        "document": json.dumps(each.to_dict(), default=str),
                    }
                ],
            )
    env = _env(DATAOPS_HISTORY_URL=history_url, DATAOPS_WAREHOUSE_DIR=str(tmp_path))
    old = _scrape(env)
    assert value(old, "dataops_published_version", target="dev") == 1
    assert value(old, "dataops_runs_not_published_total", target="dev") == 1
    with HistoryStore(history_url).transaction(write=False) as db:
        assert db.execute("select version from dataops_schema") == [(4,)]

    HistoryStore(history_url).record(HISTORY[2])
    with HistoryStore(history_url).transaction(write=False) as db:
        assert db.execute("select version from dataops_schema") == [(SCHEMA_VERSION,)]
        filled = db.execute("select run_id, publish_status, published_version from dataops_runs order by run_id")
    assert filled == [("r0", "published", 1), ("r1", "not published", 1), ("r2", "not published", 1)]
    assert value(_scrape(env), "dataops_runs_not_published_total", target="dev") == 2


# No history to read ----------------------------------------------------------------------------


def test_a_missing_history_is_up_0_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "history.sqlite"
    with Exporter(_env(DATAOPS_HISTORY_URL=f"sqlite:///{path}", DATAOPS_WAREHOUSE_DIR=str(tmp_path))) as exporter:
        first, second = parse(exporter.scrape()), parse(exporter.scrape())
        _, _, err = exporter.stop()
    for scrape in (first, second):
        assert value(scrape, "dataops_history_up") == 0
        assert {name for name, _ in scrape} == {"dataops_history_up", "dataops_exporter_scrape_duration_seconds"}
    assert not path.exists() and not path.parent.exists()
    # The reason once, not once per scrape.
    assert err.count("dataops_history_up 0") == 1 and str(path) in err, err


def test_a_file_of_garbage_as_the_store_is_up_0(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    garbage = b"this is no database\n" * 500
    path.write_bytes(garbage)
    with Exporter(_env(DATAOPS_HISTORY_URL=f"sqlite:///{path}", DATAOPS_WAREHOUSE_DIR=str(tmp_path))) as exporter:
        scrape = parse(exporter.scrape())
        code, _, err = exporter.stop()
    assert value(scrape, "dataops_history_up") == 0
    assert {name for name, _ in scrape} == {"dataops_history_up", "dataops_exporter_scrape_duration_seconds"}
    assert code == 0 and "not a database" in err and "Traceback" not in err, err
    assert path.read_bytes() == garbage


def test_the_history_coming_back_is_up_1_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    with Exporter(_env(DATAOPS_HISTORY_URL=url, DATAOPS_WAREHOUSE_DIR=str(tmp_path))) as exporter:
        before = parse(exporter.scrape())
        HistoryStore(url).record(HISTORY[0])
        after = parse(exporter.scrape())
        _, _, err = exporter.stop()
    assert (value(before, "dataops_history_up"), value(after, "dataops_history_up")) == (0, 1)
    assert value(after, "dataops_runs_total", target="dev", status="passed") == 1
    assert "dataops_history_up 1" in err


def test_only_metrics_is_served(tmp_path: Path) -> None:
    with Exporter(_env(DATAOPS_WAREHOUSE_DIR=str(tmp_path))) as exporter:
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(exporter.url.replace("/metrics", "/nothing"), timeout=10)
        assert missing.value.code == 404
        assert "dataops_history_up" in exporter.scrape()


# Bad arguments ---------------------------------------------------------------------------------


def test_a_port_in_use_is_exit_2_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.perf_counter()
        result = subprocess.run(
            [DATAOPS, "exporter", "--port", str(port)],
            env=_env(DATAOPS_WAREHOUSE_DIR=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is in use (another exporter?): stop it, or choose another --port"
    )
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])
def test_a_host_not_of_this_machine_is_exit_2(host: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [DATAOPS, "exporter", "--host", host, "--port", "0"],
        env=_env(DATAOPS_WAREHOUSE_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --host {host!r}" if "invalid" in host else f"error: --host {host} ")
    assert "127.0.0.1" in line and "Traceback" not in result.stderr
