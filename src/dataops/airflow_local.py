"""Airflow on this machine: a throwaway AIRFLOW_HOME for `airflow dags test`, and `make airflow`
(standalone, bound to 127.0.0.1). Drives the `airflow` command of this virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dataops.config import PROJECT_ROOT
from dataops.errors import DataOpsError

DAGS_FOLDER = PROJECT_ROOT / "airflow" / "dags"
BIN = Path(sys.executable).parent


def airflow_env(airflow_home: Path, warehouse_dir: Path, target: str = "dev", **extra: str) -> dict[str, str]:
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
        "AIRFLOW__API__BASE_URL": "http://127.0.0.1:8080",
        "DATAOPS_TARGET": target,
        "DATAOPS_WAREHOUSE_DIR": str(warehouse_dir),
        **extra,
    }


def _airflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise DataOpsError(f"airflow {' '.join(args)} failed: {tail}")
    return result


def prepare(env: dict[str, str]) -> None:
    """The manifest the DAGs render from (no dbt at parse time) and Airflow's metadata database."""
    subprocess.run(
        [str(BIN / "dataops"), "compile", "--target", env["DATAOPS_TARGET"]],
        env=env, check=True, capture_output=True, text=True,
    )
    _airflow(env, "db", "migrate")


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
    """`make airflow`: Airflow standalone on 127.0.0.1 until Ctrl-C."""
    print("Starting Airflow at http://127.0.0.1:8080 ...", flush=True)
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
