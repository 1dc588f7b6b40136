"""The Great Expectations suites run in the warehouse and say what they found."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import PROJECT_ROOT, Settings, load_settings
from dataops.core.errors import DataOpsError, InternalError
from dataops.history.records import SAMPLE_ROWS
from dataops.quality.suites import QualityReport, QualityWorker, run_quality
from dataops.sources.generate import generate_tables

pytestmark = pytest.mark.integration


def _in_warehouse(folder: Path) -> tuple[pytest.MonkeyPatch, Settings]:
    """The dev target on its own warehouse folder, for fixtures that outlive one test."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(folder))
    patch.delenv("DATAOPS_DUCKDB_PATH", raising=False)
    patch.delenv("DATAOPS_TARGET", raising=False)
    return patch, load_settings("dev")


def _copy_warehouse(source: Path, settings: Settings) -> Settings:
    """The warehouse file and the candidate marts' file beside it (each with its WAL, if any)."""
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    candidate = source.with_name(settings.duckdb_candidate_path.name)
    for origin, copy in ((source, settings.duckdb_path), (candidate, settings.duckdb_candidate_path)):
        for suffix in ("", ".wal"):
            if Path(f"{origin}{suffix}").exists():
                shutil.copy(f"{origin}{suffix}", f"{copy}{suffix}")
    assert settings.duckdb_candidate_path.exists(), "the candidate marts were not built"
    return settings


