"""Daily data quality: the Great Expectations checkpoint on the marts of the configured target.
Fails on a critical expectation; warnings are reported in the task log."""

from __future__ import annotations

from airflow.sdk import DAG, task

from dataops import orchestration, tasks

with DAG(
    dag_id="data_quality_checks",
    description="Great Expectations suites on the marts, run inside the warehouse",
    schedule="@daily",
    start_date=orchestration.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=orchestration.default_args(),
    tags=["dataops", "quality", "great-expectations"],
) as dag:

    @task
    def run_quality_checkpoint(run_id: str | None = None) -> str:
        return tasks.check_quality(run_id=run_id)

    run_quality_checkpoint()
