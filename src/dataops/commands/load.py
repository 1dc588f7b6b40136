"""Putting source data into the warehouse: all ten tables validated first, then written at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from dataops.core.config import Settings
from dataops.core.errors import SourceDataError
from dataops.sources.generate import generate_tables
from dataops.sources.readers import read_source_folder
from dataops.warehouse import connect


@dataclass(frozen=True)
class LoadReport:
    description: str
    row_counts: dict[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())


def load_tables(settings: Settings, tables: dict[str, pa.Table], description: str) -> LoadReport:
    # The readers refuse an empty file by name; this guards every other way in (the generator has
    # at least one row per table at any scale), since an empty source table would load "ok" and
    # fail far away, in the relationship tests and freshness.
    empty = [name for name, table in tables.items() if table.num_rows == 0]
    if empty:
        raise SourceDataError(
            f"{', '.join(empty)} from {description} {'has' if len(empty) == 1 else 'have'} no rows; "
            f"a source table cannot be empty, so nothing was loaded"
        )
    connect(settings).replace_source_tables(tables)
    return LoadReport(description, {name: table.num_rows for name, table in tables.items()})


def load_folder(settings: Settings, folder: Path) -> LoadReport:
    """Load a folder of AdventureWorks files (CSV with header, Microsoft's install files, Parquet)."""
    return load_tables(settings, read_source_folder(folder), f"files in {folder}")


def load_generated(settings: Settings, scale: float, seed: int, as_of: datetime | None = None) -> LoadReport:
    tables = generate_tables(scale, seed=seed, as_of=as_of)
    return load_tables(settings, tables, f"generated data (scale {scale:g}, seed {seed})")
