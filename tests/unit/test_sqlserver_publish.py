"""Publishing and the lock on SQL Server, without a server: the T-SQL the pure functions make (one
transaction with XACT_ABORT and a lock timeout, every mart's view switched, the grants), the offline
validation that `dataops compile --validate` runs on it (a broken statement is reported), and the
warehouse's own logic against a scripted stand-in for the server (who holds the lock, which number
comes next, what is dropped, a lock timeout retried)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import duckdb
import mssql_python
import pytest

from dataops.core.errors import DataOpsError
from dataops.project.compile import sqlserver_scripts, validate_sqlserver_scripts
from dataops.warehouse import LockHolder, TargetBusy
from dataops.warehouse import sqlserver as ss
from dataops.warehouse.sqlserver_dialect import batch_problems

MARTS = ["customer_analytics", "dim_products", "fct_orders"]
AT = "2026-01-02T03:04:05+00:00"


def _publish(**overrides: Any) -> ss.Script:
    arguments: dict[str, Any] = {
        "consumer_schema": "marts",
        "candidate_schema": "marts__candidate",
        "number": 2,
        "marts": MARTS,
        "run_id": "20260102T030405Z-abc123",
        "built_at": AT,
        "published_at": AT,
        "row_counts": {f"marts.{mart}": n for n, mart in enumerate(MARTS, start=10)},
        "retired": ["old_mart"],
        "grant_to": "analysts",
    }
    return ss.publish_script(**{**arguments, **overrides})


def _index(statements: tuple[str, ...], statement: str) -> int:
    assert statement in statements, f"missing: {statement}"
    return statements.index(statement)


def _clean(script: ss.Script) -> None:
    assert batch_problems(script.statements, script.atomic) == [], script.sql


def _assert_one_transaction(statements: tuple[str, ...], lock_timeout_ms: int = ss.LOCK_TIMEOUT_MS) -> int:
    """Settings first, one BEGIN, COMMIT last, nothing in between that ends it; the BEGIN's index."""
    assert statements[:4] == (
        "SET NOCOUNT ON",
        "SET XACT_ABORT ON",
        f"SET LOCK_TIMEOUT {lock_timeout_ms}",
        "BEGIN TRANSACTION",
    )
    assert statements[-1] == "COMMIT TRANSACTION"
    ends = [s for s in statements if re.match(r"(BEGIN TRAN|COMMIT|ROLLBACK|SAVE)", s)]
    assert ends == ["BEGIN TRANSACTION", "COMMIT TRANSACTION"]
    return 3


# The T-SQL ------------------------------------------------------------------------------------------


def test_publish_is_one_transaction_that_moves_every_mart_and_switches_every_view() -> None:
    script = _publish()
    statements = script.statements
    begin = _assert_one_transaction(statements)
    assert script.atomic and script.name == "publish marts__v2"
    # The version schema is made inside the transaction (CREATE SCHEMA must open a batch: dynamic).
    create = _index(statements, "EXEC sys.sp_executesql N'CREATE SCHEMA [marts__v2]'")
    refuse = _index(
        statements,
        "IF SCHEMA_ID(N'marts__v2') IS NOT NULL THROW 50000, "
        "N'schema marts__v2 exists already: nothing was published', 1",
    )
    assert begin < refuse < create
    pointer = _index(
        statements,
        f"INSERT INTO [dataops].[published] ([consumer_schema], [number], [switched_at]) VALUES (N'marts', 2, N'{AT}')",
    )
    for mart in MARTS:
        guard = _index(
            statements,
            f"IF OBJECT_ID(N'[marts__candidate].[{mart}]', N'U') IS NULL THROW 50000, "
            f"N'marts__candidate.{mart} is no table dbt built in this run: nothing was "
            "published', 1",
        )
        transfer = _index(statements, f"ALTER SCHEMA [marts__v2] TRANSFER [marts__candidate].[{mart}]")
        candidate_view = _index(
            statements,
            f"EXEC sys.sp_executesql N'CREATE VIEW [marts__candidate].[{mart}] AS SELECT * FROM [marts__v2].[{mart}]'",
        )
        view = _index(
            statements,
            f"EXEC sys.sp_executesql N'CREATE OR ALTER VIEW [marts].[{mart}] AS SELECT * FROM [marts__v2].[{mart}]'",
        )
        grant = _index(statements, f"GRANT SELECT ON OBJECT::[marts].[{mart}] TO [analysts]")
        assert create < guard < transfer < candidate_view < view < grant < pointer
    assert sum(s.startswith("ALTER SCHEMA") for s in statements) == len(MARTS)
    assert sum("CREATE OR ALTER VIEW [marts]." in s for s in statements) == len(MARTS)
    # The retired mart's view goes; no mart's view is ever dropped.
    assert _index(statements, "DROP VIEW IF EXISTS [marts].[old_mart]") < pointer
    assert not [s for s in statements if s.startswith("DROP VIEW") and "old_mart" not in s]
    row = next(s for s in statements if s.startswith("INSERT INTO [dataops].[versions]"))
    assert "(N'marts', 2, N'20260102T030405Z-abc123'" in row
    counts = re.search(r"N'(\{.*\})'", row)
    assert counts and json.loads(counts.group(1)) == {
        "marts.customer_analytics": 10,
        "marts.dim_products": 11,
        "marts.fct_orders": 12,
    }
    _clean(script)


