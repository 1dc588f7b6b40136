"""How many tasks a DAG may run at once on each engine and Cosmos mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.config import load_settings
from dataops.orchestration import COSMOS_MODE_ENV_VAR, max_active_tasks


@pytest.mark.parametrize("mode", ["build", "after_each", "watcher"])
def test_duckdb_runs_one_writer_at_a_time_in_every_mode(
    mode: str, warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Watcher mode too: its sensors start after the build, and one retried runs its model itself.
    monkeypatch.setenv(COSMOS_MODE_ENV_VAR, mode)
    assert max_active_tasks(load_settings("dev")) == 1


def test_server_engines_run_tasks_in_parallel(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COSMOS_MODE_ENV_VAR, "build")
    assert max_active_tasks(load_settings("postgres")) == 16
