"""Samples of the rows a failing data test found, captured the moment the build has run it.

An incident is drafted later, from the run history, when the candidate the test read is gone (a
published version, or rebuilt by the next run): the rows that show what went wrong exist only now.
Each data test that failed or warned runs its compiled SQL once more, on the warehouse it just ran
on, for a few rows (`SAMPLE_ROWS`), and the node keeps them. A sample is information, never a
verdict: a query that cannot run is kept as the reason (`sample unavailable: ...`), and a build in
which every test passed opens no connection at all."""

from __future__ import annotations

from dataclasses import replace

from dbt.artifacts.schemas.run import RunExecutionResult
from dbt.cli.main import dbtRunnerResult

from dataops.core.config import Settings
from dataops.history.records import SAMPLE_ROWS, SAMPLED_STATUSES, NodeRecord, SampleRecord
from dataops.project.results import what_stopped
from dataops.warehouse import Warehouse, connect


def with_samples(settings: Settings, outcome: dbtRunnerResult, nodes: list[NodeRecord]) -> list[NodeRecord]:
    """`nodes` (the build's, as interpret_build made them), each data test that failed or warned
    with a sample of its failing rows."""
    sampled = {node.unique_id for node in nodes if node.kind == "test" and node.status in SAMPLED_STATUSES}
    if not sampled:
        return nodes
    results = outcome.result.results if isinstance(outcome.result, RunExecutionResult) else []
    compiled = {r.node.unique_id: getattr(r.node, "compiled_code", None) for r in results}
    try:
        warehouse = connect(settings)
        samples = {unique_id: failing_rows(warehouse, compiled.get(unique_id)) for unique_id in sampled}
    except Exception as error:  # a sample must never stop the run it describes
        samples = dict.fromkeys(sampled, _unavailable(error))
    return [replace(node, sample=samples[node.unique_id]) if node.unique_id in samples else node for node in nodes]


def failing_rows(warehouse: Warehouse, sql: str | None) -> SampleRecord:
    """The first rows of a data test's compiled SQL, or why they cannot be read."""
    if not sql:
        return SampleRecord.missing("dbt kept no compiled SQL for the test")
    try:
        found = warehouse.sample_rows(sql, SAMPLE_ROWS)
    except Exception as error:  # whatever the engine raises: the run goes on, the reason is kept
        return _unavailable(error)
    return SampleRecord.of(found.columns, [list(row) for row in found.rows])


def _unavailable(error: Exception) -> SampleRecord:
    return SampleRecord.missing(what_stopped(error)[1])