def test_no_reader_role_no_grant_and_the_lock_timeout_is_the_callers() -> None:
    script = _publish(grant_to=None, retired=[], lock_timeout_ms=1500)
    _assert_one_transaction(script.statements, lock_timeout_ms=1500)
    assert not [s for s in script.statements if s.startswith(("GRANT", "DROP VIEW"))]
    _clean(script)


def test_switch_points_every_view_at_the_kept_version_and_moves_nothing() -> None:
    script = ss.switch_script("marts", 1, MARTS, AT, retired=["new_mart"], grant_to="analysts")
    statements = script.statements
    _assert_one_transaction(statements)
    assert script.atomic
    assert not [s for s in statements if "TRANSFER" in s or "CREATE SCHEMA [marts__v" in s]
    pointer = _index(
        statements,
        f"INSERT INTO [dataops].[published] ([consumer_schema], [number], [switched_at]) VALUES (N'marts', 1, N'{AT}')",
    )
    for mart in MARTS:
        guard = _index(
            statements,
            f"IF OBJECT_ID(N'[marts__v1].[{mart}]', N'U') IS NULL THROW 50000, "
            f"N'marts__v1.{mart} is gone: nothing was switched', 1",
        )
        view = _index(
            statements,
            f"EXEC sys.sp_executesql N'CREATE OR ALTER VIEW [marts].[{mart}] AS SELECT * FROM [marts__v1].[{mart}]'",
        )
        grant = _index(statements, f"GRANT SELECT ON OBJECT::[marts].[{mart}] TO [analysts]")
        assert guard < view < grant < pointer
    assert _index(statements, "DROP VIEW IF EXISTS [marts].[new_mart]") < pointer
    _clean(script)


def test_drop_version_drops_its_objects_then_its_schema_never_the_published_one() -> None:
    script = ss.drop_version_script("marts", 1, ["fct_orders", "dim_products"], views=["a_view"])
    statements = script.statements
    begin = _assert_one_transaction(statements)
    guard = next(i for i, s in enumerate(statements) if "[dataops].[published]" in s)
    assert begin < guard and statements[guard].endswith(
        "THROW 50000, N'marts__v1 is the published version: it is not dropped', 1"
    )
    tables = [_index(statements, f"DROP TABLE IF EXISTS [marts__v1].[{t}]") for t in ("fct_orders", "dim_products")]
    view = _index(statements, "DROP VIEW IF EXISTS [marts__v1].[a_view]")
    schema = _index(statements, "DROP SCHEMA IF EXISTS [marts__v1]")
    row = _index(statements, "DELETE FROM [dataops].[versions] WHERE [consumer_schema] = N'marts' AND [number] = 1")
    assert guard < view < min(tables) and max(tables) < schema < row
    _clean(script)


def test_an_incremental_build_starts_from_table_copies_of_the_published_version() -> None:
    script = ss.incremental_copy_script("marts", "marts__candidate", 4, ["fct_orders", "customer_analytics"])
    statements = script.statements
    begin = _assert_one_transaction(statements)
    assert script.atomic
    for mart in ("fct_orders", "customer_analytics"):
        # The view publishing left in the candidate (or a failed run's table) goes, then the copy.
        view = _index(statements, f"DROP VIEW IF EXISTS [marts__candidate].[{mart}]")
        table = _index(statements, f"DROP TABLE IF EXISTS [marts__candidate].[{mart}]")
        copy = _index(statements, f"SELECT * INTO [marts__candidate].[{mart}] FROM [marts__v4].[{mart}]")
        assert begin < view < table < copy
    _clean(script)


