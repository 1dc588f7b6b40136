"""`dataops query`: one read-only SELECT against the warehouse, for a quick look at the marts."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.warehouse import QueryResult, connect

_SQLGLOT_DIALECTS = {"duckdb": "duckdb", "postgres": "postgres", "sqlserver": "tsql"}


def ensure_single_select(sql: str, engine: str) -> None:
    """Refuse anything but one SELECT (WITH ... SELECT and set operations included)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=_SQLGLOT_DIALECTS.get(engine)) if s]
    except ParseError as error:
        first = str(error).splitlines()[0]
        raise DataOpsError(f"the query does not parse: {first}") from error
    if len(statements) != 1:
        raise DataOpsError(f"give exactly one SELECT statement, not {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        kind = statement.key.upper()
        raise DataOpsError(f"only SELECT queries are allowed here, not {kind}")
    if any(isinstance(node, (exp.Into, exp.DML, exp.Create, exp.Drop)) for node in statement.walk()):
        raise DataOpsError("only read-only SELECT queries are allowed here")


def run_query(settings: Settings, sql: str) -> QueryResult:
    ensure_single_select(sql, settings.engine)
    return connect(settings).read_only_query(sql)
