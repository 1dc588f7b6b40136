"""The warehouse seen from the pipeline: load source tables, check what is there, run a read-only
query, hold the target, publish a version of the marts. Each engine implements it in its own module;
nothing else in dataops speaks an engine's SQL.

Publishing (write-audit-publish): dbt builds the marts into the candidate schema, which no consumer
reads; once every check passed, `publish` makes it the next numbered version and, in one atomic
step, the version every consumer of `consumer_schema` reads. Each engine keeps the last versions
for `switch_to` (rollback)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Version:
    """One published (or publishable) version of the marts, as the warehouse keeps it."""

    number: int
    run_id: str
    built_at: str
    row_counts: dict[str, int] = field(default_factory=dict)
    published_at: str | None = None  # the first time it became the published version
    current: bool = False

    @property
    def label(self) -> str:
        return f"v{self.number}"


@dataclass(frozen=True)
class MartDiff:
    """The candidate against the published version of one mart, row by row on its key."""

    mart: str
    key: tuple[str, ...]
    added: int
    removed: int
    changed: int
    changed_columns: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a target: shown to the run that has to wait for it."""

    run_id: str
    host: str
    pid: int
    since: str

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since})"


class TargetBusy(Exception):
    """The target is held by another run; raised by `hold` when the caller does not wait."""

    def __init__(self, holder: LockHolder | None) -> None:
        super().__init__(holder.describe() if holder else "another run (it did not say which)")
        self.holder = holder


def _is_distinct_from(left: str, right: str) -> str:
    return f"{left} IS DISTINCT FROM {right}"


def diff_sql(
    quote: Callable[[str], str],
    candidate: str,
    published: str,
    key: Sequence[str],
    columns: Sequence[str],
    distinct: Callable[[str, str], str] = _is_distinct_from,
) -> str:
    """One statement that compares two relations on `key`: rows added, removed, changed, and per
    column how many of the matched rows changed. Standard SQL (IS DISTINCT FROM) every engine here
    runs; each engine passes its own quoting and relation names, and may pass its own NULL-safe
    comparison (`distinct`: SQL Server before 2022 has no IS DISTINCT FROM)."""
    joined = " AND ".join(f"c.{quote(k)} = p.{quote(k)}" for k in key)
    first = quote(key[0])
    compared = [c for c in columns if c not in key]
    changed_any = " OR ".join(distinct(f"c.{quote(c)}", f"p.{quote(c)}") for c in compared) or "1 = 0"
    per_column = "".join(
        f", SUM(CASE WHEN c.{first} IS NOT NULL AND p.{first} IS NOT NULL "
        f"AND {distinct(f'c.{quote(c)}', f'p.{quote(c)}')} THEN 1 ELSE 0 END)"
        for c in compared
    )
    return (
        f"SELECT SUM(CASE WHEN p.{first} IS NULL THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN c.{first} IS NULL THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN c.{first} IS NOT NULL AND p.{first} IS NOT NULL AND ({changed_any}) THEN 1 ELSE 0 END)"
        f"{per_column} FROM {candidate} c FULL OUTER JOIN {published} p ON {joined}"
    )


def limited_select(sql: str, limit: int) -> str:
    """At most `limit` rows of `sql`, with LIMIT (DuckDB, PostgreSQL; SQL Server has its own), on
    lines of their own: `sql`'s last line may be a comment."""
    return f"SELECT * FROM (\n{sql}\n) AS limited LIMIT {int(limit)}"


def mart_diff(mart: str, key: Sequence[str], columns: Sequence[str], row: Sequence[Any]) -> MartDiff:
    """The answer of `diff_sql` as a MartDiff (an empty comparison sums to NULL: zero)."""
    values = [int(value or 0) for value in row]
    compared = [c for c in columns if c not in key]
    per_column = {c: n for c, n in zip(compared, values[3:], strict=True) if n}
    return MartDiff(mart, tuple(key), values[0], values[1], values[2], per_column)


# Where each engine keeps the id of the last load of the source tables, written in the load's own
# transaction: which data a run built from, so that a slim deploy knows when the sources were
# loaded again (the same row counts may hold other rows).
SOURCE_LOAD_SCHEMA = "dataops_sources"
SOURCE_LOAD_TABLE = "source_load"


def new_load_id() -> str:
    return uuid.uuid4().hex


