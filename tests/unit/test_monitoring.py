"""dataops.monitoring on dbt artifacts: small files shaped like the real ones (trimmed from a
`dataops run` with injected faults), then the real artifacts of a real run."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataops.config import Settings
from dataops.errors import DataOpsError
from dataops.findings import Finding
from dataops.monitoring import check_artifacts, check_run_results, check_source_freshness, monitor

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
PROJECT = "adventureworks"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as dbt writes it


def _metadata(kind: str, generated_at: datetime) -> dict[str, Any]:
    return {
        "dbt_schema_version": f"https://schemas.getdbt.com/dbt/{kind}.json",
        "dbt_version": "1.11.16",
        "generated_at": _stamp(generated_at),
        "invocation_id": "00007203-088f-4be9-8f8b-eb858ba63583",
        "invocation_started_at": _stamp(generated_at - timedelta(seconds=3)),
        "env": {},
    }


def node(unique_id: str, status: str, message: str | None = None, failures: int | None = None) -> dict[str, Any]:
    """One entry of run_results.json's `results`, as dbt 1.11 writes it (compiled SQL left out)."""
    return {
        "status": status,
        "timing": [],
        "thread_id": "Thread-9 (worker)",
        "execution_time": 0 if status == "skipped" else 0.18,
        "adapter_response": {} if status == "skipped" else {"_message": "OK"},
        "message": message,
        "failures": failures,
        "unique_id": unique_id,
        "compiled": status != "skipped",
        "relation_name": None,
        "batch_results": None,
    }


def source(table: str, status: str, age_hours: float = 1.0, warn: int = 6, error: int = 12) -> dict[str, Any]:
    """One entry of sources.json's `results`; `table` is "<source>.<table>"."""
    loaded = NOW - timedelta(hours=age_hours)
    return {
        "unique_id": f"source.{PROJECT}.{table}",
        "max_loaded_at": loaded.isoformat(),
        "snapshotted_at": NOW.isoformat(),
        "max_loaded_at_time_ago_in_s": age_hours * 3600,
        "status": status,
        "criteria": {
            "warn_after": {"count": warn, "period": "hour"},
            "error_after": {"count": error, "period": "hour"},
            "filter": None,
        },
        "adapter_response": {"_message": "OK"},
        "timing": [],
        "thread_id": "Thread-5 (worker)",
        "execution_time": 0.0126,
    }


CLEAN_RESULTS = [
    node(f"model.{PROJECT}.stg_orders", "success", "OK"),
    node(f"model.{PROJECT}.fct_orders", "success", "OK"),
    node(f"test.{PROJECT}.unique_stg_orders_order_id.e3b841c71a", "pass", failures=0),
    node(f"test.{PROJECT}.assert_no_duplicate_orders", "pass", failures=0),
    node(f"unit_test.{PROJECT}.int_customer_metrics.lifetime_value_sums_total_due_exactly", "pass", failures=0),
]
CLEAN_SOURCES = [source("sales.Customer", "pass"), source("sales.SalesOrderHeader", "pass")]
# The manifest's nodes, only the fields that name a generic test.
MANIFEST_NODES = {
    f"test.{PROJECT}.unique_stg_orders_order_id.e3b841c71a": {
        "name": "unique_stg_orders_order_id",
        "resource_type": "test",
        "test_metadata": {"name": "unique", "kwargs": {"column_name": "order_id"}, "namespace": None},
        "attached_node": f"model.{PROJECT}.stg_orders",
        "column_name": "order_id",
    },
    f"test.{PROJECT}.matches_regex_stg_email_addresses_email_address.664bc0161c": {
        "name": "matches_regex_stg_email_addresses_email_address",
        "resource_type": "test",
        "test_metadata": {"name": "matches_regex", "kwargs": {}, "namespace": None},
        "attached_node": f"model.{PROJECT}.stg_email_addresses",
        "column_name": "email_address",
    },
    f"test.{PROJECT}.assert_no_duplicate_orders": {
        "name": "assert_no_duplicate_orders",
        "resource_type": "test",
        "test_metadata": None,
        "attached_node": None,
        "column_name": None,
    },
}


