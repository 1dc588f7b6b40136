"""`dataops metrics`: the DataOps success metrics of one target, computed from the run history.

Every figure is aggregated in SQL over the store's columns and indexes (never by reading every
run's document): only the deployments' and rollbacks' documents are read, and they are few. The
test and documentation coverage come from the manifest of the target's latest pipeline run: the
manifest its deployment kept when that run was a deploy, else the one dbt last wrote in the
target's artifacts folder. What the history cannot answer is reported as not available, with what
it would need; nothing is invented.

The JSON shape (`METRICS_FORMAT`) is stable: fields are only added within a format."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dataops.core.errors import DataOpsError
from dataops.history.records import PIPELINE_KINDS_SQL, IncidentRecord, RunRecord
from dataops.history.store import Database, HistoryStore, stored_moment

METRICS_FORMAT = "dataops.metrics/v1"
COST_RATE_ENV_VAR = "DATAOPS_COST_PER_CPU_HOUR"
DEFAULT_WINDOW = "30d"
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdw])\s*$")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}

# name -> (unit, definition): what `--help`, the README and the JSON say each figure is.
DEFINITIONS: dict[str, tuple[str, str]] = {
    "deployment_frequency": (
        "per day",
        "deploys of outcome `deployed` (a new version published) in the window, per day and per week",
    ),
    "lead_time_for_changes": (
        "seconds",
        "median, over those deploys, of the deployed commit's time to the deploy's end",
    ),
    "time_to_restore": (
        "seconds",
        "median, over the incidents opened in the window and resolved, of opened to resolved",
    ),
    "change_failure_rate": (
        "ratio",
        "share of those deploys followed by an incident opened or a rollback before the next deploy (or now)",
    ),
    "test_coverage": (
        "ratio",
        "share of the project's models with at least one test, and of their documented columns with one, "
        "in the manifest of the latest pipeline run",
    ),
    "data_quality_score": (
        "0..1",
        "mean quality score of the window's pipeline runs; trend: the newest score minus the oldest",
    ),
    "incident_frequency": ("per week", "incidents opened in the window, per week"),
    "pipeline_execution_time": (
        "seconds",
        "p50 and p95 (nearest rank) of the ended pipeline runs' wall time in the window",
    ),
    "resource_use": (
        "CPU seconds per run",
        "mean CPU seconds and mean and max peak memory of the window's pipeline runs",
    ),
    "cost_per_run": (
        "per run, in the rate's currency",
        f"mean CPU seconds per run / 3600 times ${COST_RATE_ENV_VAR} (cost of one CPU hour)",
    ),
    "documentation_coverage": (
        "ratio",
        "share of the project's models with a description, and of their columns with one, in that manifest",
    ),
}
NOT_AVAILABLE: dict[str, str] = {
    "pull_request_review_time": "the pull requests' opened and approved times, from the forge's API "
    "(GitHub); the run history records deployed commits, not reviews",
    "team_satisfaction": "a survey of the team; nothing a pipeline records can stand in for it",
}


def parse_window(text: str) -> timedelta:
    """`30d`, `12h`, `2w`: the window the metrics look back over."""
    found = _WINDOW.match(text)
    if not found or float(found.group(1)) <= 0:
        raise DataOpsError(f"--since {text!r} is not a window: give a number and h, d or w, e.g. 30d, 12h or 2w")
    return timedelta(seconds=float(found.group(1)) * _UNIT_SECONDS[found.group(2)])


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None  # the headline figure; None when there was nothing to compute it from
    unit: str
    definition: str
    detail: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    needs: str = ""  # what a figure that is not available would need

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "available": self.available,
            "definition": self.definition,
            **({"needs": self.needs} if self.needs else {}),
            **self.detail,
        }


@dataclass(frozen=True)
class MetricsReport:
    target: str
    since: datetime
    until: datetime
    runs: int
    metrics: list[Metric]

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": METRICS_FORMAT,
            "target": self.target,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "pipeline_runs": self.runs,
            "metrics": {m.name: m.to_dict() for m in self.metrics},
        }


@dataclass(frozen=True)
class _Deploy:
    run_id: str
    started_at: datetime
    finished_at: datetime
    commit_time: datetime | None


def compute_metrics(
    store: HistoryStore,
    target: str,
    window: timedelta,
    artifacts_dir: Path,
    now: datetime | None = None,
    cost_rate: float | None = None,
) -> MetricsReport:
    """The metrics of `target` over the `window` before `now`. `artifacts_dir`: the target's
    artifacts folder (Settings.artifacts_dir); `cost_rate`: one CPU hour's cost (default: the
    environment's DATAOPS_COST_PER_CPU_HOUR, else cost is not available)."""
    until = now or datetime.now(UTC)
    since = until - window
    days = window.total_seconds() / 86400
    rate = cost_rate if cost_rate is not None else cost_rate_from_env()
    with store.reading() as db:
        if db is None:
            deploys, rollbacks, runs, durations, scores, resources = [], [], 0, [], [], (None, None, None, 0)
            latest = None
        else:
            deploys = _deploys(db, store.shown_url, target, since)
            rollbacks = _times(
                db,
                "select started_at from dataops_runs where target = ? and kind = 'rollback' and started_at >= ?",
                [target, stored_moment(since)],
            )
            runs, durations = _durations(db, target, since)
            scores = _scores(db, target, since)
            resources = _resources(db, target, since)
            latest = _latest_pipeline_run(db, store.shown_url, target)
    incidents = store.incidents(target)
    manifest = _manifest_of(latest, artifacts_dir)
    metrics = [
        _deployment_frequency(deploys, days),
        _lead_time(deploys),
        _time_to_restore([i for i in incidents if i.opened_at >= since]),
        _change_failure_rate(deploys, rollbacks, [i.opened_at for i in incidents], until),
        *_coverage(manifest),
        _quality(scores),
        _incident_frequency([i for i in incidents if i.opened_at >= since], days),
        _execution_time(durations),
        *_resource_and_cost(resources, rate),
        *(
            Metric(name, None, "", "not computed", available=False, needs=needs)
            for name, needs in NOT_AVAILABLE.items()
        ),
    ]
    return MetricsReport(target, since, until, runs, _in_order(metrics))


