"""The DAGs in a real Airflow: they import cleanly, run end to end with `airflow dags test`, stop
at the task whose check a bad row breaks, emit the marts asset only when the marts passed, record
each DAG run in the run history with every node's result, and monitoring passes after a good run
and fails with a readable message after a bad one, or when there is none.

Each DAG run takes a core for one to two minutes: they are background jobs (tests/background.py),
registered below, that start with the test session and run beside the other tests; the tests here
read what each left (its DAG test's result, its Airflow home and warehouse), after the others."""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

import background  # tests/background.py, loaded by tests/conftest.py
from dataops.airflow.dags import marts_asset, warehouse_pool
from dataops.airflow.local import (
    BIN,
    DagTestResult,
    airflow_env,
    compile_manifest,
    dag_test,
    load_throwaway,
    prepare_metadata,
    throwaway_env,
)
from dataops.core.config import load_settings
from dataops.history.store import DEFAULT_FILE, HISTORY_URL_ENV_VAR, HistoryStore
from dataops.ops.monitor import check_history
from statsd_listener import StatsdListener  # tests/statsd_listener.py

pytestmark = pytest.mark.integration

DAG_IDS = {"adventureworks_pipeline", "dbt_monitoring", "data_quality_checks"}
INSPECT_DAGBAG = """
import json, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=__import__("os").environ["AIRFLOW__CORE__DAGS_FOLDER"])
fill = time.perf_counter() - started
print(json.dumps({
    "fill_seconds": fill,
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "owners": sorted({t.owner for t in dag.tasks}),
            "retries": sorted({t.retries for t in dag.tasks}),
            "tags": sorted(dag.tags),
            "schedule": dag.schedule if isinstance(dag.schedule, str) else None,
            "schedule_assets": sorted(a.uri for a in dag.schedule) if isinstance(dag.schedule, list) else [],
            "tasks": {
                t.task_id: {
                    "type": type(t).__name__,
                    "pool": t.pool,
                    "pool_slots": t.pool_slots,
                    "outlets": sorted(o.uri for o in t.outlets),
                    "mode": getattr(t, "mode", None),
                    "teardown": t.is_teardown,
                    "upstream": sorted(t.upstream_task_ids),
                }
                for t in dag.tasks
            },
        }
        for dag_id, dag in bag.dags.items()
    },
}))
"""


@functools.cache
def _metadata(root: Path) -> background.Once:
    """One metadata database for the module's jobs (migrated, with the warehouse pool), as
    `dataops.airflow.local.prepare` leaves it, made by the first job that needs it; the Airflow
    home of each job starts with a copy of it, and each job compiles for its own warehouse."""
    home = root / "airflow-metadata"
    env = airflow_env(home, root / "airflow-metadata-warehouse")

    def migrate() -> Path:
        prepare_metadata(env)
        return home

    return background.Once(migrate)


def _airflow_home(metadata: background.Once, home: Path) -> None:
    """A fresh Airflow home with the module's metadata database (which holds no path of its own
    home; Airflow writes the home's airflow.cfg the first time it runs there)."""
    migrated = metadata.get()
    home.mkdir(parents=True)
    for database in migrated.glob("airflow.db*"):
        shutil.copy(database, home / database.name)


def _environment(airflow_home: Path, warehouse: Path, **extra: str) -> dict[str, str]:
    return airflow_env(airflow_home, warehouse, DATAOPS_TASK_RETRIES="0", **extra)


def _load(env: dict[str, str], tables_dir: Path) -> None:
    subprocess.run([str(BIN / "dataops"), "load", "--from", str(tables_dir)], env=env, check=True, capture_output=True)


# Generated data at scale 0.1, seed 3, with these faults, as parquet files in the folder argv[1].
GENERATE = """
import sys
from pathlib import Path
from dataops.sources.faults import inject
from dataops.sources.generate import generate_tables, write_tables
faults = sys.argv[2:]
tables = generate_tables(0.1, seed=3)
write_tables(inject(tables, faults, seed=3) if faults else tables, Path(sys.argv[1]), "parquet")
"""


def _write_generated(env: dict[str, str], folder: Path, faults: tuple[str, ...]) -> None:
    """In a process of its own: the background's thread keeps the interpreter to the tests."""
    subprocess.run([sys.executable, "-c", GENERATE, str(folder), *faults], env=env, check=True, capture_output=True)


