"""The real pipeline, end to end: real dbt, a real DuckDB file, generated and real data."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pyarrow.compute as pc
import pytest

from dataops.commands.load import load_tables
from dataops.commands.query import run_query
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings
from dataops.history.store import HistoryStore
from dataops.sources.generate import generate_tables

pytestmark = pytest.mark.integration

MODELS = 17
UNIT_TESTS = 3


def _scalar(settings: Settings, sql: str) -> object:
    return run_query(settings, sql).rows[0][0]


def test_generated_data_builds_clean_and_fresh(settings: Settings) -> None:
    summary = Pipeline(settings).run(RunOptions(scale=0.1))

    assert summary.exit_code == 0
    assert summary.findings == [], summary.findings
    assert [s.name for s in summary.stages] == ["load", "parse", "freshness", "build", "quality", "docs", "publish"]
    assert {s.status for s in summary.stages} == {"ok"}
    # The first run of a target publishes v1: there is nothing to compare it with yet.
    assert summary.publish is not None
    assert (summary.publish.status, summary.publish.version, summary.publish.previous_version) == ("published", 1, None)
    assert len(summary.freshness) == 10
    assert {o.status for o in summary.freshness} == {"pass"}
    counts = summary.counts
    assert (counts.models_built, counts.models_errored) == (MODELS, 0)
    assert counts.tests_passed > 80 and counts.tests_failed == counts.tests_warned == 0
    assert counts.unit_tests_passed == UNIT_TESTS
    assert (summary.quality.expectations_passed, summary.quality.expectations_failed) == (12, 0)
    assert summary.quality_score == 1.0

    customers = _scalar(settings, 'select count(*) from "Sales"."Customer"')
    # `marts.*` is what consumers read: the published version, equal to the candidate just built.
    assert _scalar(settings, "select count(*) from marts.customer_analytics") == customers
    assert _scalar(settings, "select sum(lifetime_value) from marts.customer_analytics") == _scalar(
        settings, 'select sum("TotalDue") from "Sales"."SalesOrderHeader"'
    )
    from dataops.warehouse import connect

    [version] = connect(settings).versions()
    assert (version.number, version.current, version.run_id) == (1, True, summary.run_id)
    assert version.row_counts["marts.customer_analytics"] == customers

    artifacts = settings.artifacts_dir
    # The catalog was generated from the candidate before it became the version: every mart in it.
    catalog = json.loads((artifacts / "dbt" / "catalog.json").read_text(encoding="utf-8"))
    described = {node["metadata"]["name"] for node in catalog["nodes"].values() if node["columns"]}
    marts = {"customer_analytics", "fct_orders", "fct_order_lines", "dim_products", "dim_territories"}
    assert marts <= described, described
    assert (artifacts / "dbt" / "index.html").exists()
    record = HistoryStore().get(summary.run_id)
    assert record is not None and (record.status, record.exit_code) == ("passed", 0)
    assert record.publish is not None and (record.publish.status, record.publish.version) == ("published", 1)
    assert record.finished_at is not None and record.finished_at >= record.started_at
    # Every node's result: models, tests, unit tests, source freshness and expectations.
    kinds = {kind: record.count(kind) for kind in ("model", "test", "unit_test", "source", "expectation")}
    assert kinds == {
        "model": MODELS,
        "test": counts.tests_passed,
        "unit_test": UNIT_TESTS,
        "source": 10,
        "expectation": 12,
    }
    assert {node.level for node in record.nodes if node.kind != "anomaly"} == {"ok"}
    # The target's first run: each anomaly check (a source table or mart's rows, a source's age) has
    # no history to be judged against.
    anomalies = {node.unique_id: node.status for node in record.nodes if node.kind == "anomaly"}
    assert len(anomalies) == len(record.row_counts) + 10, sorted(anomalies)
    assert set(anomalies.values()) == {"not enough history"}
    # Each source's age at the check, as freshness judged it: generated data is dated up to now.
    ages = {node.name: node.age_seconds for node in record.nodes if node.kind == "source"}
    assert len(ages) == 10 and all(age is not None and 0 <= age < 400 * 86400 for age in ages.values()), sorted(
        ages.items(), key=lambda item: -(item[1] or 0)
    )
    assert record.row_counts["marts.customer_analytics"] == customers
    assert record.row_counts["Sales.Customer"] == customers
    assert record.quality_score == 1.0 and record.git_commit


def test_real_adventureworks_data(settings: Settings, real_data_dir: Path) -> None:
    summary = Pipeline(settings).run(RunOptions(data_dir=real_data_dir, docs=False))

    assert summary.exit_code == 0
    assert summary.failures == []
    # Warnings never stop a publish: the marts queried below are the published v1.
    assert summary.publish is not None and (summary.publish.status, summary.publish.version) == ("published", 1)
    warnings = {f.check: f.message for f in summary.warnings}
    # The customer suite's e-mail expectation reports the accented addresses of customers, and
    # nothing else in either suite fails: 41 of the 43 belong to customers, the other two to
    # people who never bought (an employee and a vendor contact).
    quality = summary.quality
    assert (quality.expectations_passed, quality.expectations_warned, quality.expectations_failed) == (11, 1, 0)
    assert warnings["expect_column_values_to_match_regex on customer_analytics.email"].startswith(
        "41 unexpected of 19,820"
    )
    assert 0.9 < (summary.quality_score or 0) < 1
    assert summary.counts.models_built == MODELS
    # The 43 real addresses with accented letters, 41 of which belong to customers.
    assert warnings["matches_regex on stg_email_addresses.email_address"] == "43 failing rows"
    assert warnings["matches_regex on customer_analytics.email"] == "41 failing rows"
    # The sample stops in 2014: every source is stale, reported by name, a warning in dev.
    for source in ("sales.Customer", "sales.SalesOrderHeader", "person.Person", "production.Product"):
        assert "days old" in warnings[f"freshness of {source}"]
    assert {o.level for o in summary.freshness} == {"warn"}
    # A stale table is one finding about the whole table, with its age, not "1 failing row".
    for model in ("stg_orders", "stg_customers"):
        stale = re.fullmatch(
            r"the whole table is stale: its newest modified_at is ([\d,]+) days old \(must be within 7 days\)",
            warnings[f"recency on {model}.modified_at"],
        )
        assert stale and int(stale.group(1).replace(",", "")) > 4_000, warnings[f"recency on {model}.modified_at"]

    rows, total, ordered, without_email = run_query(
        settings,
        "select count(*), sum(lifetime_value), count(*) filter (where order_count > 0), "
        "count(*) filter (where email is null) from marts.customer_analytics",
    ).rows[0]
    assert rows == 19_820
    assert total == Decimal("123216786.1159")
    assert ordered == 19_119
    # The 701 stores without a contact person have no e-mail and no orders.
    assert without_email == 701
    assert (
        _scalar(settings, "select count(*) from marts.customer_analytics where person_id is null and order_count = 0")
        == 701
    )


def test_bad_data_fails_the_run_and_names_the_check(settings: Settings) -> None:
    from dataops.sources.faults import inject

    # One order negated consistently (totals and lines agree), so only the revenue rule is broken.
    tables = inject(generate_tables(0.05, seed=7), ["negative_total"], seed=7)
    load_tables(settings, tables, "generated data with one negative order")

    summary = Pipeline(settings).run(RunOptions(docs=False))

    assert summary.exit_code == 1
    failed = {f.check: f.message for f in summary.failures}
    # The order and each of its lines count as a failing row of the same rule.
    assert list(failed) == ["assert_no_negative_revenue"]
    assert failed["assert_no_negative_revenue"].endswith("failing rows")
    stages = [(s.name, s.status) for s in summary.stages]
    assert stages == [
        ("load", "ok"),
        ("parse", "ok"),
        ("freshness", "ok"),
        ("build", "failed"),
        ("quality", "skipped"),
        ("publish", "skipped"),
    ]
    # Nothing reaches consumers: the run says which check stopped the publish, and no version exists.
    assert summary.publish is not None and summary.publish.status == "not published"
    assert summary.publish.reason == "not published: stopped by assert_no_negative_revenue"
    assert (summary.publish.version, summary.publish.previous_version) == (None, None)
    from dataops.warehouse import connect

    assert connect(settings).versions() == []
    assert not settings.duckdb_path.with_name("dev_published.duckdb").exists()


def test_a_failed_load_leaves_the_previous_tables_intact(settings: Settings) -> None:
    from dataops.core.errors import DataOpsError
    from dataops.warehouse import connect

    good = generate_tables(0.02, seed=1)
    load_tables(settings, good, "good data")
    warehouse = connect(settings)
    before = warehouse.row_counts(list(good))

    bad = generate_tables(0.05, seed=2)
    # The third table breaks a NOT NULL rule after two tables have already been replaced.
    third = list(bad)[2]
    column = bad[third].column("SalesOrderID")
    bad[third] = bad[third].set_column(
        0, bad[third].schema.field(0), pc.if_else(pc.equal(column, column[5]), None, column)
    )
    with pytest.raises(DataOpsError, match=f"loading {third} .* nothing was changed"):
        load_tables(settings, bad, "bad data")

    assert warehouse.row_counts(list(good)) == before


KILLED_LOADER = """
import sys, time
from pathlib import Path
from dataops.sources.generate import generate_tables
from dataops.history.store import HistoryStore
from dataops.warehouse.duckdb import DuckDBWarehouse

