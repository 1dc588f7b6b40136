"""Every fault class is caught by its named check with the intended outcome, and clean data passes:
the fault detection rate is 100%."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.commands.detection import CLEAN, detection_rate, run_matrix, to_markdown
from dataops.core.config import Settings, load_settings
from dataops.sources.faults import FAULTS

pytestmark = pytest.mark.integration


def test_every_fault_is_caught_and_clean_data_passes(warehouse_dir: Path) -> None:
    settings: Settings = load_settings("ci")
    rows = run_matrix(settings)

    assert [row.fault for row in rows] == [CLEAN, *FAULTS]
    clean = rows[0]
    assert (clean.outcome, clean.fired) == ("pass", ()), clean
    # Clean data publishes v1, and every fault runs on a copy of that warehouse.
    assert (clean.publish, clean.published_before, clean.published_after) == ("published", None, 1), clean
    missed = [row for row in rows[1:] if not row.as_intended]
    assert missed == [], "\n".join(
        f"{r.fault}: ran {r.outcome}, fired {r.fired}, {r.publish_text}" for r in missed
    )
    assert detection_rate(rows) == 1.0
    # Write-audit-publish: every run that fails leaves v1 published; one that only warns publishes v2.
    for row in rows[1:]:
        expected = ("not published", 1, 1) if FAULTS[row.fault].outcome == "fail" else ("published", 1, 2)
        assert (row.publish, row.published_before, row.published_after) == expected, row

    report = to_markdown(rows, scale=0.1, target=settings.target)
    assert "**Fault detection rate: 100%**" in report
    assert "| run | intended | published | ok |" in report
    for fault in FAULTS.values():
        published = "not published (v1 kept)" if fault.outcome == "fail" else "v2"
        assert f"| {fault.name} |" in report and f"| {published} | yes |" in report.split(f"| {fault.name} |")[1]


def test_schema_faults_name_the_table_and_column(warehouse_dir: Path) -> None:
    rows = run_matrix(load_settings("ci"), faults=["dropped_column", "renamed_column", "changed_column_type"])
    details = {row.fault: row.detail for row in rows}
    assert "SalesOrderHeader" in details["dropped_column"] and "missing TotalDue" in details["dropped_column"]
    assert "Customer" in details["renamed_column"] and "Account_Number" in details["renamed_column"]
    assert "TotalDue" in details["changed_column_type"] and "SalesOrderHeader" in details["changed_column_type"]
    for fault in ("dropped_column", "renamed_column", "changed_column_type"):
        assert "Catalog Error" not in details[fault] and "Binder Error" not in details[fault]
    # A load that fails publishes nothing, and the run's record says so.
    for row in rows[1:]:
        assert (row.publish, row.published_before, row.published_after) == ("not published", 1, 1), row
    # The matrix's runs stay in its own workspace: none becomes a latest run of the target.
    from dataops.history.store import HistoryStore

    assert HistoryStore().runs() == []
