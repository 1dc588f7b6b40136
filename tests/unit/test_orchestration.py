"""How many tasks a DAG may run at once on each engine and Cosmos mode, the pool and asset the
DAGs share, and where they find the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.airflow.dags import (
    COSMOS_MODE_ENV_VAR,
    MANIFEST_ENV_VAR,
    manifest_path,
    marts_asset,
    max_active_tasks,
    quality_sensor_args,
    warehouse_pool,
)
from dataops.core.config import load_settings
from dataops.core.errors import DataOpsError


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


@pytest.mark.parametrize(("target", "slots"), [("dev", 1), ("postgres", 16)])
def test_the_quality_check_takes_the_whole_warehouse_pool_and_a_pipeline_task_one_slot(
    target: str, slots: int, warehouse_dir: Path
) -> None:
    # As many slots as the pipeline runs tasks at once: a check with all of them runs beside none.
    pool = warehouse_pool(load_settings(target))
    assert (pool.name, pool.slots) == (f"dataops_warehouse_{target}", slots)
    assert pool.shared() == {"pool": pool.name, "pool_slots": 1}
    assert pool.exclusive() == {"pool": pool.name, "pool_slots": slots}
    assert quality_sensor_args(load_settings(target))["pool_slots"] == slots


def test_each_target_s_marts_are_an_asset_of_their_own(warehouse_dir: Path) -> None:
    uris = {marts_asset(load_settings(target)).uri for target in ("dev", "ci", "postgres", "prod")}
    assert uris == {
        "x-dataops://dev/marts",
        "x-dataops://ci/marts",
        "x-dataops://postgres/marts",
        "x-dataops://prod/marts",
    }


def test_the_dags_read_the_manifest_from_where_dataops_compile_writes_it(
    warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MANIFEST_ENV_VAR, raising=False)
    settings = load_settings("dev")
    with pytest.raises(DataOpsError, match=r"no dbt manifest at .*/artifacts/dev/compile/manifest\.json"):
        manifest_path(settings)
    # A run's own manifest (dbt/) is not the deploy-time one.
    (settings.artifacts_dir / "dbt").mkdir(parents=True)
    (settings.artifacts_dir / "dbt" / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(DataOpsError):
        manifest_path(settings)
    settings.compile_dir.mkdir(parents=True)
    (settings.compile_dir / "manifest.json").write_text("{}", encoding="utf-8")
    assert manifest_path(settings) == settings.compile_dir / "manifest.json"
