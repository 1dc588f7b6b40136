"""Hourly monitoring of the last dbt run: fails, with a readable message, on errored models,
failed tests, stale sources or missing and outdated artifacts."""

from __future__ import annotations

from airflow.sdk import DAG, task

from dataops import orchestration, tasks

with DAG(
    dag_id="dbt_monitoring",
    description="Checks dbt's run results and source freshness artifacts for the configured target",
    schedule="@hourly",
    start_date=orchestration.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=orchestration.default_args(),
    tags=["dataops", "monitoring", "dbt"],
) as dag:

    @task
    def check_dbt_artifacts() -> str:
        return tasks.check_dbt_artifacts()

    check_dbt_artifacts()
