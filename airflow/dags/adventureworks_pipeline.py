"""The AdventureWorks pipeline, daily: source freshness -> the dbt project (one task group per
model with its tests, rendered by Cosmos from the precompiled manifest) -> data quality -> notify.
Target and warehouse come from the environment (DATAOPS_TARGET ...), never from this file."""

from __future__ import annotations

from airflow.sdk import task

from dataops import orchestration, tasks

settings = orchestration.settings()

with orchestration.dag(
    "adventureworks_pipeline",
    "Daily build of the AdventureWorks marts: freshness, dbt with its tests, quality, notify",
    schedule="@daily",
    tags=["dbt", "adventureworks", settings.target],
    max_active_tasks=orchestration.max_active_tasks(settings),
) as dag:

    @task
    def source_freshness() -> str:
        return tasks.check_freshness()

    @task
    def quality_checks(run_id: str | None = None) -> str:
        return tasks.check_quality(run_id=run_id)

    @task
    def notify(freshness: str, quality: str, run_id: str | None = None) -> None:
        from dataops.notify import notify_success

        notify_success("adventureworks_pipeline", run_id or "", [freshness, quality])

    freshness = source_freshness()
    dbt = orchestration.dbt_task_group(settings)
    quality = quality_checks()
    freshness >> dbt >> quality
    notify(freshness, quality)
