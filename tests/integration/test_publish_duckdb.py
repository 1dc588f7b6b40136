"""Write-audit-publish on DuckDB, for real: real dbt, real DuckDB files, real processes, no mocks.

One clean warehouse is built and published (v1) once for the module; every test works on a copy of
it, restored in the folder it was built in: the published link is relative, and dbt's partial parse
holds only while its profile names the same file (a full parse would cost each run seconds). What
consumers read is compared by a checksum of every published mart, taken through the published file
opened read-only, as a consumer opens it: its columns and types, its rows, and the sum of a hash
of each row's text."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings, load_settings
from dataops.core.errors import DataOpsError
from dataops.history.records import RunRecord
from dataops.history.store import HistoryStore
from dataops.publish.audit import SMOKE_COLUMNS, SMOKE_ROWS, Mart, marts_of
from dataops.publish.versions import publish_candidate
from dataops.sources.contract import SOURCE_TABLES
from dataops.sources.generate import generate_tables, write_tables
from dataops.warehouse.duckdb import DuckDBWarehouse

# tests/published_checks.py: tests/ is on sys.path under pytest's default import mode.
from published_checks import Checksums, checksums, checksums_of

pytestmark = pytest.mark.integration

# The smallest scale whose clean data passes every check (the customer suite wants 1,000 rows).
SCALE = 0.06
SEED = 7
AS_OF = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
MARTS = ("customer_analytics", "dim_products", "dim_territories", "fct_order_lines", "fct_orders")
KEEP = 3  # environments.yml sets no keep_versions for dev: the default

# Helpers -----------------------------------------------------------------------------------------


def published_number(settings: Settings) -> int:
    """The version the published link points at, checked against what that file says it is."""
    link = os.readlink(DuckDBWarehouse(settings.duckdb_path).published_path)
    found = re.fullmatch(r"v(\d{6})\.duckdb", Path(link).name)
    assert found, f"the published link points at {link}, which is no version file"
    with duckdb.connect(str(_published(settings)), read_only=True) as connection:
        (number,) = connection.execute("SELECT number FROM dataops.version").fetchone()
    assert number == int(found.group(1)), f"{link} holds version {number}"
    return number


def _published(settings: Settings) -> Path:
    return DuckDBWarehouse(settings.duckdb_path).published_path


def _warehouse(settings: Settings) -> DuckDBWarehouse:
    return DuckDBWarehouse(settings.duckdb_path, consumer_schema=settings.consumer_schema)


def _version_file(settings: Settings, number: int) -> Path:
    return _warehouse(settings).versions_dir / f"v{number:06d}.duckdb"


def _history(settings: Settings) -> HistoryStore:
    return HistoryStore(f"sqlite:///{settings.warehouse_dir / 'history.sqlite'}")


def _env(folder: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL")
    }
    return {**env, "DATAOPS_WAREHOUSE_DIR": str(folder)}


def dataops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataops", *args], capture_output=True, text=True, env=env, timeout=600
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


class _Folder:
    """The dev target on one warehouse folder, for fixtures that outlive a test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.patch = pytest.MonkeyPatch()

    def __enter__(self) -> Settings:
        self.patch.setenv("DATAOPS_WAREHOUSE_DIR", str(self.folder))
        for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
            self.patch.delenv(name, raising=False)
        return load_settings("dev")

    def __exit__(self, *_: object) -> None:
        self.patch.undo()


@dataclass(frozen=True)
class Baseline:
    folder: Path  # where it was built, and where each test gets its copy
    snapshot: Path  # the folder as the baseline left it
    tables: dict[str, pa.Table]
    run_id: str
    checksums: Checksums


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    """Clean generated data, run and published as v1, once for the module."""
    root = tmp_path_factory.mktemp("publish")
    tables = generate_tables(SCALE, seed=SEED, as_of=AS_OF)
    write_tables(tables, root / "data", "parquet")
    with _Folder(root / "warehouse") as settings:
        summary = Pipeline(settings).run(RunOptions(data_dir=root / "data", docs=False))
        assert summary.exit_code == 0, summary.findings
        assert summary.publish is not None and summary.publish.version == 1, summary.publish
        sums = checksums(_published(settings))
    assert sorted(sums) == sorted(MARTS) and all(rows > 0 for rows, _, _ in sums.values()), sums
    shutil.copytree(root / "warehouse", root / "baseline", symlinks=True)
    yield Baseline(root / "warehouse", root / "baseline", tables, summary.run_id, sums)


