"""The T-SQL portability rules catch what the lenient parsers let through."""

from __future__ import annotations

import pytest

from dataops.publish.incremental import RECONCILIATIONS, Reconciliation
from dataops.warehouse.sqlserver_dialect import portability_problems


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select now() as loaded_at from t", "now() is not a SQL Server function"),
        ("select a::int from t", "`::` cast"),
        ("select a || b from t", "`||`"),
        ("select a from t limit 5", "LIMIT"),
        ("select a from t where flag = true", "boolean literals"),
        ("select a from t where b ilike 'x%'", "ILIKE"),
        ("select d + interval '1 day' from t", "INTERVAL"),
        ("select count(*) filter (where a > 1) from t", "FILTER"),
        ("select a from t qualify row_number() over (order by a) = 1", "QUALIFY"),
        ("select extract(year from d) from t", "DATEPART"),
        ("select regexp_matches(a, 'x') from t", "regexp_matches() is not a SQL Server function"),
    ],
)
def test_flags_constructs_sql_server_rejects(sql: str, expected: str) -> None:
    problems = portability_problems(sql)
    assert any(expected in problem.message for problem in problems), problems


def test_names_the_line() -> None:
    problems = portability_problems("select\n  a,\n  now() as b\nfrom t")
    assert [(p.line, p.message) for p in problems] == [(3, "now() is not a SQL Server function")]


@pytest.mark.parametrize(
    "sql",
    [
        "select top 5 cast(a as int) as a, concat(b, ' ', c) as bc from t where d > getdate()",
        "select dateadd(day, -7, current_timestamp) as x, datediff(day, a, b) from t",
        "select row_number() over (partition by a order by b) as rn, iif(a > 1, 1, 0) from t",
        "with x as (select a from t) select coalesce(a, 0) from x where a like 'x%'",
    ],
)
def test_accepts_portable_tsql(sql: str) -> None:
    assert portability_problems(sql) == []


@pytest.mark.parametrize("check", RECONCILIATIONS, ids=lambda check: f"{check.mart} from {check.source}")
def test_the_incremental_reconciliations_are_t_sql(check: Reconciliation) -> None:
    """The scans that decide whether a build may be incremental run on SQL Server as written."""
    sql = check.sql("marts")
    assert "FULL OUTER JOIN" in sql and portability_problems(sql) == []
