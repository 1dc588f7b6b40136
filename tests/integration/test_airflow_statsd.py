"""Airflow 3's StatsD metrics through monitoring/statsd/mapping.yml, from real packets.

The watcher DAG-test jobs of tests/integration/test_airflow.py run with `[metrics] statsd_on` and
a UDP listener on 127.0.0.1 (tests/statsd_listener.py): a clean pipeline run, and a bad one
followed by dbt_monitoring. Each datagram they caught goes through statsd-exporter's mapping rules
(tests/statsd_mapping.py, itself tested in tests/unit/test_statsd_mapping.py), and the series it
becomes is checked against what Airflow recorded of the same runs.

`airflow dags test` sends only what its tasks' runner sends (task instances, operators): the CLI
process never starts Airflow's own metrics, so no DAG-run duration and no heartbeat. Those come
from the scheduler, the dag-processor and the triggerer, and are proven in
tests/integration/test_airflow_standalone.py, which also checks that every Airflow metric the
dashboard and the alert rules use comes from one of these real packets.
"""

from __future__ import annotations

from collections import Counter

import pytest
import test_airflow  # registers the watcher DAG-test jobs this module reads

from statsd_mapping import MAPPING_FILE, Mapper, map_datagrams, parse_datagram  # tests/statsd_mapping.py

pytestmark = pytest.mark.integration

CLEAN, BAD = "airflow-clean-watcher", "airflow-bad-watcher"
DAGS = ("adventureworks_pipeline", "dbt_monitoring")


@pytest.fixture(scope="module")
def mapper() -> Mapper:
    return Mapper.from_file(MAPPING_FILE)


def _runs(outcome: test_airflow.DagRuns) -> dict[str, dict[str, str | None]]:
    """Task states of each DAG run of the job, by DAG."""
    runs = {"adventureworks_pipeline": outcome.pipeline} | outcome.after
    return {dag_id: result.states for dag_id, result in runs.items() if result is not None}


def _sum(mapper: Mapper, datagrams: tuple[str, ...], name: str, **labels: str) -> float:
    """The value statsd-exporter would export for the series `name{labels}` (counters add up)."""
    total = 0.0
    for datagram in datagrams:
        for event in parse_datagram(datagram):
            series = mapper.map(event)
            if series is not None and series.name == name and dict(series.labels) == labels:
                total += event.value
    return total


@pytest.mark.parametrize("job", [pytest.param(job, marks=pytest.mark.background(job)) for job in (CLEAN, BAD)])
def test_every_packet_is_plain_statsd_and_each_name_has_one_type_and_one_label_set(
    background_outcome: test_airflow.DagRuns, mapper: Mapper, job: str
) -> None:
    datagrams = background_outcome.statsd
    assert len(datagrams) > 100, f"{job}: Airflow sent {len(datagrams)} datagrams: is the statsd package installed?"
    produced = map_datagrams(mapper, datagrams)
    assert produced, job
    for name, pairs in produced.items():
        # What statsd-exporter could not register: one name with two types or two label sets.
        assert len({series.kind for _, series in pairs}) == 1, name
        assert len({tuple(label for label, _ in series.labels) for _, series in pairs}) == 1, name
        # The mapping drops what it does not name, so nothing reaches Prometheus unmapped.
        assert all(series.mapped for _, series in pairs), (name, pairs[0][0])
    # The new-style names arrive without their tags (plain StatsD): dropped, never exported bare.
    bare = [
        event.name
        for datagram in datagrams
        for event in parse_datagram(datagram)
        if event.name in ("airflow.ti.finish", "airflow.ti.start", "airflow.task.duration")
    ]
    assert bare, "Airflow 3.3 sends each metric under its tagless new name too"
    assert all(mapper.map(event) is None for d in datagrams for event in parse_datagram(d) if event.name in bare)


@pytest.mark.parametrize("job", [pytest.param(job, marks=pytest.mark.background(job)) for job in (CLEAN, BAD)])
def test_task_instance_metrics_count_each_task_of_the_runs_by_its_state(
    background_outcome: test_airflow.DagRuns, mapper: Mapper, job: str
) -> None:
    datagrams, runs = background_outcome.statsd, _runs(background_outcome)
    states = Counter(state for tasks in runs.values() for state in tasks.values() if state is not None)
    if job == BAD:
        assert states["failed"] >= 3  # the two test tasks of the pipeline, dbt_monitoring's check
    # Every task that ran is one airflow_task_instance_finished{dag_id,task_id,state}: the task id
    # with Airflow's `__` for the task group's dot.
    for dag_id, tasks in runs.items():
        for task_id, state in tasks.items():
            if state not in ("success", "failed"):
                continue  # skipped and upstream_failed tasks never start
            labels = {"dag_id": dag_id, "task_id": task_id.replace(".", "__"), "state": state}
            assert _sum(mapper, datagrams, "airflow_task_instance_finished", **labels) == 1, labels
            started = {"dag_id": dag_id, "task_id": labels["task_id"]}
            assert _sum(mapper, datagrams, "airflow_task_instance_started", **started) == 1, started
            assert _sum(mapper, datagrams, "airflow_task_duration", **started) > 0, started
    # The unlabelled totals the alert on task failures can use, equal to Airflow's own count.
    assert _sum(mapper, datagrams, "airflow_ti_failures") == states["failed"]
    assert _sum(mapper, datagrams, "airflow_ti_successes") == states["success"]
    if job == BAD:
        failed = {"dag_id": "adventureworks_pipeline", "task_id": "dbt__fct_orders__test", "state": "failed"}
        assert _sum(mapper, datagrams, "airflow_task_instance_finished", **failed) == 1
        assert _sum(mapper, datagrams, "airflow_operator_failures", operator="DbtTestWatcherOperator") == 2


@pytest.mark.background(CLEAN)
def test_a_dag_test_sends_no_dag_run_or_scheduler_metric(background_outcome: test_airflow.DagRuns) -> None:
    # Why the DAG-run and scheduler metrics are proven under `airflow standalone` instead.
    names = {event.name for datagram in background_outcome.statsd for event in parse_datagram(datagram)}
    assert not [name for name in names if name.startswith(("airflow.dagrun.", "airflow.scheduler"))], names
    assert "airflow.ti_successes" in names