def cost_rate_from_env() -> float | None:
    text = os.environ.get(COST_RATE_ENV_VAR, "").strip()
    if not text:
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if rate < 0 or not math.isfinite(rate):
        raise DataOpsError(f"{COST_RATE_ENV_VAR}={text!r} is not a cost: give one CPU hour's cost, e.g. 0.05")
    return rate


def _in_order(metrics: list[Metric]) -> list[Metric]:
    order = [*DEFINITIONS, *NOT_AVAILABLE]
    return sorted(metrics, key=lambda m: order.index(m.name))


def _metric(name: str, value: float | None, **detail: Any) -> Metric:
    unit, definition = DEFINITIONS[name]
    return Metric(name, value, unit, definition, detail)


# Reading the store -------------------------------------------------------------------------------


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text))


def _times(db: Database, sql: str, values: list[Any]) -> list[datetime]:
    return [_time(row[0]) for row in db.execute(sql, values)]


def _deploys(db: Database, store: str, target: str, since: datetime) -> list[_Deploy]:
    """The window's deploys that published, oldest first (their documents: the deployment part)."""
    rows = db.execute(
        "select run_id, document from dataops_runs where target = ? and kind = 'deploy' and started_at >= ? "
        "and finished_at is not null order by started_at, run_id",
        [target, stored_moment(since)],
    )
    deploys = []
    for run_id, document in rows:
        record = _record(store, str(run_id), str(document))
        part = record.deployment
        if part is None or part.outcome != "deployed" or record.finished_at is None:
            continue
        commit = datetime.fromisoformat(part.commit_time) if part.commit_time else None
        deploys.append(_Deploy(record.run_id, record.started_at, record.finished_at, commit))
    return deploys


def _record(store: str, run_id: str, document: str) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(document))
    except (ValueError, KeyError, TypeError) as error:
        raise DataOpsError(f"the record of run {run_id} in {store} cannot be read ({error})") from error


