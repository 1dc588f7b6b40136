"""What the `dbt_monitoring` DAG checks: the latest run of a target in the run history, whoever ran
it (the CLI or the Airflow DAG), and whether runs still come as often as the pipeline's schedule
says. It reads the history, never dbt's files: those describe the last dbt command in one folder on
one machine, which may be a compile, or another worker's. A pipeline DAG run records itself as it
goes and has no end until its last task: while it is in flight, the run before it is judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from dataops.core.config import PIPELINE_SCHEDULE, Settings
from dataops.core.errors import DataOpsError
from dataops.core.findings import Finding, errors_in, warnings_in
from dataops.history.records import PIPELINE_KINDS, RunRecord
from dataops.history.store import HistoryStore

# Presets Airflow accepts, so the interval does not need croniter for the common schedules.
_PRESETS = {
    "@hourly": timedelta(hours=1),
    "@daily": timedelta(days=1),
    "@midnight": timedelta(days=1),
    "@weekly": timedelta(weeks=1),
    "@monthly": timedelta(days=31),
    "@yearly": timedelta(days=366),
    "@annually": timedelta(days=366),
}


@dataclass
class MonitoringReport:
    """Findings about one target's latest run, and which run and store they came from."""

    target: str
    store: str
    run_id: str | None = None
    findings: list[Finding] = field(default_factory=list)
    in_flight: str | None = None  # a run that has not ended yet, judged once it has

    @property
    def failed(self) -> bool:
        return bool(errors_in(self.findings))

    @property
    def errors(self) -> list[Finding]:
        return errors_in(self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return warnings_in(self.findings)

    def summary(self) -> str:
        """One line for logs and notifications."""
        verdict = "FAILED" if self.failed else "passed"
        run = f"run {self.run_id}" if self.run_id else "no run"
        text = (
            f"monitoring of {self.target} {verdict}: {len(self.errors)} error(s), "
            f"{len(self.warnings)} warning(s); latest {run} in {self.store}"
        )
        if self.in_flight:
            text += f", run {self.in_flight} in flight"
        if self.findings:
            text += ": " + "; ".join(f"{f.check}: {f.message}" for f in self.findings)
        return text


def allowed_gap(schedule: str) -> timedelta:
    """How long without a run the schedule allows: its longest interval between two runs, plus a
    twelfth of it (at least ten minutes) for the run itself. @daily allows 26 hours."""
    interval = _PRESETS.get(schedule) or _cron_interval(schedule)
    return interval + max(interval / 12, timedelta(minutes=10))


def _cron_interval(schedule: str) -> timedelta:
    try:
        from croniter import croniter
    except ImportError as error:
        raise DataOpsError(f"schedule {schedule!r} is a cron expression: install croniter (Airflow has it)") from error
    if not croniter.is_valid(schedule):
        raise DataOpsError(f"schedule {schedule!r} is neither an Airflow preset (@daily, ...) nor a cron expression")
    ticks = croniter(schedule, datetime(2026, 1, 1, tzinfo=UTC))
    times = [ticks.get_next(datetime) for _ in range(32)]  # a month of a daily one: longest gap
    return max(later - earlier for earlier, later in pairwise(times))


def monitor(
    settings: Settings,
    schedule: str = PIPELINE_SCHEDULE,
    now: datetime | None = None,
    store: HistoryStore | None = None,
) -> MonitoringReport:
    store = store or HistoryStore()
    now = now or datetime.now(UTC)
    report = MonitoringReport(settings.target, store.shown_url)
    latest, report.in_flight = _judged_run(store, settings.target, allowed_gap(schedule), now)
    if latest is None:
        if report.in_flight:
            return report  # the first run of the target, still running
        report.findings.append(
            Finding(
                "error",
                "run history",
                f"no run of {settings.target} in the run history: has the pipeline run? (`dataops run` or its DAG)",
            )
        )
        return report
    report.run_id = latest.run_id
    report.findings = [Finding("error" if f.level == "error" else "warn", f.check, f.message) for f in latest.findings]
    if latest.error:
        report.findings.append(Finding("error", f"run {latest.run_id}", f"{latest.status}: {latest.error}"))
    elif latest.status in ("failed", "crashed") and not report.errors:
        report.findings.append(Finding("error", f"run {latest.run_id}", f"{latest.status} without a named cause"))
    if report.in_flight is None:  # a run in flight is a run the schedule started
        report.findings += _age_findings(latest, schedule, now)
    return report


def _judged_run(
    store: HistoryStore, target: str, allowed: timedelta, now: datetime
) -> tuple[RunRecord | None, str | None]:
    """The newest run that has ended, and the newest one in flight: no end yet, started within
    what the schedule allows. One with no end that started before that died midway, and is judged
    as it was left (crashed)."""
    in_flight = None
    # One pipeline DAG run at a time: a few rows are enough to get past the one in flight.
    for row in store.runs(target, limit=3, kind=PIPELINE_KINDS):
        if row.seconds is None and now - datetime.fromisoformat(row.started_at) <= allowed:
            in_flight = in_flight or row.run_id
            continue
        return store.get(row.run_id), in_flight
    return None, in_flight


def _age_findings(latest: RunRecord, schedule: str, now: datetime) -> list[Finding]:
    """An old latest run means the pipeline stopped running: every other finding describes the past."""
    ended = latest.finished_at or latest.started_at
    allowed = allowed_gap(schedule)
    if now - ended <= allowed:
        return []
    return [
        Finding(
            "error",
            "run age",
            f"the latest run {latest.run_id} ended {_age(now - ended)} ago (at {ended.astimezone(UTC):%Y-%m-%d %H:%M} "
            f"UTC), longer than the {_age(allowed)} the schedule {schedule} allows: check the pipeline DAG",
        )
    ]


def check_history(
    settings: Settings,
    schedule: str = PIPELINE_SCHEDULE,
    store: HistoryStore | None = None,
    now: datetime | None = None,
) -> str:
    """For an Airflow task: raise DataOpsError naming every error, else return the summary."""
    report = monitor(settings, schedule, now, store)
    if report.failed:
        raise DataOpsError(report.summary())
    return report.summary()


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{hours * 60:.0f} minutes"
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:,.0f} days"
