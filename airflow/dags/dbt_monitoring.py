"""Hourly monitoring of the last dbt run: fails, with a readable message, on errored models,
failed tests, stale sources or missing and outdated artifacts."""

from __future__ import annotations

from airflow.sdk import task

from dataops.airflow import callables as tasks
from dataops.airflow import dags as orchestration

with orchestration.dag(
    "dbt_monitoring",
    "Checks dbt's run results and source freshness artifacts for the configured target",
    schedule="@hourly",
    tags=["monitoring", "dbt"],
) as dag:

    @task
    def check_dbt_artifacts() -> str:
        return tasks.check_dbt_artifacts()

    check_dbt_artifacts()
