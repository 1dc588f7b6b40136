"""Unit tests for `dataops.commands.load`: an empty source table never reaches the warehouse.

Real files in tmp_path, a real DuckDB file in the per-test warehouse folder (tests/conftest.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataops.commands.load import load_folder, load_generated, load_tables
from dataops.core.config import Settings
from dataops.core.errors import SourceDataError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME
from dataops.sources.generate import generate_tables, write_tables
from dataops.warehouse import connect

TERRITORY = "Sales.SalesTerritory"
ALL_TABLES = [t.qualified_name for t in SOURCE_TABLES]


def empty_the_territories(folder: Path, file_format: str) -> str:
    """Leave the territory file with its header (CSV) or schema (Parquet) and no rows; return
    what the reader must say it found."""
    path = folder / f"{TERRITORY}.{file_format}"
    if file_format == "csv":
        path.write_bytes(path.read_bytes().split(b"\r\n", 1)[0] + b"\r\n")
        return "a header row but no data rows"
    pq.write_table(SOURCE_TABLES_BY_NAME[TERRITORY].arrow_schema.empty_table(), path)
    return "a Parquet file with no rows"


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_source_file_without_rows_is_a_load_error_and_the_warehouse_keeps_what_it_had(
    settings: Settings, tmp_path: Path, file_format: str
) -> None:
    load_generated(settings, 0.005, seed=1)
    before = connect(settings).row_counts(ALL_TABLES)
    folder = tmp_path / "files"
    write_tables(generate_tables(0.005, seed=2), folder, file_format)
    found = empty_the_territories(folder, file_format)

    with pytest.raises(SourceDataError) as error:
        load_folder(settings, folder)

    assert str(error.value) == (
        f"{TERRITORY}.{file_format}: {found}; a source table cannot be empty: export {TERRITORY} again, with its rows"
    )
    assert connect(settings).row_counts(ALL_TABLES) == before


def test_load_tables_refuses_an_empty_table_from_any_producer(settings: Settings) -> None:
    tables = generate_tables(0.005, seed=1)
    load_tables(settings, tables, "good data")
    before = connect(settings).row_counts(ALL_TABLES)
    emptied = {**tables, TERRITORY: tables[TERRITORY].slice(0, 0)}

    with pytest.raises(
        SourceDataError,
        match=re.escape(
            f"{TERRITORY} from data without territories has no rows; a source table cannot be "
            "empty, so nothing was loaded"
        ),
    ):
        load_tables(settings, emptied, "data without territories")

    assert connect(settings).row_counts(ALL_TABLES) == before


def test_generated_data_at_the_smallest_scale_has_rows_in_every_table(settings: Settings) -> None:
    # The generator keeps a minimum per table (and the fixed dimensions whole), so no scale the
    # CLI accepts can trip the empty-table guard.
    report = load_generated(settings, 1e-9, seed=1)
    assert min(report.row_counts.values()) >= 1