def write_run_results(
    folder: Path, results: list[dict[str, Any]], generated_at: datetime = NOW, which: str = "build"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run_results.json"
    document = {
        "metadata": _metadata("run-results/v6", generated_at),
        "results": results,
        "elapsed_time": 2.74,
        "args": {"which": which, "target": "dev", "threads": 4},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_sources(folder: Path, results: list[dict[str, Any]], generated_at: datetime = NOW) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.json"
    document = {"metadata": _metadata("sources/v3", generated_at), "results": results, "elapsed_time": 0.35}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_manifest(folder: Path) -> Path:
    path = folder / "manifest.json"
    path.write_text(json.dumps({"metadata": {}, "nodes": MANIFEST_NODES, "sources": {}}), encoding="utf-8")
    return path


def settings_for(warehouse: Path, stale_data: str, target: str = "dev") -> Settings:
    return Settings(target=target, engine="duckdb", stale_data=stale_data, threads=1, warehouse_dir=warehouse)  # type: ignore[arg-type]


# (a) errored model


def test_an_errored_model_is_an_error_named_by_the_model_and_its_skipped_dependants_are_not_reported(
    tmp_path: Path,
) -> None:
    path = write_run_results(tmp_path, [
        node(
            f"model.{PROJECT}.stg_orders",
            "error",
            "Runtime Error in model stg_orders (models/staging/sales/stg_orders.sql)\n"
            '  Binder Error: Referenced column "TotalDue" not found in FROM clause!',
        ),
        node(f"model.{PROJECT}.fct_orders", "skipped"),
        node(f"test.{PROJECT}.unique_stg_orders_order_id.e3b841c71a", "skipped"),
        node(f"model.{PROJECT}.stg_customers", "success", "OK"),
    ])

    assert check_run_results(path) == [
        Finding(
            "error",
            "model stg_orders",
            "Runtime Error in model stg_orders (models/staging/sales/stg_orders.sql) "
            'Binder Error: Referenced column "TotalDue" not found in FROM clause!',
        )
    ]


# (b) stale sources: the environment's policy decides


STALE_SOURCES = [
    source("sales.Customer", "error", age_hours=30 * 24),
    source("sales.Store", "warn", age_hours=8),
    source("sales.SalesOrderHeader", "pass"),
    {"unique_id": f"source.{PROJECT}.person.Person", "error": "Catalog Error: Table Person does not exist!",
     "status": "runtime error"},
]


def test_a_stale_source_is_an_error_where_stale_data_is_an_error(tmp_path: Path) -> None:
    path = write_sources(tmp_path, STALE_SOURCES)

    assert check_source_freshness(path, "error") == [
        Finding("error", "freshness of sales.Customer",
                f"newest row {(NOW - timedelta(days=30)):%Y-%m-%d %H:%M:%S}, 30 days old (error after 12 hours)"),
        Finding("warn", "freshness of sales.Store",
                f"newest row {(NOW - timedelta(hours=8)):%Y-%m-%d %H:%M:%S}, 8.0 hours old (warn after 6 hours)"),
        Finding("error", "freshness of person.Person", "Catalog Error: Table Person does not exist!"),
    ]


def test_a_stale_source_is_a_warning_in_dev_but_a_source_dbt_cannot_read_is_always_an_error(tmp_path: Path) -> None:
    path = write_sources(tmp_path, STALE_SOURCES)

    levels = {f.check: f.level for f in check_source_freshness(path, "warn")}

    assert levels == {
        "freshness of sales.Customer": "warn",
        "freshness of sales.Store": "warn",
        "freshness of person.Person": "error",
    }


def test_monitor_applies_the_targets_stale_data_policy(tmp_path: Path) -> None:
    for target in ("dev", "prod"):
        folder = tmp_path / "artifacts" / target / "dbt"
        write_run_results(folder, CLEAN_RESULTS, generated_at=datetime.now(UTC))
        write_sources(folder, [source("sales.Customer", "error", age_hours=30 * 24)], generated_at=datetime.now(UTC))

    dev = monitor(settings_for(tmp_path, "warn", "dev"))
    prod = monitor(settings_for(tmp_path, "error", "prod"))

    assert [(f.level, f.check) for f in dev.findings] == [("warn", "freshness of sales.Customer")]
    assert not dev.failed
    assert [(f.level, f.check) for f in prod.findings] == [("error", "freshness of sales.Customer")]
    assert prod.failed
    folder = tmp_path / "artifacts" / "prod" / "dbt"
    assert prod.checked == [folder / "run_results.json", folder / "sources.json"]


# (c) failed and warned tests


def test_failed_and_warned_tests_are_named_as_dataops_run_names_them(tmp_path: Path) -> None:
    path = write_run_results(tmp_path, [
        node(f"test.{PROJECT}.unique_stg_orders_order_id.e3b841c71a", "fail",
             "Got 3 results, configured to fail if != 0", failures=3),
        node(f"test.{PROJECT}.assert_no_duplicate_orders", "fail", "Got 1 result, configured to fail if != 0",
             failures=1),
        node(f"test.{PROJECT}.matches_regex_stg_email_addresses_email_address.664bc0161c", "warn",
             "Got 43 results, configured to warn if != 0", failures=43),
        node(f"unit_test.{PROJECT}.customer_analytics.customer_segment_thresholds", "fail",
             "\x1b[31mactual differs from expected:\x1b[0m\n\n  customer_segment | High Value"),
    ])
    write_manifest(tmp_path)

    assert check_run_results(path) == [
        Finding("error", "unique on stg_orders.order_id", "3 failing rows"),
        Finding("error", "assert_no_duplicate_orders", "1 failing row"),
        Finding("warn", "matches_regex on stg_email_addresses.email_address", "43 failing rows"),
        Finding("error", "unit test customer_segment_thresholds",
                "actual differs from expected: customer_segment | High Value"),
    ]


def test_without_a_manifest_a_failed_test_is_named_by_its_dbt_node_name(tmp_path: Path) -> None:
    path = write_run_results(tmp_path, [
        node(f"test.{PROJECT}.unique_stg_orders_order_id.e3b841c71a", "fail", failures=1_234),
    ])

    assert check_run_results(path) == [Finding("error", "unique_stg_orders_order_id", "1,234 failing rows")]


def test_results_of_dbt_compile_are_flagged_as_saying_nothing_about_the_data(tmp_path: Path) -> None:
    # `dataops compile` rewrites run_results.json with every node "success".
    path = write_run_results(tmp_path, [node(f"model.{PROJECT}.stg_orders", "success")], which="compile")

    [finding] = check_run_results(path)

    assert (finding.level, finding.check) == ("warn", "artifact command")
    assert "dbt compile" in finding.message


# (d) missing artifacts


@pytest.mark.parametrize("name", ["run_results.json", "sources.json"])
def test_a_missing_artifact_is_a_readable_error_naming_the_path_and_the_fix(tmp_path: Path, name: str) -> None:
    path = tmp_path / "artifacts" / "dev" / "dbt" / name

    with pytest.raises(DataOpsError) as raised:
        if name == "run_results.json":
            check_run_results(path)
        else:
            check_source_freshness(path, "warn")

    assert str(raised.value) == f"no {name} at {path}: has `dataops run` run for this target?"


def test_monitor_on_a_target_that_never_ran_names_the_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts" / "dev" / "dbt"
    with pytest.raises(DataOpsError, match=re.escape(f"no run_results.json at {folder / 'run_results.json'}: ")):
        monitor(settings_for(tmp_path, "warn"))

    write_run_results(folder, CLEAN_RESULTS, generated_at=datetime.now(UTC))
    with pytest.raises(DataOpsError, match=re.escape(f"no sources.json at {folder / 'sources.json'}: ")):
        monitor(settings_for(tmp_path, "warn"))


# (e) malformed artifacts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"metadata": {"generated_at": "2026-11-25T02:27:14Z"}, "results": [{"sta', "is not valid JSON"),
        ("[]", "expected a JSON object, found list"),
        ('{"metadata": {}}', "'results' is missing, expected a list"),
        ('{"results": {"a": 1}}', "'results' is a dict, expected a list"),
        ('{"results": [{"unique_id": "model.p.a", "status": "success"}, {"unique_id": "model.p.b"}]}',
         "results[1] has no 'status'"),
        ('{"results": ["model.p.a"]}', "results[0] is not an object"),
    ],
)
def test_a_malformed_run_results_is_a_readable_error_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "run_results.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(DataOpsError) as raised:
        check_run_results(path)

    message = str(raised.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([{"status": "pass"}], "results[0] has no 'unique_id'"),
        ([{"unique_id": f"model.{PROJECT}.stg_orders", "status": "warn"}], "is not a source's"),
    ],
)
def test_a_malformed_sources_json_is_a_readable_error_naming_the_file(
    tmp_path: Path, results: list[dict[str, Any]], expected: str
) -> None:
    path = write_sources(tmp_path, results)

    with pytest.raises(DataOpsError) as raised:
        check_source_freshness(path, "warn")

    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_an_artifact_without_generated_at_cannot_be_aged(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps({"metadata": {}, "results": CLEAN_SOURCES}), encoding="utf-8")

    assert check_source_freshness(path, "warn") == []  # the age is only needed when it is checked
    with pytest.raises(DataOpsError, match=re.escape("sources.json has no metadata.generated_at")):
        check_source_freshness(path, "warn", max_age_hours=26)


