"""Every run leaves its record in the run history, however it ends. These runs stop at their
first stages, before dbt runs anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.history.records import RunRecord
from dataops.history.store import HistoryStore
from dataops.project.results import RunSummary, StageStatus

STAGES = ["load", "parse", "freshness", "build", "docs", "publish"]


def _latest(settings: Settings) -> RunRecord:
    record = HistoryStore().latest(settings.target)
    assert record is not None
    return record


def test_a_run_stopped_by_a_user_error_is_recorded_with_the_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DataOpsError, match="nowhere") as raised:
        Pipeline(settings).run(RunOptions(data_dir=tmp_path / "nowhere", quality=False))

    record = _latest(settings)
    message = " ".join(str(raised.value).split())
    assert (record.status, record.exit_code, record.error) == ("failed", 2, message)
    assert [(s.name, s.status) for s in record.stages] == [
        ("load", "failed"),
        *((name, "skipped") for name in STAGES[1:]),
    ]
    assert record.finished_at is not None and record.trigger.kind == "cli"
    assert record.cpu_seconds is not None and record.peak_memory_bytes


class _CrashingParse(Pipeline):
    """A bug in a stage: what any unexpected exception does to a run."""

    def _parse(self, summary: RunSummary) -> tuple[StageStatus, str]:
        raise KeyError("node.adventureworks.gone")


def test_a_run_that_crashes_still_leaves_its_record(settings: Settings, tmp_path: Path) -> None:
    from dataops.sources.generate import generate_tables, write_tables

    data = tmp_path / "data"
    write_tables(generate_tables(0.01, seed=1), data, "parquet")
    with pytest.raises(KeyError):
        _CrashingParse(settings).run(RunOptions(data_dir=data, quality=False))

    record = _latest(settings)
    assert (record.status, record.exit_code) == ("crashed", 3)
    assert record.error == "KeyError: 'node.adventureworks.gone'"
    stages = {s.name: s for s in record.stages}
    assert stages["load"].status == "ok" and stages["parse"].status == "failed"
    assert (stages["build"].status, stages["build"].detail) == ("skipped", "the parse stage stopped the run")
    # What the load left is counted, even though the run crashed after it.
    assert record.row_counts["Sales.Customer"] > 0


def test_every_run_is_kept(settings: Settings, tmp_path: Path) -> None:
    for _ in range(2):
        with pytest.raises(DataOpsError):
            Pipeline(settings).run(RunOptions(data_dir=tmp_path / "nowhere", quality=False))
    listed = HistoryStore().runs(settings.target)
    assert len(listed) == 2 and listed[0].run_id == _latest(settings).run_id


def test_a_run_stopped_before_its_first_stage_is_recorded_as_failed(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DataOpsError, match="give either --data or --scale, not both"):
        Pipeline(settings).run(RunOptions(data_dir=tmp_path, scale=1.0, quality=False))

    record = _latest(settings)
    assert (record.status, record.exit_code, record.error) == ("failed", 2, "give either --data or --scale, not both")


def test_a_history_that_cannot_be_used_stops_the_run_before_it_builds(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not-a-database.sqlite").write_text("this is no SQLite file", encoding="utf-8")
    monkeypatch.setenv("DATAOPS_HISTORY_URL", f"sqlite:///{tmp_path / 'not-a-database.sqlite'}")
    with pytest.raises(DataOpsError, match=r"the run history at sqlite:///.* cannot be used: file is not a database"):
        Pipeline(settings).run(RunOptions(scale=0.01, quality=False))
    assert not settings.duckdb_path.exists()  # nothing was loaded
