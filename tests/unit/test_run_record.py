"""Every run leaves its record, however it ends, and each record file is written whole. These runs
stop at their first stages, before dbt runs anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataops.config import Settings
from dataops.errors import DataOpsError
from dataops.pipeline import Pipeline, RunOptions
from dataops.results import RunSummary, StageResult, StageStatus

STAGES = ["load", "parse", "freshness", "build", "docs"]


def _records(settings: Settings) -> tuple[dict[str, object], list[Path]]:
    last = json.loads((settings.artifacts_dir / "last_run.json").read_text(encoding="utf-8"))
    return last, sorted((settings.artifacts_dir / "runs").iterdir())


def test_a_run_stopped_by_a_user_error_is_recorded_with_the_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DataOpsError, match="nowhere") as raised:
        Pipeline(settings).run(RunOptions(data_dir=tmp_path / "nowhere", quality=False))

    record, runs = _records(settings)
    message = " ".join(str(raised.value).split())
    assert (record["status"], record["exit_code"], record["error"]) == ("failed", 2, message)
    assert [(s["name"], s["status"]) for s in record["stages"]] == [  # type: ignore[union-attr, index]
        ("load", "failed"), *((name, "skipped") for name in STAGES[1:])
    ]
    assert record["finished_at"] is not None
    assert [path.name for path in runs] == [f"{record['run_id']}.json"]  # nothing half-written beside it


class _CrashingParse(Pipeline):
    """A bug in a stage: what any unexpected exception does to a run."""

    def _parse(self, summary: RunSummary) -> tuple[StageStatus, str]:
        raise KeyError("node.adventureworks.gone")


def test_a_run_that_crashes_still_leaves_its_record(settings: Settings, tmp_path: Path) -> None:
    from dataops.generate import generate_tables, write_tables

    data = tmp_path / "data"
    write_tables(generate_tables(0.01, seed=1), data, "parquet")
    with pytest.raises(KeyError):
        _CrashingParse(settings).run(RunOptions(data_dir=data, quality=False))

    record, _ = _records(settings)
    assert (record["status"], record["exit_code"]) == ("crashed", 3)
    assert record["error"] == "KeyError: 'node.adventureworks.gone'"
    stages = {s["name"]: s for s in record["stages"]}  # type: ignore[union-attr, index]
    assert stages["load"]["status"] == "ok" and stages["parse"]["status"] == "failed"
    assert stages["build"] == StageResult("build", "skipped", 0.0, "the parse stage stopped the run").__dict__


def test_a_record_replaces_the_last_one_whole(settings: Settings, tmp_path: Path) -> None:
    for _ in range(2):
        with pytest.raises(DataOpsError):
            Pipeline(settings).run(RunOptions(data_dir=tmp_path / "nowhere", quality=False))
    record, runs = _records(settings)
    assert len(runs) == 2
    assert json.loads((settings.artifacts_dir / "runs" / f"{record['run_id']}.json").read_text()) == record
    leftovers = [p.name for p in settings.artifacts_dir.rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []
