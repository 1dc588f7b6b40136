"""The DAGs in a real Airflow: they import cleanly, run end to end with `airflow dags test`, stop
at the task whose check a bad row breaks, and monitoring fails with a readable message."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dataops.airflow_local import (
    BIN,
    airflow_env,
    compile_manifest,
    dag_test,
    load_throwaway,
    prepare_metadata,
    throwaway_env,
)
from dataops.faults import inject
from dataops.generate import generate_tables, write_tables

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
            "schedule": str(dag.schedule),
            "tasks": len(dag.tasks),
        }
        for dag_id, dag in bag.dags.items()
    },
}))
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One metadata database for the module (migrated, with the warehouse pool), as
    `dataops.airflow_local.prepare` leaves it; each test compiles for its own warehouse."""
    home = tmp_path_factory.mktemp("airflow")
    prepare_metadata(airflow_env(home, tmp_path_factory.mktemp("unused-warehouse")))
    return home


def _environment(airflow_home: Path, warehouse: Path) -> dict[str, str]:
    env = airflow_env(airflow_home, warehouse, DATAOPS_TASK_RETRIES="0")
    compile_manifest(env)
    return env


def _load(env: dict[str, str], tables_dir: Path) -> None:
    subprocess.run([str(BIN / "dataops"), "load", "--from", str(tables_dir)], env=env, check=True, capture_output=True)


def test_every_dag_imports_and_declares_owner_retries_tags_schedule(airflow_home: Path, tmp_path: Path) -> None:
    env = _environment(airflow_home, tmp_path / "warehouse")
    output = subprocess.run(
        [sys.executable, "-c", INSPECT_DAGBAG], env=env, check=True, capture_output=True, text=True
    ).stdout
    bag = json.loads(output.strip().splitlines()[-1])
    print(f"\nDagBag fill time: {bag['fill_seconds']:.3f} s for {len(bag['dags'])} DAGs")
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == DAG_IDS
    for dag_id, dag in bag["dags"].items():
        assert dag["owners"] == ["data-engineering"], dag_id
        assert dag["retries"] == [0], dag_id  # 1 by default; DATAOPS_TASK_RETRIES=0 in tests
        assert "dataops" in dag["tags"], dag_id
        assert dag["schedule"] in ("@daily", "@hourly"), dag_id
    assert bag["dags"]["adventureworks_pipeline"]["tasks"] > 20  # one per model, plus tests and steps


def _producer_xcom_keys(airflow_home: Path, run_id: str) -> list[str]:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute("select key from xcom where run_id = ? and task_id = 'dbt.dbt_producer_watcher'", (run_id,))
        return [key for (key,) in rows]


@pytest.mark.parametrize("mode", ["watcher", "build"])
def test_the_pipeline_dag_runs_every_task_and_builds_the_marts(airflow_home: Path, tmp_path: Path, mode: str) -> None:
    env = {**_environment(airflow_home, tmp_path / "warehouse"), "DATAOPS_COSMOS_MODE": mode}
    write_tables(generate_tables(0.1, seed=3), tmp_path / "clean", "parquet")
    _load(env, tmp_path / "clean")

    result = dag_test(env, "adventureworks_pipeline")

    assert result.succeeded, {task: state for task, state in result.states.items() if state != "success"}
    assert {"source_freshness", "quality_checks", "notify"} <= set(result.states)
    rows = subprocess.run(
        [str(BIN / "dataops"), "query", "select count(*) as n from marts.customer_analytics", "--format", "json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert json.loads(rows)[0]["n"] > 1000
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


@pytest.mark.parametrize("mode", ["watcher", "build"])
def test_a_bad_row_fails_at_its_test_task_and_nothing_downstream_runs(
    airflow_home: Path, tmp_path: Path, mode: str
) -> None:
    env = {**_environment(airflow_home, tmp_path / "warehouse"), "DATAOPS_COSMOS_MODE": mode}
    # One order with a negative TotalDue (and its lines, consistently): only the revenue rule breaks.
    write_tables(inject(generate_tables(0.1, seed=3), ["negative_total"], seed=3), tmp_path / "bad", "parquet")
    _load(env, tmp_path / "bad")

    result = dag_test(env, "adventureworks_pipeline")

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
        assert len(failed) == 1 and "assert_no_negative_revenue" in failed.pop()
        assert result.states["dbt.fct_orders_model_build"] == "success"
    assert result.states["quality_checks"] in (None, "upstream_failed")
    assert result.states["notify"] in (None, "upstream_failed")
    assert result.states["source_freshness"] == "success"


def test_dbt_monitoring_fails_readably_when_artifacts_are_missing(airflow_home: Path, tmp_path: Path) -> None:
    # The deploy-time compile (in _environment) writes to compile/, so no run's artifacts exist.
    env = _environment(airflow_home, tmp_path / "warehouse")

    result = dag_test(env, "dbt_monitoring")

    assert result.states == {"check_dbt_artifacts": "failed"}
    assert "no run_results.json at" in result.log and "has `dataops run` run for this target?" in result.log
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
