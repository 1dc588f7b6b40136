"""Daily data quality: the Great Expectations checkpoint on the marts of the configured target.
Fails on a critical expectation; warnings are reported in the task log."""

from __future__ import annotations

from airflow.sdk import task

from dataops import orchestration, tasks

with orchestration.dag(
    "data_quality_checks",
    "Great Expectations suites on the marts, run inside the warehouse",
    schedule="@daily",
    tags=["quality", "great-expectations"],
) as dag:

    @task
    def run_quality_checkpoint(run_id: str | None = None) -> str:
        return tasks.check_quality(run_id=run_id)

    run_quality_checkpoint()