def hold_after_second(name: str) -> None:
    print(name, flush=True)
    if name == "Sales.SalesOrderDetail":
        time.sleep(120)  # the test kills us here, mid-transaction

DuckDBWarehouse(Path(sys.argv[1]), on_table_loaded=hold_after_second).replace_source_tables(
    generate_tables(0.05, seed=3)
)
"""


def test_a_load_killed_half_way_leaves_the_previous_tables_intact(settings: Settings) -> None:
    import signal
    import subprocess
    import sys

    from dataops.warehouse import connect

    good = generate_tables(0.02, seed=1)
    load_tables(settings, good, "good data")
    before = connect(settings).row_counts(list(good))
    load_id = connect(settings).source_load()
    assert load_id is not None

    loader = subprocess.Popen(
        [sys.executable, "-c", KILLED_LOADER, str(settings.duckdb_path)], stdout=subprocess.PIPE, text=True
    )
    assert loader.stdout is not None
    written = [loader.stdout.readline().strip() for _ in range(3)]
    assert written == ["Sales.Customer", "Sales.SalesOrderHeader", "Sales.SalesOrderDetail"]
    loader.send_signal(signal.SIGKILL)
    loader.wait(timeout=30)

    assert connect(settings).row_counts(list(good)) == before
    # The load's id is part of its transaction: the killed load left the previous one.
    assert connect(settings).source_load() == load_id
