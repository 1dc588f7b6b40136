"""`dataops query` runs one read-only SELECT and refuses everything else."""

from __future__ import annotations

import pytest

from dataops.commands.query import ensure_single_select
from dataops.core.errors import DataOpsError


@pytest.mark.parametrize(
    "sql",
    [
        "select 1",
        "SELECT customer_id FROM marts.customer_analytics WHERE lifetime_value > 10 LIMIT 5",
        "with top as (select 1 as x) select x from top",
        "select 1 union all select 2",
        "select 1;",
    ],
)
def test_accepts_one_select(sql: str) -> None:
    ensure_single_select(sql, "duckdb")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("delete from marts.customer_analytics", "not DELETE"),
        ("drop table marts.customer_analytics", "not DROP"),
        ("insert into t select 1", "not INSERT"),
        ("update t set a = 1", "not UPDATE"),
        ("create table t as select 1", "not CREATE"),
        ("select 1; drop table t", "not 2"),
        ("select 1; select 2", "not 2"),
        ("select * into copy_of from t", "read-only"),
        ("with x as (delete from t returning *) select * from x", "read-only"),
        ("", "not 0"),
        ("selec 1 frm", "does not parse"),
    ],
)
def test_refuses_anything_else(sql: str, reason: str) -> None:
    with pytest.raises(DataOpsError, match=reason):
        ensure_single_select(sql, "duckdb")
