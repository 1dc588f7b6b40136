"""Unit tests for opening the DuckDB warehouse: each reason it cannot be opened is named truly.

Real paths and real DuckDB files; the lock is held by a real second process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
import pytest

from dataops.core.errors import DataOpsError
from dataops.sources.generate import generate_tables
from dataops.warehouse.duckdb import DuckDBWarehouse

PATH_FIX = "point DATAOPS_DUCKDB_PATH at a database file (or DATAOPS_WAREHOUSE_DIR at a folder)"


def load(path: Path) -> None:
    DuckDBWarehouse(path).replace_source_tables(generate_tables(0.001, seed=1))


def raises_warehouse_error(message: str) -> AbstractContextManager[pytest.ExceptionInfo[DataOpsError]]:
    return pytest.raises(DataOpsError, match=f"^{re.escape(message)}$")


def test_a_directory_is_named_as_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "dev.duckdb"
    path.mkdir()
    message = f"the DuckDB warehouse {path} is a directory, not a database file; {PATH_FIX}"
    with raises_warehouse_error(message):
        load(path)
    with raises_warehouse_error(message):  # read-only opens (check, query, doctor) too
        DuckDBWarehouse(path).missing_source_tables()


@pytest.mark.parametrize("content", [b"", b"CustomerID,PersonID\r\n1,2\r\n"], ids=["empty", "csv"])
def test_a_file_that_is_not_a_duckdb_database_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "dev.duckdb"
    path.write_bytes(content)
    with raises_warehouse_error(
        f"{path} is not a DuckDB database (the file holds something else); {PATH_FIX}, or move the file away"
    ):
        load(path)


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "dev.duckdb"
    load(path)
    assert DuckDBWarehouse(path).missing_source_tables() == []


def test_a_file_in_the_way_of_the_parent_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "warehouse").write_text("not a folder")
    path = tmp_path / "warehouse" / "dev" / "dev.duckdb"
    with raises_warehouse_error(
        f"cannot create the folder of the DuckDB warehouse {path}: {tmp_path / 'warehouse'} is a "
        f"file, not a folder; {PATH_FIX}"
    ):
        load(path)


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot create files in: a read-only one, or, for root (who may write
    anywhere on a normal file system), sysfs, which refuses new files even to root."""
    if os.geteuid() == 0:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("running as root and there is no sysfs to be refused by")
        yield Path("/sys")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def test_a_folder_that_cannot_be_written_is_named(unwritable_folder: Path) -> None:
    path = unwritable_folder / "dataops-test.duckdb"
    with raises_warehouse_error(
        f"cannot create the DuckDB warehouse {path}: Permission denied; point DATAOPS_DUCKDB_PATH "
        "(or DATAOPS_WAREHOUSE_DIR) at a place you can write"
    ):
        load(path)


HOLD_THE_LOCK = """
import sys, time
import duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_lock_held_by_another_process_names_that_process(tmp_path: Path) -> None:
    path = tmp_path / "dev.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for attempt in (lambda: load(path), DuckDBWarehouse(path).missing_source_tables):
            with pytest.raises(DataOpsError) as error:
                attempt()
            message = str(error.value)
            assert message.startswith(
                f"the DuckDB warehouse {path} is in use by another process: Conflicting lock is held in "
            )
            assert f"(PID {holder.pid})" in message
            assert message.endswith(
                "; a DuckDB file that one process writes no other can open: wait for that process to finish, or stop it"
            )
            assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()
