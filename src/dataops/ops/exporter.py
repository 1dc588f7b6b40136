"""`dataops exporter`: the run history as Prometheus metrics, read at every scrape.

Nothing is counted in memory: each scrape reads the history (`HistoryStore.target_summaries`) and
the counters are totals over its ended runs, so two scrapes with no new run give the same values,
a restart changes nothing, and one failing run counts once however often it is scraped. Labels are
per target and per model, test, source or mart of the project, never per run. A history that is
missing or cannot be read is `dataops_history_up 0` with the other metrics absent, never an error
page: Prometheus alerts on that, and the reason is printed once when it starts and once when the
history is back."""

from __future__ import annotations

import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from types import FrameType, TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dataops.core.config import warehouse_dir
from dataops.core.errors import DataOpsError
from dataops.history.records import NodeRecord, RunRecord
from dataops.history.store import HistoryStore, TargetSummary
from dataops.ops.metrics import DEFAULT_WINDOW, MetricsReport, compute_metrics, parse_window
from dataops.sources.contract import SOURCE_TABLES_BY_NAME

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9108
METRICS_PATH = "/metrics"

RUN_STATUSES = ("passed", "warned", "failed", "crashed")
MODEL_STATUSES = ("success", "error", "skipped")
# dbt's freshness statuses that are an error: stale past error_after, or the check itself failed.
FRESHNESS_ERRORS = ("error", "runtime error")
TEST_KINDS = ("test", "unit_test")
# The source tables as the row counts name them (Sales.Customer), by dbt's source name (sales.customer).
_SOURCES = {name.lower(): name for name in SOURCE_TABLES_BY_NAME}

Notify = Callable[[str], None]


class HistoryCollector(Collector):
    """A prometheus_client collector that reads `store` at each scrape."""

    def __init__(self, store: HistoryStore, notify: Notify | None = None) -> None:
        self.store = store
        self._notify = notify or (lambda _line: None)
        self._problem: str | None = ""  # "" before the first scrape; None while the history is read
        self._lock = threading.Lock()  # scrapes may come at once; the state line is printed once

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        summaries, problem = self._read()
        seconds = time.perf_counter() - started
        self._report(problem)
        yield _gauge(
            "dataops_history_up",
            "1 when the run history was read at this scrape, else 0.",
            [((), 0 if summaries is None else 1)],
        )
        yield _gauge(
            "dataops_exporter_scrape_duration_seconds", "How long reading the run history took.", [((), seconds)]
        )
        if summaries is not None:
            yield from history_metrics(summaries)
            yield from success_metrics(self.store, [summary.target for summary in summaries])

    def _read(self) -> tuple[list[TargetSummary] | None, str | None]:
        try:
            summaries = self.store.target_summaries()
        except DataOpsError as error:
            return None, str(error)
        except Exception as error:  # a scrape must answer: a bug here is up 0 and a traceback, not a 500
            return None, "".join(traceback.format_exception(error)).rstrip()
        if summaries is None:
            return None, (
                f"no run history at {self.store.shown_url} (no run recorded there yet): run the pipeline, "
                "or point DATAOPS_HISTORY_URL at the history it records into"
            )
        return summaries, None

    def _report(self, problem: str | None) -> None:
        with self._lock:
            if problem == self._problem:
                return
            if problem is not None:
                self._notify(f"dataops_history_up 0: {problem}")
            elif self._problem:
                self._notify(f"dataops_history_up 1: the run history at {self.store.shown_url} is read again")
            self._problem = problem


def history_metrics(summaries: list[TargetSummary]) -> Iterator[Metric]:
    """Every family of the metric contract (README, "Monitoring") from the targets' summaries."""
    families: dict[str, Metric] = {}
    for name, kind, documentation, labels in _FAMILIES:
        families[name] = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
            name, documentation, labels=["target", *labels]
        )
    for summary in summaries:
        for name, labels, value in _samples(summary):
            families[name].add_metric([summary.target, *labels], value)
    yield from (family for family in families.values() if family.samples)


