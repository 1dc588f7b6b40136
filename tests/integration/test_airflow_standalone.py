"""Airflow as `make airflow` runs it: `airflow standalone`, started by dataops.airflow_local, in a
throwaway AIRFLOW_HOME on free ports. It listens on exactly what `make airflow` says it does."""

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
from pathlib import Path
from typing import Any

import psutil
import pytest

from dataops.airflow_local import ALL_INTERFACES, BIN, Ports, airflow_env, listeners, load_throwaway, prepare

pytestmark = pytest.mark.integration

# What `make airflow` runs (scripts/airflow_local.py standalone), on this test's home and ports.
START = "import os, sys; from dataops.airflow_local import standalone; sys.exit(standalone(dict(os.environ)))"
WILDCARDS = {"0.0.0.0", "::"}


@dataclass(frozen=True)
class Standalone:
    env: dict[str, str]
    ports: Ports
    process: subprocess.Popen[bytes]
    output: Path

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


def _wait_for(condition: Callable[[], Any], what: str, timeout: float, process: subprocess.Popen[bytes] | None = None,
              output: Path | None = None) -> Any:
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


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    root = tmp_path_factory.mktemp("standalone")
    ports = Ports(_free_port(), _free_port(), _free_port())
    env = airflow_env(root / "airflow", root / "warehouse", ports=ports, DATAOPS_TASK_RETRIES="0")
    load_throwaway(env, 0.1)
    prepare(env)
    output = root / "standalone.log"
    with output.open("wb") as sink:
        # A session of its own: stopping it stops every Airflow component it started.
        process = subprocess.Popen(
            [sys.executable, "-c", START], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for(lambda: _healthy(ports.api), "every component to be healthy", 240, process, output)
        yield Standalone(env, ports, process, output)
    finally:
        # Ctrl-C, as `make airflow` is stopped; then whatever is left.
        os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


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
        "the API server and both log servers to listen", 60, standalone.process, standalone.output,
    )
    measured = {(ALL_INTERFACES if address in WILDCARDS else address, port) for address, port in sockets}
    # The API server is on loopback only; the log servers are on every interface, as said.
    assert measured == {(listener.address, listener.port) for listener in claimed}, sockets
    printed = standalone.output.read_text(errors="replace")
    for listener in claimed:
        assert f"{listener.component}: {listener.address}, port {listener.port}" in printed, printed[:2000]
