"""The AdventureWorks pipeline, daily: source freshness -> the dbt project (one task group per
model with its tests, rendered by Cosmos from the precompiled manifest) -> data quality, which
emits the marts asset data_quality_checks is scheduled on -> notify. Every task that touches the
warehouse is in its pool. Target and warehouse come from the environment (DATAOPS_TARGET ...),
never from this file."""

from __future__ import annotations

from airflow.sdk import task

from dataops.airflow import callables as tasks
from dataops.airflow import dags as orchestration

settings = orchestration.settings()
pool = orchestration.warehouse_pool(settings)

with orchestration.dag(
    orchestration.PIPELINE_DAG_ID,
    "Daily build of the AdventureWorks marts: freshness, dbt with its tests, quality, notify",
    schedule="@daily",
    tags=["dbt", "adventureworks", settings.target],
    max_active_tasks=orchestration.max_active_tasks(settings),
) as dag:

    @task(**pool.shared())
    def source_freshness() -> str:
        return tasks.check_freshness()

    # The last task that touches the data: the marts are rebuilt, tested and checked.
    @task(outlets=[orchestration.marts_asset(settings)], **pool.shared())
    def quality_checks(run_id: str | None = None) -> str:
        return tasks.check_quality(run_id=run_id)

    @task
    def notify(freshness: str, quality: str, run_id: str | None = None) -> None:
        from dataops.ops.notify import notify_success

        notify_success("adventureworks_pipeline", run_id or "", [freshness, quality])

    freshness = source_freshness()
    dbt = orchestration.dbt_task_group(settings)
    quality = quality_checks()
    freshness >> dbt >> quality
    notify(freshness, quality)