# name, type, help, labels after `target`
_FAMILIES: list[tuple[str, str, str, list[str]]] = [
    ("dataops_runs_total", "counter", "Ended runs in the history, by status.", ["status"]),
    ("dataops_runs_not_published_total", "counter", "Ended runs that did not publish the marts.", []),
    ("dataops_last_run_timestamp_seconds", "gauge", "When the latest ended run ended (Unix time).", []),
    ("dataops_last_run_duration_seconds", "gauge", "How long the latest ended run took.", []),
    ("dataops_last_run_status", "gauge", "1 for the latest ended run's status, 0 for the others.", ["status"]),
    ("dataops_last_success_timestamp_seconds", "gauge", "When the latest run that passed or warned ended.", []),
    ("dataops_quality_score", "gauge", "Data quality score (0..1) of the latest run that has one.", []),
    ("dataops_published_version", "gauge", "The version of the marts consumers read.", []),
    ("dataops_last_run_published", "gauge", "1 if the latest ended run published the marts, else 0.", []),
    ("dataops_mart_rows", "gauge", "Rows per mart, as the latest ended run counted them.", ["mart"]),
    ("dataops_source_rows", "gauge", "Rows per source table, as the latest ended run counted them.", ["source"]),
    (
        "dataops_source_freshness_age_seconds",
        "gauge",
        "Age of each source's newest row at the latest run's freshness check.",
        ["source"],
    ),
    (
        "dataops_anomaly",
        "gauge",
        "1 when the latest run's anomaly check flagged the relation, else 0.",
        ["kind", "relation"],
    ),
    ("dataops_anomaly_score", "gauge", "The z-score of the latest run's anomaly check.", ["kind", "relation"]),
    ("dbt_models_total", "gauge", "Models in the latest ended run.", []),
    ("dbt_execution_time_seconds", "gauge", "The latest ended run's dbt build stage, in seconds.", []),
    ("dbt_model_execution_time_seconds", "gauge", "Each model's build time in the latest ended run.", ["model"]),
    (
        "dbt_model_status",
        "gauge",
        "1 for each model's status in the latest ended run, 0 for the others.",
        ["model", "status"],
    ),
    ("dbt_model_failures_total", "counter", "Ended runs in which the model errored.", ["model"]),
    ("dbt_test_failures_total", "counter", "Ended runs in which the test's status was fail or error.", ["test"]),
    (
        "dbt_source_freshness_error",
        "gauge",
        "1 when the latest freshness check of the source was an error.",
        ["source"],
    ),
]

Sample = tuple[str, tuple[str, ...], float]


def _samples(summary: TargetSummary) -> Iterator[Sample]:
    yield from _totals(summary)
    if summary.last_success_at is not None:
        yield "dataops_last_success_timestamp_seconds", (), summary.last_success_at.timestamp()
    if summary.quality_score is not None:
        yield "dataops_quality_score", (), summary.quality_score
    if summary.published_version is not None:
        yield "dataops_published_version", (), summary.published_version
    if summary.latest is not None:
        yield from _latest_run(summary.latest)


def _totals(summary: TargetSummary) -> Iterator[Sample]:
    by_status: dict[str, int] = dict.fromkeys(RUN_STATUSES, 0)
    not_published = 0
    for (status, publish_status), runs in summary.runs.items():
        by_status[status] = by_status.get(status, 0) + runs
        not_published += runs if publish_status != "published" else 0
    for status, runs in by_status.items():
        yield "dataops_runs_total", (status,), runs
    yield "dataops_runs_not_published_total", (), not_published
    # Every model and test of the latest run, at 0 if it never failed: a counter that appears at 1
    # has no increase for an alert to see. Those that failed before and are gone keep their total.
    latest = summary.latest.nodes if summary.latest else []
    for family, kinds in (("dbt_model_failures_total", ("model",)), ("dbt_test_failures_total", TEST_KINDS)):
        names = dict.fromkeys(node.name for node in latest if node.kind in kinds)
        names.update(dict.fromkeys(name for kind, name in summary.node_failures if kind in kinds))
        for name in names:
            yield family, (name,), sum(summary.node_failures.get((kind, name), 0) for kind in kinds)