@pytest.fixture(scope="module")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The marts built once for the module (the pipeline takes seconds); each test gets a copy."""
    patch, settings = _in_warehouse(tmp_path_factory.mktemp("quality-marts") / "warehouse")
    try:
        load_tables(settings, generate_tables(0.1, seed=5), "generated data")
        summary = Pipeline(settings).run(RunOptions(docs=False, quality=False))
        assert summary.exit_code == 0, summary.findings
        yield settings.duckdb_path
    finally:
        patch.undo()


@pytest.fixture
def built(settings: Settings, built_warehouse: Path) -> Settings:
    return _copy_warehouse(built_warehouse, settings)


def _edited_gx_dir(tmp_path: Path, relative: str, change: Callable[[dict[str, Any]], object]) -> Path:
    gx_dir = Path(shutil.copytree(PROJECT_ROOT / "gx", tmp_path / "gx"))
    document = json.loads((gx_dir / relative).read_text(encoding="utf-8"))
    change(document)
    (gx_dir / relative).write_text(json.dumps(document), encoding="utf-8")
    return gx_dir


def test_suites_pass_on_clean_data_and_keep_the_run_record_and_data_docs(built: Settings) -> None:
    report = run_quality(built, run_id="test-run")

    assert {o.suite for o in report.outcomes} == {"customer_quality_suite", "order_quality_suite"}
    assert (report.passed, report.warned, report.failed, report.verdict) == (12, 0, 0, "passed")
    row_counts = {
        o.model: o.observed for o in report.outcomes if o.expectation == "expect_table_row_count_to_be_between"
    }
    assert row_counts["customer_analytics"] > 1000 and row_counts["fct_orders"] > 1000
    assert report.results_path is not None and report.results_path.name == "test-run.json"
    saved = json.loads(report.results_path.read_text())
    assert (saved["run_id"], saved["verdict"], saved["passed"], saved["target"]) == ("test-run", "passed", 12, "dev")
    assert saved["great_expectations"]["success"] is True
    assert report.data_docs_index is not None and "test-run" in report.data_docs_index.read_text()


def test_one_suite_can_run_alone_and_an_unknown_one_is_named(built: Settings) -> None:
    report = run_quality(built, suites=["order_quality_suite"])
    assert {o.suite for o in report.outcomes} == {"order_quality_suite"} and len(report.outcomes) == 7
    with pytest.raises(DataOpsError, match="unknown suite nope: choose from customer_quality_suite"):
        run_quality(built, suites=["nope"])


def test_a_failed_critical_expectation_is_an_error_with_its_numbers(built: Settings) -> None:
    # Break the mart behind dbt's back: the expectations must see it without dbt's help. They check
    # the candidate dbt built (marts__candidate, in its own file), which a run publishes only if they pass.
    mart = f"{built.candidate_schema}.fct_orders"
    with duckdb.connect(str(built.duckdb_candidate_path)) as connection:
        connection.execute(f"update {mart} set total_due = -1 where order_id % 100 = 0")
        broken, total = connection.execute(
            f"select count(*) filter (where total_due < 0), count(*) from {mart}"
        ).fetchone()
    assert broken > 0

    report = run_quality(built, suites=["order_quality_suite"])
    failed = {f.check: f.message for f in report.findings if f.level == "error"}
    assert list(failed) == ["expect_column_values_to_be_between on fct_orders.total_due"]
    assert failed["expect_column_values_to_be_between on fct_orders.total_due"].startswith(
        f"{broken:,} unexpected of {total:,} (e.g. '-1.0000'"
    )
    assert report.verdict == "failed"
    # The history keeps some of the values GX found (its partial_unexpected_list) with the node.
    [node] = [o.to_node() for o in report.outcomes if o.level == "error"]
    assert node.sample is not None and node.sample.columns == ["total_due"]
    assert node.sample.rows == [["-1.0000"]] * min(SAMPLE_ROWS, broken)


@pytest.fixture(scope="module")
def warned_runs(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[QualityReport]]:
    """Two runs on marts where only the warning-severity e-mail pattern misses."""
    patch, settings = _in_warehouse(tmp_path_factory.mktemp("quality-warned") / "warehouse")
    try:
        _copy_warehouse(built_warehouse, settings)
        with duckdb.connect(str(settings.duckdb_candidate_path)) as connection:
            connection.execute(
                f"update {settings.candidate_schema}.customer_analytics set email = 'no address' "
                "where customer_id % 50 = 0"
            )
        yield [run_quality(settings, run_id=run_id) for run_id in ("20260301T060000Z-first", "20260301T070000Z-second")]
    finally:
        patch.undo()


def _verdicts(page: Path) -> list[str]:
    return re.findall(r'<span class="verdict [a-z]+">([^<]+)</span>', page.read_text(encoding="utf-8"))


def test_a_warning_only_run_passes_with_warnings_in_the_report_and_the_data_docs(
    warned_runs: list[QualityReport],
) -> None:
    first, second = warned_runs
    assert (first.verdict, first.failed, [f.check for f in first.findings]) == (
        "passed with warnings",
        0,
        ["expect_column_values_to_match_regex on customer_analytics.email"],
    )
    # GX filed its results under our run id, not `__none__`.
    assert first.results_path is not None
    assert json.loads(first.results_path.read_text())["great_expectations"]["run_id"]["run_name"] == first.run_id

    assert second.data_docs_index is not None
    site = second.data_docs_index.parent
    index = second.data_docs_index.read_text(encoding="utf-8")
    assert first.run_id in index and second.run_id in index  # the history is kept
    assert _verdicts(second.data_docs_index)[:2] == ["passed with warnings", "passed with warnings"]
    run_page = site / "runs" / f"{first.run_id}.html"
    assert _verdicts(run_page) == ["passed with warnings", "passed with warnings", "passed"]
    assert "no address" in run_page.read_text(encoding="utf-8")
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'(?:href|src)="(?:https?:)?//', text), page
        for link in re.findall(r'href="([^"]+)"', text):
            assert (page.parent / link).is_file(), f"{page.name} links to {link}, which does not exist"


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it when it runs as root)")
    return browser


def test_the_data_docs_render_in_a_browser_with_no_network(warned_runs: list[QualityReport], tmp_path: Path) -> None:
    """The index and a run page in headless Chromium with every network request refused: tables
    filled, nothing the console complains about."""
    assert warned_runs[1].data_docs_index is not None
    site = warned_runs[1].data_docs_index.parent
    for page, rows in ((site / "index.html", 2 + 2), (site / "runs" / f"{warned_runs[0].run_id}.html", 12)):
        shown = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--proxy-server=127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        body = shown.stdout.split("<tbody>", 1)[-1]
        assert "<tbody>" in shown.stdout and body.count("<tr>") >= rows, shown.stdout[:2000]
        console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]
        assert console == [], console


def test_an_expectation_gx_cannot_build_is_named_not_dropped(built: Settings, tmp_path: Path) -> None:
    """GX's own suite constructor drops such an expectation with a log line and runs the rest."""
    misspelt = _edited_gx_dir(
        tmp_path / "type",
        "expectations/customer_quality_suite.json",
        lambda d: d["expectations"][1].update(type="expect_column_values_to_be_uniqe"),
    )
    with pytest.raises(DataOpsError) as raised:
        run_quality(built, gx_dir=misspelt)
    assert str(raised.value).endswith(
        "customer_quality_suite.json: expectations[1] (expect_column_values_to_be_uniqe): "
        "expect_column_values_to_be_uniqe not found"
    )
    bad_argument = _edited_gx_dir(
        tmp_path / "kwargs",
        "expectations/customer_quality_suite.json",
        lambda d: d["expectations"][2]["kwargs"].update(mostly="most"),
    )
    with pytest.raises(DataOpsError, match=r"expectations\[2\] \(expect_column_values_to_not_be_null\): mostly: "):
        run_quality(built, gx_dir=bad_argument)