@pytest.mark.parametrize(("wait", "timeout"), [(False, 0), (True, -1)])
def test_the_lock_is_an_exclusive_session_applock_on_the_database(wait: bool, timeout: int) -> None:
    script = ss.lock_script(ss.lock_resource("AdventureWorks"), wait)
    assert (
        "EXEC @result = sys.sp_getapplock @Resource = N'dataops:AdventureWorks', @LockMode = N'Exclusive', "
        f"@LockOwner = N'Session', @LockTimeout = {timeout}"
    ) in script.statements
    assert script.statements[-1] == "SELECT @result AS [result]"
    _clean(script)
    release = ss.release_script("dataops:AdventureWorks")
    assert (
        "EXEC sys.sp_releaseapplock @Resource = N'dataops:AdventureWorks', @LockOwner = N'Session'"
        in release.statements
    )
    _clean(release)


def test_names_and_values_are_quoted_and_still_valid() -> None:
    odd = ["it's]odd", "plain"]
    script = _publish(marts=odd, run_id="run 'quoted'", retired=[], grant_to="read]ers")
    assert "ALTER SCHEMA [marts__v2] TRANSFER [marts__candidate].[it's]]odd]" in script.statements
    # Inside sp_executesql's literal, every quote of the view's text is doubled once more.
    assert (
        "EXEC sys.sp_executesql N'CREATE OR ALTER VIEW [marts].[it''s]]odd] AS SELECT * FROM [marts__v2].[it''s]]odd]'"
    ) in script.statements
    assert "GRANT SELECT ON OBJECT::[marts].[plain] TO [read]]ers]" in script.statements
    assert any("N'run ''quoted'''" in s for s in script.statements)
    _clean(script)


def test_the_data_diff_is_null_safe_without_is_distinct_from() -> None:
    sql = ss.mart_diff_query("[marts__candidate].[m]", "[marts__v1].[m]", ["id"], ["id", "a"])
    assert "IS DISTINCT FROM" not in sql
    assert "NOT EXISTS (SELECT c.[a] INTERSECT SELECT p.[a])" in sql
    _clean(ss.Script("diff", (sql,)))
    # The comparison means what IS DISTINCT FROM means (DuckDB has both: INTERSECT, as in SQL
    # Server, treats two NULLs as the same).
    pairs = [(None, None), (None, 1), (1, None), (1, 1), (1, 2)]
    for left, right in pairs:
        values = (
            f"(SELECT {left if left is not None else 'NULL'}::INT AS l, "
            f"{right if right is not None else 'NULL'}::INT AS r) AS t"
        )
        connection = duckdb.connect()
        ours, standard = (
            connection.execute(
                f"SELECT {ss._distinct('t.l', 't.r')}, t.l IS DISTINCT FROM t.r FROM {values}"
            ).fetchone()
            or ()
        )
        connection.close()
        assert ours == standard, (left, right)


def test_column_types_keep_their_length_and_precision() -> None:
    assert ss._column_type("nvarchar", -1, None, None, None) == "nvarchar(max)"
    assert ss._column_type("NVARCHAR", 50, None, None, None) == "nvarchar(50)"
    assert ss._column_type("numeric", None, 38, 6, None) == "numeric(38,6)"
    assert ss._column_type("datetime2", None, None, None, 7) == "datetime2(7)"
    assert ss._column_type("int", None, 10, 0, None) == "int"


# The validation `dataops compile --validate` runs --------------------------------------------------


SWITCHED = (
    "EXEC sys.sp_executesql N'CREATE OR ALTER VIEW [marts].[fct_orders] AS SELECT * FROM [marts__v2].[fct_orders]'"
)


