"""Anomaly detection on the run history (dataops.ops.anomalies): the verdicts on made-up histories,
the training runs read from a real SQLite store, and each environment's level from environments.yml."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataops.core.config import AnomalySettings, load_settings
from dataops.core.errors import DataOpsError
from dataops.history.records import NodeRecord, RunRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.ops.anomalies import (
    ANOMALOUS,
    NOT_ENOUGH_HISTORY,
    PASS,
    Sample,
    TrainingHistory,
    detect,
    findings_of,
    judge_freshness,
    judge_volume,
    training_history,
)

DEFAULTS = AnomalySettings()
NOW = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
ORDERS = "Sales.SalesOrderHeader"
DAY = 86_400.0


def _daily_orders(runs: int = 10, seed: int = 3) -> list[float]:
    """A growing orders table as a daily load sees it: a few hundred orders a day, give or take."""
    rng = random.Random(seed)
    total, counts = 31_465.0, []
    for _ in range(runs):
        total += rng.randint(250, 450)
        counts.append(total)
    return counts


# Volume ------------------------------------------------------------------------------------------


def test_forty_percent_fewer_orders_is_flagged_and_two_percent_more_is_not() -> None:
    history = _daily_orders()
    latest = history[-1] + 350
    dropped = judge_volume(ORDERS, round(latest * 0.6), history, DEFAULTS)
    grown = judge_volume(ORDERS, round(latest * 1.02), history, DEFAULTS)
    assert dropped.status == ANOMALOUS and dropped.score is not None and dropped.score < -DEFAULTS.sensitivity
    assert grown.status == PASS and grown.score is not None and abs(grown.score) <= DEFAULTS.sensitivity
    # The message says the value, the mean, the stddev and the training runs.
    assert dropped.message.startswith(
        f"{round(latest * 0.6):,} rows, -36.5% from the mean of 33,431.2, stddev "
        "1,109.2 over 10 training runs: z-score -10.94, beyond 3"
    ), dropped.message


def test_a_change_beyond_the_small_change_threshold_but_within_the_spread_is_no_anomaly() -> None:
    rng = random.Random(11)
    history = [1_000 * (1 + rng.gauss(0, 0.08)) for _ in range(12)]  # a mart that swings by 8% a day
    within = judge_volume("marts.fct_orders", 1_150, history, DEFAULTS)
    beyond = judge_volume("marts.fct_orders", 1_500, history, DEFAULTS)
    assert within.status == PASS, within.message
    assert beyond.status == ANOMALOUS and beyond.score is not None and beyond.score > DEFAULTS.sensitivity


def test_a_history_with_no_spread_scores_by_the_small_change_threshold_not_infinitely() -> None:
    steady = [31_465.0] * 10  # generated data: the same rows every run
    same, grown, dropped = (judge_volume(ORDERS, rows, steady, DEFAULTS) for rows in (31_465, 32_094, 18_879))
    assert (same.status, same.score) == (PASS, 0.0)
    # The stddev is floored at 10% / 3 of the mean: +2% scores 0.6, -40% scores -12.
    assert grown.status == PASS and grown.score == pytest.approx(0.6, abs=0.01)
    assert dropped.status == ANOMALOUS and dropped.score == pytest.approx(-12.0, abs=0.01)
    assert "floored" in dropped.message and "a drop under 10%" in dropped.message, dropped.message
    # Exactly at the threshold is no anomaly; just beyond it is.
    assert judge_volume(ORDERS, 31_465 * 0.9, steady, DEFAULTS).status == PASS
    assert judge_volume(ORDERS, 31_465 * 0.89, steady, DEFAULTS).status == ANOMALOUS


def test_the_spike_and_drop_thresholds_are_apart() -> None:
    steady = [1_000.0] * 8
    config = replace(DEFAULTS, min_spike_percent=50.0, min_drop_percent=5.0)
    assert judge_volume("t", 1_300, steady, config).status == PASS
    assert judge_volume("t", 930, steady, config).status == ANOMALOUS


def test_an_empty_relation_that_gets_rows_is_scored_finitely() -> None:
    check = judge_volume("marts.returns", 40, [0.0] * 8, DEFAULTS)
    assert check.status == ANOMALOUS and check.score is not None and check.score == pytest.approx(120.0)


def test_too_little_history_is_not_enough_history_and_never_blocks() -> None:
    config = replace(DEFAULTS, level="error")
    check = judge_volume(ORDERS, 1.0, _daily_orders(6), config)
    assert (check.status, check.score) == (NOT_ENOUGH_HISTORY, None)
    assert check.message == "6 training runs in the 14 days before this run; 7 are needed"
    node = check.node(config.level)
    assert (node.kind, node.status, node.level, node.score) == ("anomaly", NOT_ENOUGH_HISTORY, "skipped", None)
    assert findings_of([check], config.level) == []


# Freshness ---------------------------------------------------------------------------------------


def _runs(days: int) -> list[datetime]:
    """Daily runs before NOW, each started within a few minutes of 06:00."""
    rng = random.Random(days)
    return [NOW - timedelta(days=day, minutes=rng.randint(0, 9)) for day in range(days, 0, -1)]


def test_a_source_stale_for_years_ageing_a_day_per_day_is_not_flagged() -> None:
    newest_row = datetime(2014, 6, 30, tzinfo=UTC)
    rng = random.Random(5)
    # The check runs a minute or two into each run, after the load: the age includes that.
    training = [Sample(start, (start - newest_row).total_seconds() + rng.uniform(30, 150)) for start in _runs(10)]
    check = judge_freshness("sales.Customer", (NOW - newest_row).total_seconds() + 200, NOW, training, DEFAULTS)
    assert (check.status, check.score) == (PASS, 0.0), check.message
    assert "not updated in any of the 10 training runs (newest row about 2014-06-29" in check.message
    # Even with no small-change threshold, and runs bunched together (the ages barely spread), the
    # steady growth is staleness, not an anomaly.
    bare = replace(DEFAULTS, min_spike_percent=0.0, min_age_increase_hours=0.0)
    bunched = [
        Sample(NOW - timedelta(days=3, minutes=m), (NOW - timedelta(days=3, minutes=m) - newest_row).total_seconds())
        for m in range(10)
    ]
    assert judge_freshness("sales.Customer", (NOW - newest_row).total_seconds(), NOW, bunched, bare).status == PASS


def test_a_source_that_suddenly_stops_updating_is_flagged() -> None:
    rng = random.Random(8)
    # Updated every hour: its age at the check is under an hour, whenever the check runs.
    training = [Sample(start, rng.uniform(120, 3_500)) for start in _runs(10)]
    stopped = judge_freshness("sales.SalesOrderHeader", 26 * 3600, NOW, training, DEFAULTS)
    assert stopped.status == ANOMALOUS and stopped.score is not None and stopped.score > DEFAULTS.sensitivity
    assert "26.0 hours old" in stopped.message, stopped.message
    # A fresher source than usual, and a late update within the hour's jitter, are no anomaly.
    assert judge_freshness("sales.SalesOrderHeader", 10, NOW, training, DEFAULTS).status == PASS
    assert judge_freshness("sales.SalesOrderHeader", 3_700, NOW, training, DEFAULTS).status == PASS


def test_detect_judges_every_counted_relation_and_every_aged_source_in_one_order() -> None:
    training = TrainingHistory(
        runs=8,
        rows={ORDERS: [100.0] * 8, "marts.fct_orders": [90.0] * 8},
        ages={"source.aw.sales.Customer": [Sample(s, 60.0) for s in _runs(8)]},
    )
    freshness = [
        NodeRecord("source.aw.sales.Customer", "source", "freshness of sales.Customer", "pass", "ok", age_seconds=70.0),
        NodeRecord("source.aw.sales.Store", "source", "freshness of sales.Store", "runtime error", "error"),
    ]
    checks = detect(DEFAULTS, training, NOW, {"marts.fct_orders": 50, ORDERS: 101, "Sales.Store": 7}, freshness)
    assert [(c.unique_id, c.name, c.status) for c in checks] == [
        ("anomaly.volume.Sales.SalesOrderHeader", "volume anomaly of Sales.SalesOrderHeader", PASS),
        ("anomaly.volume.Sales.Store", "volume anomaly of Sales.Store", NOT_ENOUGH_HISTORY),
        ("anomaly.volume.marts.fct_orders", "volume anomaly of marts.fct_orders", ANOMALOUS),
        ("anomaly.freshness.sales.Customer", "freshness anomaly of sales.Customer", PASS),
    ]
    assert [(f.level, f.check) for f in findings_of(checks, "warn")] == [("warn", "volume anomaly of marts.fct_orders")]


# The environment's level -------------------------------------------------------------------------


def test_an_anomaly_counts_at_the_environments_level(tmp_path: Path, warehouse_dir: Path) -> None:
    path = tmp_path / "environments.yml"
    path.write_text(
        "environments:\n  dev:\n  prod:\n    anomalies:\n      level: error\n      sensitivity: 4\n"
        "      min_drop_percent: 25\n",
        encoding="utf-8",
    )
    dev, prod = (load_settings(name, environments_file=path).anomalies for name in ("dev", "prod"))
    assert dev == AnomalySettings() and dev.level == "warn"
    assert (prod.level, prod.sensitivity, prod.min_drop_percent, prod.min_training_runs) == ("error", 4.0, 25.0, 7)
    steady = [1_000.0] * 8
    for config, level in ((dev, "warn"), (prod, "error")):
        check = judge_volume("t", 700, steady, config)
        assert check.node(config.level).level == level
        assert [(f.level, f.check) for f in findings_of([check], config.level)] == [(level, "volume anomaly of t")]
    # The project's own: a warning where developers run, an error that stops the publish in prod.
    assert {t: load_settings(t).anomalies.level for t in ("dev", "ci", "staging", "prod")} == {
        "dev": "warn",
        "ci": "warn",
        "staging": "error",
        "prod": "error",
    }


MALFORMED = [
    ("      level: fatal\n", "has anomalies.level: 'fatal'; expected 'warn' or 'error'"),
    (
        "      sensitivity: 0\n",
        "has anomalies.sensitivity: 0; expected a number above 0, e.g. 3 (a z-score beyond ±3 is an anomaly)",
    ),
    (
        "      min_training_runs: 1\n",
        "has anomalies.min_training_runs: 1; expected a whole number of at least 3, e.g. 7",
    ),
    (
        "      min_drop_percent: 100\n",
        "has anomalies.min_drop_percent: 100; expected a percentage from 0 to below "
        "100, e.g. 10 (a smaller change is never an anomaly)",
    ),
    ("      sensitivty: 3\n", "has an unknown key 'anomalies.sensitivty': did you mean 'sensitivity'?"),
]


@pytest.mark.parametrize(("body", "message"), MALFORMED, ids=[b.strip() for b, _ in MALFORMED])
def test_a_malformed_anomalies_block_is_one_line_naming_file_environment_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "environments.yml"
    path.write_text(f"environments:\n  dev:\n  prod:\n    anomalies:\n{body}", encoding="utf-8")
    with pytest.raises(DataOpsError) as raised:
        load_settings("dev", environments_file=path)
    assert str(raised.value) == f"environments.yml: environment 'prod' {message}"
    path.write_text("environments:\n  prod:\n    anomalies: error\n", encoding="utf-8")
    with pytest.raises(
        DataOpsError,
        match=r"^environments.yml: environment 'prod' has anomalies: 'error'; expected "
        r"a mapping of level, sensitivity, .*each on its own indented line$",
    ):
        load_settings("prod", environments_file=path)


# The training runs, from a real store ------------------------------------------------------------


def _record(
    run_id: str,
    started: datetime,
    status: str = "passed",
    rows: int = 100,
    target: str = "dev",
    finished: bool = True,
    age: float = 60.0,
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        target=target,
        kind="run",
        trigger=Trigger("cli"),
        started_at=started,
        finished_at=started + timedelta(minutes=5) if finished else None,
        status=status,
        exit_code=0,
        nodes=[
            NodeRecord(
                "source.aw.sales.Customer", "source", "freshness of sales.Customer", "pass", "ok", age_seconds=age
            )
        ],
        row_counts={ORDERS: rows},
    )


def test_the_training_runs_are_the_targets_finished_passed_or_warned_runs_of_the_window(tmp_path: Path) -> None:
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")
    for record in (
        _record("passed", NOW - timedelta(days=1), rows=101),
        _record("warned", NOW - timedelta(days=2), status="warned", rows=102),
        _record("failed", NOW - timedelta(days=3), status="failed", rows=1),  # suspect data
        _record("crashed", NOW - timedelta(days=4), status="crashed", rows=2),  # partial counts
        _record("too-old", NOW - timedelta(days=15), rows=3),
        _record("other-target", NOW - timedelta(days=1), target="ci", rows=4),
        _record("in-flight", NOW - timedelta(hours=1), finished=False, rows=5),
        _record("this-run", NOW - timedelta(minutes=1), rows=6),  # a DAG run's record while it runs
        _record("later", NOW + timedelta(hours=1), rows=7),
    ):
        store.record(record)
    training = training_history(store, "dev", "this-run", NOW, DEFAULTS)
    assert training.runs == 2
    assert training.rows == {ORDERS: [102.0, 101.0]}  # oldest first
    assert sorted(s.started_at for s in training.ages["source.aw.sales.Customer"]) == [
        NOW - timedelta(days=2),
        NOW - timedelta(days=1),
    ]
    # Nothing recorded yet: no training runs, and the store is not created by reading it.
    empty = HistoryStore(f"sqlite:///{tmp_path / 'new.sqlite'}")
    empty.open_for_writing()
    assert training_history(empty, "dev", "x", NOW, DEFAULTS) == TrainingHistory()


def test_runs_refused_for_a_whole_window_keep_their_last_good_runs_as_training(tmp_path: Path) -> None:
    # A drop refused at level error fails every run that repeats it: once the last good runs are
    # older than the window, the check must keep judging against them, not pass as `not enough history`.
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.sqlite'}")
    for day in range(20, 28):
        store.record(_record(f"good-{day}", NOW - timedelta(days=day), rows=100 + day))
    for day in range(1, 15):
        store.record(_record(f"refused-{day}", NOW - timedelta(days=day), status="failed", rows=60))
    training = training_history(store, "dev", "this-run", NOW, DEFAULTS)
    assert training.runs == DEFAULTS.min_training_runs
    assert training.rows[ORDERS] == [float(100 + day) for day in range(26, 19, -1)]  # the newest seven, oldest first
    assert judge_volume(ORDERS, 60, training.rows[ORDERS], DEFAULTS).status == ANOMALOUS

    # A target that merely did not run for a while (no failed run in the window) has no training runs.
    quiet = HistoryStore(f"sqlite:///{tmp_path / 'quiet.sqlite'}")
    for day in range(20, 28):
        quiet.record(_record(f"good-{day}", NOW - timedelta(days=day), rows=100 + day))
    assert training_history(quiet, "dev", "this-run", NOW, DEFAULTS).runs == 0
