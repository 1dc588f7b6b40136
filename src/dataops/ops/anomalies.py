"""Anomaly detection on the run history: is this run's volume (rows per source table and per mart)
or a source's freshness (its age at the freshness check) unlike the target's recent runs?

The semantics are Elementary's (dbt-data-reliability, `get_anomaly_scores_query`): the training set
is the metric's values in the target's runs of the `training_days` before this run; with fewer than
`min_training_runs` of them the check says `not enough history` and never blocks. The score is
z = (value - mean) / stddev (the sample standard deviation, as SQL's stddev); an anomaly is
|z| > sensitivity for volume (a drop and a spike alike) and z > sensitivity for freshness (only an
older source is a problem: Elementary's freshness metrics are spike-only), and never a small change
(Elementary's `ignore_small_changes` spike and drop thresholds: here 10% by default, and a source's
age must also grow by `min_age_increase_hours`).

Two departures, where Elementary's answer is wrong for this pipeline:
- A zero standard deviation. Elementary scores it 0, never anomalous; generated data has the same row
  counts in every run, so a 40% drop would pass. Here the standard deviation is floored at the
  smallest change that counts divided by the sensitivity: a change at the small-change threshold
  scores exactly the sensitivity, +2% of a steady table 0.6, -40% -12. The score stays finite and
  agrees with the verdict: |z| > sensitivity exactly when the change is beyond both the spread of the
  history and the small-change threshold.
- A stale source. The real AdventureWorks sample ends in 2014: its sources' age grows a day per day,
  and against its own past ages every run is the oldest yet. A source whose newest row is the same in
  every training run and in this one (its age grew exactly as time passed) did not stop updating
  within the window, it stopped before: that is the freshness check's finding, not an anomaly. Its
  score is 0.

Training runs are the target's earlier finished runs of kind `run` that passed or warned. A failed
run's data is suspect (a check failed on it, or this very anomaly stopped its publish at level
error): trained on, a refused drop would become the norm after a retry or two. A crashed run's counts
may be partial. A warned run was published: at level warn an anomaly is accepted data, and the
baseline learns it, as Elementary's does.

Pure but for `training_history`, which reads the store's row-count and node tables (one query each)
rather than every run's document.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from dataops.core.config import AnomalySettings, Severity
from dataops.core.findings import Finding
from dataops.history.records import PIPELINE_KINDS_SQL, NodeRecord
from dataops.history.store import Database, HistoryStore, stored_moment

Kind = Literal["volume", "freshness"]
PASS, ANOMALOUS, NOT_ENOUGH_HISTORY = "pass", "anomalous", "not enough history"
TRAINED_STATUSES = ("passed", "warned")
FRESHNESS_PREFIX = "freshness of "
# The freshness check runs after the load and the parse, whose minutes differ from run to run: two
# runs this close in (run start - age) saw the same newest row.
_SAME_NEWEST_ROW = timedelta(hours=1)
# The least change there is: one row, one second. Keeps the floored standard deviation above 0.
_ONE_UNIT = 1.0


@dataclass(frozen=True)
class Sample:
    """A source's age in one training run, and when that run started."""

    started_at: datetime
    age_seconds: float


@dataclass
class TrainingHistory:
    """The training runs' values: rows per relation, freshness samples per source node."""

    runs: int = 0
    rows: dict[str, list[float]] = field(default_factory=dict)
    ages: dict[str, list[Sample]] = field(default_factory=dict)


@dataclass(frozen=True)
class AnomalyCheck:
    """One check's verdict, as the run's record keeps it (a node of kind `anomaly`)."""

    kind: Kind
    relation: str
    status: str  # pass | anomalous | not enough history
    score: float | None
    message: str

    @property
    def unique_id(self) -> str:
        return f"anomaly.{self.kind}.{self.relation}"

    @property
    def name(self) -> str:
        return f"{self.kind} anomaly of {self.relation}"

    @property
    def anomalous(self) -> bool:
        return self.status == ANOMALOUS

    def node(self, level: Severity) -> NodeRecord:
        """`level` is what an anomaly counts as in the environment."""
        counts_as = {PASS: "ok", ANOMALOUS: level}.get(self.status, "skipped")
        return NodeRecord(
            self.unique_id, "anomaly", self.name, self.status, counts_as, message=self.message, score=self.score
        )


@dataclass(frozen=True)
class _Score:
    z: float
    mean: float
    stddev: float
    spread: float  # what z divides by: the stddev, or its floor

    @property
    def floored(self) -> bool:
        return self.spread > self.stddev


