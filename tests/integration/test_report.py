"""`dataops report` on a history of real runs: two scale-0.1 runs of the pipeline, copied (as
scripts/benchmark_history.py fills a store) to 24 runs an hour apart, one of them failing a check,
and an incident. The page opens offline in headless Chromium with no console message, every chart
has marks, every string from the history is escaped, and a screenshot is taken."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from browser import open_offline
from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import load_settings
from dataops.history.records import FindingRecord, IncidentRecord, RunRecord
from dataops.history.store import HistoryStore
from dataops.sources.generate import generate_tables

pytestmark = pytest.mark.integration

DATAOPS = Path(sys.executable).with_name("dataops")
RUNS = 24
HOSTILE = "<script>alert('x')</script> & \"quoted\""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[RunRecord]]]:
    warehouse = tmp_path_factory.mktemp("report") / "warehouse"
    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(warehouse))
    for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
        patch.delenv(name, raising=False)
    try:
        settings = load_settings("dev")
        load_tables(settings, generate_tables(0.1, seed=5), "generated data")
        store = HistoryStore()
        for _ in range(2):
            summary = Pipeline(settings, history=store).run(RunOptions(docs=False))
            assert summary.exit_code == 0, summary.findings
        real = [store.get(row.run_id) for row in store.runs("dev", limit=2)]
        assert all(r is not None for r in real)
        newest = real[0]
        assert newest is not None
        copies = []
        for index in range(2, RUNS):
            model = real[index % 2]
            assert model is not None
            hours = timedelta(hours=index)
            copy = replace(
                model,
                run_id=f"copy-{index:03d}",
                started_at=newest.started_at - hours,
                finished_at=(model.finished_at or model.started_at) - (model.started_at - newest.started_at) - hours,
            )
            if index == 5:  # one failing run, with a message that must be escaped
                copy = replace(copy, status="failed", findings=[FindingRecord("error", "not_null_customers", HOSTILE)])
            store.record(copy)
            copies.append(copy)
        store.record_incident(
            IncidentRecord("2026-01-01-bad-customers", "dev", HOSTILE, "major", newest.started_at - timedelta(hours=5))
        )
        yield warehouse, [*real, *copies]
    finally:
        patch.undo()


def test_the_report_opens_offline_with_every_chart_drawn(history: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    warehouse, runs = history
    page = tmp_path / "report.html"
    written = subprocess.run(
        [str(DATAOPS), "report", "--target", "dev", "--out", str(page)],
        env={**_env(), "DATAOPS_WAREHOUSE_DIR": str(warehouse)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"(?:href|src)=['\"]?(?:https?:)?//", text), "the report loads something from the network"
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert f"{len(runs)} pipeline runs" in text

    screenshot = tmp_path / "report.png"
    shown = open_offline(page, tmp_path / "profile", screenshot)
    assert shown.console == [], shown.console
    charts = re.findall(r"<svg class=\"chart\".*?</svg>", shown.dom, flags=re.S)
    marts = {name for run in runs for name in run.row_counts if "." not in name or name.startswith("marts")}
    # duration by stage, checks, quality score, freshness, and one per mart
    assert len(charts) >= 4 + 1, shown.dom[:3000]
    for chart in charts:
        assert 'class="mark"' in chart, chart[:500]
    assert shown.dom.count('class="band"') >= 1, "no mart has its anomaly band"
    assert len(marts) >= 1
    for heading in ("DataOps metrics", "Incidents", "Latest run's findings", "Freshness per source (latest run)"):
        assert heading.replace("'", "&#x27;") in shown.dom or heading in shown.dom, heading
    assert screenshot.stat().st_size > 10_000


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
