"""Airflow as `make airflow` runs it: `airflow standalone`, started by dataops.airflow.local, in a
throwaway AIRFLOW_HOME on free ports. It listens on exactly what `make airflow` says it does, and
data_quality_checks, started by the pipeline's marts asset or by hand, never checks while a
pipeline run is in flight. It sends its StatsD metrics to a listener of the tests: the DAG-run,
scheduler and dag-processor metrics that `airflow dags test` never sends, which the dashboard and
the alert rules use (monitoring/statsd/mapping.yml, tests/integration/test_airflow_statsd.py).

These tests need the machine to themselves (a reschedule-mode sensor on a loaded machine may be
failed by Airflow 3.3, see dataops.airflow.dags.QUALITY_WAIT): they run last, once no background
job runs (tests/background.py). Their warehouse and Airflow home are prepared by one of those jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import test_airflow  # noqa: F401  registers the watcher jobs whose StatsD packets the last test reads
import yaml

import background  # tests/background.py, loaded by tests/conftest.py
from dataops.airflow.dags import marts_asset, warehouse_pool
from dataops.airflow.local import ALL_INTERFACES, BIN, Ports, airflow_env, listeners, load_throwaway, prepare
from dataops.core.config import load_settings
from statsd_listener import StatsdListener  # tests/statsd_listener.py
from statsd_mapping import (  # tests/statsd_mapping.py
    ALERT_RULES_FILE,
    DASHBOARD_FILE,
    MAPPING_FILE,
    Mapper,
    airflow_metrics_used,
    map_datagrams,
)

pytestmark = [pytest.mark.integration, pytest.mark.alone, pytest.mark.background("airflow-standalone-home")]

# What `make airflow` runs (scripts/airflow_local.py standalone), on this test's home and ports. With
# Ctrl-C's signal handled as in a terminal, even when pytest was started with it ignored (as `cmd &`
# in a script starts it, and every child inherits that): the fixture stops it with that signal.
START = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from dataops.airflow.local import standalone; sys.exit(standalone(dict(os.environ)))"
)
WILDCARDS = {"0.0.0.0", "::"}


@dataclass(frozen=True)
class Standalone:
    env: dict[str, str]
    ports: Ports
    process: subprocess.Popen[bytes]
    output: Path
    statsd: StatsdListener

    @property
    def database(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"]) / "airflow.db"

    def rows(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        """Read Airflow's metadata database (SQLite) directly: much faster than its CLI."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, parameters).fetchall()

    def airflow(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    output: Path | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = output.read_text(errors="replace")[-3000:] if output else ""
            pytest.fail(f"airflow standalone exited ({process.returncode}) while waiting for {what}:\n{tail}")
        value = condition()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            health = json.load(response)
    except OSError:
        return False
    components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((health.get(name) or {}).get("status") == "healthy" for name in components)


@background.job("airflow-standalone-home")
def _standalone_home(root: Path) -> background.Run:
    """Generated data in a throwaway warehouse, and Airflow prepared, as `make airflow` does (no
    port is used yet: the fixture chooses them when it starts Airflow)."""
    env = airflow_env(root / "airflow", root / "warehouse", DATAOPS_TASK_RETRIES="0")

    def run() -> Path:
        load_throwaway(env, 0.1)
        prepare(env)
        return root

    return run


@pytest.fixture(scope="module")
def standalone(background_jobs: background.Background) -> Iterator[Standalone]:
    root = background_jobs.result("airflow-standalone-home")
    background_jobs.wait()  # the machine to itself
    ports = Ports(_free_port(), _free_port(), _free_port())
    statsd = StatsdListener()
    env = airflow_env(
        root / "airflow", root / "warehouse", ports=ports, DATAOPS_TASK_RETRIES="0", **statsd.airflow_env()
    )
    output = root / "standalone.log"
    statsd.start()
    with output.open("wb") as sink:
        # A session of its own: stopping it stops every Airflow component it started.
        process = subprocess.Popen(
            [sys.executable, "-c", START], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for(lambda: _healthy(ports.api), "every component to be healthy", 240, process, output)
        yield Standalone(env, ports, process, output, statsd)
    finally:
        # Ctrl-C, as `make airflow` is stopped; then whatever is left.
        os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        statsd.stop()


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and all its descendants."""
    root = psutil.Process(pid)
    found: set[tuple[str, int]] = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def test_standalone_listens_exactly_where_make_airflow_says(standalone: Standalone) -> None:
    claimed = listeners(standalone.ports)
    ports = {listener.port for listener in claimed}
    sockets = _wait_for(
        lambda: (found := _listening(standalone.process.pid)) and ports <= {port for _, port in found} and found,
        "the API server and both log servers to listen",
        60,
        standalone.process,
        standalone.output,
    )
    measured = {(ALL_INTERFACES if address in WILDCARDS else address, port) for address, port in sockets}
    # The API server is on loopback only; the log servers are on every interface, as said.
    assert measured == {(listener.address, listener.port) for listener in claimed}, sockets
    printed = standalone.output.read_text(errors="replace")
    for listener in claimed:
        assert f"{listener.component}: {listener.address}, port {listener.port}" in printed, printed[:2000]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _finished(rows: list[tuple[Any, ...]], count: int) -> list[tuple[Any, ...]]:
    done = [row for row in rows if row[2] in ("success", "failed")]
    return rows if len(rows) == count and len(done) == count else []


def test_dbt_monitoring_fails_under_the_scheduler_while_the_target_never_ran(standalone: Standalone) -> None:
    # Before the pipeline's run below: the history is empty, so the check fails. A DAG run the
    # scheduler fails is what sends airflow.dagrun.duration.failed.<dag_id> (the last test).
    runs = "select run_id, run_type, state, end_date from dag_run where dag_id = ?"
    _wait_for(
        lambda: standalone.rows("select 1 from dag where dag_id = 'dbt_monitoring'"),
        "the dag-processor to parse the DAGs",
        120,
        standalone.process,
        standalone.output,
    )
    standalone.airflow("dags", "trigger", "dbt_monitoring")
    standalone.airflow("dags", "unpause", "dbt_monitoring")
    try:
        finished = _wait_for(
            lambda: [row for row in standalone.rows(runs, "dbt_monitoring") if row[2] in ("success", "failed")],
            "dbt_monitoring to finish",
            300,
            standalone.process,
            standalone.output,
        )
    finally:
        standalone.airflow("dags", "pause", "dbt_monitoring")
    assert {state for _, _, state, _ in finished} == {"failed"}


def test_quality_checks_run_on_the_pipeline_s_asset_and_never_beside_a_pipeline_run(standalone: Standalone) -> None:
    runs = "select run_id, run_type, state, end_date from dag_run where dag_id = ?"
    _wait_for(
        lambda: standalone.rows("select 1 from dag where dag_id = 'data_quality_checks'"),
        "the dag-processor to parse the DAGs",
        120,
        standalone.process,
        standalone.output,
    )
    standalone.airflow("dags", "unpause", "data_quality_checks")
    # The pipeline runs beside the scheduler (`airflow dags test`: its tasks in one process, its
    # run and asset event in the same metadata database); the quality DAG runs under the scheduler.
    pipeline = subprocess.Popen(
        [str(BIN / "airflow"), "dags", "test", "adventureworks_pipeline"],
        env=standalone.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(
            lambda: [row for row in standalone.rows(runs, "adventureworks_pipeline") if row[2] == "running"],
            "the pipeline run to start",
            120,
        )
        # By hand while the pipeline runs: the checks must wait until it is done.
        standalone.airflow("dags", "trigger", "data_quality_checks")
        log, _ = pipeline.communicate(timeout=600)
    finally:
        pipeline.kill()
    assert pipeline.returncode == 0, log.decode(errors="replace")[-3000:]
    [(pipeline_run, _, pipeline_state, pipeline_end)] = standalone.rows(runs, "adventureworks_pipeline")
    assert pipeline_state == "success"

    quality = _wait_for(
        lambda: _finished(standalone.rows(runs, "data_quality_checks"), 2),
        "the manual and the asset-triggered quality runs to finish",
        300,
        standalone.process,
        standalone.output,
    )
    assert sorted((run_type, state) for _, run_type, state, _ in quality) == [
        ("asset_triggered", "success"),
        ("manual", "success"),
    ]
    by_type = {run_type: run_id for run_id, run_type, _, _ in quality}
    # The asset-triggered run was started by the pipeline run's event on the marts asset.
    consumed = standalone.rows(
        "select e.source_dag_id, e.source_task_id, e.source_run_id, a.uri from dagrun_asset_event l"
        " join asset_event e on e.id = l.event_id join asset a on a.id = e.asset_id"
        " join dag_run r on r.id = l.dag_run_id where r.dag_id = 'data_quality_checks' and r.run_id = ?",
        by_type["asset_triggered"],
    )
    settings = load_settings("dev")
    assert consumed == [("adventureworks_pipeline", "publish", pipeline_run, marts_asset(settings).uri)]

    # No check ran beside a pipeline task that touches the warehouse: each checkpoint, from when
    # its record says it started to when its task ended, is clear of every such task.
    pool = warehouse_pool(settings)
    pipeline_tasks = [
        (_utc(start), _utc(end))
        for start, end in standalone.rows(
            "select start_date, end_date from task_instance where dag_id = 'adventureworks_pipeline' and pool = ?",
            pool.name,
        )
    ]
    assert len(pipeline_tasks) > 20
    quality_dir = Path(standalone.env["DATAOPS_WAREHOUSE_DIR"]) / "artifacts" / "dev" / "quality"
    for run_id in by_type.values():
        record = json.loads((quality_dir / f"{run_id}.json").read_text(encoding="utf-8"))
        [(ended,)] = standalone.rows(
            "select end_date from task_instance where dag_id = 'data_quality_checks' and run_id = ?", run_id
        )
        checked = (datetime.fromisoformat(record["run_time"]), _utc(ended))
        overlapping = [task for task in pipeline_tasks if task[0] < checked[1] and checked[0] < task[1]]
        assert overlapping == [], (run_id, checked)
    # The one triggered by hand found the pipeline building, waited, and checked after its run.
    [(waits,)] = standalone.rows(
        "select count(*) from task_reschedule tr join task_instance ti on ti.id = tr.ti_id"
        " where ti.dag_id = 'data_quality_checks' and ti.run_id = ?",
        by_type["manual"],
    )
    assert waits >= 1
    record = json.loads((quality_dir / f"{by_type['manual']}.json").read_text(encoding="utf-8"))
    assert datetime.fromisoformat(record["run_time"]) > _utc(pipeline_end)
    # And the scheduler ran them with the whole warehouse pool.
    pools = standalone.rows("select distinct pool, pool_slots from task_instance where dag_id = 'data_quality_checks'")
    assert pools == [(pool.name, pool.slots)]


# Metrics only Airflow's own components send, and the DAG runs' durations the scheduler sends as
# each run it ran ends (successful quality runs, the failed dbt_monitoring run above).
SCHEDULER_SENT = {
    "airflow_scheduler_heartbeat": {},
    "airflow_dag_processing_import_errors": {},
    "airflow_pool_open_slots": {"pool": "default_pool"},
    "airflow_executor_open_slots": {"executor": "LocalExecutor"},
    "airflow_dagrun_duration_success_count": {"dag_id": "data_quality_checks"},
    "airflow_dagrun_duration_failed_count": {"dag_id": "dbt_monitoring"},
}


@pytest.mark.background("airflow-clean-watcher")
@pytest.mark.background("airflow-bad-watcher")
def test_every_airflow_metric_of_the_dashboard_and_the_alert_rules_comes_from_a_real_packet(
    standalone: Standalone, background_jobs: background.Background
) -> None:
    # After the tests above: the scheduler has run and ended the DAG runs they started.
    mapper = Mapper.from_file(MAPPING_FILE)
    heartbeats = _wait_for(
        lambda: (
            (found := map_datagrams(mapper, standalone.statsd.datagrams())).get("airflow_scheduler_heartbeat") and found
        ),
        "the scheduler's StatsD heartbeat",
        60,
        standalone.process,
        standalone.output,
    )
    for name, labels in SCHEDULER_SENT.items():
        assert name in heartbeats, f"airflow standalone sent nothing that maps to {name}"
        assert any(set(labels.items()) <= set(series.labels) for _, series in heartbeats[name]), (name, labels)

    sources = {
        "airflow standalone": standalone.statsd.datagrams(),
        **{job: background_jobs.result(job).statsd for job in ("airflow-clean-watcher", "airflow-bad-watcher")},
    }
    produced = {name: source for source, datagrams in sources.items() for name in map_datagrams(mapper, datagrams)}
    alert_rules = yaml.safe_load(ALERT_RULES_FILE.read_text(encoding="utf-8")) if ALERT_RULES_FILE.exists() else None
    used = airflow_metrics_used(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")), alert_rules)
    assert "airflow_dagrun_duration_success_count" in used  # the dashboard's DAG success rate
    unproven = {name: sorted(where) for name, where in used.items() if name not in produced}
    assert unproven == {}, f"no real Airflow packet maps to these: {unproven}"
