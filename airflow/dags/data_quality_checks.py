"""Data quality after each pipeline run: the Great Expectations checkpoint on the marts of the
configured target, scheduled on the marts asset that adventureworks_pipeline emits once it has
rebuilt them and they passed its own checks. It never runs beside the pipeline, even when
triggered by hand: it waits while a pipeline run is in flight, and checks with the whole
warehouse pool. Fails on a critical expectation; warnings are reported in the task log."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from dataops.airflow import dags as orchestration

settings = orchestration.settings()

with orchestration.dag(
    "data_quality_checks",
    "Great Expectations suites on the marts, run inside the warehouse, after each pipeline run",
    schedule=[orchestration.marts_asset(settings)],
    tags=["quality", "great-expectations"],
) as dag:

    @task.sensor(**orchestration.quality_sensor_args(settings))
    def run_quality_checkpoint(ti: Any = None, run_id: str | None = None, triggering_asset_events: Any = None) -> Any:
        return orchestration.check_quality_once_the_pipeline_is_idle(ti, run_id, triggering_asset_events, settings)

    run_quality_checkpoint()