def _restore(baseline: Baseline) -> Settings:
    """The baseline's warehouse folder as it was, as the dev target (the caller's env names it)."""
    if baseline.folder.exists():
        shutil.rmtree(baseline.folder)
    shutil.copytree(baseline.snapshot, baseline.folder, symlinks=True)
    settings = load_settings("dev")
    assert settings.warehouse_dir == baseline.folder
    assert published_number(settings) == 1
    return settings


@pytest.fixture
def copied(baseline: Baseline, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATAOPS_WAREHOUSE_DIR", str(baseline.folder))
    for name in ("DATAOPS_DUCKDB_PATH", "DATAOPS_TARGET", "DATAOPS_HISTORY_URL"):
        monkeypatch.delenv(name, raising=False)
    return _restore(baseline)


def _marts(settings: Settings) -> list[Mart]:
    manifest = json.loads((settings.artifacts_dir / "dbt" / "manifest.json").read_text(encoding="utf-8"))
    marts = marts_of(manifest, settings)
    assert [m.name for m in marts] == sorted(MARTS) and all(m.key for m in marts), marts
    return marts


def _candidate_from(settings: Settings, version: int | Path) -> None:
    """A candidate as dbt would leave it, without dbt: a copy of a version's file (its tables are
    the candidate schema's; publishing replaces its views and its metadata)."""
    staged = settings.warehouse_dir.parent / "staged-candidate.duckdb"  # beside it: one file system
    shutil.copyfile(version if isinstance(version, Path) else _version_file(settings, version), staged)
    os.replace(staged, settings.duckdb_candidate_path)


def _candidate_rows(settings: Settings) -> dict[str, int]:
    with duckdb.connect(str(settings.duckdb_candidate_path), read_only=True) as connection:
        return {m: connection.execute(f"SELECT count(*) FROM marts__candidate.{m}").fetchone()[0] for m in MARTS}


def _edit_candidate(settings: Settings, *statements: str) -> None:
    with duckdb.connect(str(settings.duckdb_candidate_path)) as connection:
        for statement in statements:
            connection.execute(statement)


def _run(settings: Settings, **options: Any) -> tuple[RunRecord, BaseException | None]:
    """A real run in this process; a run that raises (a load that fails) is recorded too."""
    raised: BaseException | None = None
    try:
        Pipeline(settings, history=_history(settings)).run(RunOptions(docs=False, **options))
    except DataOpsError as error:
        raised = error
    record = _history(settings).latest(settings.target)
    assert record is not None
    return record, raised


def _source_counts(settings: Settings) -> dict[str, int]:
    return _warehouse(settings).row_counts([t.qualified_name for t in SOURCE_TABLES])


# a) A run that fails publishes nothing (each fault class of the detection matrix: in
#    tests/integration/test_detection_matrix.py, on the matrix's own runs) -------------------------


def _assert_nothing_published(settings: Settings, baseline: Baseline, record: RunRecord) -> None:
    assert record.run_id != baseline.run_id and record.status == "failed", record.status
    assert record.publish is not None, "the run's record does not say what it published"
    assert (record.publish.status, record.publish.version, record.publish.previous_version) == (
        "not published",
        None,
        1,
    ), record.publish
    assert {s.name: s.status for s in record.stages}["publish"] in ("skipped", "failed")
    # What consumers read is exactly what it was: the same version, the same content.
    assert published_number(settings) == 1
    assert checksums(_published(settings)) == baseline.checksums
    assert [(v.number, v.current) for v in _warehouse(settings).versions()] == [(1, True)]
    assert sorted(p.name for p in _warehouse(settings).versions_dir.glob("v*")) == ["v000001.duckdb"]


def _truncate_mid_row(folder: Path) -> str:
    path = folder / "Sales.SalesOrderDetail.csv"
    data = path.read_bytes()
    row_start = data.index(b"\n", len(data) // 2) + 1
    cut = data.index(b",", data.index(b",", row_start) + 1) + 3  # two fields and a bit of the third
    assert b"\n" not in data[row_start:cut]
    path.write_bytes(data[:cut])
    return path.name


def _garble_a_number(folder: Path) -> str:
    path = folder / "Sales.SalesOrderHeader.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    row = lines[1000].rstrip("\r\n").split(",")
    total = header.index("TotalDue")
    assert re.fullmatch(r"\d+\.\d+", row[total]), row[total]
    row[total] = row[total][:2] + "O" + row[total][3:]  # a letter O for a zero, as an OCR'd file has
    lines[1000] = ",".join(row) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    return path.name


@pytest.mark.parametrize("corrupt", [_truncate_mid_row, _garble_a_number], ids=["truncated-mid-row", "garbled-number"])
def test_real_data_with_a_corrupted_file_publishes_nothing(
    corrupt: Any, baseline: Baseline, copied: Settings, real_data_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "real"
    data.mkdir()
    for path in real_data_dir.glob("*.csv"):
        shutil.copyfile(path, data / path.name)  # the shared files are read-only; the copies are not
    corrupted = corrupt(data)

    record, raised = _run(copied, data_dir=data)

    assert raised is not None and corrupted in str(raised), raised
    assert record.publish is not None and record.publish.reason == "not published: stopped by the load stage"
    # The load is all or nothing: the sources are the baseline's still.
    assert _source_counts(copied) == {name: table.num_rows for name, table in baseline.tables.items()}
    _assert_nothing_published(copied, baseline, record)


# b) and d) A reader, and a second run, while a run holds the target ------------------------------

CONSUMER = r"""
import json, select, sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)

def state():
    marts = [r[0] for r in connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' ORDER BY 1").fetchall()]
    sums = {m: list(connection.execute(f'SELECT count(*), sum(hash(t::VARCHAR))::VARCHAR FROM marts."{m}" t')
                    .fetchone()) for m in marts}
    number, run_id = connection.execute("SELECT number, run_id FROM dataops.version").fetchone()
    return json.dumps({"version": number, "run_id": run_id, "marts": sums}, sort_keys=True)

print(state(), flush=True)
seen, reads = set(), 0
while True:
    seen.add(state())
    reads += 1
    if select.select([sys.stdin], [], [], 0.2)[0]:
        break
print(json.dumps({"reads": reads, "seen": sorted(seen)}), flush=True)
"""


def _reader_state(path: Path) -> dict[str, Any]:
    """What a new consumer sees, in the consumer's own terms."""
    with duckdb.connect(str(path), read_only=True) as connection:
        sums = {m: [rows, str(digest)] for m, (rows, digest, _) in checksums_of(connection).items()}
        number, run_id = connection.execute("SELECT number, run_id FROM dataops.version").fetchone()
    return {"version": number, "run_id": run_id, "marts": sums}


def _lock_holder(settings: Settings, pid: int, timeout: float = 120) -> dict[str, Any]:
    """The holder the lock file names once process `pid` holds the target (the copied file still
    names the baseline's run)."""
    lock = _warehouse(settings).lock_path
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            holder = json.loads(lock.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            holder = {}
        if holder.get("pid") == pid:
            return holder
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not take {lock} within {timeout:g} s")


def _recorded(settings: Settings, run_id: str, timeout: float = 120) -> None:
    """Wait until the run's start record is committed to the history."""
    history = _history(settings)
    deadline = time.monotonic() + timeout
    while history.get(run_id) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} recorded no start within {timeout:g} s")
        time.sleep(0.05)


@dataclass
class Contended:
    """What the processes did, and the warehouse as they left it (the folder is the next test's)."""

    v1: dict[str, Any]
    consumer_opened: dict[str, Any]
    consumer_saw: dict[str, Any]
    first_pid: int
    first: subprocess.CompletedProcess[str]
    holder: dict[str, Any]
    second: subprocess.CompletedProcess[str]
    waiter: subprocess.CompletedProcess[str]
    after_first: dict[str, Any]
    v2_file: dict[str, Any]
    expected_sources: dict[str, int]
    sources: dict[str, int]
    runs: list[RunRecord]
    published: int


@pytest.fixture(scope="module")
def contended(baseline: Baseline) -> Iterator[Contended]:
    """A consumer holds the published file (v1) open in its own process; a run starts (new data:
    scale 0.06, seed 11); a second run is started while it holds the target, then a third with
    --wait. Each a `dataops run` of its own."""
    with _Folder(baseline.folder) as settings:
        _restore(baseline)
    env = _env(baseline.folder)
    published = _published(settings)
    v1 = _reader_state(published)
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(published)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    run = [sys.executable, "-m", "dataops", "run", "--no-docs"]
    try:
        assert consumer.stdout is not None and consumer.stdin is not None
        opened = json.loads(consumer.stdout.readline())
        first = subprocess.Popen(
            [*run, "--scale", str(SCALE), "--seed", "11"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        holder = _lock_holder(settings, first.pid)
        # Its start is recorded right after it takes the target: pausing it inside that write
        # transaction would hold the history's write lock and stop the others there instead.
        _recorded(settings, holder["run_id"])
        # The first run is paused while it holds the target, so that the second and the waiter
        # surely find it held, however fast the machine runs it.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run([*run, "--scale", "0.1"], env=env, text=True, capture_output=True, timeout=120)
            waiter = subprocess.Popen(
                [*run, "--wait"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert waiter.stdout is not None
            said = waiter.stdout.readline()  # whom it waits for, before anything else
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=600)
        # Read at once: the waiting run needs many seconds before it could publish v3.
        after_first = _reader_state(published)
        first_done = subprocess.CompletedProcess(first.args, first.returncode, out, err)
        out, err = waiter.communicate(timeout=600)
        waited = subprocess.CompletedProcess(waiter.args, waiter.returncode, said + out, err)
        consumer.stdin.write("done\n")
        consumer.stdin.flush()
        saw = json.loads(consumer.stdout.readline())
    finally:
        consumer.kill()
        consumer.wait()
    history = _history(settings)
    runs = [record for row in history.runs() if (record := history.get(row.run_id)) is not None]
    yield Contended(
        v1,
        opened,
        saw,
        first.pid,
        first_done,
        holder,
        second,
        waited,
        after_first,
        _reader_state(_version_file(settings, 2)),
        {name: t.num_rows for name, t in generate_tables(SCALE, seed=11).items()},
        _source_counts(settings),
        runs,
        published_number(settings),
    )


def test_a_consumer_reading_the_published_file_keeps_v1_while_the_next_run_publishes_v2(
    contended: Contended, baseline: Baseline
) -> None:
    first = contended.first
    assert first.returncode == 0, first.stdout + first.stderr
    assert "published v2 to dev (was v1)" in first.stdout, first.stdout
    # The consumer opened v1, and every read it made while the runs went on saw v1, whole.
    v1 = contended.v1
    assert (v1["version"], v1["run_id"]) == (1, baseline.run_id)
    assert [json.loads(state) for state in contended.consumer_saw["seen"]] == [v1] == [contended.consumer_opened]
    assert contended.consumer_saw["reads"] >= 10, contended.consumer_saw
    # A consumer that opens the published file now reads v2: the first run's own, other data.
    after = contended.after_first
    assert (after["version"], after["run_id"]) == (2, contended.holder["run_id"])
    assert after["marts"] != v1["marts"] and sorted(after["marts"]) == sorted(MARTS)
    assert after == contended.v2_file


def _run_of(contended: Contended, run_id: str) -> RunRecord:
    return next(record for record in contended.runs if record.run_id == run_id)


def test_a_second_run_on_a_held_target_exits_2_naming_the_first_and_runs_nothing(
    contended: Contended, baseline: Baseline
) -> None:
    holder = contended.holder
    assert holder["pid"] == contended.first_pid
    line = _one_line_error(contended.second)
    assert "target 'dev' is busy" in line and f"run {holder['run_id']} (pid {contended.first_pid} " in line, line
    assert "--wait" in line

    first = _run_of(contended, holder["run_id"])
    assert first.status == "passed"
    assert [(s.name, s.status) for s in first.stages] == [
        ("load", "ok"),
        ("parse", "ok"),
        ("freshness", "ok"),
        ("build", "ok"),
        ("quality", "ok"),
        ("publish", "ok"),
    ]
    # The second run loaded nothing (its scale 0.1 would show): the first counted its own sources at
    # its end, the waiting run kept them, and they are in the warehouse now.
    sources = {name: n for name, n in first.row_counts.items() if not name.startswith("marts.")}
    assert sources == contended.expected_sources == contended.sources
    # Refused, it is not even in the history: the baseline's run, the first, the one that waited.
    assert len(contended.runs) == 3 and {r.run_id for r in contended.runs} >= {baseline.run_id, first.run_id}


def test_a_run_with_wait_waits_for_the_holder_then_runs_and_publishes(contended: Contended) -> None:
    waiter = contended.waiter
    assert waiter.returncode == 0, waiter.stdout + waiter.stderr
    assert f"waiting for run {contended.holder['run_id']}" in waiter.stdout, waiter.stdout
    first = _run_of(contended, contended.holder["run_id"])
    waited = max(contended.runs, key=lambda record: record.started_at)
    assert waited.run_id != first.run_id
    assert first.finished_at is not None and waited.started_at >= first.finished_at
    assert waited.stages[0].detail == "kept the loaded source tables"
    assert waited.publish is not None and (waited.publish.version, waited.publish.previous_version) == (3, 2)
    assert contended.published == 3


# c) Crash safety -------------------------------------------------------------------------------

PUBLISH_LOOP = r"""
import json, os, shutil, sys
from pathlib import Path
from dataops.warehouse.duckdb import DuckDBWarehouse

warehouse = DuckDBWarehouse(Path(sys.argv[1]))
pristine, staged, trial = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
marts, counts = json.loads(sys.argv[5]), json.loads(sys.argv[6])
print("ready", flush=True)
for i in range(1, 10_000):
    # A candidate a killed publish left is published as it is, as the next run's dbt would open it.
    if not warehouse.candidate_path.exists():
        shutil.copyfile(pristine, staged)
        os.replace(staged, warehouse.candidate_path)
    warehouse.publish("marts__candidate", marts, f"{trial}-{i}", counts)
    warehouse.drop_versions(3)
"""


def _whole_version(settings: Settings, known: list[Checksums]) -> tuple[int | None, str | None]:
    """The version consumers read, and what is wrong with it, if anything."""
    try:
        number = published_number(settings)
        content = checksums(_published(settings))
    except (AssertionError, OSError, duckdb.Error) as error:
        return None, f"no whole published version: {error}"
    if content not in known:
        return number, f"v{number} holds content no version had"
    current = [v.number for v in _warehouse(settings).versions() if v.current]
    if current != [number]:
        return number, f"the link says v{number}, the list of versions {current}"
    return number, None


def _leftovers(folder: Path) -> list[str]:
    return sorted(
        str(Path(root, name).relative_to(folder))
        for root, dirs, files in os.walk(folder)
        for name in files + dirs
        if ".tmp" in name
    )


def _kill_group(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the run and its quality worker, as a power cut would
    process.wait(timeout=30)


def _edit_products(settings: Settings) -> None:
    """Four products edited in the sources: two renamed, one with its colour gone and its size
    changed, one removed (one no order line has); and one added. Nothing else."""
    with duckdb.connect(str(settings.duckdb_path)) as db:
        product = '"Production"."Product"'
        unsold = 'NOT IN (SELECT "ProductID" FROM "Sales"."SalesOrderDetail")'
        first, second = (
            row[0] for row in db.execute(f'SELECT "ProductID" FROM {product} ORDER BY "ProductID" LIMIT 2').fetchall()
        )
        (coloured,) = db.execute(f"""SELECT min("ProductID") FROM {product} WHERE "Color" IS NOT NULL
            AND "Size" IS DISTINCT FROM 'XXL' AND "ProductID" NOT IN ({first}, {second})""").fetchone()
        (gone,) = db.execute(f"""SELECT max("ProductID") FROM {product} WHERE "ProductID" {unsold}
            AND "ProductID" NOT IN ({first}, {second}, {coloured})""").fetchone()
        (new,) = db.execute(f'SELECT max("ProductID") + 1 FROM {product}').fetchone()
        db.execute(f"""UPDATE {product} SET "Name" = "Name" || ' (renamed)' WHERE "ProductID" IN ({first}, {second})""")
        db.execute(f"""UPDATE {product} SET "Color" = NULL, "Size" = 'XXL' WHERE "ProductID" = {coloured}""")
        db.execute(f"""INSERT INTO {product} SELECT * REPLACE ({new} AS "ProductID", 'New product' AS "Name",
            'NEW-0001' AS "ProductNumber") FROM {product} WHERE "ProductID" = {gone}""")
        db.execute(f'DELETE FROM {product} WHERE "ProductID" = {gone}')


@dataclass
class Crashes:
    problems: list[str]  # what was wrong with the published version after a kill, if anything
    published: set[int]  # the versions the killed publishes got to publish
    before: int  # the version published while the real runs were killed
    never: int  # the version file made as a kill between rename and switch leaves it
    record: RunRecord  # of the next run
    raised: BaseException | None
    leftovers: list[str]
    files: list[int]
    versions: list[tuple[int, bool]]
    wal_files: list[str]
    now: int
    checksums: Checksums
    killed_runs: list[RunRecord]  # the records of the real runs that were killed


@pytest.fixture(scope="module")
def crashes(baseline: Baseline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crashes]:
    """20 publishes killed at random moments (a process that publishes a prepared candidate in a
    loop, SIGKILLed after a random delay), then 3 real `dataops run` killed while dbt builds the
    candidate marts, then the next run: on sources with a few products edited, so that its data
    diff is known."""
    scratch = tmp_path_factory.mktemp("publish-crashes")
    with _Folder(baseline.folder) as settings:
        _restore(baseline)
        folder = settings.warehouse_dir
        rng = random.Random(20261202)
        pristine = scratch / "pristine.duckdb"
        shutil.copyfile(_version_file(settings, 1), pristine)
        counts = {f"marts.{m}": rows for m, (rows, _, _) in baseline.checksums.items()}
        known, problems, published = [baseline.checksums], [], {1}
        for trial in range(20):
            loop = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PUBLISH_LOOP,
                    str(settings.duckdb_path),
                    str(pristine),
                    str(scratch / "staged.duckdb"),
                    f"trial{trial}",
                    json.dumps(list(MARTS)),
                    json.dumps(counts),
                ],
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            assert loop.stdout is not None and loop.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 1.0))
            _kill_group(loop)
            number, problem = _whole_version(settings, known)
            published.add(number or 0)
            problems += [f"publish killed in trial {trial}: {problem}"] if problem else []

        # Killed during real builds of `dataops run`, at a random moment once dbt writes the candidate marts.
        before = published_number(settings)
        log = settings.artifacts_dir / "logs" / "dbt.log"
        for trial in range(3):
            start = log.stat().st_size
            # No quality stage: the run is killed while dbt builds, before it.
            run = subprocess.Popen(
                [sys.executable, "-m", "dataops", "run", "--no-docs", "--no-quality"],
                env=_env(folder),
                text=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 300
            while b"START sql table model candidate.marts__candidate." not in log.read_bytes()[start:]:
                assert run.poll() is None, "the run ended before it built the marts"
                assert time.monotonic() < deadline, "the run never started to build the marts"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            assert run.poll() is None, "the run ended before it was killed"
            _kill_group(run)
            number, problem = _whole_version(settings, known)
            problems += (
                [f"run killed in trial {trial}: {problem or f'v{number} published, not v{before}'}"]
                if (problem or number != before)
                else []
            )

        history = _history(settings)
        killed_runs = [record for row in history.runs("dev", limit=3) if (record := history.get(row.run_id))]
        # What kills in the narrowest windows leave, made sure of: between the link's two steps, a
        # staged link; between the candidate's rename and the switch, a version file no link ever
        # pointed at.
        os.symlink("dev_versions/v000001.duckdb", folder / f".{_published(settings).name}.999999.tmp")
        never = max(_warehouse(settings)._version_files()) + 1
        shutil.copyfile(pristine, _version_file(settings, never))
        _edit_products(settings)

        record, raised = _run(settings)

        warehouse = _warehouse(settings)
        crashed = Crashes(
            problems,
            published,
            before,
            never,
            record,
            raised,
            _leftovers(folder),
            sorted(warehouse._version_files()),
            [(v.number, v.current) for v in warehouse.versions()],
            sorted(p.name for p in warehouse.versions_dir.glob("*.wal")),
            published_number(settings),
            checksums(_published(settings)),
            killed_runs,
        )
    yield crashed


def test_killed_publishes_and_killed_runs_never_leave_a_torn_published_version(crashes: Crashes) -> None:
    # After every kill the link points at one whole version, with a known version's content.
    assert crashes.problems == []
    assert len(crashes.published) >= 5, f"the loop published only {sorted(crashes.published)}: kills came too early"
    # The next run succeeds, publishes, and drop_versions clears what the killed ones left.
    record = crashes.record
    assert crashes.raised is None and record.exit_code == 0, (crashes.raised, record.findings)
    assert record.publish is not None and record.publish.status == "published"
    assert (record.publish.version, record.publish.previous_version) == (crashes.never + 1, crashes.before)
    assert crashes.now == crashes.never + 1
    assert crashes.leftovers == []
    # Only published versions are kept, the published one and the newest others, KEEP in all.
    assert crashes.files == sorted(number for number, _ in crashes.versions) and len(crashes.files) == KEEP
    assert [number for number, current in crashes.versions if current] == [crashes.now]
    assert crashes.wal_files == []
    # A run killed outright is in the history all the same: crashed, with no end.
    assert [(r.kind, r.status, r.finished_at, r.exit_code) for r in crashes.killed_runs] == [
        ("run", "crashed", None, 3)
    ] * 3, crashes.killed_runs


def test_the_data_diff_of_a_run_counts_added_removed_and_changed_rows_per_column(
    crashes: Crashes, baseline: Baseline
) -> None:
    """The run after the crashes, on sources with four products edited (_edit_products): against
    the published version (the baseline's content), exactly those rows differ."""
    record = crashes.record
    assert record.publish is not None and record.publish.status == "published", record.publish
    diffs = {d.mart: (d.key, d.added, d.removed, d.changed, d.changed_columns) for d in record.publish.diffs}
    assert diffs == {
        "dim_products": (["product_id"], 1, 1, 3, {"product_name": 2, "color": 1, "size": 1}),
        "customer_analytics": (["customer_id"], 0, 0, 0, {}),
        "dim_territories": (["territory_id"], 0, 0, 0, {}),
        "fct_order_lines": (["order_line_id"], 0, 0, 0, {}),
        "fct_orders": (["order_id"], 0, 0, 0, {}),
    }
    # What consumers read now: the same marts, but for those product rows.
    assert crashes.checksums["dim_products"][0] == baseline.checksums["dim_products"][0]
    assert crashes.checksums["dim_products"] != baseline.checksums["dim_products"]
    assert {m: s for m, s in crashes.checksums.items() if m != "dim_products"} == {
        m: s for m, s in baseline.checksums.items() if m != "dim_products"
    }


# e) Rollback and the list of versions ----------------------------------------------------------


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of a Rich table, each cell whole again where it wrapped onto more lines."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if rows and not cells[0]:  # a wrapped cell goes on
            rows[-1] = [f"{a} {b}".strip() if b else a for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def test_rollback_restores_a_version_exactly_and_is_recorded(copied: Settings, baseline: Baseline) -> None:
    settings = copied
    env = _env(settings.warehouse_dir)
    marts = _marts(settings)
    sums = {1: baseline.checksums}
    pristine = settings.warehouse_dir.parent / "v1.duckdb"
    shutil.copyfile(_version_file(settings, 1), pristine)  # v1 itself is dropped on the way
    for number in (2, 3, 4):
        _candidate_from(settings, pristine)
        _edit_candidate(
            settings,
            f"UPDATE marts__candidate.dim_territories SET territory_name = territory_name || ' (edit {number})'",
        )
        outcome = publish_candidate(settings, f"edit-{number}", marts, _candidate_rows(settings), [])
        assert outcome.published and outcome.record.version == number, outcome
        sums[number] = checksums(_published(settings))
    assert len({json.dumps(s, sort_keys=True, default=str) for s in sums.values()}) == 4

    # keep_versions: the published one and the two before it; v1's file is gone.
    versions = _warehouse(settings).versions()
    assert [(v.number, v.current, v.run_id) for v in versions] == [
        (4, True, "edit-4"),
        (3, False, "edit-3"),
        (2, False, "edit-2"),
    ]
    assert sorted(_warehouse(settings)._version_files()) == [2, 3, 4]
    listing = dataops("versions", env=env)
    assert listing.returncode == 0, listing.stderr
    rows = _table_rows(listing.stdout)
    assert [row[0] for row in rows] == ["v4 (published)", "v3", "v2"], listing.stdout
    for row, version in zip(rows, versions, strict=True):
        assert (row[1], row[2]) == (version.run_id, version.published_at), row
        assert row[3] == ", ".join(f"{mart} {n:,}" for mart, (n, _, _) in sorted(baseline.checksums.items()))

    rolled = dataops("rollback", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back dev: v3 is published again (was v4)" in rolled.stdout
    assert published_number(settings) == 3 and checksums(_published(settings)) == sums[3]
    record = _history(settings).latest("dev", kind="rollback")
    assert record is not None and record.kind == "rollback" and record.run_id in rolled.stdout
    assert record.publish is not None
    assert (record.publish.status, record.publish.version, record.publish.previous_version) == ("rolled back", 3, 4)

    assert dataops("rollback", "--to", "2", env=env).returncode == 0
    assert published_number(settings) == 2 and checksums(_published(settings)) == sums[2]
    line = _one_line_error(dataops("rollback", env=env))
    assert "nothing to roll back to on dev: the published version is v2 and no earlier one is kept" in line, line
    assert "there is no version 1" in _one_line_error(dataops("rollback", "--to", "1", env=env))
    assert published_number(settings) == 2 and checksums(_published(settings)) == sums[2]
    # Forward again, to the newest.
    assert dataops("rollback", "--to", "4", env=env).returncode == 0
    assert published_number(settings) == 4 and checksums(_published(settings)) == sums[4]
    # Each rollback is a run of its own in the history; the refused ones are not.
    rollbacks = [_history(settings).get(row.run_id) for row in _history(settings).runs(kind="rollback")]
    assert sorted((r.kind, r.publish.version) for r in rollbacks if r and r.publish) == [
        ("rollback", 2),
        ("rollback", 3),
        ("rollback", 4),
    ]
    assert len(rollbacks) == 3


# f) Smoke checks (the data diff of a run: above, on the run after the crashes) ---------------------


def test_a_candidate_whose_rows_move_beyond_the_limit_is_not_published(
    copied: Settings, baseline: Baseline, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_tables(generate_tables(0.1, seed=SEED, as_of=AS_OF), data, "parquet")

    record, raised = _run(copied, data_dir=data)

    assert raised is None and record.exit_code == 1, raised
    # Every other check passed: only the smoke check stopped it, for exactly the marts that moved too far.
    assert [f.check for f in record.findings] == [SMOKE_ROWS] * len(record.findings) and record.findings
    before = {m: rows for m, (rows, _, _) in baseline.checksums.items()}
    after = {m: record.row_counts[f"marts.{m}"] for m in MARTS}
    moved = {m for m in MARTS if abs(after[m] - before[m]) / before[m] > 0.5}
    assert moved and moved != set(MARTS), (before, after)
    named = {f.message.split(" ", 1)[0] for f in record.findings}
    assert named == moved, record.findings
    finding = next(f for f in record.findings if f.message.startswith("customer_analytics "))
    change = (after["customer_analytics"] - before["customer_analytics"]) / before["customer_analytics"] * 100
    assert finding.message.startswith(
        f"customer_analytics has {after['customer_analytics']:,} rows against {before['customer_analytics']:,} "
        f"published ({change:+.0f}%, the limit is ±50%"
    ), finding.message
    assert record.publish is not None and record.publish.reason == f"not published: stopped by {SMOKE_ROWS}"
    assert {s.name: s.status for s in record.stages}["publish"] == "failed"
    # The diff against the published version is in the record: the extra rows, by key.
    diffs = {d.mart: d for d in record.publish.diffs}
    assert sorted(diffs) == sorted(MARTS)
    assert diffs["fct_orders"].added >= after["fct_orders"] - before["fct_orders"] > 0
    _assert_nothing_published(copied, baseline, record)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            "ALTER TABLE marts__candidate.dim_territories DROP COLUMN territory_group",
            "dim_territories.territory_group was dropped",
        ),
        (
            "ALTER TABLE marts__candidate.fct_orders ALTER COLUMN line_count TYPE VARCHAR",
            "fct_orders.line_count changed type from BIGINT to VARCHAR",
        ),
    ],
    ids=["dropped", "retyped"],
)
def test_a_dropped_or_retyped_column_is_published_only_when_allowed(
    change: str, said: str, copied: Settings, baseline: Baseline
) -> None:
    settings, marts = copied, _marts(copied)
    _candidate_from(settings, 1)
    _edit_candidate(settings, change)

    refused = publish_candidate(settings, "breaking", marts, _candidate_rows(settings), [])

    assert not refused.published and refused.record.reason == f"not published: stopped by {SMOKE_COLUMNS}"
    [finding] = refused.findings
    assert (finding.level, finding.check) == ("error", SMOKE_COLUMNS)
    assert finding.message == f"breaking change: {said} (run with --allow-breaking if it is meant)"
    assert published_number(settings) == 1 and checksums(_published(settings)) == baseline.checksums

    allowed = publish_candidate(settings, "breaking", marts, _candidate_rows(settings), [], allow_breaking=True)

    assert allowed.published and allowed.record.version == 2
    assert [(f.level, f.message) for f in allowed.findings] == [
        ("warn", f"breaking change: {said} (allowed by --allow-breaking)")
    ]
    now = checksums(_published(settings))
    mart, column = said.split(" ", 1)[0].split(".")
    columns = dict(now[mart][2])
    assert (column not in columns) if "dropped" in said else (columns[column] == "VARCHAR"), columns
    assert {m: s for m, s in now.items() if m != mart} == {m: s for m, s in baseline.checksums.items() if m != mart}


def test_a_partial_build_right_after_a_publish_tests_whole_marts_and_publishes_nothing(
    copied: Settings, baseline: Baseline
) -> None:
    # Publishing made the candidate a version: the candidate is empty. fct_orders' relationship
    # tests read customer_analytics and fct_order_lines, which a `--select fct_orders` does not build.
    assert not copied.duckdb_candidate_path.exists()

    record, raised = _run(copied, select=["fct_orders"])

    assert raised is None and (record.status, record.exit_code) == ("passed", 0), record.findings
    build = next(stage for stage in record.stages if stage.name == "build")
    # Every mart was missing, fct_orders too: copied first, then rebuilt by dbt.
    assert build.detail.startswith("1 models") and build.detail.endswith(
        "first copied from the published version, missing in the candidate: " + ", ".join(MARTS)
    ), build.detail
    relationships = [n for n in record.nodes if n.kind == "test" and n.name.startswith("relationships on fct_orders")]
    assert relationships and {n.level for n in relationships} == {"ok"}, relationships
    assert record.publish is not None and record.publish.status == "not published"
    assert "--select" in record.publish.reason
    # The copies are the candidate's, as the published version holds them; consumers kept v1.
    with duckdb.connect(str(copied.duckdb_candidate_path), read_only=True) as candidate:
        tables = {
            row[0]
            for row in candidate.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts__candidate'"
            ).fetchall()
        }
        rows = candidate.execute("SELECT count(*) FROM marts__candidate.customer_analytics").fetchone()[0]
    assert tables == set(MARTS)
    assert rows == baseline.checksums["customer_analytics"][0]
    assert published_number(copied) == 1 and checksums(_published(copied)) == baseline.checksums