@dataclass(frozen=True)
class DagRuns:
    """What a job left: its Airflow home and environment (its own warehouse), the pipeline DAG's
    run there, if it ran one, and the DAG runs made after it in the same place."""

    home: Path
    env: dict[str, str]
    pipeline: DagTestResult | None
    after: dict[str, DagTestResult] = field(default_factory=dict)
    # The StatsD datagrams Airflow sent during the job, when it was run with statsd_on
    # (tests/integration/test_airflow_statsd.py maps them).
    statsd: tuple[str, ...] = ()


def _dag_runs(
    mode: str | None, faults: tuple[str, ...] | None, then: tuple[str, ...] = (), statsd: bool = False
) -> Callable[[Path], background.Run]:
    """A job: compile for its warehouse (as at deploy time), load generated data with `faults`
    into it and run the pipeline DAG (faults None: no data, no pipeline run), then the DAGs `then`.
    With `statsd`, Airflow sends its StatsD metrics to a listener of the job's, which keeps them."""

    def prepare(folder: Path) -> background.Run:
        home, metadata = folder / "airflow", _metadata(folder.parent)
        listener = StatsdListener() if statsd else None
        env = _environment(
            home,
            folder / "warehouse",
            **({"DATAOPS_COSMOS_MODE": mode} if mode else {}),
            **(listener.airflow_env() if listener else {}),
        )

        def run() -> DagRuns:
            compile_manifest(env)
            if faults is not None:
                _write_generated(env, folder / "data", faults)
                _load(env, folder / "data")
            _airflow_home(metadata, home)
            if listener:
                listener.start()
            try:
                pipeline = dag_test(env, "adventureworks_pipeline") if faults is not None else None
                after = {dag_id: dag_test(env, dag_id) for dag_id in then}
            finally:
                datagrams = listener.stop() if listener else ()
            return DagRuns(home, env, pipeline, after, datagrams)

        return run

    return prepare


MODES = ("watcher", "build")
# One order with a negative TotalDue (and its lines, consistently): only the revenue rule breaks.
NEGATIVE_ORDER = ("negative_total",)
for _mode in MODES:
    # The watcher jobs also catch Airflow's StatsD metrics: a DAG run that succeeds, one that
    # fails, and their tasks' (tests/integration/test_airflow_statsd.py).
    background.job(f"airflow-clean-{_mode}")(_dag_runs(_mode, faults=(), statsd=_mode == "watcher"))
    # After the bad watcher run, dbt_monitoring: it reads that run, and fails naming the test.
    background.job(f"airflow-bad-{_mode}")(
        _dag_runs(
            _mode,
            faults=NEGATIVE_ORDER,
            then=("dbt_monitoring",) if _mode == "watcher" else (),
            statsd=_mode == "watcher",
        )
    )
# Only the deploy-time compile, which is no run, then dbt_monitoring.
background.job("airflow-never-ran")(_dag_runs(None, faults=None, then=("dbt_monitoring",)))


@background.job("airflow-dagbag")
def _inspect_dagbag(folder: Path) -> background.Run:
    """The environment, and the DAGs as a real DagBag fills them, what the tests read of them."""
    home, metadata = folder / "airflow", _metadata(folder.parent)
    env = _environment(home, folder / "warehouse")

    def run() -> tuple[dict[str, str], dict[str, Any]]:
        compile_manifest(env)
        _airflow_home(metadata, home)
        output = subprocess.run(
            [sys.executable, "-c", INSPECT_DAGBAG], env=env, check=True, capture_output=True, text=True
        ).stdout
        return env, json.loads(output.strip().splitlines()[-1])

    return run


@pytest.fixture
def dagbag(background_outcome: tuple[dict[str, str], dict[str, Any]]) -> tuple[dict[str, str], dict[str, Any]]:
    return background_outcome


def _pipeline_run(outcome: DagRuns) -> tuple[dict[str, str], Path, DagTestResult]:
    assert outcome.pipeline is not None
    return outcome.env, outcome.home, outcome.pipeline


