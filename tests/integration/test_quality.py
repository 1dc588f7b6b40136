"""The Great Expectations suites run in the warehouse and say what they found."""

from __future__ import annotations

import json
import time

import pytest

from dataops.config import Settings
from dataops.errors import DataOpsError
from dataops.generate import generate_tables
from dataops.load import load_tables
from dataops.pipeline import Pipeline, RunOptions
from dataops.quality import run_quality

pytestmark = pytest.mark.integration


@pytest.fixture
def built(settings: Settings) -> Settings:
    load_tables(settings, generate_tables(0.1, seed=5), "generated data")
    summary = Pipeline(settings).run(RunOptions(docs=False, quality=False))
    assert summary.exit_code == 0, summary.findings
    return settings


def test_suites_pass_on_clean_data_and_keep_results_and_data_docs(built: Settings) -> None:
    report = run_quality(built, run_id="test-run")

    assert {o.suite for o in report.outcomes} == {"customer_quality_suite", "order_quality_suite"}
    assert (report.passed, report.warned, report.failed) == (12, 0, 0)
    row_counts = {
        o.model: o.observed for o in report.outcomes if o.expectation == "expect_table_row_count_to_be_between"
    }
    assert row_counts["customer_analytics"] > 1000 and row_counts["fct_orders"] > 1000
    assert report.results_path is not None and report.results_path.name == "test-run.json"
    saved = json.loads(report.results_path.read_text())
    assert saved["success"] is True
    assert report.data_docs_index is not None and report.data_docs_index.exists()


def test_one_suite_can_run_alone_and_an_unknown_one_is_named(built: Settings) -> None:
    report = run_quality(built, suites=["order_quality_suite"])
    assert {o.suite for o in report.outcomes} == {"order_quality_suite"} and len(report.outcomes) == 7
    with pytest.raises(DataOpsError, match="unknown suite nope: choose from customer_quality_suite"):
        run_quality(built, suites=["nope"])


def test_a_failed_critical_expectation_is_an_error_with_its_numbers(built: Settings) -> None:
    import duckdb

    # Break the mart behind dbt's back: the expectations must see it without dbt's help.
    with duckdb.connect(str(built.duckdb_path)) as connection:
        connection.execute("update marts.fct_orders set total_due = -1 where order_id % 100 = 0")
        broken, total = connection.execute(
            "select count(*) filter (where total_due < 0), count(*) from marts.fct_orders"
        ).fetchone()
    assert broken > 0

    report = run_quality(built, suites=["order_quality_suite"])
    failed = {f.check: f.message for f in report.findings if f.level == "error"}
    assert list(failed) == ["expect_column_values_to_be_between on fct_orders.total_due"]
    assert failed["expect_column_values_to_be_between on fct_orders.total_due"].startswith(
        f"{broken:,} unexpected of {total:,} (e.g. '-1.0000'"
    )


def test_the_worker_process_runs_the_suites_and_reports_errors_by_name(built: Settings) -> None:
    from dataops.quality import QualityWorker

    log = built.artifacts_dir / "logs" / "worker.log"
    started = time.time()
    worker = QualityWorker(log)
    report = worker.run(built, suites=["customer_quality_suite"], run_id="worker-run")
    assert (report.passed, report.failed) == (5, 0)
    assert report.results_path is not None and report.results_path.exists()
    # The verdict comes first; the Data Docs of that run follow, and finish() waits for them.
    assert worker.finish() is None
    docs = built.artifacts_dir / "quality" / "data_docs"
    assert any(page.stat().st_mtime >= started for page in (docs / "validations").rglob("*.html"))
    with pytest.raises(DataOpsError, match="unknown suite nope"):
        QualityWorker(log).run(built, suites=["nope"])
    idle = QualityWorker(log)
    assert idle.finish() is None  # a run whose build failed never asks it anything
    assert idle._process.returncode is not None


def test_the_warm_up_runs_every_expectation_on_look_alike_tables_without_an_error() -> None:
    """The worker warms GX up on empty tables shaped after the suites: were a column typed wrong,
    the checks would error there, and the real run would start cold again."""
    from dataops.quality import suite_documents, warm_up

    report = warm_up()
    expected = sum(len(document["expectations"]) for document in suite_documents().values())
    assert len(report.outcomes) == expected
    assert [(o.check, o.error) for o in report.outcomes if o.error] == []
