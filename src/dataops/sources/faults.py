"""Controlled, reproducible faults injected into the ten AdventureWorks source tables.

Each fault damages the data in one precise way that one named check of the pipeline must catch
(`Fault.caught_by`, in the words the run summary uses), and keeps everything else consistent so
that, as far as the data allows, only that check fires: money invariants are recomputed exactly
where a fault changes an amount, foreign keys are kept where a fault is not about them, and the
newest ModifiedDate is kept where a fault is not about freshness.

`inject(tables, faults, seed)` returns new tables and never changes its input. The result depends
only on the tables, the *set* of fault names and the seed:

- every fault draws from its own generator, seeded from `(seed, crc32(name))`, so adding a second
  fault does not change which rows the first one picks;
- faults are applied in a fixed order (`_APPLY_ORDER`), whatever order they are given in: the
  volume and date faults first (so the row faults pick rows that survive them), then the value
  faults, then the row duplications (so a duplicate is a copy of the damaged row) and the schema
  faults last (every data fault needs the contract's columns).

Everything is vectorised with NumPy and `pyarrow.compute`; money is handled as int64 counts of
1e-4 (money) or 1e-6 (LineTotal) read straight from the decimal128 buffers, never as a float.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataops.core.errors import DataOpsError
from dataops.sources.edits import (
    LINE_TOTAL,
    decimal,
    ids,
    ms,
    replace_rows,
    round_div,
    set_order_money,
    timestamps,
    units,
)

__all__ = ["FAULTS", "Fault", "inject"]

Tables = dict[str, pa.Table]

_CUSTOMER = "Sales.Customer"
_HEADER = "Sales.SalesOrderHeader"
_DETAIL = "Sales.SalesOrderDetail"
_EMAIL = "Person.EmailAddress"

_DAY_MS = 86_400_000
_FEW = 3
"""How many rows the row-level faults touch: enough to show up as a count, few enough to find."""

_MAX_SMALLINT = 32_767

# Money in int64 units of 1e-4; 1,000,000 is the upper bound of customer_analytics.lifetime_value.
_LIFETIME_LIMIT = 1_000_000 * 10_000
_EXTREME_LIFETIME = 1_200_000 * 10_000  # the target: clearly beyond the limit, not just over it


@dataclass(frozen=True)
class Fault:
    """One kind of bad data and the check that must catch it."""

    name: str
    description: str
    caught_by: tuple[str, ...]
    outcome: Literal["fail", "warn"]
    apply: Callable[[Tables, np.random.Generator], Tables]


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _table(tables: Tables, name: str, fault: str) -> pa.Table:
    if name not in tables:
        raise DataOpsError(f"Cannot inject {fault}: there is no {name} table.")
    return tables[name]


def _column(table: pa.Table, name: str, column: str, fault: str) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise DataOpsError(f"Cannot inject {fault}: {name} has no {column} column (another fault removed it?).")
    return table.column(column)


def _pick(rng: np.random.Generator, candidates: np.ndarray, k: int, fault: str) -> np.ndarray:
    """`k` distinct candidates (all of them if fewer), ascending, as row indices."""
    if len(candidates) == 0:
        raise DataOpsError(f"Cannot inject {fault}: the data has no row it applies to.")
    chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _customer_sums(customer_ids: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """For each row, the sum of `amounts` over all rows with the same customer, exactly in int64."""
    _, inverse = np.unique(customer_ids, return_inverse=True)
    sums = np.zeros(int(inverse.max()) + 1 if len(inverse) else 0, dtype=np.int64)
    np.add.at(sums, inverse, amounts)
    return sums[inverse]


# ---------------------------------------------------------------------------------------------
# The faults
# ---------------------------------------------------------------------------------------------


def _null_primary_key(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "null_primary_key"
    customer = _table(tables, _CUSTOMER, fault)
    _column(customer, _CUSTOMER, "CustomerID", fault)
    rows = _pick(rng, np.arange(customer.num_rows), _FEW, fault)
    # The field must become nullable: Parquet refuses to write NULLs in a non-nullable column.
    customer = replace_rows(customer, "CustomerID", rows, pa.nulls(len(rows), pa.int32()), nullable=True)
    return {**tables, _CUSTOMER: customer}


def _duplicate_order(tables: Tables, rng: np.random.Generator) -> Tables:
    header = _table(tables, _HEADER, "duplicate_order")
    rows = _pick(rng, np.arange(header.num_rows), _FEW, "duplicate_order")
    # Exact copies appended, as a load that ran twice for a few orders would leave them; their
    # lines are not copied (the lines' own key would then be duplicated too, a different fault).
    return {**tables, _HEADER: pa.concat_tables([header, header.take(rows)])}


def _negative_total(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "negative_total"
    header, detail = _table(tables, _HEADER, fault), _table(tables, _DETAIL, fault)
    total = units(_column(header, _HEADER, "TotalDue", fault))
    customer = ids(header.column("CustomerID"))
    # Prefer an order whose customer's other orders outweigh it, so that the customer's lifetime
    # value stays >= 0 and the lifetime_value range check does not fire as well.
    others_outweigh = (_customer_sums(customer, total) - 2 * total >= 0) & (total > 0)
    candidates = np.flatnonzero(others_outweigh)
    if len(candidates) == 0:
        candidates = np.flatnonzero(total > 0)
    row = _pick(rng, candidates, 1, fault)
    for column in ("SubTotal", "TaxAmt", "Freight", "TotalDue"):
        header = replace_rows(header, column, row, pc.negate(header.column(column).take(row)))
    # Negating UnitPrice and LineTotal (never OrderQty, which must stay >= 1) keeps LineTotal =
    # OrderQty * UnitPrice * (1 - discount) and SubTotal = round(SUM(LineTotal), 4): SQL rounds half
    # away from zero, so round(-x) = -round(x) and the totals still match their lines.
    order_id = header.column("SalesOrderID")[int(row[0])]
    lines = pc.equal(detail.column("SalesOrderID"), order_id).combine_chunks()
    for column in ("UnitPrice", "LineTotal"):
        detail = replace_rows(detail, column, lines, pc.negate(detail.column(column).filter(lines)))
    return {**tables, _HEADER: header, _DETAIL: detail}


def _future_order_date(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "future_order_date"
    header = _table(tables, _HEADER, fault)
    order = ms(_column(header, _HEADER, "OrderDate", fault))
    newest = int(max(order.max(), ms(header.column("ModifiedDate")).max()))
    rows = _pick(rng, np.arange(header.num_rows), _FEW, fault)
    # Midnight, like every OrderDate, 31 to 60 days after the newest day: at least 30 days after
    # the newest timestamp, whatever its time of day.
    new_order = newest - newest % _DAY_MS + (31 + rng.integers(0, 30, size=len(rows))) * _DAY_MS
    shift = new_order - order[rows]
    due = ms(header.column("DueDate").take(rows)) + shift
    header = replace_rows(header, "OrderDate", rows, timestamps(new_order))
    header = replace_rows(header, "DueDate", rows, timestamps(due))
    # An order dated in the future cannot have shipped. ModifiedDate stays: the row was written
    # when it was (a mistyped date), so freshness and recency do not change.
    header = replace_rows(header, "ShipDate", rows, pa.nulls(len(rows), pa.timestamp("ms")))
    return {**tables, _HEADER: header}


def _orphan_order(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "orphan_order"
    header, customer = _table(tables, _HEADER, fault), _table(tables, _CUSTOMER, fault)
    known = ids(_column(customer, _CUSTOMER, "CustomerID", fault))
    rows = _pick(rng, np.arange(header.num_rows), _FEW, fault)
    # Ids just above the largest existing one: certainly unknown, and still valid ints.
    missing = int(known.max(initial=0)) + 1 + np.arange(len(rows), dtype=np.int64)
    header = replace_rows(header, "CustomerID", rows, pa.array(missing, pa.int32()))
    # The order's AccountNumber (10-4030-000123) embeds its customer id; keep the two in step.
    account = header.column("AccountNumber").take(rows)
    renumbered = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(account, 0, 8), pc.utf8_lpad(pa.array(missing).cast(pa.string()), 6, "0"), ""
    )
    header = replace_rows(header, "AccountNumber", rows, renumbered)
    return {**tables, _HEADER: header}


def _malformed_email(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "malformed_email"
    email = _table(tables, _EMAIL, fault)
    values = _column(email, _EMAIL, "EmailAddress", fault)
    has_at = pc.fill_null(pc.match_substring(values, "@"), False).to_numpy(zero_copy_only=False)
    rows = _pick(rng, np.flatnonzero(has_at), _FEW, fault)
    chosen = values.take(rows)
    # Three ways a typed address goes wrong, used in turn: no @, two @, and a space before the @.
    variants = (
        pc.replace_substring(chosen, "@", "."),
        pc.replace_substring(chosen, "@", "@@"),
        pc.replace_substring(chosen, "@", " @"),
    )
    which = pa.array(np.arange(len(rows)) % len(variants), pa.int8())
    broken = pc.choose(which, *(v.combine_chunks() for v in variants))
    return {**tables, _EMAIL: replace_rows(email, "EmailAddress", rows, broken)}


_STALE_SHIFT = pa.scalar(timedelta(days=30), pa.duration("ms"))
_STALE_COLUMNS = {
    _HEADER: ("OrderDate", "DueDate", "ShipDate", "ModifiedDate"),
    _DETAIL: ("ModifiedDate",),
    _CUSTOMER: ("ModifiedDate",),
}


def _stale_source(tables: Tables, rng: np.random.Generator) -> Tables:
    # The orders, their lines and the customers as they were 30 days ago: every date moves, so the
    # rows stay consistent with each other (ModifiedDate >= OrderDate, ShipDate = OrderDate + 7d).
    out = dict(tables)
    for name, columns in _STALE_COLUMNS.items():
        table = _table(tables, name, "stale_source")
        for column in columns:
            index = table.schema.get_field_index(column)
            shifted = pc.subtract(_column(table, name, column, "stale_source"), _STALE_SHIFT)
            table = table.set_column(index, table.schema.field(index), shifted)
        out[name] = table
    return out


def _dropped_column(tables: Tables, rng: np.random.Generator) -> Tables:
    header = _table(tables, _HEADER, "dropped_column")
    _column(header, _HEADER, "TotalDue", "dropped_column")
    return {**tables, _HEADER: header.drop_columns(["TotalDue"])}


def _renamed_column(tables: Tables, rng: np.random.Generator) -> Tables:
    customer = _table(tables, _CUSTOMER, "renamed_column")
    _column(customer, _CUSTOMER, "AccountNumber", "renamed_column")
    names = ["Account_Number" if n == "AccountNumber" else n for n in customer.column_names]
    return {**tables, _CUSTOMER: customer.rename_columns(names)}


def _changed_column_type(tables: Tables, rng: np.random.Generator) -> Tables:
    header = _table(tables, _HEADER, "changed_column_type")
    total = _column(header, _HEADER, "TotalDue", "changed_column_type")
    # "1234.56 USD": rounded to cents as decimals, so the text is exact and never goes via a float.
    cents = pc.round(total, ndigits=2, round_mode="half_towards_infinity").cast(pa.decimal128(19, 2))
    text = pc.binary_join_element_wise(cents.cast(pa.string()), " USD", "")
    index = header.schema.get_field_index("TotalDue")
    return {**tables, _HEADER: header.set_column(index, pa.field("TotalDue", pa.string(), nullable=False), text)}


_TRUNCATED_SHARE = 0.02


def _truncated_load(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "truncated_load"
    header, detail = _table(tables, _HEADER, fault), _table(tables, _DETAIL, fault)
    n = header.num_rows
    keep = max(1, round(n * _TRUNCATED_SHARE))
    # Always keep the most recently modified order, so freshness and recency still pass and only
    # the volume check notices; the rest of the survivors are a random sample, in their order.
    newest = int(np.argmax(ms(_column(header, _HEADER, "ModifiedDate", fault))))
    others = np.delete(np.arange(n), newest)
    rows = np.sort(np.concatenate([[newest], rng.choice(others, size=keep - 1, replace=False)]))
    header = header.take(rows)
    lines = pc.is_in(detail.column("SalesOrderID"), value_set=header.column("SalesOrderID").combine_chunks())
    return {**tables, _HEADER: header, _DETAIL: detail.filter(lines)}


def _extreme_value(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "extreme_value"
    header = _table(tables, _HEADER, fault)
    detail = _table(tables, _DETAIL, fault)
    customer = _table(tables, _CUSTOMER, fault)

    store_customers = pc.filter(customer.column("CustomerID"), pc.is_valid(customer.column("StoreID")))
    order_customer = ids(header.column("CustomerID"))
    total = units(_column(header, _HEADER, "TotalDue", fault))
    lifetime = _customer_sums(order_customer, total)
    store_order = pc.is_in(header.column("CustomerID"), value_set=store_customers.combine_chunks()).to_numpy(
        zero_copy_only=False
    )

    # Each line's order (first header row with its id) and whether that order is a store customer's.
    order_row = pc.index_in(detail.column("SalesOrderID"), value_set=header.column("SalesOrderID").combine_chunks())
    order_row = pc.fill_null(order_row, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    qty = detail.column("OrderQty").to_numpy().astype(np.int64)
    price = units(detail.column("UnitPrice"))
    discount = units(detail.column("UnitPriceDiscount"))
    net = price * (10_000 - discount)  # one unit's LineTotal in 1e-8: UnitPrice * (1 - discount)

    # The quantity that takes the customer's lifetime value to about 1.2 million: the SubTotal must
    # grow by the missing TotalDue / 1.105 (tax 8 % and freight 2.5 % come on top).
    line_lifetime = np.where(order_row >= 0, lifetime[np.maximum(order_row, 0)], 0)
    missing_sub = -(-np.maximum(_EXTREME_LIFETIME - line_lifetime, 0) * 1000 // 1105)  # 1e-4, ceil
    # Whole units, rounded up; at least one, so the fault always changes the data.
    extra = np.maximum(-(-missing_sub * 10_000 // np.maximum(net, 1)), 1)
    new_qty = qty + extra
    usable = (
        (order_row >= 0)
        & store_order[np.maximum(order_row, 0)]
        & (net > 0)
        & (total[np.maximum(order_row, 0)] > 0)
        & (new_qty <= _MAX_SMALLINT)
    )
    line = int(_pick(rng, np.flatnonzero(usable), 1, fault)[0])
    line_rows = np.array([line])

    line_total = round_div(new_qty[line : line + 1] * net[line : line + 1], 100)  # 1e-8 -> 1e-6
    detail = replace_rows(detail, "OrderQty", line_rows, pa.array(new_qty[line : line + 1], pa.int16()))
    detail = replace_rows(detail, "LineTotal", line_rows, decimal(line_total, LINE_TOTAL))

    # Recompute the order's money from all of its lines, exactly as the generator does.
    order_id = detail.column("SalesOrderID")[line]
    order_lines = pc.equal(detail.column("SalesOrderID"), order_id)
    sub_total = round_div(np.array([units(detail.column("LineTotal").filter(order_lines)).sum()]), 100)
    order_rows = np.flatnonzero(pc.equal(header.column("SalesOrderID"), order_id).to_numpy(zero_copy_only=False))
    header = set_order_money(header, order_rows, np.repeat(sub_total, len(order_rows)))

    new_total = units(header.column("TotalDue"))
    who = order_customer[order_rows[0]]
    if new_total[order_customer == who].sum() <= _LIFETIME_LIMIT:  # cannot happen by construction
        raise DataOpsError(f"Cannot inject {fault}: customer {who}'s lifetime value stayed below 1,000,000.")
    return {**tables, _HEADER: header, _DETAIL: detail}


def _duplicate_customer(tables: Tables, rng: np.random.Generator) -> Tables:
    customer = _table(tables, _CUSTOMER, "duplicate_customer")
    rows = _pick(rng, np.arange(customer.num_rows), _FEW, "duplicate_customer")
    return {**tables, _CUSTOMER: pa.concat_tables([customer, customer.take(rows)])}


_MISMATCH = 100 * 10_000  # 100.0000 in 1e-4 units


def _order_total_mismatch(tables: Tables, rng: np.random.Generator) -> Tables:
    fault = "order_total_mismatch"
    header = _table(tables, _HEADER, fault)
    rows = _pick(rng, np.arange(header.num_rows), _FEW, fault)
    # TaxAmt, Freight and TotalDue follow the inflated SubTotal by the usual rules, so the order is
    # consistent in itself (TotalDue = SubTotal + TaxAmt + Freight) and only the comparison of
    # SubTotal with its lines fails.
    sub_total = units(_column(header, _HEADER, "SubTotal", fault).take(rows)) + _MISMATCH
    return {**tables, _HEADER: set_order_money(header, rows, sub_total)}


# ---------------------------------------------------------------------------------------------
# Registry and entry point
# ---------------------------------------------------------------------------------------------

_LOAD = ("load validation",)

FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "null_primary_key",
            "NULL CustomerID in a few Sales.Customer rows",
            _LOAD,
            "fail",
            _null_primary_key,
        ),
        Fault(
            "duplicate_order",
            "a few Sales.SalesOrderHeader rows loaded twice (same SalesOrderID and number)",
            ("unique on stg_orders.order_id", "assert_no_duplicate_orders"),
            "fail",
            _duplicate_order,
        ),
        Fault(
            "negative_total",
            "one order with negative SubTotal, TaxAmt, Freight, TotalDue and line amounts",
            ("assert_no_negative_revenue",),
            "fail",
            _negative_total,
        ),
        Fault(
            "future_order_date",
            "a few orders dated 30 to 60 days after the newest date in the data",
            # The order-date range test on the staging model fires first; dbt then skips the marts,
            # and with them the singular test that would also have caught it.
            ("accepted_range on stg_orders.order_date", "assert_no_future_order_dates"),
            "fail",
            _future_order_date,
        ),
        Fault(
            "orphan_order",
            "a few orders pointing at a CustomerID that does not exist",
            ("relationships on stg_orders.customer_id", "assert_every_order_has_customer"),
            "fail",
            _orphan_order,
        ),
        Fault(
            "malformed_email",
            "a few e-mail addresses malformed (no @, two @, a space)",
            ("matches_regex on stg_email_addresses.email_address",),
            "warn",
            _malformed_email,
        ),
        Fault(
            "stale_source",
            "orders, order lines and customers as of 30 days ago (every date moved back 30 days)",
            ("freshness of sales.SalesOrderHeader",),
            "warn",
            _stale_source,
        ),
        Fault(
            "dropped_column",
            "Sales.SalesOrderHeader without its TotalDue column",
            _LOAD,
            "fail",
            _dropped_column,
        ),
        Fault(
            "renamed_column",
            "Sales.Customer's AccountNumber column renamed to Account_Number",
            _LOAD,
            "fail",
            _renamed_column,
        ),
        Fault(
            "changed_column_type",
            "Sales.SalesOrderHeader TotalDue as text like '1234.56 USD'",
            _LOAD,
            "fail",
            _changed_column_type,
        ),
        Fault(
            "truncated_load",
            "Sales.SalesOrderHeader cut to 2% of its rows, with only those orders' lines",
            ("expect_table_row_count_to_be_between on fct_orders",),
            "fail",
            _truncated_load,
        ),
        Fault(
            "extreme_value",
            "one store customer's lifetime value pushed past 1,000,000 by one huge order line",
            ("accepted_range on customer_analytics.lifetime_value",),
            "fail",
            _extreme_value,
        ),
        Fault(
            "duplicate_customer",
            "a few Sales.Customer rows loaded twice",
            ("unique on stg_customers.customer_id",),
            "fail",
            _duplicate_customer,
        ),
        Fault(
            "order_total_mismatch",
            "a few orders whose SubTotal is 100.0000 more than the sum of their lines",
            ("assert_order_totals_match_lines",),
            "fail",
            _order_total_mismatch,
        ),
    )
}

_APPLY_ORDER: tuple[str, ...] = (
    "truncated_load",
    "stale_source",
    "future_order_date",
    "orphan_order",
    "negative_total",
    "extreme_value",
    "order_total_mismatch",
    "malformed_email",
    "null_primary_key",
    "duplicate_order",
    "duplicate_customer",
    "dropped_column",
    "renamed_column",
    "changed_column_type",
)


def _fault_rng(seed: int, name: str) -> np.random.Generator:
    # crc32, unlike hash(), is the same in every process, so the rows picked are reproducible.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def inject(tables: dict[str, pa.Table], faults: Sequence[str], seed: int = 0) -> dict[str, pa.Table]:
    """The tables with `faults` (names from `FAULTS`) injected; the input is left as it was.

    Raises `DataOpsError` for an unknown fault name (listing the valid ones), a bad seed, or
    faults that cannot be combined (e.g. dropped_column with changed_column_type)."""
    if isinstance(faults, str):  # a lone name would otherwise be taken letter by letter
        faults = [faults]
    unknown = [name for name in faults if name not in FAULTS]
    if unknown:
        raise DataOpsError(
            f"Unknown fault{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"use one of {', '.join(FAULTS)}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataOpsError(f"The fault seed must be a non-negative integer, not {seed!r}.")
    wanted = set(faults)
    out = dict(tables)
    for name in _APPLY_ORDER:
        if name in wanted:
            out = FAULTS[name].apply(out, _fault_rng(int(seed), name))
    return out
