"""What publishing costs next to the build, written into BENCHMARKS.md (`make benchmark`):

- the audit (smoke checks against the published version, the data diff) and the publish (the
  atomic switch, dropping old versions) against the build stage of the same `dataops run`, at
  scales 1 and 10 on the embedded DuckDB and at scale 1 on PostgreSQL (a throwaway server);
  target: the publish step at most 5% of the build;
- the longest a reader waits while a version is published: a reader process reads the published
  marts in a loop, beside the runs (on DuckDB it opens the published file read-only each time; on
  PostgreSQL it keeps one session).

    python scripts/benchmark_publish.py [--scale 1 --scale 10] [--postgres-scale 1] [--repeats 2]
                                         [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import _emit, _section  # the shared BENCHMARKS.md framing

SECTION = "publish"
SHARE_TARGET = 0.05

# A consumer: opens the published file read-only, reads a mart whole, closes; one line per read.
READER = """
import duckdb, json, sys, time
path, stop = sys.argv[1], sys.argv[2]
import os
while not os.path.exists(stop):
    started = time.time()
    try:
        with duckdb.connect(path, read_only=True) as db:
            db.execute("select sum(lifetime_value) from marts.customer_analytics").fetchone()
        error = None
    except Exception as failure:
        error = str(failure)
    print(json.dumps({"at": started, "s": time.time() - started, "error": error}), flush=True)
    time.sleep(0.02)  # a busy consumer, not a second build competing for the two cores
"""


# A consumer of PostgreSQL: one session (the PG* variables reach the server), a cross-mart query in
# a loop; one line per read. A swap holds the consumer views' locks: a read waits for it.
POSTGRES_READER = """
import json, os, sys, time
import psycopg2
stop = sys.argv[1]
connection = psycopg2.connect(application_name="benchmark reader")
connection.autocommit = True
cursor = connection.cursor()
while not os.path.exists(stop):
    started = time.time()
    try:
        cursor.execute("select (select sum(lifetime_value) from marts.customer_analytics), "
                       "(select sum(total_due) from marts.fct_orders)")
        cursor.fetchone()
        error = None
    except Exception as failure:
        error = str(failure)
    print(json.dumps({"at": started, "s": time.time() - started, "error": error}), flush=True)
    time.sleep(0.02)
"""


def _reader(target: str, settings: object) -> subprocess.Popen[str]:
    if target == "postgres":
        return subprocess.Popen([sys.executable, "-c", POSTGRES_READER, str(STOP)], stdout=subprocess.PIPE, text=True)
    path = settings.duckdb_path.with_name(f"{settings.duckdb_path.stem}_published.duckdb")  # type: ignore[attr-defined]
    return subprocess.Popen([sys.executable, "-c", READER, str(path), str(STOP)], stdout=subprocess.PIPE, text=True)


STOP = Path(tempfile.mkdtemp()) / "stop"


def measure(scale: float, repeats: int, target: str = "dev") -> dict[str, object]:
    from dataops.commands.run import Pipeline, RunOptions
    from dataops.core.config import load_settings
    from dataops.publish import versions

    # The audit: the smoke checks with the data diff, and the anomaly checks; timed where the
    # publish calls them, one entry per run.
    timings: dict[str, list[float]] = {"smoke_checks": [], "anomaly_checks": []}
    originals = {name: getattr(versions, name) for name in timings}

    def timed(name: str):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                timings[name].append(time.perf_counter() - started)

        return call

    for name in timings:
        setattr(versions, name, timed(name))
    settings = load_settings(target)
    Pipeline(settings).run(RunOptions(scale=scale, seed=1, docs=False))  # v1: nothing to compare with
    STOP.unlink(missing_ok=True)
    reader = _reader(target, settings)
    time.sleep(1)
    runs, windows = [], []
    try:
        for repeat in range(repeats):
            summary = Pipeline(settings).run(RunOptions(scale=scale, seed=2 + repeat, docs=False))
            stages = {stage.name: stage for stage in summary.stages}
            assert summary.publish is not None and summary.publish.status == "published", summary.publish
            finished = summary.finished_at.timestamp() if summary.finished_at else time.time()
            # The publish stage is the run's last; the record is written after it.
            windows.append((finished - stages["publish"].seconds - 1, finished))
            runs.append({"build": stages["build"].seconds, "publish": stages["publish"].seconds})
    finally:
        STOP.touch()
        output, _ = reader.communicate(timeout=60)
        for name, original in originals.items():
            setattr(versions, name, original)
    reads = [json.loads(line) for line in output.splitlines() if line.strip()]
    during = [r for r in reads if any(start <= r["at"] <= end for start, end in windows)]
    return {
        "engine": settings.engine,
        "scale": scale,
        "runs": runs,
        "smoke": [a + b for a, b in zip(timings["smoke_checks"][1:], timings["anomaly_checks"][1:], strict=True)],
        "reads": len(reads),
        "errors": sum(1 for r in reads if r["error"]),
        "read_median": statistics.median(r["s"] for r in reads) if reads else 0.0,
        "read_max_during": max((r["s"] for r in during), default=0.0),
        "reads_during": len(during),
    }


def render(results: list[dict[str, object]]) -> str:
    intro = (
        "Reproduce with `python scripts/benchmark_publish.py` (part of `make benchmark`). Target: the whole publish "
        f"step at most {SHARE_TARGET:.0%} of the build. Each row is a `dataops run` on new data (another seed) "
        "after one that published v1, so the smoke checks compare with a published version and diff every mart."
    )
    lines = [
        "| engine | scale | build | audit: smoke checks, data diff, anomalies | audit / build | "
        "publish: views, version, switch, "
        "old versions dropped | **publish / build** | reads beside it | read errors | read median | "
        "longest read during a publish |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        runs = result["runs"]
        smoke = result["smoke"]
        assert isinstance(runs, list) and isinstance(smoke, list)
        for index, run in enumerate(runs):
            audit = smoke[index]
            switch = run["publish"] - audit
            lines.append(
                f"| {result['engine']} | {result['scale']:g} | {run['build']:.1f} s | {audit * 1000:.0f} ms | "
                f"{audit / run['build']:.1%} | "
                f"{switch * 1000:.0f} ms | **{switch / run['build']:.1%}** | {result['reads']} | {result['errors']} | "
                f"{float(result['read_median']) * 1000:.0f} ms | {float(result['read_max_during']) * 1000:.0f} ms |"
            )
    lines += [
        "",
        "The publish stage of a run is the audit (the smoke checks: rows per mart, columns, and a data diff of "
        "every mart by its key, in one connection; and the anomaly checks against the run history) followed by "
        "the publish itself; the table times them apart. "
        "The target is the publish's: on DuckDB nothing is copied. dbt builds the marts into a candidate file of "
        "their own; publishing adds the consumer views and the version's metadata, renames the file into a "
        "version, switches the published link with one `rename` and drops the versions beyond `keep_versions`.",
        "",
        "The audit is a check, like the tests and the quality suites, and costs what a full comparison costs: "
        "a join of every row of every mart with its published version. Each run here loads data of another "
        "seed, so every row of the big marts differs: the worst case, where each column of each row is "
        "compared. (A diff by row hash first was tried: it halves the join but must then compare the changed "
        "rows column by column, which here is all of them.)",
        "",
        "On DuckDB a reader never waits for a publish: it opens the version the link names at that moment; its "
        "reads during a publish take as long as the others, slowed only by the build sharing the two cores. On "
        "PostgreSQL the publish renames the candidate schema into the version and repoints every consumer view in "
        "one transaction; a reader's statement waits while the swap holds the views' locks, so the longest "
        "read overlapping a publish is the stall a reader sees (its median is the reads' normal time). The "
        "PostgreSQL rows come from the throwaway server the tests start (tests/postgres_server.py), with one "
        "such reader beside the runs.",
        "",
    ]
    return _section(SECTION, "Publishing: the publish step against the build", intro, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--postgres-scale",
        type=float,
        action="append",
        help="also on PostgreSQL, at these scales (default 1); 0 skips it",
    )
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    results = []
    for scale in args.scale or [1.0, 10.0]:
        with tempfile.TemporaryDirectory(prefix="dataops-publish-benchmark-") as folder:
            os.environ["DATAOPS_WAREHOUSE_DIR"] = folder
            os.environ.pop("DATAOPS_HISTORY_URL", None)
            os.environ.pop("DATAOPS_DUCKDB_PATH", None)
            results.append(measure(scale, args.repeats))
    postgres_scales = [s for s in (args.postgres_scale or [1.0]) if s > 0]
    if postgres_scales:
        results += measure_postgres(postgres_scales, args.repeats)
    return _emit(render(results), args.write)


def measure_postgres(scales: list[float], repeats: int) -> list[dict[str, object]]:
    """The same runs on a throwaway PostgreSQL server (the tests' own), readers in sessions of their own."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "tests" / "postgres_server.py"
    spec = importlib.util.spec_from_file_location("postgres_server", path)
    assert spec is not None and spec.loader is not None
    postgres_server = importlib.util.module_from_spec(spec)
    sys.modules["postgres_server"] = postgres_server
    spec.loader.exec_module(postgres_server)
    server = postgres_server.start_server()
    try:
        os.environ.update(server.env)
        results = []
        for scale in scales:
            postgres_server.recreate_database(server.env)
            with tempfile.TemporaryDirectory(prefix="dataops-publish-benchmark-") as folder:
                os.environ["DATAOPS_WAREHOUSE_DIR"] = folder
                os.environ.pop("DATAOPS_HISTORY_URL", None)
                results.append(measure(scale, repeats, target="postgres"))
        return results
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
