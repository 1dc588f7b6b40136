"""The real thing: what `dataops run` leaves behind is what the monitor reads."""

from __future__ import annotations

from pathlib import Path

from dataops.config import load_settings
from dataops.monitoring import monitor


def test_the_artifacts_of_a_real_clean_run_have_no_findings(warehouse_dir: Path) -> None:
    from dataops.pipeline import Pipeline, RunOptions

    settings = load_settings("dev")
    summary = Pipeline(settings).run(RunOptions(scale=0.1, docs=False, quality=False))
    assert summary.exit_code == 0, summary.findings

    report = monitor(settings)

    assert report.findings == []
    folder = settings.artifacts_dir / "dbt"
    assert folder.is_relative_to(warehouse_dir.resolve())
    assert report.checked == [folder / "run_results.json", folder / "sources.json"]
