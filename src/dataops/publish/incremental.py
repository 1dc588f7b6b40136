"""Incremental builds through the same write-audit-publish path as full ones.

An incremental mart (`materialized: incremental`) merges into its previous state the rows whose
source changed since that state was built. Its previous state is the published version's: before
the build the warehouse puts a copy of it into the candidate (each engine in the cheapest way it
has; a failed run's leftovers are replaced), and dbt merges into that copy, which is audited and
published whole like any candidate. The published version itself is never written, so a reader
never sees a half-merged mart and the version before stays for rollback.

Where the merge starts is the published version's watermark, the newest `modified_at` of its
incremental marts (the oldest of those, if they differ), less the project's lookback; dbt gets it
as the var `dataops_incremental_from`, read by the models and by the data tests that check the
changed rows only (dbt/macros/incremental.sql). Without a published version to start from, one
built before its marts had a watermark, or sources that do not continue it (published orders gone
from the source or changed there without a newer ModifiedDate: another data set was loaded; a
published order, order line, customer or customer's e-mail address gone from the source, or whose
source row changed with a ModifiedDate older than the cutoff), the build is a full refresh."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.warehouse import Warehouse

WATERMARK_COLUMN = "modified_at"
WATERMARK_VAR = "dataops_incremental_from"
# dbt_project.yml's var: how far before the watermark an increment reads the sources.
LOOKBACK_VAR = "incremental_lookback_days"
# The spine of the incremental marts (the lines and the customers' metrics follow the orders), and
# the staging model it is built from: whether the sources continue the published version is
# checked on them.
ORDERS_MART = "fct_orders"
ORDERS_SOURCE = "staging.stg_orders"


@dataclass(frozen=True)
class PublishedFrom:
    """The published rows of `mart` against the `source` rows they were built from, matched on
    `columns` (the mart's column, the source's; rows with a null there aside). Two things an
    increment cannot see: a source row deleted (a merge replaces the rows of the keys it brings and
    keeps every other, and a deletion brings none: `gone_why` says what would stay published), and
    a source row changed since its published row was built with a ModifiedDate older than the
    cutoff (it reached the source later than the lookback allows: no increment brings it)."""

    mart: str
    source: str
    columns: tuple[tuple[str, str], ...]
    rows: str
    gone_why: str

    def sql(self, schema: str) -> str:
        """One scan: the published rows gone from the source, and the earliest ModifiedDate of a
        source row newer than its published row."""
        on = " AND ".join(f"source.{theirs} = built.{ours}" for ours, theirs in self.columns)
        present = " AND ".join(f"built.{ours} IS NOT NULL" for ours, _ in self.columns)
        modified = f"source.{WATERMARK_COLUMN}"
        return (
            f"SELECT SUM(CASE WHEN source.{self.columns[0][1]} IS NULL THEN 1 ELSE 0 END), "
            f"MIN(CASE WHEN {modified} > built.{WATERMARK_COLUMN} THEN {modified} END) "
            f"FROM {schema}.{self.mart} AS built LEFT JOIN {self.source} AS source ON {on} WHERE {present}"
        )


PUBLISHED_FROM = (
    PublishedFrom(
        ORDERS_MART, ORDERS_SOURCE, (("order_id", "order_id"),), "orders", "a merge keeps the orders it does not bring"
    ),
    PublishedFrom(
        "fct_order_lines",
        "staging.stg_order_lines",
        (("order_line_id", "order_line_id"),),
        "order lines",
        "a merge keeps the lines it does not bring (AdventureWorks updates the order's header, not the line)",
    ),
    PublishedFrom(
        "customer_analytics",
        "staging.stg_customers",
        (("customer_id", "customer_id"),),
        "customers",
        "a merge keeps the customers it does not bring",
    ),
    PublishedFrom(
        "customer_analytics",
        "staging.stg_email_addresses",
        (("person_id", "person_id"), ("email", "email_address")),
        "customers' e-mail addresses",
        "a customer is rebuilt only when a row of theirs has a newer ModifiedDate, and a deleted one has none",
    ),
)


@dataclass(frozen=True)
class IncrementalPlan:
    """How the next build goes: incremental from `watermark` (the marts copied from the published
    version), or a full refresh, and why."""

    marts: tuple[str, ...]
    watermark: datetime | None
    reason: str

    @property
    def incremental(self) -> bool:
        return self.watermark is not None

    def dbt_vars(self) -> dict[str, Any]:
        return {WATERMARK_VAR: self.watermark.isoformat(sep=" ")} if self.watermark is not None else {}

    def describe(self) -> str:
        if self.watermark is None:
            return f"full refresh ({self.reason})"
        return f"incremental from {self.watermark:%Y-%m-%d %H:%M:%S} ({self.reason})"


def plan_incremental(
    settings: Settings,
    warehouse: Warehouse,
    marts: list[str],
    lookback: timedelta,
    full_refresh: str | None = None,
) -> IncrementalPlan:
    """Incremental unless the run says why it rebuilds every row (`full_refresh`), and when there
    are incremental marts, the published version has each of them with its watermark column, and
    the sources continue it in what an increment merges from its watermark less `lookback` (the
    project's `incremental_lookback_days`)."""
    if full_refresh is not None:
        return IncrementalPlan(tuple(marts), None, full_refresh)
    if not marts:
        return IncrementalPlan((), None, "no incremental mart")
    published = warehouse.columns(settings.consumer_schema, marts, published=True)
    if not published:
        return IncrementalPlan(tuple(marts), None, "nothing published to start from")
    lacking = [m for m in marts if WATERMARK_COLUMN not in {c.name.lower() for c in published.get(m, [])}]
    if lacking:
        return IncrementalPlan(
            tuple(marts), None, f"the published {', '.join(lacking)} has no {WATERMARK_COLUMN} to start from"
        )
    watermarks = [_watermark(settings, warehouse, mart) for mart in marts]
    if any(w is None for w in watermarks):
        return IncrementalPlan(tuple(marts), None, "a published incremental mart is empty")
    if ORDERS_MART in marts:
        broken, moved = _orders_not_continued(settings, warehouse)
        if broken:
            return IncrementalPlan(
                tuple(marts),
                None,
                f"{broken:,} published orders are gone from the source or changed there without a newer "
                "ModifiedDate: the sources do not continue the published version",
            )
        if moved:
            return IncrementalPlan(
                tuple(marts),
                None,
                f"{moved:,} published orders have another customer in the source: the customers they "
                "left are not among the changed rows, and an increment would keep their old metrics",
            )
    watermark = min(w for w in watermarks if w is not None)
    cutoff = watermark - lookback
    for check in (c for c in PUBLISHED_FROM if c.mart in marts):
        gone, earliest_change = _gone_and_earliest_change(warehouse, check.sql(settings.consumer_schema))
        if gone:
            return IncrementalPlan(
                tuple(marts), None, f"{gone:,} published {check.rows} are gone from the source: {check.gone_why}"
            )
        if earliest_change is not None and earliest_change < cutoff:
            return IncrementalPlan(
                tuple(marts),
                None,
                f"published {check.rows} changed in the source at {earliest_change:%Y-%m-%d %H:%M:%S}, before "
                f"the cutoff {cutoff:%Y-%m-%d %H:%M:%S} (the watermark less the {_days(lookback)} lookback): "
                "no increment would bring them",
            )
    return IncrementalPlan(tuple(marts), watermark, "the published version")


def _orders_not_continued(settings: Settings, warehouse: Warehouse) -> tuple[int, int]:
    """The published orders an increment would keep wrongly: gone from the source (deleted, or
    sources loaded that are another data set), or changed there in their total with no
    ModifiedDate after the one built (a reload, a fault, a change that bypassed the modified date).
    And, apart, those the source has with another customer, whatever their ModifiedDate: the
    increment recomputes the customer an order moved to, never the one it left. A next day of the
    same sources has none of either: its changes all carry a newer ModifiedDate, on the same
    customers. One scan of the published orders for both counts."""
    result = warehouse.read_only_query(
        "SELECT SUM(CASE WHEN source.order_id IS NULL OR (source.modified_at <= built.modified_at "
        "AND source.total_due <> built.total_due) THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN source.customer_id <> built.customer_id THEN 1 ELSE 0 END) "
        f"FROM {settings.consumer_schema}.{ORDERS_MART} AS built "
        f"LEFT JOIN {ORDERS_SOURCE} AS source ON source.order_id = built.order_id"
    )
    if not result.rows:
        return 0, 0
    broken, moved = result.rows[0]
    return int(broken or 0), int(moved or 0)


def _gone_and_earliest_change(warehouse: Warehouse, sql: str) -> tuple[int, datetime | None]:
    result = warehouse.read_only_query(sql)
    if not result.rows:
        return 0, None
    gone, earliest = result.rows[0]
    if earliest is not None and not isinstance(earliest, datetime):
        raise DataOpsError(f"a source's {WATERMARK_COLUMN} is no timestamp: {earliest!r}")
    return int(gone or 0), earliest


def _days(lookback: timedelta) -> str:
    return f"{lookback.days}-day" if lookback == timedelta(days=lookback.days) else str(lookback)


def _watermark(settings: Settings, warehouse: Warehouse, mart: str) -> datetime | None:
    result = warehouse.read_only_query(f"SELECT MAX({WATERMARK_COLUMN}) FROM {settings.consumer_schema}.{mart}")
    value = result.rows[0][0] if result.rows else None
    if value is not None and not isinstance(value, datetime):
        raise DataOpsError(f"the watermark of {settings.consumer_schema}.{mart} is no timestamp: {value!r}")
    return value