def _pipeline_window(target: str, since: datetime) -> tuple[str, list[Any]]:
    return (
        f"target = ? and kind in ({PIPELINE_KINDS_SQL}) and started_at >= ? and finished_at is not null",
        [target, stored_moment(since)],
    )


def _durations(db: Database, target: str, since: datetime) -> tuple[int, list[float]]:
    where, values = _pipeline_window(target, since)
    [(runs,)] = db.execute(f"select count(*) from dataops_runs where {where}", values)
    seconds = [
        float(s)
        for (s,) in db.execute(
            f"select seconds from dataops_runs where {where} and seconds is not null order by seconds", values
        )
    ]
    return int(runs), seconds


def _scores(db: Database, target: str, since: datetime) -> list[float]:
    """The window's quality scores, oldest first."""
    where, values = _pipeline_window(target, since)
    return [
        float(score)
        for (score,) in db.execute(
            f"select quality_score from dataops_runs where {where} and quality_score is not null "
            "order by started_at, run_id",
            values,
        )
    ]


def _resources(db: Database, target: str, since: datetime) -> tuple[float | None, float | None, float | None, int]:
    where, values = _pipeline_window(target, since)
    [(cpu, memory, peak, measured)] = db.execute(
        f"select avg(cpu_seconds), avg(peak_memory_bytes), max(peak_memory_bytes), count(cpu_seconds) "
        f"from dataops_runs where {where}",
        values,
    )
    return (
        float(cpu) if cpu is not None else None,
        float(memory) if memory is not None else None,
        float(peak) if peak is not None else None,
        int(measured),
    )


def _latest_pipeline_run(db: Database, store: str, target: str) -> RunRecord | None:
    found = db.execute(
        f"select run_id from dataops_runs where target = ? and kind in ({PIPELINE_KINDS_SQL}) "
        "and finished_at is not null order by started_at desc, run_id desc limit 1",
        [target],
    )
    if not found:
        return None
    [(document,)] = db.execute("select document from dataops_runs where run_id = ?", [found[0][0]])
    return _record(store, str(found[0][0]), str(document))


# The metrics -------------------------------------------------------------------------------------


def _deployment_frequency(deploys: list[_Deploy], days: float) -> Metric:
    return _metric(
        "deployment_frequency",
        len(deploys) / days,
        deployments=len(deploys),
        per_week=len(deploys) / days * 7,
    )


def _lead_time(deploys: list[_Deploy]) -> Metric:
    leads = [(d.finished_at - d.commit_time).total_seconds() for d in deploys if d.commit_time is not None]
    return _metric("lead_time_for_changes", statistics.median(leads) if leads else None, deployments=len(leads))


def _time_to_restore(incidents: list[IncidentRecord]) -> Metric:
    restored = [i.seconds_open for i in incidents if i.seconds_open is not None]
    return _metric(
        "time_to_restore",
        statistics.median(restored) if restored else None,
        resolved=len(restored),
        still_open=len(incidents) - len(restored),
    )


def _change_failure_rate(
    deploys: list[_Deploy], rollbacks: list[datetime], incidents: list[datetime], until: datetime
) -> Metric:
    failures = []
    for index, deploy in enumerate(deploys):
        end = deploys[index + 1].started_at if index + 1 < len(deploys) else until
        if any(deploy.finished_at <= moment < end for moment in [*rollbacks, *incidents]):
            failures.append(deploy.run_id)
    rate = len(failures) / len(deploys) if deploys else None
    return _metric("change_failure_rate", rate, deployments=len(deploys), failed=len(failures), failed_runs=failures)