def _score(value: float, training: Sequence[float], least_change: float, sensitivity: float) -> _Score:
    mean = statistics.fmean(training)
    stddev = statistics.stdev(training)
    spread = max(stddev, least_change / sensitivity)
    return _Score((value - mean) / spread, mean, stddev, spread)


def _too_little(kind: Kind, relation: str, found: int, config: AnomalySettings) -> AnomalyCheck:
    return AnomalyCheck(
        kind,
        relation,
        NOT_ENOUGH_HISTORY,
        None,
        (
            f"{found} training run{'s' if found != 1 else ''} in the {config.training_days} days before this run; "
            f"{config.min_training_runs} are needed"
        ),
    )


def _verdict(
    score: _Score,
    anomalous: bool,
    runs: int,
    config: AnomalySettings,
    shown: str,
    unit: Callable[[float], str],
    threshold: str,
) -> str:
    """`shown`: the value and its change from the mean; `unit` writes a spread in the metric's
    terms; `threshold`: the small change that never counts, named when the stddev is floored at it."""
    text = f"{shown}, stddev {unit(score.stddev)} over {runs} training runs: z-score {score.z:+.2f}"
    if anomalous:
        text += f", beyond {config.sensitivity:g}"
    if score.floored:
        text += f" (stddev floored at {unit(score.spread)}: {threshold} is never an anomaly)"
    return text


def _rows(value: float) -> str:
    return f"{value:,.1f}"


def judge_volume(relation: str, rows: float, training: Sequence[float], config: AnomalySettings) -> AnomalyCheck:
    """A relation's rows against its rows in the training runs, a drop or a spike."""
    if len(training) < config.min_training_runs:
        return _too_little("volume", relation, len(training), config)
    mean = statistics.fmean(training)
    direction, percent = ("spike", config.min_spike_percent) if rows >= mean else ("drop", config.min_drop_percent)
    score = _score(rows, training, max(percent / 100 * abs(mean), _ONE_UNIT), config.sensitivity)
    anomalous = abs(score.z) > config.sensitivity
    change = f"{(rows - mean) / mean * 100:+.1f}%" if mean else f"{rows - mean:+,.0f} rows"
    shown = f"{rows:,.0f} rows, {change} from the mean of {mean:,.1f}"
    message = _verdict(score, anomalous, len(training), config, shown, _rows, f"a {direction} under {percent:g}%")
    return AnomalyCheck("volume", relation, ANOMALOUS if anomalous else PASS, round(score.z, 3), message)


def _stale_throughout(age_seconds: float, started_at: datetime, training: Sequence[Sample]) -> bool:
    newest = started_at - timedelta(seconds=age_seconds)
    return all(abs(s.started_at - timedelta(seconds=s.age_seconds) - newest) <= _SAME_NEWEST_ROW for s in training)


def judge_freshness(
    source: str, age_seconds: float, started_at: datetime, training: Sequence[Sample], config: AnomalySettings
) -> AnomalyCheck:
    """A source's age at this run's freshness check against its ages in the training runs: only an
    older source is an anomaly, and never one that was already stale through the whole window."""
    if len(training) < config.min_training_runs:
        return _too_little("freshness", source, len(training), config)
    if _stale_throughout(age_seconds, started_at, training):
        newest = started_at - timedelta(seconds=age_seconds)
        return AnomalyCheck(
            "freshness",
            source,
            PASS,
            0.0,
            (
                f"{_duration(age_seconds)} old, not updated in any of the {len(training)} training runs (newest row "
                f"about {newest.astimezone(UTC):%Y-%m-%d %H:%M} UTC): its age grows as time passes, which is "
                "staleness, not an anomaly"
            ),
        )
    ages = [s.age_seconds for s in training]
    mean = statistics.fmean(ages)
    least = max(config.min_spike_percent / 100 * mean, config.min_age_increase_hours * 3600, _ONE_UNIT)
    score = _score(age_seconds, ages, least, config.sensitivity)
    anomalous = score.z > config.sensitivity
    shown = (
        f"{_duration(age_seconds)} old, {_duration(abs(age_seconds - mean))} "
        f"{'older' if age_seconds >= mean else 'fresher'} than the mean of {_duration(mean)}"
    )
    threshold = (
        f"an age increase under {config.min_spike_percent:g}% or "
        f"{config.min_age_increase_hours:g} hour{'s' if config.min_age_increase_hours != 1 else ''}"
    )
    message = _verdict(score, anomalous, len(training), config, shown, _duration, threshold)
    return AnomalyCheck("freshness", source, ANOMALOUS if anomalous else PASS, round(score.z, 3), message)