def _broken(script: ss.Script, old: str, new: str | None) -> ss.Script:
    statements = (
        [s for s in script.statements if s != old]
        if new is None
        else [new if s == old else s for s in script.statements]
    )
    assert list(script.statements) != statements, f"nothing to break: {old}"
    return replace(script, statements=tuple(statements))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "ALTER SCHEMA [marts__v2] TRANSFER [marts__candidate].[fct_orders]",
            "ALTER SCHEMA [marts__v2] TRANSFE [marts__candidate].[fct_orders]",
            "not an ALTER SCHEMA",
        ),
        (
            SWITCHED,
            "CREATE OR ALTER VIEW [marts].[fct_orders] AS SELECT * FROM [marts__v2].[fct_orders]",
            "CREATE OR ALTER VIEW must be the first statement of its batch",
        ),
        (
            "EXEC sys.sp_executesql N'CREATE SCHEMA [marts__v2]'",
            "IF 1 = 1 CREATE SCHEMA [marts__v2]",
            "CREATE SCHEMA must be the first statement of its batch",
        ),
        (SWITCHED, SWITCHED[:-1] + " LIMIT 5'", "in sp_executesql: LIMIT is not T-SQL"),
        (
            "GRANT SELECT ON OBJECT::[marts].[fct_orders] TO [analysts]",
            "GRANT SELECT ON OBJECT::[marts].[fct_orders] TO",
            "unparsable",
        ),
        (
            "DELETE FROM [dataops].[published] WHERE [consumer_schema] = N'marts'",
            "DELETE FROM [dataops].[published] WHERE ([consumer_schema] = N'marts'",
            "sqlglot",
        ),
        (
            "IF SCHEMA_ID(N'marts__v2') IS NOT NULL THROW 50000, N'schema marts__v2 exists already: nothing was "
            "published', 1",
            "IF SCHEMA_ID(N'marts__v2') IS NOT NULL THROW 50000 N'exists', 1",
            "not a THROW",
        ),
        (
            "IF SCHEMA_ID(N'marts__v2') IS NOT NULL THROW 50000, N'schema marts__v2 exists already: nothing was "
            "published', 1",
            "IF now() IS NOT NULL THROW 50000, N'x', 1",
            "now() is not a SQL Server function",
        ),
        ("SET XACT_ABORT ON", None, "SET XACT_ABORT ON must come before BEGIN TRANSACTION"),
        ("SET LOCK_TIMEOUT 5000", None, "SET LOCK_TIMEOUT <ms> must come before BEGIN TRANSACTION"),
        ("SET LOCK_TIMEOUT 5000", "SET LOCK_TIMEOUT -1", "waits without end"),
        ("COMMIT TRANSACTION", None, "ends with COMMIT TRANSACTION"),
        ("DROP VIEW IF EXISTS [marts].[old_mart]", "COMMIT TRANSACTION", "nothing but the last statement ends"),
    ],
)
def test_a_broken_statement_is_reported_on_its_line(old: str, new: str | None, expected: str) -> None:
    script = _broken(_publish(), old, new)
    problems = validate_sqlserver_scripts([script])
    assert problems, script.sql
    flagged = [p for p in problems if expected in p.message or expected == p.validator]
    assert flagged, problems
    assert all(p.path == "dataops T-SQL: publish marts__v2" for p in problems)
    if new is not None and not new.startswith(("COMMIT", "SET")):
        assert {p.line for p in flagged} == {script.statements.index(new) + 1}


def test_the_unbroken_scripts_are_clean_and_a_scope_qualifier_is_no_cast() -> None:
    assert validate_sqlserver_scripts([_publish()]) == []
    problems = batch_problems(["SELECT a::int FROM t", "GRANT SELECT ON SCHEMA::[marts] TO [analysts]"])
    assert [(p.line, p.validator) for p in problems if "`::`" in p.message] == [(1, "sqlglot")]