def _nearest_rank(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _execution_time(seconds: list[float]) -> Metric:
    return _metric(
        "pipeline_execution_time",
        _nearest_rank(seconds, 0.5),
        p50=_nearest_rank(seconds, 0.5),
        p95=_nearest_rank(seconds, 0.95),
        runs=len(seconds),
    )


def _quality(scores: list[float]) -> Metric:
    return _metric(
        "data_quality_score",
        statistics.fmean(scores) if scores else None,
        latest=scores[-1] if scores else None,
        trend=scores[-1] - scores[0] if len(scores) > 1 else None,
        runs=len(scores),
    )


def _incident_frequency(incidents: list[IncidentRecord], days: float) -> Metric:
    severities: dict[str, int] = {}
    for incident in incidents:
        severities[incident.severity] = severities.get(incident.severity, 0) + 1
    return _metric("incident_frequency", len(incidents) / days * 7, incidents=len(incidents), by_severity=severities)


def _resource_and_cost(
    resources: tuple[float | None, float | None, float | None, int], rate: float | None
) -> list[Metric]:
    cpu, memory, peak, measured = resources
    use = _metric(
        "resource_use", cpu, cpu_seconds=cpu, mean_peak_memory_bytes=memory, max_peak_memory_bytes=peak, runs=measured
    )
    if rate is None:
        unit, definition = DEFINITIONS["cost_per_run"]
        cost = Metric(
            "cost_per_run",
            None,
            unit,
            definition,
            available=False,
            needs=f"the cost of one CPU hour in ${COST_RATE_ENV_VAR}",
        )
    else:
        cost = _metric("cost_per_run", cpu / 3600 * rate if cpu is not None else None, rate_per_cpu_hour=rate)
    return [use, cost]


# Coverage, from a manifest -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Manifest:
    path: Path
    document: dict[str, Any] | None
    problem: str = ""


def _manifest_of(latest: RunRecord | None, artifacts_dir: Path) -> _Manifest:
    if latest is not None and latest.deployment is not None and latest.deployment.artifacts:
        path = Path(latest.deployment.artifacts) / "manifest.json"
    else:
        path = artifacts_dir / "dbt" / "manifest.json"
    try:
        stat = path.stat()
        return _Manifest(path, _parsed(path, stat.st_mtime_ns, stat.st_size))
    except FileNotFoundError:
        return _Manifest(path, None, f"a manifest at {path}: run the pipeline (`dataops run`) first")
    except (OSError, ValueError) as error:
        return _Manifest(path, None, f"a readable manifest at {path} ({error})")


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """A manifest, parsed once per version of its file (the exporter asks at every scrape, and a
    manifest takes longer to parse than the rest of a scrape); the key changes when the file does."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _coverage(manifest: _Manifest) -> list[Metric]:
    if manifest.document is None:
        return [
            Metric(name, None, *DEFINITIONS[name], available=False, needs=manifest.problem)
            for name in ("test_coverage", "documentation_coverage")
        ]
    nodes: dict[str, Any] = manifest.document.get("nodes", {})
    project = manifest.document.get("metadata", {}).get("project_name")
    models = {
        uid: node
        for uid, node in nodes.items()
        if node.get("resource_type") == "model" and (project is None or node.get("package_name") == project)
    }
    tested_models: set[str] = set()
    tested_columns: set[tuple[str, str]] = set()
    for node in nodes.values():
        if node.get("resource_type") != "test":
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            if parent in models:
                tested_models.add(parent)
        attached, column = node.get("attached_node"), node.get("column_name")
        if attached in models and column:
            tested_columns.add((attached, str(column).strip('"').lower()))
    columns = [
        (uid, name.lower(), col) for uid, node in models.items() for name, col in node.get("columns", {}).items()
    ]
    source = {"manifest": str(manifest.path), "models": len(models), "columns": len(columns)}
    tested = sum(1 for uid, name, _ in columns if (uid, name) in tested_columns)
    described_models = sum(1 for node in models.values() if str(node.get("description", "")).strip())
    described_columns = sum(1 for _, _, col in columns if str(col.get("description", "")).strip())
    return [
        _metric(
            "test_coverage",
            _share(len(tested_models), len(models)),
            models_tested=len(tested_models),
            columns_tested=tested,
            column_share=_share(tested, len(columns)),
            **source,
        ),
        _metric(
            "documentation_coverage",
            _share(described_models, len(models)),
            models_described=described_models,
            columns_described=described_columns,
            column_share=_share(described_columns, len(columns)),
            **source,
        ),
    ]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
