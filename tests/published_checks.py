"""What consumers read, as a checksum: every mart of a published DuckDB file (or of one version's
file) opened read-only, as a consumer opens it: its columns and types, its rows, and the sum of a
hash of each row's text. Shared by the publish tests and the detection matrix's test."""

from __future__ import annotations

from pathlib import Path

import duckdb

Checksums = dict[str, tuple[int, int, tuple[tuple[str, str], ...]]]


def checksums_of(connection: duckdb.DuckDBPyConnection) -> Checksums:
    marts = [
        row[0]
        for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' ORDER BY 1"
        ).fetchall()
    ]
    sums: Checksums = {}
    for mart in marts:
        columns = connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'marts' "
            "AND table_name = ? ORDER BY ordinal_position",
            [mart],
        ).fetchall()
        rows, digest = connection.execute(f'SELECT count(*), sum(hash(t::VARCHAR)) FROM marts."{mart}" t').fetchone()
        sums[mart] = (rows, int(digest or 0), tuple(columns))
    return sums


def checksums(path: Path) -> Checksums:
    """Every mart of the published file (or of one version's file), opened read-only."""
    with duckdb.connect(str(path), read_only=True) as connection:
        return checksums_of(connection)
