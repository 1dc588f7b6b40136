"""What the CLI draws: one progress line per stage, whole column names when piped."""

from __future__ import annotations

import io

from rich.console import Console

from dataops.cli import render
from dataops.project.results import StageResult
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
    columns = [f"customer_{kind}_in_the_marketing_teams_words" for kind in ("segment", "lifetime_value", "type")]
    result = QueryResult(columns, [("High Value, reviewed in 2026", "1234567.8901", "individual")])

    def drawn(width: int) -> str:
        output = io.StringIO()
        render.query_table(Console(file=output, width=width), result)
        return output.getvalue()

    assert "…" in drawn(140)  # what a pipe got before: Rich fits the table to a width it guessed
    text = drawn(render.UNLIMITED_WIDTH)  # what the CLI gives a table when stdout is not a terminal
    for whole in [*columns, *result.rows[0]]:
        assert whole in text


def test_data_that_looks_like_markup_is_printed_as_it_is() -> None:
    from dataops.core.findings import Finding
    from dataops.project.results import RunSummary

    # An e-mail example from the data, and a dbt message, that Rich would read as markup.
    examples = ["joe[/]@example.com", "[red]not red[/red]"]
    summary = RunSummary(run_id="r", target="dev", started_at=__import__("datetime").datetime.now())
    summary.findings = [Finding("warn", "matches_regex on customer_analytics.email", f"e.g. {e}") for e in examples]
    output = io.StringIO()
    render.run_summary(Console(file=output, width=render.UNLIMITED_WIDTH), summary)
    for example in examples:
        assert example in output.getvalue()

    table = io.StringIO()
    render.query_table(Console(file=table, width=render.UNLIMITED_WIDTH), QueryResult(["email"], [(examples[0],)]))
    assert examples[0] in table.getvalue()