def _latest_run(run: RunRecord) -> Iterator[Sample]:
    if run.finished_at is not None:
        yield "dataops_last_run_timestamp_seconds", (), run.finished_at.timestamp()
    if run.seconds is not None:
        yield "dataops_last_run_duration_seconds", (), run.seconds
    yield from _one_of("dataops_last_run_status", (), RUN_STATUSES, run.status)
    yield "dataops_last_run_published", (), 1 if run.publish and run.publish.status == "published" else 0
    for relation, rows in run.row_counts.items():
        if relation in SOURCE_TABLES_BY_NAME:
            yield "dataops_source_rows", (relation,), rows
        else:
            yield "dataops_mart_rows", (relation.split(".", 1)[-1],), rows
    build = next((stage.seconds for stage in run.stages if stage.name == "build"), None)
    if build is not None:
        yield "dbt_execution_time_seconds", (), build
    models = [node for node in run.nodes if node.kind == "model"]
    yield "dbt_models_total", (), len(models)
    for node in models:
        if node.seconds is not None:
            yield "dbt_model_execution_time_seconds", (node.name,), node.seconds
        yield from _one_of("dbt_model_status", (node.name,), MODEL_STATUSES, node.status)
    for node in run.nodes:
        if node.kind == "source":
            yield from _source(node)
        elif node.kind == "anomaly":
            yield from _anomaly(node)


def _one_of(family: str, labels: tuple[str, ...], statuses: Iterable[str], status: str) -> Iterator[Sample]:
    """1 for `status`, 0 for the others: a status series that vanished would end an alert early."""
    for each in dict.fromkeys([*statuses, status]):
        yield family, (*labels, each), 1 if each == status else 0


def _source(node: NodeRecord) -> Iterator[Sample]:
    name = node.name.removeprefix("freshness of ")
    source = (_SOURCES.get(name.lower(), name),)
    if node.age_seconds is not None:
        yield "dataops_source_freshness_age_seconds", source, node.age_seconds
    yield "dbt_source_freshness_error", source, 1 if node.status in FRESHNESS_ERRORS else 0


def _anomaly(node: NodeRecord) -> Iterator[Sample]:
    """unique_id `anomaly.<volume|freshness>.<relation>`; status `anomalous` is the flag."""
    parts = node.unique_id.split(".", 2)
    if len(parts) != 3:
        return
    labels = (parts[1], parts[2])
    yield "dataops_anomaly", labels, 1 if node.status == "anomalous" else 0
    if node.score is not None:
        yield "dataops_anomaly_score", labels, node.score


# The DataOps success metrics (`dataops metrics`, over its default window), one gauge family each:
# family, help, metric, the field of it (value or a detail), and the label that field is under.
_SUCCESS_FAMILIES: list[tuple[str, str, str, list[tuple[str, tuple[str, ...]]], list[str]]] = [
    (
        "dataops_metric_deployments_per_day",
        "Deployments that published, per day.",
        "deployment_frequency",
        [("value", ())],
        [],
    ),
    (
        "dataops_metric_lead_time_seconds",
        "Median commit-to-production time of those deployments.",
        "lead_time_for_changes",
        [("value", ())],
        [],
    ),
    (
        "dataops_metric_time_to_restore_seconds",
        "Median time from an incident opened to resolved.",
        "time_to_restore",
        [("value", ())],
        [],
    ),
    (
        "dataops_metric_change_failure_ratio",
        "Deployments followed by an incident or a rollback.",
        "change_failure_rate",
        [("value", ())],
        [],
    ),
    (
        "dataops_metric_test_coverage_ratio",
        "Models, and columns, with at least one test.",
        "test_coverage",
        [("value", ("models",)), ("column_share", ("columns",))],
        ["of"],
    ),
    (
        "dataops_metric_documentation_coverage_ratio",
        "Models, and columns, with a description.",
        "documentation_coverage",
        [("value", ("models",)), ("column_share", ("columns",))],
        ["of"],
    ),
    (
        "dataops_metric_quality_score_mean",
        "Mean quality score of the window's pipeline runs.",
        "data_quality_score",
        [("value", ())],
        [],
    ),
    ("dataops_metric_incidents_per_week", "Incidents opened per week.", "incident_frequency", [("value", ())], []),
    (
        "dataops_metric_pipeline_duration_seconds",
        "Pipeline runs' wall time, p50 and p95 (nearest rank).",
        "pipeline_execution_time",
        [("p50", ("0.5",)), ("p95", ("0.95",))],
        ["quantile"],
    ),
    ("dataops_metric_cpu_seconds_per_run", "Mean CPU seconds of a pipeline run.", "resource_use", [("value", ())], []),
    (
        "dataops_metric_peak_memory_bytes",
        "Largest peak memory of a pipeline run.",
        "resource_use",
        [("max_peak_memory_bytes", ())],
        [],
    ),
    (
        "dataops_metric_cost_per_run",
        "Mean cost of a pipeline run (DATAOPS_COST_PER_CPU_HOUR).",
        "cost_per_run",
        [("value", ())],
        [],
    ),
]


