"""The AdventureWorks pipeline, daily: source freshness -> the dbt project into the candidate (one
task group per model with its tests, rendered by Cosmos from the precompiled manifest) -> data
quality on the candidate -> publish (however quality ended: it publishes only a run with no
failure, and emits the marts asset data_quality_checks is scheduled on) -> notify; and last, however
the others ended, the run's record in the run history (each task adds what it found to it). Every
task that touches the warehouse is in its pool and holds the target (a `dataops run` never runs
between two of them). Target and warehouse come from the environment (DATAOPS_TARGET ...), never
from this file."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from dataops.airflow import callables as tasks
from dataops.airflow import dags as orchestration
from dataops.airflow.recording import PipelineRun
from dataops.core.config import PIPELINE_SCHEDULE

settings = orchestration.settings()
pool = orchestration.warehouse_pool(settings)

with orchestration.dag(
    orchestration.PIPELINE_DAG_ID,
    "Daily build of the AdventureWorks marts: freshness, dbt with its tests, quality, publish, notify",
    # The monitor derives how long a gap between runs may be from the same schedule.
    schedule=PIPELINE_SCHEDULE,
    tags=["dbt", "adventureworks", settings.target],
    max_active_tasks=orchestration.max_active_tasks(settings),
) as dag:

    @task(**pool.shared())
    def source_freshness(dag_run: Any = None) -> str:
        return tasks.check_freshness(run=PipelineRun.of(dag_run))

    # The last check of the data: the candidate is rebuilt, tested and checked.
    @task(**pool.shared())
    def quality_checks(run_id: str | None = None, dag_run: Any = None) -> str:
        return tasks.check_quality(run_id=run_id, run=PipelineRun.of(dag_run))

    # However quality ended, to say why a run was not published; the marts are new only if it was.
    @task(outlets=[orchestration.marts_asset(settings)], trigger_rule="all_done", **pool.shared())
    def publish(dag_run: Any = None, ti: Any = None) -> str:
        return tasks.publish_marts(PipelineRun.of(dag_run), ti)

    @task
    def notify(freshness: str, quality: str, published: str, run_id: str | None = None) -> None:
        from dataops.ops.notify import notify_success

        notify_success("adventureworks_pipeline", run_id or "", [freshness, quality, published])

    # In the pool: it counts the rows of the sources and marts, as the run left them.
    @task(**pool.shared())
    def record_run(dag_run: Any = None, ti: Any = None) -> str:
        return tasks.record_pipeline_run(PipelineRun.of(dag_run), ti)

    freshness = source_freshness()
    dbt = orchestration.dbt_task_group(settings)
    quality = quality_checks()
    published = publish()
    freshness >> dbt >> quality >> published
    notify(freshness, quality, published)
    orchestration.run_last(dag, record_run())
