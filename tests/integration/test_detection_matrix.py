"""Every fault class is caught by its named check with the intended outcome, and clean data passes:
the fault detection rate is 100%. And write-audit-publish holds for each of them: a run that fails
on a fault publishes nothing, and what consumers read stays exactly as it was (checksums).

The matrix runs once for the module (clean data, then each fault on a copy of the clean run's
warehouse); what each run left published is looked at right after it, before the next replaces it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dataops.commands.detection import CLEAN, MatrixRow, detection_rate, run_matrix, to_markdown
from dataops.core.config import Settings, load_settings
from dataops.history.records import RunRecord
from dataops.history.store import DEFAULT_FILE, HistoryStore
from dataops.sources.faults import FAULTS
from dataops.warehouse.duckdb import DuckDBWarehouse

# tests/published_checks.py: tests/ is on sys.path under pytest's default import mode.
from published_checks import Checksums, checksums

pytestmark = pytest.mark.integration

FAILING = [fault.name for fault in FAULTS.values() if fault.outcome == "fail"]
LOAD_FAULTS = {name for name in FAILING if FAULTS[name].caught_by == ("load validation",)}


@dataclass(frozen=True)
class Published:
    """What one case's run left: its record, and the published version as consumers read it."""

    record: RunRecord | None
    checksums: Checksums
    versions: list[tuple[int, bool]]
    version_files: list[str]


@dataclass(frozen=True)
class Matrix:
    settings: Settings
    rows: list[MatrixRow]
    published: dict[str, Published]
    target_runs_after: int  # runs of the target in the user's history once the matrix is done


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(tmp_path_factory.mktemp("detection-warehouse")))
    for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
        patch.delenv(name, raising=False)
    published: dict[str, Published] = {}

    def look(row: MatrixRow, workspace: Settings) -> None:
        warehouse = DuckDBWarehouse(workspace.duckdb_path, consumer_schema=workspace.consumer_schema)
        history = HistoryStore(f"sqlite:///{workspace.warehouse_dir / DEFAULT_FILE}")
        published[row.fault] = Published(
            history.latest(workspace.target),
            checksums(warehouse.published_path),
            [(v.number, v.current) for v in warehouse.versions()],
            sorted(p.name for p in warehouse.versions_dir.glob("v*")),
        )

    try:
        settings = load_settings("ci")
        rows = run_matrix(settings, after_each=look)
        yield Matrix(settings, rows, published, len(HistoryStore().runs()))
    finally:
        patch.undo()


def test_every_fault_is_caught_and_clean_data_passes(matrix: Matrix) -> None:
    rows = matrix.rows
    assert [row.fault for row in rows] == [CLEAN, *FAULTS]
    clean = rows[0]
    assert (clean.outcome, clean.fired) == ("pass", ()), clean
    # Clean data publishes v1, and every fault runs on a copy of that warehouse.
    assert (clean.publish, clean.published_before, clean.published_after) == ("published", None, 1), clean
    missed = [row for row in rows[1:] if not row.as_intended]
    assert missed == [], "\n".join(f"{r.fault}: ran {r.outcome}, fired {r.fired}, {r.publish_text}" for r in missed)
    assert detection_rate(rows) == 1.0
    # Write-audit-publish: every run that fails leaves v1 published; one that only warns publishes v2.
    for row in rows[1:]:
        expected = ("not published", 1, 1) if FAULTS[row.fault].outcome == "fail" else ("published", 1, 2)
        assert (row.publish, row.published_before, row.published_after) == expected, row

    report = to_markdown(rows, scale=0.1, target=matrix.settings.target)
    assert "**Fault detection rate: 100%**" in report
    assert "| run | intended | published | ok |" in report
    for fault in FAULTS.values():
        published = "not published (v1 kept)" if fault.outcome == "fail" else "v2"
        assert f"| {fault.name} |" in report and f"| {published} | yes |" in report.split(f"| {fault.name} |")[1]


@pytest.mark.parametrize("fault", FAILING)
def test_a_run_that_fails_on_a_fault_publishes_nothing(matrix: Matrix, fault: str) -> None:
    baseline, seen = matrix.published[CLEAN], matrix.published[fault]
    record = seen.record
    assert record is not None and baseline.record is not None
    assert record.run_id != baseline.record.run_id and record.status == "failed", record.status
    assert record.publish is not None, "the run's record does not say what it published"
    assert (record.publish.status, record.publish.version, record.publish.previous_version) == (
        "not published",
        None,
        1,
    ), record.publish
    if fault in LOAD_FAULTS:
        assert record.exit_code == 2, record.exit_code
        assert record.publish.reason == "not published: stopped by the load stage"
        assert [s.status for s in record.stages][:1] == ["failed"]
    else:
        assert record.exit_code == 1, record.exit_code
        stopped_by = [check for check in FAULTS[fault].caught_by if check in record.publish.reason]
        assert stopped_by, f"{record.publish.reason!r} names none of {FAULTS[fault].caught_by}"
        assert record.publish.reason.startswith("not published: stopped by ")
    assert {s.name: s.status for s in record.stages}["publish"] in ("skipped", "failed")
    # What consumers read is exactly what it was: the same version, the same content.
    assert sorted(baseline.checksums) and all(rows > 0 for rows, _, _ in baseline.checksums.values())
    assert seen.checksums == baseline.checksums
    assert seen.versions == [(1, True)]
    assert seen.version_files == ["v000001.duckdb"]


def test_schema_faults_name_the_table_and_column(matrix: Matrix) -> None:
    details = {row.fault: row.detail for row in matrix.rows}
    assert "SalesOrderHeader" in details["dropped_column"] and "missing TotalDue" in details["dropped_column"]
    assert "Customer" in details["renamed_column"] and "Account_Number" in details["renamed_column"]
    assert "TotalDue" in details["changed_column_type"] and "SalesOrderHeader" in details["changed_column_type"]
    for fault in ("dropped_column", "renamed_column", "changed_column_type"):
        assert "Catalog Error" not in details[fault] and "Binder Error" not in details[fault]


def test_the_matrix_runs_stay_in_its_own_workspace(matrix: Matrix) -> None:
    # None becomes a latest run of the target in the user's history.
    assert matrix.target_runs_after == 0
