"""The samples of a failing check's rows (dataops.project.samples): read on each engine as dbt names
the relations (a real DuckDB warehouse and candidate file, a real PostgreSQL server; SQL Server's
TOP form checked offline on every data test of the project compiled for prod), kept JSON-safe and
short, never raised, and kept whole by the run history. The pipeline's own capture is tested on
real failing runs in test_incidents.py."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dataops.core.config import Settings, load_settings
from dataops.history.records import (
    SAMPLE_ROWS,
    SAMPLE_VALUE_CHARS,
    NodeRecord,
    RunRecord,
    SampleRecord,
    Trigger,
)
from dataops.history.store import HistoryStore
from dataops.project.compile import compile_project
from dataops.project.samples import failing_rows
from dataops.warehouse import connect
from dataops.warehouse.sqlserver import limited_select
from dataops.warehouse.sqlserver_dialect import batch_problems

pytestmark = pytest.mark.integration

# As dbt compiles a test: a CTE first, relations named by catalog, and a comment on the last line.
DBT_LIKE = """with negative as (
    select order_id, total_due from {relation} where total_due < 0
)
select 'order' as grain, order_id as id, total_due as amount from negative
-- revenue is never negative"""


def test_a_sample_is_json_safe_short_and_kept_whole_by_the_history(tmp_path: Path) -> None:
    row = [
        Decimal("-123.4500"),
        datetime(2026, 3, 1, 6, 30, tzinfo=UTC),
        date(2026, 3, 1),
        b"\x00\xff",
        float("nan"),
        "x" * 500,
        None,
        True,
        7,
        1.5,
    ]
    sample = SampleRecord.of([f"c{i}" for i in range(len(row))], [row] * (SAMPLE_ROWS + 3))
    assert len(sample.rows) == SAMPLE_ROWS
    assert sample.rows[0] == [
        "-123.4500",  # a decimal keeps its digits as text
        "2026-03-01T06:30:00+00:00",
        "2026-03-01",
        "00ff",
        "nan",
        "x" * (SAMPLE_VALUE_CHARS - 1) + "…",
        None,
        True,
        7,
        1.5,
    ]
    json.dumps(asdict(sample), allow_nan=False)  # strict JSON: no NaN, nothing a default= must rescue

    history = HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")
    nodes = [
        NodeRecord("test.p.t", "test", "t", "fail", "error", failures=8, sample=sample),
        NodeRecord("test.p.u", "test", "u", "fail", "error", failures=1, sample=SampleRecord.missing("no\nway")),
        NodeRecord("model.p.m", "model", "m", "success", "ok"),
    ]
    started = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    history.record(RunRecord("r1", "ci", "run", Trigger("cli"), started, started, "failed", 1, nodes=nodes))
    kept = history.get("r1")
    assert kept is not None and kept.nodes == nodes
    assert kept.nodes[1].sample == SampleRecord(unavailable="no way")


def test_duckdb_reads_the_sample_from_the_candidate_as_dbt_names_it(settings: Settings) -> None:
    settings.duckdb_path.parent.mkdir(parents=True)
    duckdb.connect(str(settings.duckdb_path)).close()
    with duckdb.connect(str(settings.duckdb_candidate_path)) as candidate:
        candidate.execute(f"create schema {settings.candidate_schema}")
        candidate.execute(
            f"create table {settings.candidate_schema}.fct_orders as "
            "select i as order_id, cast(-i as decimal(19, 4)) as total_due from range(1, 21) t(i)"
        )
    warehouse = connect(settings)
    sample = failing_rows(
        warehouse, DBT_LIKE.format(relation=f'"candidate"."{settings.candidate_schema}"."fct_orders"')
    )
    assert sample.unavailable == "" and sample.columns == ["grain", "id", "amount"]
    assert len(sample.rows) == SAMPLE_ROWS
    assert all(grain == "order" and amount == f"{-key}.0000" for grain, key, amount in sample.rows)

    missing = failing_rows(warehouse, DBT_LIKE.format(relation='"candidate"."nowhere"."fct_orders"'))
    assert missing.rows == [] and missing.unavailable.startswith("query failed: Catalog Error")
    assert "\n" not in missing.unavailable
    assert failing_rows(warehouse, None).unavailable == "dbt kept no compiled SQL for the test"


def test_postgres_reads_the_sample_with_limit(postgres_settings: Settings) -> None:
    sql = DBT_LIKE.format(
        relation="(select n as order_id, -n::numeric(19, 4) as total_due from generate_series(1, 20) n) o"
    )
    sample = failing_rows(connect(postgres_settings), sql)
    assert sample.unavailable == "" and sample.columns == ["grain", "id", "amount"]
    assert len(sample.rows) == SAMPLE_ROWS and all(amount.startswith("-") for *_, amount in sample.rows)


def test_every_data_test_of_the_project_samples_as_valid_tsql(
    warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL Server has no LIMIT and no WITH inside a derived table: the TOP form of each of the
    project's data tests, as dbt compiles them for prod, is T-SQL that SQL Server accepts."""
    for variable in ("DBT_PROD_SERVER", "DBT_PROD_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    report = compile_project(load_settings("prod"), run_validation=False)
    tests = [node for node in report.nodes if node.unique_id.startswith("test.")]
    assert len(tests) > 90
    limited = [limited_select(node.sql, SAMPLE_ROWS) for node in tests]
    assert all(" TOP 5 * FROM (" in sql for sql in limited)
    hoisted = [sql for sql in limited if sql.split("*/")[-1].lstrip().startswith("WITH ")]
    assert len(hoisted) > 10  # dbt's relationships tests, among others, start with a CTE
    assert batch_problems(limited) == []
