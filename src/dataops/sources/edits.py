"""Exact edits of Arrow source tables, shared by the fault injection and the next day's data:
amounts as their unscaled int64 units (never through a float), timestamps as milliseconds, and
rows replaced in place."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataops.core.errors import DataOpsError

MONEY = pa.decimal128(19, 4)
LINE_TOTAL = pa.decimal128(38, 6)


def mask_of(n: int, rows: np.ndarray) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def replace_rows(
    table: pa.Table,
    column: str,
    rows: np.ndarray | pa.Array,
    values: pa.Array | pa.ChunkedArray,
    nullable: bool | None = None,
) -> pa.Table:
    """`table` with `column` set to `values` on `rows` (ascending indices or a boolean mask)."""
    index = table.schema.get_field_index(column)
    field = table.schema.field(index)
    if nullable is not None:
        field = field.with_nullable(nullable)
    mask = rows if isinstance(rows, pa.Array) else mask_of(table.num_rows, rows)
    if isinstance(values, pa.ChunkedArray):  # replace_with_mask wants one array of replacements
        values = values.combine_chunks()
    updated = pc.replace_with_mask(table.column(index), mask, values.cast(field.type))
    return table.set_column(index, field, updated)


def units(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The unscaled int64 values of a decimal128 array (e.g. 1.5 as money -> 15000), exactly."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if len(array) == 0:
        return np.zeros(0, dtype=np.int64)
    words = np.frombuffer(array.buffers()[1], dtype="<i8").reshape(-1, 2)
    words = words[array.offset : array.offset + len(array)]
    low, high = words[:, 0], words[:, 1]
    # The high word of a value that fits in int64 is just its sign; anything else is out of reach.
    if not np.array_equal(high, low >> 63):
        raise DataOpsError("An amount is too large to be handled exactly (more than 18 digits).")
    return low.copy()


def decimal(units: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A decimal128 array whose unscaled values are exactly the int64 `units`."""
    units = np.asarray(units, dtype=np.int64)
    words = np.empty((len(units), 2), dtype="<i8")  # 16 bytes each, little-endian two's complement
    words[:, 0] = units
    words[:, 1] = units >> 63
    return pa.Array.from_buffers(type_, len(units), [None, pa.py_buffer(words)])


def round_div(units: np.ndarray, divisor: int) -> np.ndarray:
    """`units / divisor` rounded half away from zero, as SQL `round()` does on decimals."""
    magnitude = (np.abs(units) + divisor // 2) // divisor
    return np.sign(units) * magnitude


def ms(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Timestamps as int64 milliseconds; NULL becomes the smallest int64, older than any date."""
    return pc.fill_null(values.cast(pa.int64()), np.iinfo(np.int64).min).to_numpy()


def timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), type=pa.timestamp("ms"))


def order_money(sub_total: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TaxAmt, Freight and TotalDue of SubTotals (1e-4 units), by the generator's rules."""
    tax = round_div(sub_total * 8, 100)  # SubTotal * 0.08
    freight = round_div(sub_total * 25, 1000)  # SubTotal * 0.025
    return tax, freight, sub_total + tax + freight


def set_order_money(header: pa.Table, rows: np.ndarray, sub_total: np.ndarray) -> pa.Table:
    tax, freight, total = order_money(sub_total)
    for column, units in (("SubTotal", sub_total), ("TaxAmt", tax), ("Freight", freight), ("TotalDue", total)):
        header = replace_rows(header, column, rows, decimal(units, MONEY))
    return header


def ids(values: pa.ChunkedArray) -> np.ndarray:
    """Integer ids as int64; NULL as -1, which no AdventureWorks id is."""
    return pc.fill_null(values.cast(pa.int64()), -1).to_numpy()
