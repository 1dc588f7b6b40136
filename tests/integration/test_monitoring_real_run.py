"""The real thing: the runs `dataops run` records are what the monitor reads."""

from __future__ import annotations

import pytest

from dataops.commands.load import load_tables
from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings
from dataops.ops.monitor import monitor
from dataops.sources.generate import generate_tables

pytestmark = pytest.mark.integration


def test_the_monitor_passes_after_a_clean_run_and_names_the_failed_test_after_a_bad_one(settings: Settings) -> None:
    from dataops.sources.faults import inject

    clean = Pipeline(settings).run(RunOptions(scale=0.05, docs=False, quality=False))
    assert clean.exit_code == 0, clean.findings
    report = monitor(settings)
    assert (report.run_id, report.findings) == (clean.run_id, [])

    load_tables(settings, inject(generate_tables(0.05, seed=7), ["negative_total"], seed=7), "one negative order")
    bad = Pipeline(settings).run(RunOptions(docs=False, quality=False))
    assert bad.exit_code == 1

    report = monitor(settings)
    assert report.run_id == bad.run_id and report.failed
    assert [f.check for f in report.errors] == ["assert_no_negative_revenue"]
    assert report.errors[0].message.endswith("failing rows")
