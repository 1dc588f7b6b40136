"""The whole project compiles for SQL Server without a server and is valid T-SQL; a DuckDB-only
construct in a model makes the check fail and names the file; a compile never hides a run's
artifacts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataops.airflow.callables import check_dbt_artifacts
from dataops.core.config import DBT_PROJECT_DIR, load_settings
from dataops.core.errors import DataOpsError
from dataops.project.compile import compile_project
from dataops.sources.faults import inject
from dataops.sources.generate import generate_tables, write_tables

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("target", ["prod", "staging", "sqlserver_dev"])
def test_project_compiles_to_valid_tsql_without_a_server(
    target: str, warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DBT_PROD_SERVER", "DBT_PROD_PASSWORD", "DBT_STAGING_SERVER"):
        monkeypatch.delenv(variable, raising=False)
    report = compile_project(load_settings(target), run_validation=True)
    models = [n for n in report.nodes if n.unique_id.startswith("model.")]
    tests = [n for n in report.nodes if n.unique_id.startswith("test.")]
    assert len(models) == 17 and len(tests) > 90
    assert report.problems == []
    # Compiled for SQL Server: T-SQL relations, dbt's cross-database macros rendered for it.
    staging = next(n for n in models if n.path.endswith("stg_customers.sql"))
    assert '"Sales"."Customer"' in staging.sql
    recency = next(n for n in tests if "recency_stg_orders" in n.unique_id)
    assert "dateadd(" in recency.sql.lower()


@pytest.mark.parametrize(
    ("construct", "expected"),
    [
        ("now()", "now() is not a SQL Server function"),
        ('"CustomerID"::varchar', "`::` cast"),
    ],
)
def test_a_duckdb_only_construct_fails_validation(
    construct: str, expected: str, tmp_path: Path, warehouse_dir: Path
) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "staging" / "sales" / "stg_customers.sql"
    model.write_text(
        model.read_text().replace('"ModifiedDate" as modified_at', f"{construct} as modified_at"),
        encoding="utf-8",
    )
    report = compile_project(load_settings("prod"), run_validation=True, project_dir=project)
    flagged = [p for p in report.problems if p.path.endswith("stg_customers.sql")]
    assert flagged, report.problems
    assert any(expected in p.message for p in flagged)


def test_the_same_project_is_valid_duckdb_and_postgres_sql(warehouse_dir: Path) -> None:
    for target in ("dev", "postgres"):
        report = compile_project(load_settings(target), run_validation=True)
        assert report.problems == [], (target, report.problems[:3])


def test_sql_server_can_read_sources_in_place_from_adventureworks2014(tmp_path: Path, warehouse_dir: Path) -> None:
    environments = tmp_path / "environments.yml"
    environments.write_text(
        "environments:\n  prod:\n    engine: sqlserver\n    stale_data: error\n"
        "    source_database: AdventureWorks2014\n",
        encoding="utf-8",
    )
    settings = load_settings("prod", environments_file=environments)
    report = compile_project(settings, run_validation=True)
    staging = next(n for n in report.nodes if n.path.endswith("stg_orders.sql"))
    assert '"AdventureWorks2014"."Sales"."SalesOrderHeader"' in staging.sql
    assert report.problems == []


def _dataops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "dataops"), *args], capture_output=True, text=True)


def test_a_compile_or_check_after_a_run_leaves_dbt_monitoring_the_run_s_artifacts(
    tmp_path: Path, warehouse_dir: Path
) -> None:
    # A real run that fails one test: one order with a negative total breaks the revenue rule.
    write_tables(inject(generate_tables(0.1, seed=3), ["negative_total"], seed=3), tmp_path / "bad", "parquet")
    run = _dataops("run", "--data", str(tmp_path / "bad"), "--no-quality", "--no-docs")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    settings = load_settings("dev")
    run_folder = settings.artifacts_dir / "dbt"
    artifacts = {name: (run_folder / name).read_bytes() for name in ("run_results.json", "manifest.json")}

    # What a deploy does after it (and the pre-commit hook): compile, and check the project.
    for command in (["compile"], ["check"]):
        result = _dataops(*command)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])

    assert {name: (run_folder / name).read_bytes() for name in artifacts} == artifacts
    assert (settings.compile_dir / "manifest.json").exists()
    # The monitor still judges the run that happened, not a compile that every node "passed".
    with pytest.raises(DataOpsError) as failed:
        check_dbt_artifacts(settings)
    assert "assert_no_negative_revenue" in str(failed.value)
    assert "artifact command" not in str(failed.value)