def detect(
    config: AnomalySettings,
    training: TrainingHistory,
    started_at: datetime,
    row_counts: Mapping[str, int],
    freshness: Sequence[NodeRecord],
) -> list[AnomalyCheck]:
    """Every relation this run counted and every source its freshness check aged, judged against
    the training runs; sorted by kind and relation, so records and metrics keep one order."""
    checks = [
        judge_volume(relation, rows, training.rows.get(relation, []), config) for relation, rows in row_counts.items()
    ]
    for node in freshness:
        if node.kind == "source" and node.age_seconds is not None:  # a source that could not be read has no age
            source = node.name.removeprefix(FRESHNESS_PREFIX)
            checks.append(
                judge_freshness(source, node.age_seconds, started_at, training.ages.get(node.unique_id, []), config)
            )
    return sorted(checks, key=lambda check: (check.kind != "volume", check.relation))


def findings_of(checks: Sequence[AnomalyCheck], level: Severity) -> list[Finding]:
    return [Finding(level, check.name, check.message) for check in checks if check.anomalous]


def training_history(
    store: HistoryStore, target: str, run_id: str, started_at: datetime, config: AnomalySettings
) -> TrainingHistory:
    """The target's training runs (see the module's docstring) started in the `training_days`
    before `started_at`, other than `run_id` (a DAG run's record is in the store while it runs).

    Fail closed: when the window holds too few training runs because the target's runs in it
    failed (an anomaly refused at level error fails every run that repeats it), the training
    reaches back to the last `min_training_runs` that passed, however old. Otherwise a refused
    drop would pass as `not enough history` once the last good runs left the window."""
    trained = (
        f"r.target = ? and r.kind in ({PIPELINE_KINDS_SQL}) and r.status in (?, ?) and r.finished_at is not null "
        "and r.started_at >= ? and r.started_at < ? and r.run_id <> ?"
    )
    window_start = stored_moment(started_at - timedelta(days=config.training_days))
    bounds = [target, *TRAINED_STATUSES, window_start, stored_moment(started_at), run_id]
    history = TrainingHistory()
    with store.transaction(write=False) as db:
        if not db.has_table("dataops_runs"):
            return history
        history.runs = int(db.execute(f"select count(*) from dataops_runs r where {trained}", bounds)[0][0])
        if history.runs < config.min_training_runs and _failed_in(db, target, window_start, started_at, run_id):
            older = db.execute(
                f"select r.started_at from dataops_runs r where r.target = ? and r.kind in ({PIPELINE_KINDS_SQL}) "
                "and r.status in (?, ?) and r.finished_at is not null and r.started_at < ? and r.run_id <> ? "
                "order by r.started_at desc limit ?",
                [target, *TRAINED_STATUSES, stored_moment(started_at), run_id, config.min_training_runs],
            )
            if len(older) == config.min_training_runs:
                bounds[3] = str(older[-1][0])
                history.runs = config.min_training_runs
        for relation, rows in db.execute(
            "select c.relation, c.rows from dataops_row_counts c join dataops_runs r on r.run_id = c.run_id "
            f"where {trained} order by r.started_at",
            bounds,
        ):
            history.rows.setdefault(str(relation), []).append(float(rows))
        for unique_id, started, age in db.execute(
            "select n.unique_id, r.started_at, n.age_seconds from dataops_nodes n join dataops_runs r "
            f"on r.run_id = n.run_id where {trained} and n.kind = 'source' and n.age_seconds is not null "
            "order by r.started_at",
            bounds,
        ):
            history.ages.setdefault(str(unique_id), []).append(Sample(datetime.fromisoformat(str(started)), float(age)))
    return history


def _failed_in(db: Database, target: str, since: str, until: datetime, run_id: str) -> bool:
    return bool(
        db.execute(
            f"select 1 from dataops_runs where target = ? and kind in ({PIPELINE_KINDS_SQL}) and status = 'failed' "
            "and started_at >= ? and started_at < ? and run_id <> ? limit 1",
            [target, since, stored_moment(until), run_id],
        )
    )


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    if seconds < 120:
        return f"{seconds:,.0f} seconds"
    if hours < 1:
        return f"{seconds / 60:,.0f} minutes"
    if hours < 48:
        return f"{hours:,.1f} hours"
    return f"{hours / 24:,.0f} days"
