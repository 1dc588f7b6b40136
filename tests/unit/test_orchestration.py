"""How many tasks a DAG may run at once on each engine and Cosmos mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.config import load_settings
from dataops.orchestration import COSMOS_MODE_ENV_VAR, max_active_tasks


@pytest.mark.parametrize(("mode", "expected"), [("build", 1), ("after_each", 1), ("watcher", 16)])
def test_duckdb_runs_one_writer_at_a_time_except_beside_the_watcher(
    mode: str, expected: int, warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In watcher mode one dbt build is the only writer; its per-model sensors must run beside it.
    monkeypatch.setenv(COSMOS_MODE_ENV_VAR, mode)
    assert max_active_tasks(load_settings("dev")) == expected


def test_server_engines_run_tasks_in_parallel(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COSMOS_MODE_ENV_VAR, "build")
    assert max_active_tasks(load_settings("postgres")) == 16
