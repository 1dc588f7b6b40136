"""`dataops generate --append PCT --update PCT` as a user runs it: the next day of a warehouse's
data loads with `dataops load`, `dataops run` passes on it and publishes, and the data diff of the
published marts is exactly the new and the changed orders."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataops.core.config import load_settings
from dataops.history.store import DEFAULT_FILE, HistoryStore
from dataops.warehouse import connect

pytestmark = pytest.mark.integration


def dataops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataops", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture
def env(warehouse_dir: Path) -> dict[str, str]:
    return {**os.environ, "DATAOPS_WAREHOUSE_DIR": str(warehouse_dir)}


def test_the_next_day_loads_passes_the_run_and_publishes_exactly_the_day(
    env: dict[str, str], warehouse_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    day_0 = (now - timedelta(hours=20)).isoformat(sep=" ")
    generated = dataops("generate", "--scale", "0.1", "--seed", "3", "--as-of", day_0, "--out", str(data), env=env)
    assert generated.returncode == 0, generated.stderr
    first = dataops("run", "--data", str(data), "--no-docs", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "published v1 to dev" in first.stdout

    # 3,147 orders at scale 0.1: 2% more is 63 new orders, 1% changed is 31.
    day_1 = dataops("generate", "--append", "2", "--update", "1", "--seed", "3", "--out", str(data), env=env)
    assert day_1.returncode == 0, day_1.stderr
    assert "63 new orders, 1% of the old ones changed" in " ".join(day_1.stdout.split())
    loaded = dataops("load", "--from", str(data), env=env)
    assert loaded.returncode == 0, loaded.stderr
    second = dataops("run", "--no-docs", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "published v2 to dev (was v1)" in second.stdout

    record = HistoryStore(f"sqlite:///{warehouse_dir / DEFAULT_FILE}").latest("dev")
    assert record is not None and record.publish is not None
    diffs = {diff.mart: diff for diff in record.publish.diffs}
    orders = diffs["fct_orders"]
    assert (orders.added, orders.removed, orders.changed) == (63, 0, 31)
    assert {"total_due", "subtotal"} <= set(orders.changed_columns)
    lines = diffs["fct_order_lines"]
    # Every line of a changed order changes, its `modified_at` the later of its own and its
    # order's; the first line of each in its total too.
    settings = load_settings("dev")
    marts = settings.consumer_schema
    of_new_or_changed_orders = (
        connect(settings)
        .read_only_query(
            f"SELECT count(*) FROM {marts}.fct_order_lines AS line JOIN {marts}.fct_orders AS o"
            f" ON line.order_id = o.order_id WHERE o.modified_at > TIMESTAMP '{day_0}'"
        )
        .rows[0][0]
    )
    assert lines.added > 63 and lines.changed > 31
    assert (lines.removed, lines.changed) == (0, of_new_or_changed_orders - lines.added)
    assert {"line_total", "modified_at"} <= set(lines.changed_columns)
    customers = diffs["customer_analytics"]
    assert customers.removed == 0 and customers.added > 0 and customers.changed > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--update", "1"], "--update and --from go with --append PCT"),
        (["--append", "1", "--scale", "1"], "give --scale N (new data) or --append PCT"),
        (["--append", "101"], "--append"),
    ],
)
def test_a_next_day_that_cannot_be_is_one_line(env: dict[str, str], args: list[str], fragment: str) -> None:
    result = dataops("generate", *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and fragment in result.stderr


def test_the_next_day_of_a_folder_that_is_not_there_names_it(env: dict[str, str], tmp_path: Path) -> None:
    result = dataops("generate", "--append", "1", "--from", str(tmp_path / "nowhere"), env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_the_next_day_of_a_csv_folder_is_csv_and_loads(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "csv-day"
    day_0 = (datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(hours=2)).isoformat(sep=" ")
    generated = dataops("generate", "--scale", "0.02", "--format", "csv", "--as-of", day_0, "--out", str(data), env=env)
    assert generated.returncode == 0, generated.stderr
    day_1 = dataops("generate", "--append", "5", "--out", str(data), env=env)
    assert day_1.returncode == 0, day_1.stderr
    assert {path.suffix for path in data.iterdir()} == {".csv"} and len(list(data.iterdir())) == 10
    loaded = dataops("load", "--from", str(data), env=env)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
