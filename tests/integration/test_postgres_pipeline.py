"""The same project, unchanged, on a real PostgreSQL server: it builds and tests everything, and
its marts equal DuckDB's row for row on the same generated data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from dataops.commands.load import load_tables
from dataops.commands.query import run_query
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings, load_settings
from dataops.sources.generate import generate_tables

pytestmark = pytest.mark.integration

AS_OF = datetime.now().replace(microsecond=0)  # fresh for the freshness stage, shared by both engines
MARTS = {
    "customer_analytics": "customer_id",
    "fct_orders": "order_id",
    "fct_order_lines": "order_line_id",
    "dim_products": "product_id",
    "dim_territories": "territory_id",
}


def _build(settings: Settings) -> None:
    load_tables(settings, generate_tables(0.1, seed=11, as_of=AS_OF), "generated data, scale 0.1")
    summary = Pipeline(settings).run(RunOptions(docs=False))
    assert summary.exit_code == 0, summary.findings
    assert summary.findings == [], summary.findings
    assert summary.counts.models_built == 17 and summary.counts.tests_failed == 0
    assert summary.counts.unit_tests_passed == 3
    # The Great Expectations suites ran in PostgreSQL too.
    assert (summary.quality.expectations_passed, summary.quality.expectations_failed) == (12, 0)
    # The run's record counts every source table and mart in PostgreSQL.
    record = summary.to_record()
    assert len(record.row_counts) == 10 + len(MARTS)
    assert record.row_counts["marts.customer_analytics"] == record.row_counts["Sales.Customer"] > 0


def _rows(settings: Settings, mart: str, key: str) -> tuple[list[str], list[tuple[object, ...]]]:
    result = run_query(settings, f"select * from marts.{mart} order by {key}")
    return result.columns, result.rows


def test_postgres_builds_the_same_marts_as_duckdb(postgres_settings: Settings, warehouse_dir: Path) -> None:
    _build(postgres_settings)
    duckdb_settings = load_settings("dev")
    _build(duckdb_settings)

    for mart, key in MARTS.items():
        pg_columns, pg_rows = _rows(postgres_settings, mart, key)
        duck_columns, duck_rows = _rows(duckdb_settings, mart, key)
        assert pg_columns == duck_columns, mart
        assert len(pg_rows) == len(duck_rows) > 0, mart
        for pg_row, duck_row in zip(pg_rows, duck_rows, strict=True):
            assert pg_row == duck_row, (mart, pg_row, duck_row)
