"""What the Airflow DAGs share: defaults, settings from the environment, and the dbt project
rendered as Airflow tasks by Cosmos from a precompiled manifest. Imported only by DAG files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dataops.core.config import DBT_PROJECT_DIR, PROFILE_NAME, Settings, load_settings
from dataops.core.errors import DataOpsError

MANIFEST_ENV_VAR = "DATAOPS_DBT_MANIFEST"
# How Cosmos renders and runs the project; measured options in BENCHMARKS.md.
COSMOS_MODE_ENV_VAR = "DATAOPS_COSMOS_MODE"
COSMOS_MODES = ("watcher", "build", "after_each")
DEFAULT_COSMOS_MODE = "watcher"
START_DATE = datetime(2026, 1, 1)
PIPELINE_DAG_ID = "adventureworks_pipeline"

log = logging.getLogger(__name__)


def _notify_failure(context: dict[str, Any]) -> None:
    from dataops.ops.notify import notify_failure

    notify_failure(context)


def default_args() -> dict[str, Any]:
    """As in the guide: an owner, one retry after five minutes, e-mail on failure; plus a webhook
    notification through dataops (nothing is sent when no webhook is configured)."""
    arguments: dict[str, Any] = {
        "owner": "data-engineering",
        # DATAOPS_TASK_RETRIES=0 for test runs, where a five-minute wait only hides the failure.
        "retries": int(os.environ.get("DATAOPS_TASK_RETRIES", "1")),
        "retry_delay": timedelta(minutes=5),
        "on_failure_callback": _notify_failure,
    }
    recipients = [address for address in os.environ.get("DATAOPS_ALERT_EMAILS", "").split(",") if address]
    if recipients:
        # Only when someone is to be mailed: Airflow 3 warns about e-mail settings on every task.
        arguments.update(email=recipients, email_on_failure=True, email_on_retry=False)
    return arguments


def dag(dag_id: str, description: str, schedule: Any, tags: list[str], **options: Any) -> Any:
    """A DAG with what all of ours share: no catchup, one run at a time, the default arguments,
    and the `dataops` tag."""
    from airflow.sdk import DAG

    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["dataops", *tags],
        **options,
    )


def settings() -> Settings:
    """The target comes from DATAOPS_TARGET (an env var or, in Airflow, the deployment's config)."""
    return load_settings()


def manifest_path(current: Settings) -> Path:
    """manifest.json is produced by `dataops` at deploy/CI time; the scheduler never runs dbt."""
    override = os.environ.get(MANIFEST_ENV_VAR)
    path = Path(override) if override else current.compile_dir / "manifest.json"
    if not path.exists():
        raise DataOpsError(
            f"no dbt manifest at {path}: run `dataops compile --target {current.target}` at deploy time "
            f"(or set {MANIFEST_ENV_VAR})"
        )
    return path


def max_active_tasks(current: Settings) -> int:
    """DuckDB takes one writer per file: on a DuckDB target the DAG runs one task at a time (in
    watcher mode too: a sensor retried after a failure runs its model itself)."""
    return 1 if current.engine == "duckdb" else 16


def marts_asset(current: Settings) -> Any:
    """The target's marts as an Airflow asset: the pipeline emits it once they are rebuilt and
    have passed quality, and data_quality_checks is scheduled on it."""
    from airflow.sdk import Asset

    # `x-` marks a scheme of our own, which Airflow keeps as it is.
    return Asset(
        name=f"dataops.{current.target}.{current.consumer_schema}",
        uri=f"x-dataops://{current.target}/{current.consumer_schema}",
    )


@dataclass(frozen=True)
class WarehousePool:
    """The Airflow pool of every task that reads or writes the target's warehouse, whatever its
    DAG: `max_active_runs` and `max_active_tasks` hold within one DAG only."""

    name: str
    slots: int
    description: str

    def shared(self) -> dict[str, Any]:
        """Task arguments for a pipeline task: one slot, beside the pipeline's other tasks."""
        return {"pool": self.name, "pool_slots": 1}

    def exclusive(self) -> dict[str, Any]:
        """Task arguments for a task that needs the warehouse to itself (checks that must see
        whole marts): every slot, so no other warehouse task runs beside it."""
        return {"pool": self.name, "pool_slots": self.slots}


def warehouse_pool(current: Settings) -> WarehousePool:
    """As many slots as the pipeline may run tasks at once: one on DuckDB (one writer per file)."""
    return WarehousePool(
        name=f"dataops_warehouse_{current.target}",
        slots=max_active_tasks(current),
        description=f"dataops: tasks that read or write the {current.target} warehouse",
    )


def create_warehouse_pool(current: Settings, env: dict[str, str] | None = None) -> WarehousePool:
    """Create or resize the pool in Airflow's metadata database: the scheduler never starts a task
    whose pool does not exist, and says so only in its own log. Run where `airflow db migrate`
    runs (`make airflow`, `make dag-test`, the Compose deployment's airflow-init)."""
    pool = warehouse_pool(current)
    command = [sys.executable, "-m", "airflow", "pools", "set", pool.name, str(pool.slots), pool.description]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise DataOpsError(f"cannot create the Airflow pool {pool.name}: {tail}")
    return pool


# How data_quality_checks waits for a pipeline run that is rebuilding the marts: it looks again
# every 30 seconds, for at most six hours. Not more often: Airflow 3.3 may fail a reschedule-mode
# sensor whose next poke is queued before the executor has reported the last one
# (apache/airflow#71172), which we saw here at 5 seconds on a loaded machine.
QUALITY_WAIT = {
    "mode": "reschedule",
    "poke_interval": timedelta(seconds=30),
    "timeout": timedelta(hours=6),
}


def quality_sensor_args(current: Settings) -> dict[str, Any]:
    """Arguments of data_quality_checks' one task: a sensor in reschedule mode, which gives its
    pool slots back between checks, with the whole warehouse pool while it checks."""
    return {**QUALITY_WAIT, **warehouse_pool(current).exclusive()}


def pipeline_runs_rebuilding(ti: Any, triggering_asset_events: Any = None) -> int:
    """Pipeline runs in flight that may still be writing the marts. The run whose marts event
    started this one is done with them (only its notification and its record are left, which
    write nothing there), so it does not count."""
    running = int(ti.get_dr_count(dag_id=PIPELINE_DAG_ID, states=["running"]))
    finished_with_the_marts = sorted(
        {
            event.source_run_id
            for events in (triggering_asset_events or {}).values()
            for event in events
            if event.source_dag_id == PIPELINE_DAG_ID and event.source_run_id
        }
    )
    if running and finished_with_the_marts:
        running -= int(ti.get_dr_count(dag_id=PIPELINE_DAG_ID, run_ids=finished_with_the_marts, states=["running"]))
    return running


def check_quality_once_the_pipeline_is_idle(
    ti: Any, run_id: str | None, triggering_asset_events: Any, current: Settings
) -> Any:
    """The quality checkpoint, once no pipeline run is rebuilding the marts. Holding the whole
    pool keeps a pipeline task from starting while the checks run; this keeps the checks from
    starting between two tasks of a pipeline run, on marts it has only half rebuilt (a manual
    trigger while the pipeline runs)."""
    from airflow.sdk import PokeReturnValue

    from dataops.airflow import callables as tasks

    rebuilding = pipeline_runs_rebuilding(ti, triggering_asset_events)
    if rebuilding:
        log.info(
            "%s has %d run(s) in flight that may be rebuilding the marts: checking once they are done",
            PIPELINE_DAG_ID,
            rebuilding,
        )
        return PokeReturnValue(is_done=False)
    return PokeReturnValue(is_done=True, xcom_value=tasks.check_quality(current, run_id=run_id, published=True))


def dbt_task_group(current: Settings, group_id: str = "dbt", **overrides: Any) -> Any:
    """The dbt project as Airflow tasks, one group per model with its tests, dbt in-process.

    `watcher` (the default): one `dbt build` for the whole project, then a run and a test task
    per model that report that model's result; a test with several parents is reported by each
    parent's test task. `build`: one `dbt build --select` task per model, tests with several
    parents in tasks of their own after all of them. `after_each`: a run and a test task per
    model. Measured in BENCHMARKS.md."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    mode = os.environ.get(COSMOS_MODE_ENV_VAR, DEFAULT_COSMOS_MODE)
    if mode not in COSMOS_MODES:
        raise DataOpsError(f"{COSMOS_MODE_ENV_VAR}={mode!r}: use one of {', '.join(COSMOS_MODES)}")
    render = {
        "load_method": LoadMode.DBT_MANIFEST,
        "test_behavior": TestBehavior.BUILD if mode == "build" else TestBehavior.AFTER_EACH,
        # The watcher's producer reports test results per model; a detached multi-parent test
        # would get a sensor of its own that no result ever reaches.
        "should_detach_multiple_parents_tests": mode != "watcher",
        "enable_mock_profile": False,
        **overrides.pop("render", {}),
    }
    execution = {
        "execution_mode": ExecutionMode.WATCHER if mode == "watcher" else ExecutionMode.LOCAL,
        "invocation_mode": InvocationMode.DBT_RUNNER,
        **overrides.pop("execution", {}),
    }
    group = DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT_DIR,
            manifest_path=manifest_path(current),
            project_name="adventureworks",
            env_vars=current.dbt_env,
            dbt_vars=current.dbt_vars,
            install_dbt_deps=False,
        ),
        profile_config=ProfileConfig(
            profile_name=PROFILE_NAME,
            target_name=current.target,
            profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
        ),
        execution_config=ExecutionConfig(**execution),
        render_config=RenderConfig(**render),
        operator_args={
            "install_deps": False,
            "full_refresh": False,
            # No DAG is scheduled on the per-model assets: the marts count once the pipeline run
            # has passed quality, when its quality step emits marts_asset. Emitting them costs a
            # call per task. (Cosmos's watcher run tasks emit theirs whatever this says.)
            "emit_datasets": False,
            # Every dbt task touches the warehouse: all of them share its pool.
            **warehouse_pool(current).shared(),
            **overrides.pop("operator_args", {}),
        },
        **overrides,
    )
    if mode == "watcher":
        _sense_after_the_build(group)
    return group


def run_last(dag: Any, last: Any) -> None:
    """Makes `last` (a task, or a TaskFlow call's result) run after every other task of the DAG,
    however each of them ended, and leaves the DAG run's state to the others. A teardown without
    a setup does both: it runs once all its upstream tasks are done (the all_done rule), and
    Airflow does not count it when it decides the state, so a failed test still fails the run."""
    task = getattr(last, "operator", last)
    task.as_teardown()
    for other in dag.tasks:
        if other is not task:
            other >> task


# Once the build has finished a node's result is in XCom or never will be: a sensor that finds
# none within this long fails rather than waiting for Cosmos's default of days.
SENSOR_TIMEOUT = timedelta(minutes=2)


def _sense_after_the_build(group: Any) -> None:
    """Watcher mode that runs on any executor, `airflow dags test` included. Cosmos starts the
    per-model sensors beside the one `dbt build` and defers them to a triggerer, every ten seconds;
    here the sensors start when the build has finished, whatever its outcome (the first sensors of
    the graph wait for the producer), so each reads its node's result on its first poke, in
    milliseconds, and none holds a worker slot or needs a triggerer while the build runs."""
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID
    from cosmos.operators._watcher.base import BaseConsumerSensor

    from dataops.airflow.watcher import ReportingProducer

    producer = group.children[f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}"]
    # Cosmos names the producer's class from the execution mode and takes no other; the subclass
    # only replaces how dbt's events are reported.
    producer.__class__ = ReportingProducer
    first_sensors = [task for task in group.get_roots() if isinstance(task, BaseConsumerSensor)]
    for task in group.iter_tasks():
        if isinstance(task, BaseConsumerSensor):
            task.deferrable = False
            task.poke_interval = 5.0
            task.timeout = SENSOR_TIMEOUT.total_seconds()
    for task in first_sensors:
        producer >> task
        task.trigger_rule = "all_done"


if __name__ == "__main__":
    # `python -m dataops.airflow.dags create-pool`: for deployments, beside `airflow db migrate`.
    if sys.argv[1:] != ["create-pool"]:
        sys.exit("usage: python -m dataops.airflow.dags create-pool")
    try:
        created = create_warehouse_pool(settings())
    except DataOpsError as error:
        sys.exit(f"error: {error}")
    print(f"Airflow pool {created.name}: {created.slots} slot(s)")