def success_metrics(store: HistoryStore, targets: list[str]) -> Iterator[Metric]:
    """`dataops metrics` of each target, over its default window; a figure with nothing to compute
    it from (no deployment, no incident, no manifest) is absent rather than 0."""
    window = parse_window(DEFAULT_WINDOW)
    reports = [compute_metrics(store, target, window, warehouse_dir() / "artifacts" / target) for target in targets]
    for name, documentation, metric, fields, labels in _SUCCESS_FAMILIES:
        family = GaugeMetricFamily(name, f"{documentation} Over the last {DEFAULT_WINDOW}.", labels=["target", *labels])
        for report in reports:
            for field_name, values in fields:
                value = _field(report, metric, field_name)
                if value is not None:
                    family.add_metric([report.target, *values], value)
        if family.samples:
            yield family


def _field(report: MetricsReport, metric: str, field_name: str) -> float | None:
    found = report.metric(metric)
    if not found.available:
        return None
    value = found.value if field_name == "value" else found.detail.get(field_name)
    return float(value) if isinstance(value, (int, float)) else None


def _gauge(name: str, documentation: str, samples: list[tuple[tuple[str, ...], float]]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[])
    for labels, value in samples:
        family.add_metric(list(labels), value)
    return family


# The HTTP server ------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape would bury the lines that matter


class ExporterServer:
    """`/metrics` on `host:port` (port 0: any free one), from the history at `store` (default:
    DATAOPS_HISTORY_URL or the SQLite file beside the warehouse)."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        store: HistoryStore | None = None,
        notify: Notify | None = None,
    ) -> None:
        self.collector = HistoryCollector(store or HistoryStore(), notify)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        metrics = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == METRICS_PATH:
                return metrics(environ, start_response)  # type: ignore[no-any-return]
            found = path == "/"
            start_response("200 OK" if found else "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"dataops exporter: the metrics are at {METRICS_PATH}\n".encode()]

        family = _address_family(host, port)
        server_class = type("_Server", (_ThreadingServer,), {"address_family": family})
        try:
            self._server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        except OSError as error:
            raise DataOpsError(_listen_error(host, port, error)) from error

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}{METRICS_PATH}"

    @property
    def store(self) -> str:
        return self.collector.store.shown_url

    def serve_until_stopped(self) -> None:
        """Serve until Ctrl-C or SIGTERM. Both handled here: as PID 1 in a container (`docker stop`)
        SIGTERM would be ignored, and a process started in the background inherits SIGINT ignored."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {number: signal.signal(number, _interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def shutdown(self) -> None:
        """From another thread: ends `serve_until_stopped`."""
        self._server.shutdown()

    def __enter__(self) -> ExporterServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.server_close()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A thread per request, so a slow scrape never holds up the next one."""

    daemon_threads = True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _address_family(host: str, port: int) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise DataOpsError(
            f"--host {host!r} is not an address of this machine ({reason}): give one, e.g. 127.0.0.1 (this machine "
            "only) or 0.0.0.0 (every interface, as in a container)"
        ) from error
    return infos[0][0]


def _listen_error(host: str, port: int, error: OSError) -> str:
    import errno

    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use (another exporter?): stop it, or choose another --port"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to listen on {host}:{port}: choose a --port above 1023"
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"--host {host} is not an address of this machine ({error.strerror}): give one, e.g. 127.0.0.1 or 0.0.0.0"
        )
    return f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --host or --port"
