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
from the source or changed there without a newer ModifiedDate: another data set was loaded), or
published marts that do not reconcile with their sources where an increment would leave them as
they are (`Reconciliation`), the build is a full refresh."""

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
class Reconciliation:
    """The published rows of `mart` against the `source` rows they are built from, matched on `key`
    (the mart's column, the source's), compared in the columns an increment must keep as the
    source has them (`compared`, the same pairs), with the source's own `modified` column: what no
    increment would merge right. A published row the source no longer has (a merge keeps the rows
    it does not bring, and a deletion brings none: `gone_why` says what would stay published); a
    source row the published version lacks, or has otherwise, whose `modified` is older than the
    cutoff (it reached the source later than the lookback allows, or was edited behind its
    ModifiedDate: no increment reads it). And, whatever its date, a row that `moved` to another
    parent (the mart's column, the source's, and why that matters): the increment rebuilds what it
    moved to, never what it left."""

    mart: str
    source: str
    key: tuple[str, str]
    compared: tuple[tuple[str, str], ...]
    modified: str
    rows: str
    gone_why: str
    moved: tuple[str, str, str] | None = None

    def sql(self, schema: str) -> str:
        """One scan of both: the published rows gone from the source, the earliest `modified` of a
        source row missing from the published version, and of one that differs from it, and the
        rows that moved (0 without `moved`)."""
        ours, theirs = self.key
        differs = " OR ".join(_differs(b, s) for b, s in self.compared)
        moved = f"built.{ours} IS NOT NULL AND {_differs(*self.moved[:2])}" if self.moved else "1 = 0"
        return (
            f"SELECT SUM(CASE WHEN source.{theirs} IS NULL THEN 1 ELSE 0 END), "
            f"MIN(CASE WHEN built.{ours} IS NULL THEN source.{self.modified} END), "
            f"MIN(CASE WHEN built.{ours} IS NOT NULL AND ({differs}) THEN source.{self.modified} END), "
            f"SUM(CASE WHEN source.{theirs} IS NOT NULL AND {moved} THEN 1 ELSE 0 END) "
            f"FROM {schema}.{self.mart} AS built FULL OUTER JOIN {self.source} AS source "
            f"ON source.{theirs} = built.{ours}"
        )


def _differs(ours: str, theirs: str) -> str:
    """A published column unlike the source's, NULL against a value included (no IS DISTINCT FROM
    in SQL Server before 2022)."""
    same = f"built.{ours} = source.{theirs} OR (built.{ours} IS NULL AND source.{theirs} IS NULL)"
    return f"CASE WHEN {same} THEN 0 ELSE 1 END = 1"


def _same(*columns: str) -> tuple[tuple[str, str], ...]:
    return tuple((column, column) for column in columns)


RECONCILIATIONS = (
    Reconciliation(
        ORDERS_MART,
        ORDERS_SOURCE,
        ("order_id", "order_id"),
        _same(
            "order_number",
            "customer_id",
            "territory_id",
            "sales_person_id",
            "order_date",
            "due_date",
            "ship_date",
            "status",
            "sales_channel",
            "subtotal",
            "tax_amount",
            "freight",
            "total_due",
        ),
        "modified_at",
        "orders",
        "a merge keeps the orders it does not bring",
        moved=(
            "customer_id",
            "customer_id",
            "the customers they left are not among the changed rows, and an increment would keep their old metrics",
        ),
    ),
    Reconciliation(
        "fct_order_lines",
        "staging.stg_order_lines",
        ("order_line_id", "order_line_id"),
        _same("order_id", "product_id", "order_quantity", "unit_price", "unit_price_discount", "line_total"),
        "modified_at",
        "order lines",
        "a merge keeps the lines it does not bring (AdventureWorks updates the order's header, not the line)",
        moved=(
            "order_id",
            "order_id",
            "the orders they left are not among the changed rows, and an increment would keep their old line counts",
        ),
    ),
    # Who a customer is comes from the customer, its person, store and primary e-mail: compared as
    # the profile the mart is built from has them, with the newest ModifiedDate of those rows. What
    # a customer bought follows the orders, reconciled above.
    Reconciliation(
        "customer_analytics",
        "intermediate.int_customer_profiles",
        ("customer_id", "customer_id"),
        _same("customer_type", "customer_name", "contact_name", "email", "person_id", "store_id", "territory_id"),
        "profile_modified_at",
        "customers",
        "a merge keeps the customers it does not bring",
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
    if ORDERS_MART in marts and (broken := _orders_not_continued(settings, warehouse)):
        return IncrementalPlan(
            tuple(marts),
            None,
            f"{broken:,} published orders are gone from the source or changed there without a newer "
            "ModifiedDate: the sources do not continue the published version",
        )
    watermark = min(w for w in watermarks if w is not None)
    cutoff = watermark - lookback
    for check in (c for c in RECONCILIATIONS if c.mart in marts):
        gone, earliest_new, earliest_changed, moved = _reconcile(warehouse, check.sql(settings.consumer_schema))
        if gone:
            return IncrementalPlan(
                tuple(marts), None, f"{gone:,} published {check.rows} are gone from the source: {check.gone_why}"
            )
        if moved and check.moved is not None:
            parent = check.moved[1].removesuffix("_id")
            return IncrementalPlan(
                tuple(marts),
                None,
                f"{moved:,} published {check.rows} have another {parent} in the source: {check.moved[2]}",
            )
        for what, earliest in (("are new", earliest_new), ("changed", earliest_changed)):
            if earliest is not None and earliest < cutoff:
                return IncrementalPlan(
                    tuple(marts),
                    None,
                    f"{check.rows} {what} in the source, last modified {earliest:%Y-%m-%d %H:%M:%S}, "
                    f"before the cutoff {cutoff:%Y-%m-%d %H:%M:%S} (the watermark less the {_days(lookback)} "
                    "lookback): no increment would read them",
                )
    return IncrementalPlan(tuple(marts), watermark, "the published version")


def _orders_not_continued(settings: Settings, warehouse: Warehouse) -> int:
    """The published orders that say the sources are not the ones published: gone from the source
    (deleted, or sources loaded that are another data set), or changed there in their total with no
    ModifiedDate after the one built (a reload, a fault, a change that bypassed the modified date).
    A next day of the same sources has none: its changes all carry a newer ModifiedDate."""
    result = warehouse.read_only_query(
        "SELECT SUM(CASE WHEN source.order_id IS NULL OR (source.modified_at <= built.modified_at "
        "AND source.total_due <> built.total_due) THEN 1 ELSE 0 END) "
        f"FROM {settings.consumer_schema}.{ORDERS_MART} AS built "
        f"LEFT JOIN {ORDERS_SOURCE} AS source ON source.order_id = built.order_id"
    )
    return int(result.rows[0][0] or 0) if result.rows else 0


def _reconcile(warehouse: Warehouse, sql: str) -> tuple[int, datetime | None, datetime | None, int]:
    result = warehouse.read_only_query(sql)
    if not result.rows:
        return 0, None, None, 0
    gone, earliest_new, earliest_changed, moved = result.rows[0]
    for earliest in (earliest_new, earliest_changed):
        if earliest is not None and not isinstance(earliest, datetime):
            raise DataOpsError(f"a source's ModifiedDate is no timestamp: {earliest!r}")
    return int(gone or 0), earliest_new, earliest_changed, int(moved or 0)


def _days(lookback: timedelta) -> str:
    return f"{lookback.days}-day" if lookback == timedelta(days=lookback.days) else str(lookback)


def _watermark(settings: Settings, warehouse: Warehouse, mart: str) -> datetime | None:
    result = warehouse.read_only_query(f"SELECT MAX({WATERMARK_COLUMN}) FROM {settings.consumer_schema}.{mart}")
    value = result.rows[0][0] if result.rows else None
    if value is not None and not isinstance(value, datetime):
        raise DataOpsError(f"the watermark of {settings.consumer_schema}.{mart} is no timestamp: {value!r}")
    return value