def test_two_suites_may_validate_the_same_mart(built: Settings, tmp_path: Path) -> None:
    gx_dir = _edited_gx_dir(
        tmp_path,
        "checkpoints/daily_quality_checkpoint.json",
        lambda d: d["validation_definitions"].append({"name": "customer_keys_suite"}),
    )
    (gx_dir / "expectations" / "customer_keys_suite.json").write_text(
        json.dumps(
            {
                "name": "customer_keys_suite",
                "meta": {"model": "customer_analytics"},
                "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}}],
            }
        )
    )
    report = run_quality(built, gx_dir=gx_dir)
    assert [o.check for o in report.outcomes if o.suite == "customer_keys_suite"] == [
        "expect_column_values_to_be_unique on customer_analytics.customer_id"
    ]
    assert report.verdict == "passed"


def test_the_worker_process_runs_the_suites_and_reports_errors_by_name(built: Settings) -> None:
    log = built.artifacts_dir / "logs" / "worker.log"
    started = time.time()
    worker = QualityWorker(log)
    report = worker.run(built, suites=["customer_quality_suite"], run_id="worker-run")
    assert (report.passed, report.failed) == (5, 0)
    assert report.results_path is not None and report.results_path.exists()
    # The verdict comes first; the Data Docs of that run follow, and finish() waits for them.
    assert worker.finish() is None
    docs = built.artifacts_dir / "quality" / "data_docs"
    assert (docs / "runs" / "worker-run.html").stat().st_mtime >= started
    with pytest.raises(DataOpsError, match="unknown suite nope"):
        QualityWorker(log).run(built, suites=["nope"])
    idle = QualityWorker(log)
    assert idle.finish() is None  # a run whose build failed never asks it anything
    assert idle._process.returncode is not None


def test_a_crash_in_the_worker_is_an_internal_error_whose_traceback_is_in_the_log(
    built: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A half-upgraded Great Expectations: the worker imports it, and fails, for real."""
    broken = tmp_path / "broken-install" / "great_expectations"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'ExpectationSuite' (a half-upgraded install)\")\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(broken.parent), os.environ.get("PYTHONPATH")])))
    log = built.artifacts_dir / "logs" / "quality_worker.log"
    worker = QualityWorker(log)
    with pytest.raises(InternalError) as raised:
        worker.run(built, run_id="crash-run")
    message = str(raised.value)
    assert message == (
        "the quality checks crashed: ImportError: cannot import name 'ExpectationSuite' (a half-upgraded install)"
    )
    assert not isinstance(raised.value, DataOpsError) and raised.value.log == log
    logged = log.read_text()
    assert "the quality checks crashed:\nTraceback (most recent call last):" in logged
    assert "in validate" in logged and logged.rstrip().endswith("(a half-upgraded install)")
    # The next run's worker adds to the log: the traceback the error named is still there.
    QualityWorker(log).finish()
    after = log.read_text()
    assert after.startswith(logged) and after.count(" quality worker of dataops pid ") == 2


def test_a_worker_that_dies_without_answering_is_an_internal_error_naming_its_log(settings: Settings) -> None:
    log = settings.artifacts_dir / "logs" / "quality_worker.log"
    worker = QualityWorker(log)
    os.kill(worker._process.pid, signal.SIGKILL)
    worker._process.wait()
    with pytest.raises(InternalError) as raised:
        worker.run(settings)
    assert str(raised.value) == "the quality worker stopped without an answer (killed by SIGKILL)"
    assert raised.value.log == log


def test_the_warm_up_runs_every_expectation_on_look_alike_tables_without_an_error() -> None:
    """The worker warms GX up on empty tables shaped after the suites: were a column typed wrong,
    the checks would error there, and the real run would start cold again."""
    from dataops.quality.config import suite_documents
    from dataops.quality.suites import warm_up

    report = warm_up()
    expected = sum(len(suite.expectations) for suite in suite_documents().values())
    assert len(report.outcomes) == expected
    assert [(o.check, o.error) for o in report.outcomes if o.error] == []
