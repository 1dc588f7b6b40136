"""Every path of an incident's severity, through `open_incident` on a run history of the real
record types written through the real store, with the real project's manifest as the failing run's
lineage: critical when bad data was published or a consumer-facing check failed, major when
consumers keep yesterday's data (a blocked publish, a stale production source), minor when nothing
a consumer sees is hit. Each failing run follows a good one, and each path is on its own history.

The records are what `dataops run` records for each case (tests/integration/test_incidents.py
checks that on real runs): a failing node with its dbt status and level, the publish step's
outcome, or none where the run recorded no publish step (an Airflow run stopped before its
publish task); and one real run, which is cheap here: a stale production source stops the run
at its freshness stage, before anything is built."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import ENVIRONMENTS_FILE, Settings, load_settings
from dataops.history.records import NodeRecord, PublishRecord, RunRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.ops.incidents import open_incident
from dataops.sources.faults import FAULTS, inject
from dataops.sources.generate import generate_tables

pytestmark = pytest.mark.integration

STARTED = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
MART_TEST = "test.adventureworks.assert_no_negative_revenue"
STALE = NodeRecord(
    "source.adventureworks.sales.SalesOrderHeader",
    "source",
    "freshness of sales.SalesOrderHeader",
    "error",
    "error",
    message="newest row 2014-06-30 00:00:00, 4,000 days old (error after 36 hours)",
    age_seconds=4000 * 86400.0,
)
BLOCKED = PublishRecord("not published", previous_version=3, reason="not published: stopped by a failing check")


def _staging_test(manifest: dict[str, Any]) -> str:
    """A data test that reads only staging models: no mart, no exposure depends on what it checks."""
    exposed = {uid for exposure in manifest["exposures"].values() for uid in exposure["depends_on"]["nodes"]}
    for unique_id, node in sorted(manifest["nodes"].items()):
        models = [uid for uid in node["depends_on"].get("nodes", []) if uid.startswith("model.")]
        if node["resource_type"] == "test" and models and all(".stg_" in uid and uid not in exposed for uid in models):
            return unique_id
    raise AssertionError("the project has no test on a staging model")


def _failing(unique_id: str) -> NodeRecord:
    return NodeRecord(unique_id, "test", unique_id.rsplit(".", 1)[-1], "fail", "error", 0.1, failures=3)


def _run(
    run_id: str, started: datetime, status: str, nodes: list[NodeRecord], publish: PublishRecord | None
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        target="ci",
        kind="run",
        trigger=Trigger("cli"),
        started_at=started,
        finished_at=started + timedelta(minutes=2),
        status=status,
        exit_code=0 if status == "passed" else 1,
        nodes=nodes,
        publish=publish,
    )


@pytest.fixture
def ci(warehouse_dir: Path, project_manifest: dict[str, Any]) -> Settings:
    """The ci target, its last run's manifest the real project's (where `_manifest` reads it)."""
    settings = load_settings("ci")
    manifest = settings.artifacts_dir / "dbt" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps(project_manifest), encoding="utf-8")
    return settings


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("published bad data", "critical"),
        ("consumer-facing check", "critical"),
        ("blocked publish", "major"),
        ("stale production source", "major"),
        ("nothing a consumer sees", "minor"),
    ],
)
def test_the_severity_says_how_hard_consumers_are_hit(
    case: str, expected: str, ci: Settings, project_manifest: dict[str, Any], tmp_path: Path
) -> None:
    staging = _failing(_staging_test(project_manifest))
    nodes, publish = {
        # A failing run that published all the same: it never should, and the report says roll back.
        "published bad data": ([staging], PublishRecord("published", version=4, previous_version=3)),
        "consumer-facing check": ([_failing(MART_TEST)], BLOCKED),
        "blocked publish": ([staging], BLOCKED),
        "stale production source": ([STALE], None),
        "nothing a consumer sees": ([staging], None),
    }[case]
    history = HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")
    history.record(_run("20260301T060000Z-good00", STARTED - timedelta(days=1), "passed", [], None))
    history.record(_run("20260302T060000Z-bad000", STARTED, "failed", nodes, publish))
    incident = open_incident(ci, folder=tmp_path / "incidents", history=history)
    assert incident.record.severity == expected
    [kept] = history.incidents("ci")
    assert kept.severity == expected
    report = (tmp_path / "incidents" / f"{kept.incident_id}.md").read_text(encoding="utf-8")
    assert f"**Severity:** {expected}" in report
    facing = [check.node.name for check in incident.failed if check.consumer_facing]
    assert facing == (["assert_no_negative_revenue"] if case == "consumer-facing check" else [])
    assert [node.name for node in incident.stale_sources] == ([STALE.name] if case.startswith("stale") else [])


def test_a_real_run_on_a_stale_production_source_opens_a_major_incident(warehouse_dir: Path, tmp_path: Path) -> None:
    """The ci target as production treats stale data (`stale_data: error`), its sources loaded with
    the stale_source fault: the freshness stage fails, nothing is built, nothing is published."""
    environments = tmp_path / "environments.yml"
    production_like = ENVIRONMENTS_FILE.read_text(encoding="utf-8").replace(
        "  ci:\n    engine: duckdb\n    stale_data: warn", "  ci:\n    engine: duckdb\n    stale_data: error"
    )
    assert production_like != ENVIRONMENTS_FILE.read_text(encoding="utf-8")
    environments.write_text(production_like, encoding="utf-8")
    settings = load_settings("ci", environments_file=environments)
    fault = FAULTS["stale_source"]
    load_tables(settings, inject(generate_tables(0.1, seed=3), [fault.name]), "stale_source")
    history = HistoryStore()
    summary = Pipeline(settings, history=history).run(RunOptions(docs=False, quality=False))
    assert summary.status == "failed"
    assert [(s.name, s.status) for s in summary.stages][:3] == [
        ("load", "ok"),
        ("parse", "ok"),
        ("freshness", "failed"),
    ]

    incident = open_incident(settings, folder=tmp_path / "incidents", history=history)
    assert incident.record.severity == "major"
    assert incident.failed == [] and set(fault.caught_by) <= {node.name for node in incident.stale_sources}
    assert incident.timeline.first_failing.publish is not None
    assert incident.timeline.first_failing.publish.status == "not published"