class Warehouse(Protocol):
    def replace_source_tables(self, tables: dict[str, pa.Table]) -> None:
        """Replace every given `Schema.Table` at once: all of them or, on any error, none; and,
        with them, the id of the load (see `source_load`)."""

    def source_load(self) -> str | None:
        """The id of the last load of the source tables; None when dataops never loaded them here."""

    def missing_source_tables(self) -> list[str]:
        """The contract tables that are not in the warehouse yet."""

    def missing_relations(self, schema: str, names: list[str]) -> list[str]:
        """`schema.name` of each of `names` that is no table or view there, as an unquoted name in
        a query would be looked up (a missing warehouse misses them all)."""

    def row_counts(self, qualified_names: list[str]) -> dict[str, int]:
        """Rows per `schema.table` (a source table or a model) of those that exist; a missing one
        is left out."""

    def read_only_query(self, sql: str) -> QueryResult:
        """Run one statement on a connection that cannot write."""

    def sample_rows(self, sql: str, limit: int) -> QueryResult:
        """The first `limit` rows of a query dbt compiled for this target (a data test's failing
        rows), on a connection that cannot write, naming relations as dbt does."""

    def ping(self) -> str:
        """Connect and return the server's version; raise DataOpsError with its own error."""

    def gx_datasource(self, context: Any, name: str, published: bool = False) -> Any:
        """A Great Expectations SQL datasource on this warehouse, for checks that run in it: on the
        candidate, or on the published version (`published`), as consumers read it."""

    # One writer per target -------------------------------------------------------------------

    def hold(self, holder: LockHolder, wait: bool) -> AbstractContextManager[None]:
        """Hold the target for one run (load to publish), released when the block ends or the
        process dies. Taken by another run: wait for it (`wait`), else raise TargetBusy."""

    # Publishing ------------------------------------------------------------------------------

    def columns(self, schema: str, marts: Sequence[str], published: bool = False) -> dict[str, list[Column]]:
        """Each mart's columns and types in `schema` (the candidate), or in the published version
        (`published`); a mart that is not there is left out."""

    def published_row_counts(self, marts: Sequence[str]) -> dict[str, int]:
        """Rows per mart of the published version (empty when nothing is published yet)."""

    def data_diff(self, candidate_schema: str, mart: str, key: Sequence[str], columns: Sequence[str]) -> MartDiff:
        """The candidate's mart against the published one, on `key`."""

    def versions(self) -> list[Version]:
        """Every version kept, newest first; the published one has `current`."""

    def publish(
        self,
        candidate_schema: str,
        marts: Sequence[str],
        run_id: str,
        row_counts: dict[str, int],
        grant_to: str | None = None,
    ) -> Version:
        """Make the candidate the next version and, in one atomic step for all marts, the published
        one. Fails whole: the version published before stays as it was."""

    def switch_to(self, number: int, grant_to: str | None = None) -> Version:
        """Make a kept version the published one again (rollback), atomically."""

    def drop_versions(self, keep: int) -> list[int]:
        """Drop all but the published version and the `keep - 1` newest others; what a killed
        publish left half-made goes too. Returns the numbers dropped."""

    def fill_candidate(self, candidate_schema: str, marts: Sequence[str]) -> list[str]:
        """Before a partial build (`--select`): each of `marts` the candidate lacks, copied into it
        from the published version, so that the build's tests and the quality suites read whole
        marts. Returns those copied; none when nothing is published."""

    def prepare_incremental(self, candidate_schema: str, marts: Sequence[str]) -> None:
        """Before an incremental build: the candidate holds the published version's copy of each
        of `marts` (replacing whatever a failed run left there), for dbt to merge into. The
        published version is never written; each engine copies in the cheapest way it has."""


def release_dbt_connections(settings: Settings) -> None:
    """Let go of what a dbt adapter keeps open in this process once its command has finished,
    so the warehouse can be opened again (DuckDB allows one configuration per file)."""
    if settings.engine == "duckdb":
        from dataops.warehouse.duckdb import release_dbt_connections as release

        release()


def connect(settings: Settings) -> Warehouse:
    if settings.engine == "duckdb":
        from dataops.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(settings.duckdb_path, consumer_schema=settings.consumer_schema)
    if settings.engine == "sqlserver":
        from dataops.warehouse.sqlserver import SqlServerWarehouse

        return SqlServerWarehouse(settings.connection(), consumer_schema=settings.consumer_schema)
    if settings.engine == "postgres":
        from dataops.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(settings.connection(), consumer_schema=settings.consumer_schema)
    raise DataOpsError(f"target '{settings.target}' uses engine '{settings.engine}', which dataops cannot load yet")
