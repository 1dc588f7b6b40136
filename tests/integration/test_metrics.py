"""`dataops metrics --format json` on a history of real runs in a copy of the project (its own git
repository): a scale-0.1 `dataops run`, three real `dataops deploy`s of three commits, an incident
opened after the first deploy and resolved 90 minutes later, and a real `dataops rollback` after the
second. The test computes every figure again from the records it made, not through dataops.ops.metrics."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import background  # tests/background.py, loaded by tests/conftest.py
from dataops.history.records import IncidentRecord, RunRecord
from dataops.history.store import HistoryStore
from project_copy import DATAOPS, copy_project  # tests/project_copy.py

JOB = "metrics-history"
pytestmark = [pytest.mark.integration, pytest.mark.background(JOB)]

EDITED = Path("dbt/models/staging/sales/stg_territories.sql")
NAME_COLUMN = '"Name" as territory_name'
UPPER_NAMES = 'upper("Name") as territory_name'
RATE = 0.5  # the cost of one CPU hour
WINDOW_DAYS = 30


@dataclass
class History:
    runs: list[RunRecord]  # every record, oldest first
    incident: IncidentRecord
    metrics: dict[str, Any]
    table: str


@background.job(JOB)
def _build_history(root: Path) -> background.Run:
    """The copy is made now, with the environment the session started with; its commands run in
    the background (tests/background.py), beside the other tests."""
    copy = copy_project(root, "Mo Metrics", "mo@example.com", DATAOPS_COST_PER_CPU_HOUR=str(RATE))

    def dataops(*args: str) -> subprocess.CompletedProcess[str]:
        done = copy.dataops(*args)
        assert done.returncode == 0, f"dataops {' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done

    def commit(old: str, new: str, message: str) -> None:
        path = root / EDITED
        path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        copy.git("add", "dbt")
        copy.git("commit", "-q", "-m", message)

    def build() -> History:
        store = copy.history
        dataops("load", "--scale", "0.1", "--target", "ci")
        dataops("run", "--target", "ci", "--no-docs")
        dataops("deploy", "--target", "ci")
        first = store.latest("ci", kind="deploy")
        assert first is not None and first.finished_at is not None
        incident = IncidentRecord(
            "2026-12-02-territories",
            "ci",
            "Territory names wrong",
            "major",
            first.finished_at + timedelta(seconds=1),
            run_id=first.run_id,
            resolved_at=first.finished_at + timedelta(seconds=1, minutes=90),
        )
        store.record_incident(incident)
        commit(NAME_COLUMN, UPPER_NAMES, "feat(models): territory names in capitals")
        dataops("deploy", "--target", "ci")
        dataops("rollback", "--target", "ci")
        commit(UPPER_NAMES, NAME_COLUMN, "revert: territory names as they are")
        dataops("deploy", "--target", "ci")
        rows = store.runs("ci", limit=100)
        runs = [store.get(row.run_id) for row in reversed(rows)]
        assert all(r is not None for r in runs)
        document = json.loads(dataops("metrics", "--target", "ci", "--format", "json").stdout)
        table = dataops("metrics", "--target", "ci").stdout
        return History([r for r in runs if r is not None], incident, document, table)

    return build


@pytest.fixture(scope="module")
def history(background_jobs: Any) -> History:
    return background_jobs.result(JOB)


def _pipeline(history: History) -> list[RunRecord]:
    return [r for r in history.runs if r.kind in ("run", "deploy") and r.finished_at is not None]


def _deployed(history: History) -> list[RunRecord]:
    return [r for r in history.runs if r.deployment is not None and r.deployment.outcome == "deployed"]


def test_the_history_is_what_the_test_made(history: History) -> None:
    assert [r.kind for r in history.runs] == ["run", "deploy", "deploy", "rollback", "deploy"]
    assert [r.status for r in history.runs] == ["passed"] * 5
    assert len(_deployed(history)) == 3
    assert history.metrics["format"] == "dataops.metrics/v1" and history.metrics["target"] == "ci"
    assert history.metrics["pipeline_runs"] == 4


def test_deployment_frequency_lead_time_and_change_failure_rate(history: History) -> None:
    metrics = history.metrics["metrics"]
    deployed = _deployed(history)
    frequency = metrics["deployment_frequency"]
    assert frequency["deployments"] == 3
    assert frequency["value"] == pytest.approx(3 / WINDOW_DAYS)
    assert frequency["per_week"] == pytest.approx(3 / WINDOW_DAYS * 7)
    leads = []
    for record in deployed:
        assert record.deployment is not None and record.deployment.commit_time and record.finished_at
        leads.append((record.finished_at - datetime.fromisoformat(record.deployment.commit_time)).total_seconds())
    assert metrics["lead_time_for_changes"]["value"] == pytest.approx(statistics.median(leads))
    # The first deploy is followed by the incident, the second by the rollback; the third by nothing.
    rollback = next(r for r in history.runs if r.kind == "rollback")
    assert deployed[0].finished_at < history.incident.opened_at < deployed[1].started_at  # type: ignore[operator]
    assert deployed[1].finished_at < rollback.started_at < deployed[2].started_at  # type: ignore[operator]
    failure = metrics["change_failure_rate"]
    assert (failure["value"], failure["deployments"], failure["failed"]) == (pytest.approx(2 / 3), 3, 2)
    assert failure["failed_runs"] == [deployed[0].run_id, deployed[1].run_id]


def test_time_to_restore_and_incident_frequency(history: History) -> None:
    metrics = history.metrics["metrics"]
    assert metrics["time_to_restore"]["value"] == pytest.approx(90 * 60)
    assert (metrics["time_to_restore"]["resolved"], metrics["time_to_restore"]["still_open"]) == (1, 0)
    assert metrics["incident_frequency"]["value"] == pytest.approx(1 / WINDOW_DAYS * 7)
    assert metrics["incident_frequency"]["by_severity"] == {"major": 1}


def test_execution_time_quality_resources_and_cost(history: History) -> None:
    metrics = history.metrics["metrics"]
    runs = _pipeline(history)
    seconds = sorted(r.seconds for r in runs if r.seconds is not None)
    assert len(seconds) == 4
    execution = metrics["pipeline_execution_time"]
    assert execution["p50"] == pytest.approx(seconds[math.ceil(0.5 * 4) - 1])
    assert execution["p95"] == pytest.approx(seconds[math.ceil(0.95 * 4) - 1]) == pytest.approx(max(seconds))
    scores = [r.quality_score for r in runs if r.quality_score is not None]
    assert len(scores) == 4
    quality = metrics["data_quality_score"]
    assert quality["value"] == pytest.approx(sum(scores) / 4)
    assert (quality["latest"], quality["trend"]) == (pytest.approx(scores[-1]), pytest.approx(scores[-1] - scores[0]))
    cpu = [r.cpu_seconds for r in runs if r.cpu_seconds is not None]
    memory = [r.peak_memory_bytes for r in runs if r.peak_memory_bytes is not None]
    assert len(cpu) == len(memory) == 4 and min(cpu) > 0
    use = metrics["resource_use"]
    assert use["cpu_seconds"] == pytest.approx(sum(cpu) / 4)
    assert use["max_peak_memory_bytes"] == max(memory)
    assert use["mean_peak_memory_bytes"] == pytest.approx(sum(memory) / 4)
    cost = metrics["cost_per_run"]
    assert cost["available"] and cost["value"] == pytest.approx(sum(cpu) / 4 / 3600 * RATE)


def test_test_and_documentation_coverage_come_from_the_last_deploys_manifest(history: History) -> None:
    metrics = history.metrics["metrics"]
    last = history.runs[-1]
    assert last.deployment is not None and last.deployment.artifacts
    path = Path(last.deployment.artifacts) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    models = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["package_name"] == "adventureworks"
    }
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    tested = {p for t in tests for p in t["depends_on"]["nodes"] if p in models}
    columns = [(uid, c.lower()) for uid, n in models.items() for c in n["columns"]]
    tested_columns = {(t["attached_node"], t["column_name"].lower()) for t in tests if t.get("column_name")}
    coverage = metrics["test_coverage"]
    assert coverage["manifest"] == str(path)
    assert (coverage["models"], coverage["models_tested"]) == (len(models), len(tested))
    assert coverage["value"] == pytest.approx(len(tested) / len(models))
    assert coverage["columns_tested"] == sum(1 for c in columns if c in tested_columns) > 0
    described = sum(1 for n in models.values() if n["description"].strip())
    described_columns = sum(1 for n in models.values() for c in n["columns"].values() if c["description"].strip())
    docs = metrics["documentation_coverage"]
    assert (docs["models_described"], docs["columns_described"]) == (described, described_columns)
    assert docs["column_share"] == pytest.approx(described_columns / len(columns))


def test_what_the_history_cannot_answer_is_not_available_and_says_what_it_needs(history: History) -> None:
    metrics = history.metrics["metrics"]
    for name in ("pull_request_review_time", "team_satisfaction"):
        assert metrics[name]["available"] is False and metrics[name]["value"] is None
        assert metrics[name]["needs"]
    assert "pull_request_review_time" in history.table and "not available" in history.table
    assert "change_failure_rate" in history.table and "67%" in history.table


def test_a_bad_window_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(DATAOPS), "metrics", "--since", "a month"],
        env={**os.environ, "DATAOPS_WAREHOUSE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--since 'a month' is not a window" in done.stderr and "Traceback" not in done.stderr


def test_the_exporter_exports_the_same_figures(history: History) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from dataops.ops.exporter import HistoryCollector

    warehouse = Path(history.runs[-1].deployment.artifacts or "").parents[3]  # type: ignore[union-attr]
    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(warehouse))
    patch.setenv("DATAOPS_COST_PER_CPU_HOUR", str(RATE))
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HistoryCollector(HistoryStore(f"sqlite:///{warehouse / 'history.sqlite'}")))
        lines = generate_latest(registry).decode().splitlines()
    finally:
        patch.undo()
    metrics = history.metrics["metrics"]

    def sample(name: str, labels: str = "") -> float:
        prefix = f'{name}{{{labels}target="ci"}} '
        found = [line for line in lines if line.startswith(prefix)]
        assert len(found) == 1, (prefix, [line for line in lines if line.startswith(name)])
        return float(found[0].removeprefix(prefix))

    assert sample("dataops_metric_change_failure_ratio") == pytest.approx(2 / 3)
    assert sample("dataops_metric_deployments_per_day") == pytest.approx(3 / WINDOW_DAYS)
    assert sample("dataops_metric_time_to_restore_seconds") == pytest.approx(90 * 60)
    assert sample("dataops_metric_pipeline_duration_seconds", 'quantile="0.95",') == pytest.approx(
        metrics["pipeline_execution_time"]["p95"]
    )
    assert sample("dataops_metric_test_coverage_ratio", 'of="models",') == pytest.approx(
        metrics["test_coverage"]["value"]
    )