# (f) a clean set


def test_a_clean_set_of_artifacts_has_no_findings(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts" / "dev" / "dbt"
    write_run_results(folder, CLEAN_RESULTS, generated_at=datetime.now(UTC) - timedelta(hours=2))
    write_sources(folder, CLEAN_SOURCES, generated_at=datetime.now(UTC) - timedelta(hours=2))
    write_manifest(folder)

    report = monitor(settings_for(tmp_path, "error"))

    assert report.findings == []
    assert not report.failed
    assert report.summary() == (
        "dbt monitoring on dev passed: 0 error(s), 0 warning(s) in run_results.json, sources.json"
    )


def test_check_artifacts_returns_the_summary_or_raises_naming_every_failure(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts" / "dev" / "dbt"
    write_run_results(folder, CLEAN_RESULTS, generated_at=datetime.now(UTC))
    write_sources(folder, [source("sales.Store", "warn", age_hours=8)], generated_at=datetime.now(UTC))

    assert check_artifacts(settings_for(tmp_path, "warn")).startswith(
        "dbt monitoring on dev passed: 0 error(s), 1 warning(s) in run_results.json, sources.json: "
        "freshness of sales.Store: newest row"
    )

    write_run_results(folder, [node(f"model.{PROJECT}.stg_orders", "error", "Runtime Error in model stg_orders")],
                      generated_at=datetime.now(UTC))
    with pytest.raises(DataOpsError, match=r"FAILED: 1 error.* model stg_orders: Runtime Error in model stg_orders"):
        check_artifacts(settings_for(tmp_path, "warn"))


# (g) old artifacts


def test_an_artifact_older_than_the_maximum_age_is_an_error(tmp_path: Path) -> None:
    old = NOW - timedelta(hours=30)
    run_results = write_run_results(tmp_path, CLEAN_RESULTS, generated_at=old)
    sources = write_sources(tmp_path, CLEAN_SOURCES, generated_at=old)

    [finding] = check_run_results(run_results, max_age_hours=26, now=NOW)

    assert (finding.level, finding.check) == ("error", "artifact age")
    assert finding.message.startswith("run_results.json was written 30.0 hours ago (at 2026-11-23 21:00 UTC)")
    assert "more than 26 hours" in finding.message
    assert [f.check for f in check_source_freshness(sources, "warn", max_age_hours=26, now=NOW)] == ["artifact age"]
    # Within the limit, or with no limit, age is no finding.
    assert check_run_results(run_results, max_age_hours=31, now=NOW) == []
    assert check_run_results(run_results, max_age_hours=None, now=NOW) == []


def test_monitor_fails_on_artifacts_from_a_pipeline_that_stopped_running(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts" / "dev" / "dbt"
    write_run_results(folder, CLEAN_RESULTS, generated_at=datetime.now(UTC) - timedelta(days=3))
    write_sources(folder, CLEAN_SOURCES, generated_at=datetime.now(UTC) - timedelta(days=3))

    report = monitor(settings_for(tmp_path, "warn"))

    assert report.failed
    assert [f.check for f in report.findings] == ["artifact age", "artifact age"]
    assert monitor(settings_for(tmp_path, "warn"), max_age_hours=None).findings == []


def test_the_monitor_judges_every_status_as_dataops_run_does(tmp_path: Path) -> None:
    # A microbatch model that lost some batches is an error here as in `dataops run`, not a warning.
    path = write_run_results(tmp_path, [
        node(f"model.{PROJECT}.fct_order_lines", "partial success", "2 of 5 batches failed"),
        node(f"model.{PROJECT}.fct_orders", "reticulating"),
    ])

    assert check_run_results(path) == [
        Finding("error", "model fct_order_lines", "2 of 5 batches failed"),
        Finding("error", "model fct_orders", "dbt status 'reticulating'"),
    ]


def test_a_run_results_with_no_result_is_no_pass(tmp_path: Path) -> None:
    path = write_run_results(tmp_path, [])

    assert [(f.level, f.check) for f in check_run_results(path)] == [("error", "dbt build")]


def test_a_stale_table_is_named_as_one_finding_with_its_age(tmp_path: Path) -> None:
    recency = f"test.{PROJECT}.recency_stg_customers_modified_at___var_recency_days_.1b5e3fbd9f"
    path = write_run_results(tmp_path, [node(recency, "warn", "Got 4457 results, configured to warn if != 0", 4_457)])
    nodes = {**MANIFEST_NODES, recency: {
        "name": "recency_stg_customers_modified_at___var_recency_days_",
        "resource_type": "test",
        # As dbt keeps them: the arguments unrendered, the limit rendered in the config's meta.
        "test_metadata": {"name": "recency", "kwargs": {"column_name": "modified_at",
                                                        "interval_days": "{{ var('recency_days') }}"}},
        "config": {"meta": {"interval_days": 7}},
        "attached_node": f"model.{PROJECT}.stg_customers",
        "column_name": "modified_at",
    }}
    (tmp_path / "manifest.json").write_text(json.dumps({"nodes": nodes}), encoding="utf-8")

    assert check_run_results(path) == [Finding(
        "warn", "recency on stg_customers.modified_at",
        "the whole table is stale: its newest modified_at is 4,457 days old (must be within 7 days)",
    )]
