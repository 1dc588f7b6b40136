"""Airflow on this machine: a throwaway AIRFLOW_HOME for `airflow dags test`, and `make airflow`
(standalone: its API server bound to 127.0.0.1, its log servers on every interface, which Airflow
does not let us change; see `listeners`). Drives the `airflow` command of this virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dataops.core.config import DUCKDB_PATH_ENV_VAR, PROJECT_ROOT
from dataops.core.errors import DataOpsError

DAGS_FOLDER = PROJECT_ROOT / "airflow" / "dags"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Ports:
    """The ports `airflow standalone` listens on; Airflow's defaults."""

    api: int = 8080
    # The scheduler's log server (LocalExecutor tasks run under the scheduler) and the triggerer's.
    worker_logs: int = 8793
    trigger_logs: int = 8794


@dataclass(frozen=True)
class Listener:
    component: str
    # "127.0.0.1", or ALL_INTERFACES.
    address: str
    port: int
    note: str


ALL_INTERFACES = "all interfaces"
# Airflow 3.3 starts both log servers with uvicorn.run(host="", ...) in
# airflow/utils/serve_logs/core.py, i.e. on every address, and has no setting for the address: only
# [logging] worker_log_server_port and trigger_log_server_port. `airflow standalone` cannot skip
# them either (it passes no --skip-serve-logs to the scheduler and triggerer).
_LOG_SERVER_NOTE = (
    "Airflow 3.3 has no setting to bind it to 127.0.0.1; every request needs a token signed with "
    "[api] secret_key from airflow.cfg; block the port in a firewall on a shared network"
)


def listeners(ports: Ports) -> list[Listener]:
    """Every socket `airflow standalone` listens on with airflow_env(), as `make airflow` says."""
    return [
        Listener("api-server (UI and REST API)", "127.0.0.1", ports.api, "this machine only"),
        Listener("scheduler log server", ALL_INTERFACES, ports.worker_logs, _LOG_SERVER_NOTE),
        Listener("triggerer log server", ALL_INTERFACES, ports.trigger_logs, _LOG_SERVER_NOTE),
    ]


def airflow_env(
    airflow_home: Path, warehouse_dir: Path, target: str = "dev", ports: Ports = Ports(), **extra: str
) -> dict[str, str]:
    """The environment Airflow and the DAGs need; the venv's bin first (airflow standalone
    starts its components by name)."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports.api),
        # Tasks reach the Execution API under this address too ({base_url}/execution/).
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{ports.api}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports.worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports.trigger_logs),
        "DATAOPS_TARGET": target,
        "DATAOPS_WAREHOUSE_DIR": str(warehouse_dir),
        **extra,
    }


def throwaway_env(scratch: Path, target: str = "dev") -> dict[str, str]:
    """`make dag-test`'s environment: Airflow's home and the warehouse both in `scratch`, which is
    deleted afterwards. Without the caller's DATAOPS_DUCKDB_PATH, which would point the load and
    the DAG at the caller's own DuckDB file."""
    env = airflow_env(scratch / "airflow", scratch / "warehouse", target, DATAOPS_TASK_RETRIES="0")
    env.pop(DUCKDB_PATH_ENV_VAR, None)
    return env


def ports_of(env: dict[str, str]) -> Ports:
    return Ports(
        int(env["AIRFLOW__API__PORT"]),
        int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]),
        int(env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]),
    )


def _command(env: dict[str, str], program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command of this virtualenv; a failure is one line with the end of its error output."""
    result = subprocess.run([str(BIN / program), *args], env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        tail = " ".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-3:])
        raise DataOpsError(f"{program} {' '.join(args)} failed: {tail}")
    return result


def _airflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _command(env, "airflow", *args, check=check)


def compile_manifest(env: dict[str, str]) -> None:
    """The manifest the DAGs render from (no dbt at parse time), as at deploy time."""
    _command(env, "dataops", "compile", "--target", env["DATAOPS_TARGET"])


def prepare_metadata(env: dict[str, str]) -> None:
    """Airflow's metadata database, and the pool of the tasks that touch the warehouse, created by
    the command the Compose deployment's airflow-init runs."""
    _airflow(env, "db", "migrate")
    _command(env, "python", "-m", "dataops.airflow.dags", "create-pool")


def prepare(env: dict[str, str]) -> None:
    """Everything `airflow standalone` or `airflow dags test` needs before it starts."""
    compile_manifest(env)
    prepare_metadata(env)


def load_throwaway(env: dict[str, str], scale: float) -> str:
    """Generated data into the throwaway warehouse of `env` (throwaway_env); says where that is,
    which `dataops load` does not: it names the target, as if the data were in the real one."""
    _command(env, "dataops", "load", "--scale", str(scale))
    target = env["DATAOPS_TARGET"]
    warehouse = Path(env["DATAOPS_WAREHOUSE_DIR"])
    return (
        f"Loaded generated data (scale {scale:g}) into a throwaway {target} warehouse in {warehouse}, "
        f"deleted when the DAG test ends; {PROJECT_ROOT / 'warehouse'} is not touched"
    )


Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class DagTestResult:
    exit_code: int
    run_id: str
    states: dict[str, str | None]
    log: str
    # The `airflow dags test` command's wall time.
    seconds: float
    # When the run and each task that ran started and ended, as Airflow recorded them.
    run_span: Span | None
    task_spans: dict[str, Span]

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and all(state == "success" for state in self.states.values())


def _json_lines(output: str) -> list[dict[str, object]]:
    """The JSON document in an `airflow ... -o json` output; Airflow logs warnings before it."""
    document = next((line for line in output.splitlines() if line.startswith("[")), "[]")
    return json.loads(document)


def _span(row: dict[str, object]) -> Span | None:
    start, end = row.get("start_date"), row.get("end_date")
    if not start or not end:
        return None
    return datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end))


def dag_test(env: dict[str, str], dag_id: str) -> DagTestResult:
    """`airflow dags test DAG`, then the state and timing of each of its tasks in that run."""
    started = time.perf_counter()
    run = _airflow(env, "dags", "test", dag_id, check=False)
    seconds = time.perf_counter() - started
    runs = _json_lines(_airflow(env, "dags", "list-runs", dag_id, "-o", "json").stdout)
    if not runs:
        raise DataOpsError(f"airflow dags test {dag_id} left no run: {run.stderr.strip()[-500:]}")
    latest = max(runs, key=lambda r: str(r.get("start_date") or ""))
    run_id = str(latest["run_id"])
    rows = _json_lines(_airflow(env, "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json").stdout)
    states = {str(row["task_id"]): (str(row["state"]) if row.get("state") else None) for row in rows}
    spans = {str(row["task_id"]): span for row in rows if (span := _span(row)) is not None}
    return DagTestResult(run.returncode, run_id, states, run.stdout + run.stderr, seconds, _span(latest), spans)


def standalone(env: dict[str, str]) -> int:
    """`make airflow`: Airflow standalone until Ctrl-C; first says what it listens on."""
    ports = ports_of(env)
    print(f"Starting Airflow at http://127.0.0.1:{ports.api} ...", flush=True)
    for listener in listeners(ports):
        print(f"  {listener.component}: {listener.address}, port {listener.port} ({listener.note})", flush=True)
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    print(f"Login: admin, password in {passwords} (written on first start)", flush=True)
    process = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        print("Airflow stopped.")
        return 0
