"""A CLI run beside an Airflow DAG run: never interleaved. The DAG run's tasks are processes of
their own; between them the DAG run holds the target with a lease in the run history, and each
task holds the warehouse's lock while it works (the same code the DAG's tasks call:
`recording.holding_target`). Real processes, real DuckDB and SQLite files; no Airflow needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dataops.core.config import Settings
from dataops.history.store import HistoryStore

# One task of a DAG run: holds the target (its lease and the lock) until the file `release` exists.
TASK = """
import sys, time
from datetime import datetime, UTC
from pathlib import Path
from dataops.airflow.recording import PipelineRun, holding_target
from dataops.core.config import load_settings
release, started = Path(sys.argv[1]), Path(sys.argv[2])
with holding_target(PipelineRun("adventureworks_pipeline", sys.argv[3], datetime.now(UTC)), load_settings("dev")):
    started.touch()
    while not release.exists():
        time.sleep(0.05)
"""


def _env(warehouse: Path) -> dict[str, str]:
    env = {**os.environ, "DATAOPS_WAREHOUSE_DIR": str(warehouse)}
    for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
        env.pop(name, None)
    return env


def _task(tmp_path: Path, name: str, dag_run: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    release, started = tmp_path / f"{name}.release", tmp_path / f"{name}.started"
    process = subprocess.Popen(
        [sys.executable, "-c", TASK, str(release), str(started), dag_run],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the task never took the target"
        time.sleep(0.05)
    return process, release


def _finish(process: subprocess.Popen[str], release: Path) -> None:
    release.touch()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


def test_a_cli_run_never_runs_between_the_tasks_of_a_dag_run(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings.warehouse_dir)
    run = [sys.executable, "-m", "dataops", "run", "--scale", "0.1", "--no-docs"]
    dag_run = "scheduled__2026-12-01T00:00:00+00:00"
    record_id = f"airflow-dev-{dag_run.replace(':', '-').replace('+', '-')}"

    # The first task runs and ends: the lock is free, the DAG run's lease is not.
    first, release = _task(tmp_path, "freshness", dag_run, env)
    _finish(first, release)
    lease = HistoryStore().lease_holder("dev")
    assert lease is not None and lease.run_id == record_id, lease

    refused = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr
    message = refused.stderr.strip()
    assert "\n" not in message and f"run {record_id}" in message and "--wait" in message, message
    assert "Traceback" not in refused.stderr
    assert HistoryStore().runs("dev") == []  # refused before it started: nothing ran, nothing recorded
    assert not settings.duckdb_path.exists()  # nothing was loaded between the DAG run's tasks

    # With --wait, the CLI run waits out the rest of the DAG run: its next task and its end.
    waiter = subprocess.Popen([*run, "--wait"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second, release = _task(tmp_path, "build", dag_run, env)  # the DAG run's next task gets the target
    time.sleep(3)
    assert waiter.poll() is None, waiter.communicate()  # still waiting, while the build task works
    assert not settings.duckdb_path.exists()
    _finish(second, release)
    time.sleep(3)
    assert waiter.poll() is None  # the DAG run still holds its lease between its tasks
    released_at = datetime.now(UTC)
    HistoryStore().release_lease("dev", record_id)  # what the DAG run's last task does
    out, _ = waiter.communicate(timeout=600)
    assert waiter.returncode == 0, out[-3000:]
    assert f"waiting for run {record_id}" in out, out[:300]
    [row] = HistoryStore().runs("dev")
    assert datetime.fromisoformat(row.started_at) >= released_at  # it started only once the DAG run was done


def test_a_dag_task_waits_for_a_cli_run_and_a_lease_of_a_dead_dag_run_expires(
    settings: Settings,
    tmp_path: Path,
) -> None:
    from dataops.history.store import Lease
    from dataops.publish.lock import hold_target

    env = _env(settings.warehouse_dir)
    # A CLI run (here: the lock it holds for its whole length) holds the target.
    with hold_target(settings, "cli-run", wait=False):
        task = subprocess.Popen(
            [sys.executable, "-c", TASK, str(tmp_path / "go"), str(tmp_path / "in"), "late"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(3)
        assert not (tmp_path / "in").exists() and task.poll() is None  # the task waits for the run
    deadline = time.monotonic() + 60
    while not (tmp_path / "in").exists():
        assert time.monotonic() < deadline and task.poll() is None, task.communicate()
        time.sleep(0.05)
    _finish(task, tmp_path / "go")

    # A DAG run that died keeps its lease only until it expires; then a run takes the target.
    HistoryStore().release_lease("dev", "airflow-dev-late")
    assert HistoryStore().take_lease("dev", Lease("airflow-dev-dead", "gone", 1, "t"), 1) is None
    with pytest.raises(Exception, match="airflow-dev-dead"), hold_target(settings, "cli-now", wait=False):
        pass
    time.sleep(1.5)
    with hold_target(settings, "cli-later", wait=False):
        assert HistoryStore().lease_holder("dev", excluding="cli-later") is None
