"""The watcher-mode producer, reporting only what the sensors read. Imported by `orchestration`
only when the DAG runs in Cosmos's watcher mode (it needs Cosmos and Airflow at import).

Cosmos's producer turns every dbt event into JSON and pushes up to five XComs per node (start,
compiling, executing and finished events, status, compiled SQL, one per test): about 550 pushes
for this project, each a call to Airflow's execution API under one lock, which made a 2 s
`dbt build` take 10 s. The sensors read the producer's command flags, each model's status,
compiled SQL and event, and each model's aggregated test status. This producer pushes those,
through Cosmos's own functions, and writes dbt's messages to the task log as they come.

A failing model or test fails its own sensor, not the producer: the producer fails only when
dbt itself could not run (a dead warehouse, a broken project), as a `build`-mode task would.

The producer has dbt's results in process: it adds every node's result to the DAG run's record in
the run history (the `build` stage), however the build ends."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import Any

from cosmos.operators._watcher.aggregation import push_test_result_or_aggregate
from cosmos.operators._watcher.base import _DBT_ERROR_EVENTS_TYPES
from cosmos.operators._watcher.state import DBT_UPSTREAM_FAILURE_SKIP_EVENT_NAMES, is_dbt_node_status_terminal
from cosmos.operators.local import DbtLocalBaseOperator
from cosmos.operators.watcher import DbtProducerWatcherOperator, _StdoutFilter

from dataops.airflow.recording import PipelineRun, StageReport, holding_target, recorded_stage
from dataops.core.config import Settings, load_settings
from dataops.core.errors import DataOpsError

# Events handed to Cosmos's parser: a node's end (status, compiled SQL, test aggregation), the
# skips dbt makes after an upstream failure (Cosmos turns those into failures a sensor retries),
# and the errors that end a run before any node.
_REPORTED_EVENTS = frozenset({"NodeFinished"}) | DBT_UPSTREAM_FAILURE_SKIP_EVENT_NAMES | _DBT_ERROR_EVENTS_TYPES
_LOGGED_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class ReportingProducer(DbtProducerWatcherOperator):
    """One `dbt build` for the whole project, as Cosmos's producer, with lean reporting."""

    _build: StageReport | None = None
    _settings: Settings | None = None

    def execute(self, context: Any, **kwargs: Any) -> Any:
        # Cosmos runs gc.collect() after dbt; without a freeze it walks every object Airflow and
        # dbt's imports made (0.5 s here), not only the build's.
        gc.freeze()
        run, settings = PipelineRun.of(context["dag_run"]), load_settings()
        self._settings = settings
        try:
            with holding_target(run, settings), recorded_stage(run, settings, "build") as self._build:
                return super().execute(context, **kwargs)
        finally:
            self._build, self._settings = None, None
            gc.unfreeze()

    def run_dbt_runner(self, command: list[str], env: dict[str, str], cwd: str, **kwargs: Any) -> Any:
        context = kwargs.get("context")
        if context is None or context.get("_check_source_freshness"):
            return super().run_dbt_runner(command, env, cwd, **kwargs)
        report = self._make_parse_callable()
        where = {"project_dir": cwd, "context": context}
        failures: list[BaseException] = []

        def on_event(event: Any) -> None:
            # dbt swallows a callback's exception into a failed node: keep the first, raise it after.
            try:
                self._on_event(event, report, where)
            except Exception as error:
                self.log.exception("could not report dbt event %s", event.info.name)
                failures.append(error)

        callbacks = self._dbt_runner_callbacks
        self._dbt_runner_callbacks = [*(callbacks or []), on_event]
        try:
            with contextlib.redirect_stdout(_StdoutFilter()):
                result = DbtLocalBaseOperator.run_dbt_runner(self, command, env, cwd, **kwargs)
        finally:
            self._dbt_runner_callbacks = callbacks
        if failures:
            raise failures[0]
        return result

    def handle_exception_dbt_runner(self, result: Any) -> None:
        # Imported here: DAG files import this module, and dbt's artifacts are slow to import.
        from dataops.core.findings import errors_in
        from dataops.project.results import build_detail, interpret_build
        from dataops.project.samples import with_samples
        from dataops.warehouse import release_dbt_connections

        counts, findings, nodes = interpret_build(result)
        if self._build is not None and self._settings is not None:
            # The failing tests' rows, as `dataops run` keeps them; dbt's connection is done with.
            release_dbt_connections(self._settings)
            nodes = with_samples(self._settings, result, nodes)
        if self._build is not None:
            self._build.nodes, self._build.findings, self._build.detail = nodes, findings, build_detail(counts)
        if result.exception is not None:
            # dbt could not run at all: a problem to fix, as `dataops run` reports it (not a crash).
            raise DataOpsError(f"dbt build failed: {' '.join(str(result.exception).split())}") from result.exception
        if result.result is None:
            super().handle_exception_dbt_runner(result)
            return
        failed = errors_in(findings)
        if failed:
            self.log.error(
                "dbt build finished; failed, each reported by its model's task: %s",
                "; ".join(f"{finding.check}: {finding.message}" for finding in failed),
            )

    def _on_event(self, event: Any, report: Any, where: dict[str, Any]) -> None:
        name = event.info.name
        if name not in _REPORTED_EVENTS:
            level = _LOGGED_LEVELS.get(event.info.level)
            if level is not None and event.info.msg:
                self.log.log(level, "%s", event.info.msg)
            return
        node = event.data.node_info if name == "NodeFinished" else None
        if node is not None and node.resource_type == "test" and is_dbt_node_status_terminal(node.node_status):
            # A test's own status and event are keys no sensor reads; its model's aggregate is.
            push_test_result_or_aggregate(
                node.unique_id,
                node.node_status,
                self.tests_per_model,
                self.test_results_per_model,
                where["context"]["ti"],
            )
            return
        from google.protobuf.json_format import MessageToJson

        report(MessageToJson(event, preserving_proto_field_name=True), where)