@pytest.mark.background("airflow-dagbag")
def test_every_dag_imports_and_declares_owner_retries_tags_schedule(
    dagbag: tuple[dict[str, str], dict[str, Any]],
) -> None:
    _, bag = dagbag
    print(f"\nDagBag fill time: {bag['fill_seconds']:.3f} s for {len(bag['dags'])} DAGs")
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == DAG_IDS
    for dag_id, dag in bag["dags"].items():
        assert dag["owners"] == ["data-engineering"], dag_id
        assert dag["retries"] == [0], dag_id  # 1 by default; DATAOPS_TASK_RETRIES=0 in tests
        assert "dataops" in dag["tags"], dag_id
    assert bag["dags"]["adventureworks_pipeline"]["schedule"] == "@daily"
    assert bag["dags"]["dbt_monitoring"]["schedule"] == "@hourly"
    pipeline = bag["dags"]["adventureworks_pipeline"]["tasks"]
    assert len(pipeline) > 20  # one per model, plus tests and steps
    # The run's record is written last, after every other task however it ended, and as a
    # teardown it leaves the run's state to them.
    assert pipeline["record_run"]["teardown"] is True
    assert pipeline["record_run"]["upstream"] == sorted(set(pipeline) - {"record_run"})


@pytest.mark.background("airflow-dagbag")
def test_quality_runs_on_the_pipeline_s_marts_asset_and_shares_the_warehouse_pool_with_it(
    dagbag: tuple[dict[str, str], dict[str, Any]],
) -> None:
    env, bag = dagbag
    pipeline, quality = bag["dags"]["adventureworks_pipeline"]["tasks"], bag["dags"]["data_quality_checks"]
    marts = marts_asset(load_settings("dev")).uri
    # The pipeline's quality step alone says the marts are done, and the quality DAG runs on that.
    assert {task: t["outlets"] for task, t in pipeline.items() if t["outlets"]} == {"publish": [marts]}
    assert quality["schedule"] is None and quality["schedule_assets"] == [marts]
    # Every task that touches the warehouse, in both DAGs, is in one pool; the quality check
    # takes all of it, in reschedule mode so that it holds the pool only while it checks.
    pool = warehouse_pool(load_settings("dev"))
    untouched = {task for task, t in pipeline.items() if task == "notify" or t["type"] == "EmptyOperator"}
    assert {task: (t["pool"], t["pool_slots"]) for task, t in pipeline.items() if task not in untouched} == {
        task: (pool.name, 1) for task in set(pipeline) - untouched
    }
    [check] = quality["tasks"].values()
    assert (check["pool"], check["pool_slots"], check["mode"]) == (pool.name, pool.slots, "reschedule")
    assert {t["pool"] for t in bag["dags"]["dbt_monitoring"]["tasks"].values()} == {"default_pool"}
    # The pool exists, as the scheduler needs it to, with those slots (one: DuckDB).
    listed = subprocess.run(
        [str(BIN / "airflow"), "pools", "get", pool.name, "-o", "json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    [row] = _json_rows(listed)
    assert int(row["slots"]) == pool.slots == 1


def _json_rows(output: str) -> list[dict[str, Any]]:
    return json.loads(next(line for line in output.splitlines() if line.startswith("[")))


def _marts_events(airflow_home: Path, run_id: str) -> list[tuple[str, str]]:
    """(DAG, task) of each event on the marts asset a run emitted, from the metadata database.
    (Cosmos's watcher sensors emit an asset per model whatever emit_datasets says; nothing is
    scheduled on those.)"""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute(
            "select e.source_dag_id, e.source_task_id from asset_event e"
            " join asset on asset.id = e.asset_id where e.source_run_id = ? and asset.uri = ?",
            (run_id, marts_asset(load_settings("dev")).uri),
        )
        return list(rows)


def _dataops_json(env: dict[str, str], *args: str) -> Any:
    output = subprocess.run(
        [str(BIN / "dataops"), *args, "--format", "json"], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


def _history(env: dict[str, str]) -> HistoryStore:
    """The run history the DAGs of `env` record in (by default, beside its warehouse)."""
    beside = Path(env["DATAOPS_WAREHOUSE_DIR"]) / DEFAULT_FILE
    return HistoryStore(env.get(HISTORY_URL_ENV_VAR) or f"sqlite:///{beside}")


def _recorded_run(env: dict[str, str], dag_run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one run in the DAG run's history (its warehouse is the test's own), as `dataops history
    --format json` lists it and `dataops history show` shows it."""
    listing = _dataops_json(env, "history")
    assert listing["format"] == "dataops.history/v1"
    [row] = listing["runs"]
    record = _dataops_json(env, "history", "show", row["run_id"])
    assert record["format"] == "dataops.run/v1"
    assert record["trigger"] == {"kind": "airflow", "dag_id": "adventureworks_pipeline", "dag_run_id": dag_run_id}
    assert row["trigger"] == "airflow" and record["finished_at"] is not None
    return row, record


def _producer_xcom_keys(airflow_home: Path, run_id: str) -> list[str]:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute("select key from xcom where run_id = ? and task_id = 'dbt.dbt_producer_watcher'", (run_id,))
        return [key for (key,) in rows]


@pytest.mark.parametrize(
    "mode", [pytest.param(mode, marks=pytest.mark.background(f"airflow-clean-{mode}")) for mode in MODES]
)
def test_the_pipeline_dag_runs_every_task_and_builds_the_marts(background_outcome: DagRuns, mode: str) -> None:
    # The job: clean generated data loaded, then `airflow dags test` of the pipeline in this mode.
    env, airflow_home, result = _pipeline_run(background_outcome)
    assert env["DATAOPS_COSMOS_MODE"] == mode

    assert result.succeeded, {task: state for task, state in result.states.items() if state != "success"}
    assert {"source_freshness", "quality_checks", "publish", "notify"} <= set(result.states)
    # The marts passed and were published: one event on the asset data_quality_checks runs on.
    assert _marts_events(airflow_home, result.run_id) == [("adventureworks_pipeline", "publish")]
    rows = subprocess.run(
        [str(BIN / "dataops"), "query", "select count(*) as n from marts.customer_analytics", "--format", "json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    customers = json.loads(rows)[0]["n"]
    assert customers > 1000
    # One record of the DAG run, assembled by its tasks: passed, with every node's result.
    row, record = _recorded_run(env, result.run_id)
    assert (row["status"], row["exit_code"], record["error"], record["findings"]) == ("passed", 0, None, [])
    assert record["publish"]["status"] == "published" and record["publish"]["version"] == 1, record["publish"]
    kinds = Counter(node["kind"] for node in record["nodes"])
    assert (kinds["source"], kinds["expectation"]) == (10, 12)
    assert {node["level"] for node in record["nodes"] if node["kind"] != "anomaly"} == {"ok"}
    # The target's first run: no history to judge volume and freshness against yet.
    anomalies = [node for node in record["nodes"] if node["kind"] == "anomaly"]
    assert anomalies and {(node["status"], node["level"]) for node in anomalies} == {("not enough history", "skipped")}
    assert record["row_counts"]["marts.customer_analytics"] == customers
    assert record["row_counts"]["Sales.SalesOrderHeader"] > 1000
    if mode == "watcher":
        # The watcher's one build has every dbt node's result in process.
        assert (kinds["model"], kinds["unit_test"]) == (17, 3) and kinds["test"] > 80
        assert (row["models_built"], row["tests_failed"], row["quality_score"]) == (17, 0, 1.0)
        assert [stage["name"] for stage in record["stages"]] == ["freshness", "build", "quality", "publish"]
        # What dbt_monitoring's task calls passes on it (the DAG itself runs after the bad run
        # below: a DAG test costs half a minute).
        passed = check_history(load_settings("dev"), store=_history(env))
        assert passed.startswith(f"monitoring of dev passed: 0 error(s), 0 warning(s); latest run {row['run_id']}")
    else:
        # A build task per model: dbt's node results stay in those tasks; the record has the rest,
        # and publish read the dbt tasks' states in Airflow to know the build passed.
        assert [stage["name"] for stage in record["stages"]] == ["freshness", "quality", "publish"]
    if mode == "watcher":
        # One dbt build; a run and a test sensor per model read its result once it is done.
        sensors = [task for task in result.states if task.endswith((".run", ".test"))]
        assert len(sensors) >= 2 * 17 - 1
        # The producer reports what the sensors read (status, compiled SQL, event, test aggregate
        # per model), not an XCom per test node: Cosmos's own pushed one per node and event.
        keys = _producer_xcom_keys(airflow_home, result.run_id)
        assert not [key for key in keys if key.startswith("test__")], keys
        fct_orders = "model__adventureworks__fct_orders"
        assert {f"{fct_orders}_status", f"{fct_orders}_tests_status"} <= set(keys)
        assert len(keys) <= 4 * (17 + 3) + 2


@pytest.mark.parametrize(
    "mode", [pytest.param(mode, marks=pytest.mark.background(f"airflow-bad-{mode}")) for mode in MODES]
)
def test_a_bad_row_fails_at_its_test_task_and_nothing_downstream_runs(background_outcome: DagRuns, mode: str) -> None:
    # The job: the data with one negative order (NEGATIVE_ORDER) loaded, then the pipeline's DAG test.
    env, airflow_home, result = _pipeline_run(background_outcome)
    assert env["DATAOPS_COSMOS_MODE"] == mode

    failed = {task for task, state in result.states.items() if state == "failed"}
    assert result.exit_code != 0
    if mode == "watcher":
        # The rule reads fct_orders and fct_order_lines: the test task of each reports it; the
        # one build that ran it did its own job.
        assert failed == {"dbt.fct_orders.test", "dbt.fct_order_lines.test"}, failed
        assert result.states["dbt.dbt_producer_watcher"] == "success"
        assert result.states["dbt.fct_orders.run"] == "success"
        assert "failed, each reported by its model's task: assert_no_negative_revenue" in result.log
    else:
        assert len(failed) == 1 and "assert_no_negative_revenue" in next(iter(failed))
        assert result.states["dbt.fct_orders_model_build"] == "success"
    assert result.states["quality_checks"] in (None, "upstream_failed")
    # Publish runs however quality ended, and publishes nothing: it is skipped, saying why.
    assert result.states["publish"] == "skipped"
    assert result.states["notify"] in (None, "upstream_failed", "skipped")
    assert result.states["source_freshness"] == "success"
    # Marts that failed their tests are no event: data_quality_checks is not started on them.
    assert _marts_events(airflow_home, result.run_id) == []
    # The run is recorded all the same, as failed, by the name of the check that failed.
    assert result.states["record_run"] == "success"
    row, record = _recorded_run(env, result.run_id)
    assert (row["status"], row["exit_code"]) == ("failed", 1)
    assert record["publish"]["status"] == "not published", record["publish"]
    assert "assert_no_negative_revenue" in record["publish"]["reason"]
    errors = [finding["check"] for finding in record["findings"] if finding["level"] == "error"]
    if mode == "watcher":
        assert errors == ["assert_no_negative_revenue"]
        [test] = [node for node in record["nodes"] if node["name"] == "assert_no_negative_revenue"]
        assert (test["kind"], test["level"], test["status"]) == ("test", "error", "fail")
        # The rows it found, kept for the incident report as `dataops run` keeps them.
        sample = test["sample"]
        assert sample is not None and sample["rows"] and not sample.get("unavailable"), sample
        assert [(stage["name"], stage["status"]) for stage in record["stages"]] == [
            ("freshness", "ok"),
            ("build", "failed"),
            ("publish", "skipped"),
        ]
        # dbt_monitoring, run by the job after the pipeline, reads it, and fails naming the test.
        monitoring = background_outcome.after["dbt_monitoring"]
        assert monitoring.states == {"check_dbt_artifacts": "failed"}
        assert "monitoring of dev FAILED: 1 error(s)" in monitoring.log
        assert "assert_no_negative_revenue: " in monitoring.log
    else:
        # The failed build task, by its name (which is the test's): no build node says more.
        assert errors == [f"task {task}" for task in sorted(failed)]


@pytest.mark.background("airflow-never-ran")
def test_dbt_monitoring_fails_readably_when_the_target_never_ran(background_outcome: DagRuns) -> None:
    # The deploy-time compile (in the job) is no run: the history holds none for the target.
    assert background_outcome.pipeline is None
    result = background_outcome.after["dbt_monitoring"]

    assert result.states == {"check_dbt_artifacts": "failed"}
    assert "no run of dev in the run history: has the pipeline run?" in result.log
    assert "KeyError" not in result.log


def test_make_dag_test_loads_into_the_throwaway_warehouse_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even with the caller's own DuckDB file set, which the load and the DAG would otherwise use.
    own = tmp_path / "own.duckdb"
    monkeypatch.setenv("DATAOPS_DUCKDB_PATH", str(own))
    env = throwaway_env(tmp_path / "scratch")

    said = load_throwaway(env, 0.01)

    warehouse = tmp_path / "scratch" / "warehouse"
    assert f"into a throwaway dev warehouse in {warehouse}," in said
    with duckdb.connect(str(warehouse / "dev.duckdb"), read_only=True) as db:
        assert db.execute('select count(*) from "Sales"."Customer"').fetchone()[0] > 0
    assert not own.exists()
