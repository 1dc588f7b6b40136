"""What the CLI draws: one progress line per stage, whole column names when piped."""

from __future__ import annotations

import io

from rich.console import Console

from dataops import render
from dataops.results import StageResult
from dataops.warehouse import QueryResult


def test_each_stage_gets_exactly_one_progress_line() -> None:
    output = io.StringIO()
    with render.ProgressReporter(Console(file=output, width=160)) as reporter:
        for name in ("load", "parse"):
            reporter.stage_started(name)
            reporter.stage_finished(StageResult(name, "ok", 0.5, f"{name} done"))
        # A stage that never started (an earlier one stopped the run) still gets its one line.
        reporter.stage_finished(StageResult("build", "skipped", 0.0, "an earlier stage failed"))

    lines = [line for line in output.getvalue().splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["load", "parse", "build"], lines
    assert "0/?" not in output.getvalue()


def test_a_table_written_to_a_pipe_keeps_every_name_and_value_whole() -> None:
    columns = ["customer_lifetime_value_in_us_dollars", "customer_segment_of_the_marketing_team"]
    result = QueryResult(columns, [("1234567.8901", "High Value, reviewed by the marketing team in 2026")])
    output = io.StringIO()
    # What the CLI gives a table when stdout is not a terminal.
    render.query_table(Console(file=output, width=render.UNLIMITED_WIDTH), result)

    text = output.getvalue()
    for whole in [*columns, *result.rows[0]]:
        assert whole in text