def _node(name: str, schema: str, materialized: str = "table", columns: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(
        resource_type="model",
        name=name,
        alias=None,
        schema=schema,
        config=SimpleNamespace(materialized=materialized),
        columns={c: None for c in columns},
    )


def test_compile_renders_the_scripts_for_the_manifests_marts(settings: Any) -> None:
    settings = replace(settings, engine="sqlserver", reader_role=None)
    nodes = {
        "model.p.fct_orders": _node("fct_orders", "marts__candidate", columns=("order_id", "total_due")),
        "model.p.dim_products": _node("dim_products", "marts__candidate"),
        "model.p.stg_orders": _node("stg_orders", "staging", "view"),
        "model.p.helper": _node("helper", "marts__candidate", "ephemeral"),
        "test.p.unique_fct_orders_order_id": SimpleNamespace(
            resource_type="test",
            test_metadata=SimpleNamespace(name="unique"),
            attached_node="model.p.fct_orders",
            column_name="order_id",
        ),
    }
    scripts = {script.name: script for script in sqlserver_scripts(settings, SimpleNamespace(nodes=nodes))}
    publish = scripts["publish marts__v2"]
    views = [s for s in publish.statements if "CREATE OR ALTER VIEW" in s]
    assert len(views) == 2 and all("[marts].[dim_products]" in v or "[marts].[fct_orders]" in v for v in views)
    assert not [s for s in publish.statements if "stg_orders" in s or "helper" in s]
    assert any(s.startswith("GRANT") for s in publish.statements)  # rendered with an example role
    assert (
        "NOT EXISTS (SELECT c.[total_due] INTERSECT SELECT p.[total_due])"
        in scripts["data diff of fct_orders"].statements[0]
    )
    assert {"switch to marts__v1", "drop marts__v1", "take the lock", "release the lock", "metadata"} <= set(scripts)
    assert validate_sqlserver_scripts(list(scripts.values())) == []


# The warehouse against a scripted server -------------------------------------------------------------


def _lock_timeout() -> mssql_python.Error:
    return mssql_python.OperationalError(
        "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Lock request time out period exceeded.", ""
    )


@dataclass
class FakeServer:
    """What the warehouse's queries find, and every batch it sends."""

    published: int | None = None
    versions: dict[int, str] = field(default_factory=dict)  # number -> run id
    schemas: dict[str, dict[str, str]] = field(default_factory=dict)  # schema -> object -> U / V
    holder: LockHolder | None = None  # another session holds the lock
    fail: list[Callable[[str], mssql_python.Error | None]] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    closed: int = 0

    def answer(self, sql: str) -> list[tuple[Any, ...]]:
        self.batches.append(sql)
        for fault in list(self.fail):
            error = fault(sql)
            if error is not None:
                self.fail.remove(fault)
                raise error
        if "sp_getapplock" in sql:
            return [(-1 if self.holder else 0,)]
        if sql == ss.lock_holder_query("dataops:AdventureWorks"):
            h = self.holder
            return [(h.run_id, h.host, h.pid, h.since)] if h else []
        if sql.startswith("SELECT 1 WHERE OBJECT_ID"):
            return [(1,)]
        if sql == ss.published_number_query("marts"):
            return [(self.published,)] if self.published is not None else []
        if sql == ss.versions_query("marts"):
            return [
                (n, run, AT, "{}", AT, int(n == self.published))
                for n, run in sorted(self.versions.items(), reverse=True)
            ]
        if sql == ss.version_schemas_query("marts"):
            return [(name,) for name in self.schemas]
        found = re.fullmatch(
            r"SELECT \[name\], RTRIM\(\[type\]\) FROM sys\.objects WHERE \[schema_id\] = "
            r"SCHEMA_ID\(N'(.*?)'\).*",
            sql,
        )
        if found:
            return sorted(self.schemas.get(found.group(1), {}).items())
        if "BEGIN TRANSACTION" in sql:
            self._commit(sql)
        return []

    def _commit(self, sql: str) -> None:
        pointer = re.search(r"INSERT INTO \[dataops\]\.\[published\] .* VALUES \(N'marts', (\d+)", sql)
        created = re.search(r"CREATE SCHEMA \[(marts__v\d+)\]", sql)
        if created:
            self.schemas[created.group(1)] = {
                m: "U" for m in re.findall(r"TRANSFER \[marts__candidate\]\.\[(.*?)\]", sql)
            }
            self.versions[int(created.group(1).rsplit("v", 1)[1])] = "new"
        if pointer:
            self.published = int(pointer.group(1))
        dropped = re.search(r"DROP SCHEMA IF EXISTS \[marts__v(\d+)\]", sql)
        if dropped:
            self.schemas.pop(f"marts__v{dropped.group(1)}", None)
            self.versions.pop(int(dropped.group(1)), None)

    def sent(self, needle: str) -> list[str]:
        return [batch for batch in self.batches if needle in batch]


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server, self.rows, self.description = server, [], None

    def execute(self, sql: str) -> None:
        self.rows = self.server.answer(sql)
        self.description = [("column",)] * (len(self.rows[0]) if self.rows else 1)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def nextset(self) -> bool:
        return False


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.server)

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.server.closed += 1


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(ss.SqlServerWarehouse, "_connect", lambda self, autocommit=False: FakeConnection(fake))
    monkeypatch.setattr(ss.time, "sleep", lambda seconds: None)
    return fake


def _warehouse() -> ss.SqlServerWarehouse:
    return ss.SqlServerWarehouse({"server": "db.example.test", "database": "AdventureWorks"}, consumer_schema="marts")


HOLDER = LockHolder("20260102T030405Z-abc123", "worker-1", 4242, AT)


