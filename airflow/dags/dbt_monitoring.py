"""Hourly monitoring of the target's latest run in the run history (the pipeline DAG's or
`dataops run`'s): fails, with a readable message, on errored models, failed tests, stale sources, a
crashed run, or no run for longer than the pipeline's schedule allows."""

from __future__ import annotations

from airflow.sdk import task

from dataops.airflow import callables as tasks
from dataops.airflow import dags as orchestration

with orchestration.dag(
    "dbt_monitoring",
    "Checks the configured target's latest run in the run history",
    schedule="@hourly",
    tags=["monitoring", "dbt"],
) as dag:

    @task
    def check_dbt_artifacts() -> str:
        return tasks.check_dbt_artifacts()

    check_dbt_artifacts()
