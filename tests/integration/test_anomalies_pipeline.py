"""Anomaly detection in real `dataops run`s on DuckDB: real dbt, real DuckDB files, the real SQLite
run history. One clean run is recorded, and copied into the store with other ids and days before it
as the training history (the way scripts/benchmark_history.py fills a store: one real run's record
rather than eight more real runs); then the same data with 40% of its orders (and their lines)
removed is run twice: at level error in process (flagged, the publish stopped by it, the run failed),
and through the CLI in dev at level warn (flagged, a warning, published). The module runs once and the
tests assert what it observed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.console import Console

from dataops.cli.render import run_summary
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import load_settings
from dataops.history.records import NodeRecord, RunRecord
from dataops.history.store import HistoryStore
from dataops.ops.anomalies import ANOMALOUS, PASS
from dataops.sources.generate import generate_tables, write_tables

pytestmark = pytest.mark.integration

# The smallest scale whose clean data passes every check (the customer suite wants 1,000 rows).
SCALE = 0.06
SEED = 7
AS_OF = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
TRAINING_COPIES = 8  # with the real run: 9 training runs, 7 needed
ORDERS, LINES = "Sales.SalesOrderHeader", "Sales.SalesOrderDetail"
DROPPED = (ORDERS, LINES, "marts.fct_orders", "marts.fct_order_lines")


def _fewer_orders(tables: dict[str, pa.Table], share: float) -> dict[str, pa.Table]:
    """Every `1/share`-th order gone, with its lines, so that no dbt test or expectation fails on
    an orphan line: only the volume says something is wrong."""
    orders = tables[ORDERS]
    ids = orders.column("SalesOrderID")
    kept = pc.invert(pc.less(pc.remainder(ids, 10), round(share * 10)))
    remaining = orders.filter(kept)
    lines = tables[LINES]
    return {
        **tables,
        ORDERS: remaining,
        LINES: lines.filter(pc.is_in(lines.column("SalesOrderID"), remaining.column("SalesOrderID"))),
    }


@dataclass(frozen=True)
class Observed:
    baseline: RunRecord
    at_error: RunRecord
    at_error_summary: str  # the run summary as the CLI renders it
    at_warn: RunRecord
    at_warn_result: subprocess.CompletedProcess[str]
    source_rows: dict[str, tuple[int, int]]  # (clean, fewer) per dropped source


def _anomalies(record: RunRecord) -> dict[str, NodeRecord]:
    return {node.unique_id: node for node in record.nodes if node.kind == "anomaly"}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    root = tmp_path_factory.mktemp("anomalies")
    clean = generate_tables(SCALE, seed=SEED, as_of=AS_OF)
    fewer = _fewer_orders(clean, 0.4)
    write_tables(clean, root / "clean", "parquet")
    write_tables(fewer, root / "fewer", "parquet")
    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(root / "warehouse"))
    for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
        patch.delenv(name, raising=False)
    try:
        settings = load_settings("dev")
        store = HistoryStore()
        baseline = Pipeline(settings, history=store).run(RunOptions(data_dir=root / "clean", docs=False))
        assert baseline.exit_code == 0 and baseline.publish is not None, baseline.findings
        model = store.get(baseline.run_id)
        assert model is not None and model.finished_at is not None
        for day in range(1, TRAINING_COPIES + 1):
            store.record(
                replace(
                    model,
                    run_id=f"training-{day}",
                    started_at=model.started_at - timedelta(days=day),
                    finished_at=model.finished_at - timedelta(days=day),
                )
            )

        strict = replace(settings, anomalies=replace(settings.anomalies, level="error"))
        at_error = Pipeline(strict, history=store).run(RunOptions(data_dir=root / "fewer", docs=False))
        console = Console(record=True, width=200)
        run_summary(console, at_error)
        rendered = console.export_text()

        env = {**os.environ, "DATAOPS_WAREHOUSE_DIR": str(root / "warehouse")}
        at_warn = subprocess.run(
            [sys.executable, "-m", "dataops", "run", "--data", str(root / "fewer"), "--no-docs", "--target", "dev"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        warned = store.latest("dev")
        error_record = store.get(at_error.run_id)
        assert warned is not None and error_record is not None
        yield Observed(
            model,
            error_record,
            rendered,
            warned,
            at_warn,
            {name: (clean[name].num_rows, fewer[name].num_rows) for name in (ORDERS, LINES)},
        )
    finally:
        patch.undo()


def test_the_clean_run_has_a_check_per_relation_with_not_enough_history(observed: Observed) -> None:
    checks = _anomalies(observed.baseline)
    volume = {uid.removeprefix("anomaly.volume.") for uid in checks if uid.startswith("anomaly.volume.")}
    assert volume == set(observed.baseline.row_counts), "every source table and mart counted is checked"
    assert any(uid.startswith("anomaly.freshness.sales.") for uid in checks), sorted(checks)
    assert {(n.status, n.level, n.score) for n in checks.values()} == {("not enough history", "skipped", None)}


def test_forty_percent_fewer_orders_at_level_error_is_flagged_and_not_published(observed: Observed) -> None:
    clean, fewer = observed.source_rows[ORDERS]
    assert fewer == pytest.approx(clean * 0.6, rel=0.02)
    record = observed.at_error
    checks = _anomalies(record)
    for relation in DROPPED:
        node = checks[f"anomaly.volume.{relation}"]
        assert (node.name, node.status, node.level) == (f"volume anomaly of {relation}", ANOMALOUS, "error"), node
        assert node.score is not None and node.score < -3, node
        assert "9 training runs" in node.message, node.message
    # What did not change is no anomaly: the other sources, and every source's freshness.
    unchanged = [n for uid, n in checks.items() if uid.removeprefix("anomaly.volume.") not in DROPPED]
    assert unchanged and all(n.status == PASS and n.level == "ok" for n in unchanged), unchanged
    assert any(n.unique_id.startswith("anomaly.freshness.") for n in unchanged)
    assert {(f.level, f.check) for f in record.findings if "anomaly" in f.check} == {
        ("error", f"volume anomaly of {relation}") for relation in DROPPED
    }
    assert record.status == "failed" and record.exit_code == 1
    assert record.publish is not None and record.publish.status == "not published"
    assert record.publish.reason.startswith("not published: stopped by volume anomaly of "), record.publish.reason
    assert f"volume anomaly of {ORDERS}" in record.publish.reason
    assert record.publish.previous_version == 1
    assert {s.name: s.status for s in record.stages}["publish"] == "failed"
    # The summary names the check, its numbers and why nothing was published.
    assert f"volume anomaly of {ORDERS}" in observed.at_error_summary
    assert f"{fewer:,} rows, -40" in observed.at_error_summary, observed.at_error_summary
    assert "not published" in observed.at_error_summary and "stopped by volume anomaly of" in observed.at_error_summary


def test_forty_percent_fewer_orders_in_dev_is_a_warning_and_published(observed: Observed) -> None:
    result, record = observed.at_warn_result, observed.at_warn
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"volume anomaly of {ORDERS}" in result.stdout, result.stdout
    # The run at level error failed: it is no training run, so this one is judged on the clean ones.
    node = _anomalies(record)[f"anomaly.volume.{ORDERS}"]
    assert (node.status, node.level) == (ANOMALOUS, "warn") and "9 training runs" in node.message, node
    assert record.status == "warned"
    assert record.publish is not None and (record.publish.status, record.publish.version) == ("published", 2)
    assert {(f.level, f.check) for f in record.findings if "anomaly" in f.check} == {
        ("warn", f"volume anomaly of {relation}") for relation in DROPPED
    }