def test_a_held_target_names_its_holder(server: FakeServer) -> None:
    server.holder = LockHolder("20260101T000000Z-other1", "worker-2", 77, AT)
    with pytest.raises(TargetBusy) as busy, _warehouse().hold(HOLDER, wait=False):
        pytest.fail("the block ran without the lock")
    assert busy.value.holder == server.holder
    assert "run 20260101T000000Z-other1 (pid 77 on worker-2" in str(busy.value)
    assert not server.sent("sp_releaseapplock") and server.closed == 1


def test_holding_takes_the_lock_says_who_and_releases_it_however_the_block_ends(server: FakeServer) -> None:
    with pytest.raises(RuntimeError), _warehouse().hold(HOLDER, wait=True):
        assert server.sent("@LockTimeout = -1") and server.sent("N'20260102T030405Z-abc123', N'worker-1', 4242")
        assert not server.sent("sp_releaseapplock")
        raise RuntimeError("the run failed")
    assert len(server.sent("sp_releaseapplock")) == 1 and server.closed == 1


def test_publish_takes_the_next_number_retires_views_and_retries_a_lock_timeout(server: FakeServer) -> None:
    server.published, server.versions = 3, {1: "r1", 3: "r3"}
    server.schemas = {
        "marts__v1": {"fct_orders": "U"},
        "marts__v3": {"fct_orders": "U", "old_mart": "U"},
        "marts__v4": {},
    }  # a schema no version names: its number is taken all the same
    server.fail.append(lambda sql: _lock_timeout() if "BEGIN TRANSACTION" in sql else None)
    version = _warehouse().publish("marts__candidate", ["fct_orders", "dim_products"], "run-5", {"marts.fct_orders": 9})
    assert (version.number, version.current, version.row_counts) == (5, True, {"marts.fct_orders": 9})
    swaps = server.sent("BEGIN TRANSACTION")
    assert len(swaps) == 2 and swaps[0] == swaps[1]  # the timed-out transaction changed nothing: sent again
    assert "DROP VIEW IF EXISTS [marts].[old_mart]" in swaps[1] and "GRANT" not in swaps[1]
    assert server.published == 5


def test_publish_that_does_not_commit_is_an_error(server: FakeServer) -> None:
    server.fail.append(
        lambda sql: (
            mssql_python.ProgrammingError("Cannot find the object 'fct_orders'", "")
            if "BEGIN TRANSACTION" in sql
            else None
        )
    )
    with pytest.raises(DataOpsError, match=r"publishing marts__v1 \(nothing was changed\).*Cannot find the object"):
        _warehouse().publish("marts__candidate", ["fct_orders"], "run-1", {})
    assert server.published is None and server.sent("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")


def test_rollback_switches_to_a_kept_version_and_refuses_another(server: FakeServer) -> None:
    server.published, server.versions = 2, {1: "r1", 2: "r2"}
    server.schemas = {"marts__v1": {"fct_orders": "U"}, "marts__v2": {"fct_orders": "U", "new_mart": "U"}}
    version = _warehouse().switch_to(1)
    assert (version.number, version.run_id, version.current) == (1, "r1", True) and server.published == 1
    assert "DROP VIEW IF EXISTS [marts].[new_mart]" in server.sent("BEGIN TRANSACTION")[0]
    with pytest.raises(DataOpsError, match=r"no version 7 to publish \(kept: v1, v2\)"):
        _warehouse().switch_to(7)


def test_drop_versions_keeps_the_published_and_the_newest_and_skips_one_still_read(server: FakeServer) -> None:
    server.published, server.versions = 3, {1: "r1", 2: "r2", 3: "r3", 4: "r4"}
    server.schemas = {f"marts__v{n}": {"fct_orders": "U"} for n in (1, 2, 3, 4)} | {"marts__v9": {"x": "V"}}
    server.fail.append(lambda sql: _lock_timeout() if "DROP SCHEMA IF EXISTS [marts__v1]" in sql else None)
    assert _warehouse().drop_versions(keep=2) == [2, 9]
    assert set(server.schemas) == {"marts__v1", "marts__v3", "marts__v4"}  # v1 is left for the next run
    assert "DROP VIEW IF EXISTS [marts__v9].[x]" in server.sent("DROP SCHEMA IF EXISTS [marts__v9]")[0]


def test_with_nothing_published_no_schema_is_dropped(server: FakeServer) -> None:
    server.schemas = {"marts__v1": {"fct_orders": "U"}}
    assert _warehouse().drop_versions(keep=1) == []
    assert not server.sent("BEGIN TRANSACTION") and "marts__v1" in server.schemas
