"""The exporter's label cardinality is the project's, never the history's: a store with 50 runs
(passed and failed, tests that failed now and then) gives exactly the label sets of a store with
its latest run alone. Real SQLite stores, read by the collector as a scrape reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dataops.history.records import NodeRecord, PublishRecord, RunRecord, StageRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.ops.exporter import HistoryCollector

START = datetime(2026, 11, 1, tzinfo=UTC)
MODELS = [f"model_{index}" for index in range(17)]
TESTS = [f"not_null on model_{index}.id" for index in range(17)]
SOURCES = ["sales.Customer", "sales.SalesOrderHeader"]


def run(index: int) -> RunRecord:
    failing = index % 7 == 3  # now and then a run fails one test
    started = START + timedelta(hours=index)
    nodes = [NodeRecord(f"model.p.{name}", "model", name, "success", "ok", 0.5) for name in MODELS]
    nodes += [
        NodeRecord(
            f"test.p.t{n}",
            "test",
            name,
            "fail" if failing and n == index % 17 else "pass",
            "error" if failing and n == index % 17 else "ok",
            0.1,
        )
        for n, name in enumerate(TESTS)
    ]
    nodes += [
        NodeRecord(f"source.p.{name}", "source", f"freshness of {name}", "pass", "ok", 0.1, age_seconds=60.0 * index)
        for name in SOURCES
    ]
    nodes += [
        NodeRecord(f"anomaly.volume.{name}", "anomaly", f"volume anomaly of {name}", "pass", "ok", score=0.1 * index)
        for name in ("Sales.Customer", "marts.fct_orders")
    ]
    return RunRecord(
        run_id=f"run-{index:03d}",
        target="dev",
        kind="run",
        trigger=Trigger("cli"),
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        status="failed" if failing else "passed",
        exit_code=1 if failing else 0,
        stages=[StageRecord("build", "ok", 30.0)],
        nodes=nodes,
        row_counts={"Sales.Customer": 1000 + index, "marts.fct_orders": 3000 + index},
        quality_score=0.99,
        publish=PublishRecord(
            "not published" if failing else "published", version=None if failing else index, previous_version=index - 1
        ),
    )


def label_sets(store: HistoryStore) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HistoryCollector(store))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    labels: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in families:
        for sample in family.samples:
            labels.setdefault(sample.name, set()).add(tuple(sorted(sample.labels.items())))
    return labels


def test_labels_of_50_runs_are_those_of_the_latest_run_alone(tmp_path: Path) -> None:
    runs = [run(index) for index in range(50)]
    # The latest passed, and every test that ever failed is one of the project's: still in it.
    assert runs[-1].status == "passed" and sum(r.status == "failed" for r in runs) == 7
    many = HistoryStore(f"sqlite:///{tmp_path / 'many.sqlite'}")
    one = HistoryStore(f"sqlite:///{tmp_path / 'one.sqlite'}")
    for each in runs:
        many.record(each)
    one.record(runs[-1])

    labels = label_sets(many)
    assert labels == label_sets(one)
    assert len(labels["dbt_test_failures_total"]) == len(TESTS)
    assert len(labels["dbt_model_status"]) == len(MODELS) * 3  # success, error, skipped
    assert len(labels["dataops_runs_total"]) == 4
    assert len(labels["dataops_anomaly_score"]) == 2
    # Series of a single target: no label holds a run id, a time or a count.
    every_value = {value for sets in labels.values() for labelled in sets for _, value in labelled}
    assert not any(value.startswith("run-") for value in every_value)
