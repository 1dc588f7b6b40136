"""Benchmarks, each written with the machine it ran on into its own section of BENCHMARKS.md.

    python scripts/benchmark.py --scale 1 --scale 100 --write BENCHMARKS.md      generate + load
    python scripts/benchmark.py --quality --scale 1 --scale 10 --write BENCHMARKS.md   quality vs build
Every measurement runs in a fresh subprocess, so its time and peak memory are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataops.airflow.local import DagTestResult

SECTION = "generate-load"
QUALITY_SECTION = "quality-vs-build"
TARGET_SECONDS = 60.0
QUALITY_SHARE_TARGET = 0.25
AIRFLOW_SECTION = "airflow-vs-dataops"
AIRFLOW_RATIO_TARGET = 1.5


def measure(scale: float, seed: int) -> dict[str, float]:
    """Generate and load one scale in this process; return seconds and peak RSS."""
    from dataops.commands.load import load_tables
    from dataops.core.config import load_settings
    from dataops.sources.generate import generate_tables

    with tempfile.TemporaryDirectory() as folder:
        os.environ["DATAOPS_WAREHOUSE_DIR"] = folder
        settings = load_settings("dev")
        started = time.perf_counter()
        tables = generate_tables(scale, seed=seed)
        generated = time.perf_counter()
        load_tables(settings, tables, f"benchmark scale {scale:g}")
        loaded = time.perf_counter()
        warehouse_bytes = settings.duckdb_path.stat().st_size
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "scale": scale,
        "orders": tables["Sales.SalesOrderHeader"].num_rows,
        "order_lines": tables["Sales.SalesOrderDetail"].num_rows,
        "rows": sum(t.num_rows for t in tables.values()),
        "generate_s": generated - started,
        "load_s": loaded - generated,
        "total_s": loaded - started,
        "peak_rss_gib": peak_kib / 1024 / 1024,
        "warehouse_mib": warehouse_bytes / 1024 / 1024,
    }


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def build_for_quality(scale: float, seed: int, warehouse: str) -> dict[str, float]:
    """Load and build a warehouse, with the quality stage as `dataops run` has it (cold import)."""
    os.environ["DATAOPS_WAREHOUSE_DIR"] = warehouse
    from dataops.core.config import load_settings
    from dataops.quality.suites import QualityWorker

    worker = QualityWorker.for_settings(load_settings("dev"))  # started first, as `dataops run` does
    from dataops.commands.run import Pipeline, RunOptions

    summary = Pipeline(load_settings("dev"), quality_worker=worker).run(RunOptions(scale=scale, seed=seed, docs=False))
    if summary.exit_code:
        raise SystemExit(f"the benchmark run failed: {summary.findings}")
    stages = {stage.name: stage.seconds for stage in summary.stages}
    from dataops.quality.suites import validate

    validate(load_settings("dev"))  # warms this process up: GX imported, first checkpoint run
    started = time.perf_counter()
    validate(load_settings("dev"))
    return {"build_s": stages["build"], "quality_s": stages["quality"], "quality_warm_s": time.perf_counter() - started}


def quality_memory(warehouse: str) -> dict[str, float]:
    """Peak memory of a process that only runs the suites: they run as SQL in the warehouse."""
    os.environ["DATAOPS_WAREHOUSE_DIR"] = warehouse
    from dataops.core.config import load_settings
    from dataops.quality.suites import run_quality

    baseline = _peak_rss_gib()
    import great_expectations  # noqa: F401  (its import is the same at any scale)

    imported = _peak_rss_gib()
    run_quality(load_settings("dev"))
    return {"before_gib": baseline, "after_import_gib": imported, "peak_gib": _peak_rss_gib()}


def pandas_memory(warehouse: str) -> dict[str, float]:
    """What pulling the two validated marts into pandas would cost instead."""
    import duckdb

    connection = duckdb.connect(str(Path(warehouse) / "dev.duckdb"), read_only=True)
    baseline = _peak_rss_gib()
    frames = [connection.execute(f"select * from marts.{m}").df() for m in ("customer_analytics", "fct_orders")]
    rows = sum(len(frame) for frame in frames)
    return {"before_gib": baseline, "peak_gib": _peak_rss_gib(), "rows": rows}


def measure_quality(scale: float, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as warehouse:
        result = {"scale": scale, **_subprocess("build_for_quality", scale, seed, warehouse)}
        memory = _subprocess("quality_memory", scale, seed, warehouse)
        pandas = _subprocess("pandas_memory", scale, seed, warehouse)
    result["quality_peak_gib"] = memory["peak_gib"]
    result["quality_import_gib"] = memory["after_import_gib"]
    result["pandas_peak_gib"] = pandas["peak_gib"]
    result["mart_rows"] = pandas["rows"]
    return result


def _subprocess(function: str, scale: float, seed: int, warehouse: str) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--call",
            function,
            "--one",
            str(scale),
            "--seed",
            str(seed),
            "--warehouse",
            warehouse,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def render_quality(results: list[dict[str, float]]) -> str:
    intro = (
        f"Reproduce with `make benchmark`. Target: quality <= {QUALITY_SHARE_TARGET:.0%} of build time; "
        "peak memory must not grow with table size."
    )
    lines = [
        "*quality* is the stage as `dataops run` has it: 12 expectations over `customer_analytics` and "
        "`fct_orders` run as SQL in DuckDB and the results JSON written, by the quality worker process that the "
        "run starts first, so that Great Expectations' import and a warm-up checkpoint on empty look-alike tables "
        "overlap the build; the worker renders the Data Docs after its verdict, while the run goes on. *warm* is "
        "the same validation again in an already-warm process, i.e. what the checks themselves cost.",
        "",
        "| scale | mart rows | build | quality | share | quality, warm | share warm | quality peak RSS "
        "| of which GX import | pandas load of the marts |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['scale']:g} | {r['mart_rows']:,.0f} | {r['build_s']:.2f} s | {r['quality_s']:.2f} s | "
            f"{r['quality_s'] / r['build_s']:.0%} | {r['quality_warm_s']:.2f} s | "
            f"{r['quality_warm_s'] / r['build_s']:.0%} | {r['quality_peak_gib'] * 1024:,.0f} MiB | "
            f"{r['quality_import_gib'] * 1024:,.0f} MiB | {r['pandas_peak_gib'] * 1024:,.0f} MiB |"
        )
    cold = max(r["quality_s"] / r["build_s"] for r in results)
    warm = max(r["quality_warm_s"] / r["build_s"] for r in results)
    first, last = results[0], results[-1]
    lines += [
        "",
        f"- **The checks: {warm:.0%} of build at most, target "
        f"{'met' if warm <= QUALITY_SHARE_TARGET else 'NOT met'}.** "
        "They run as SQL in the warehouse and fetch only metrics and 20 example values.",
        f"- **The stage as run: up to {cold:.0%} of build, target "
        f"{'met' if cold <= QUALITY_SHARE_TARGET else 'NOT met'}.** What a first checkpoint costs is fixed, not "
        "proportional to the data: importing Great Expectations (about 2 s of Python), then GX's metric, SQL and "
        "rendering machinery on first use (about 0.6 s), against 2-3 s for DuckDB to build these marts. Measured "
        "on the way here: in-process, the stage took 2.3-2.6 s (82-112% of build); a thread importing GX during "
        "the build gained nothing on 2 cores (the GIL moved the cost into parse and build); a worker process "
        "that only imported GX left 0.8-0.9 s in the stage (39-45%), of which 0.27 s was rendering Data Docs and "
        "the rest first-use costs. The worker now also runs the real checkpoint once on empty tables shaped "
        "after the suites (in a scratch DuckDB file: dbt holds the warehouse) and renders Data Docs after it "
        "answers. The whole `dataops run --scale 1 --no-docs` went from 6.3-6.4 s to 6.0-6.1 s, the build "
        "stage unchanged (1.9-2.0 s).",
        f"- **Memory does not follow the data:** {last['mart_rows'] / first['mart_rows']:.0f}x the rows took the "
        f"quality process from {first['quality_peak_gib'] * 1024:,.0f} to {last['quality_peak_gib'] * 1024:,.0f} "
        f"MiB (most of it GX's import), while pulling the same marts into pandas went from "
        f"{first['pandas_peak_gib'] * 1024:,.0f} to {last['pandas_peak_gib'] * 1024:,.0f} MiB.",
    ]
    return _section(QUALITY_SECTION, "Quality stage versus build stage", intro, lines)


def _wall(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, result.returncode


def _log_time(log: str, marker: str) -> datetime | None:
    """When the first log line holding `marker` was written (Airflow's lines start with an ISO time)."""
    line = next((line for line in log.splitlines() if marker in line), None)
    return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")) if line else None


def _phases(result: DagTestResult) -> dict[str, float]:
    """Where the DAG run's time went: from the recorded task spans, and from the log for the
    in-process execution API that `airflow dags test` starts inside the first task."""
    assert result.run_span is not None
    run_start, run_end = result.run_span
    spans = result.task_spans
    first_start = min(start for start, _ in spans.values())
    freshness, quality = spans["source_freshness"], spans["quality_checks"]
    asked, started = _log_time(result.log, "[DAG TEST] running task"), _log_time(result.log, "Task started")
    api_start = (started - asked).total_seconds() if asked and started else 0.0
    phases = {
        "before the first task": (first_start - run_start).total_seconds(),
        "execution API start (first task)": api_start,
        "source freshness": (freshness[1] - freshness[0]).total_seconds() - api_start,
        "dbt tasks": (quality[0] - freshness[1]).total_seconds(),
        "quality": (quality[1] - quality[0]).total_seconds(),
        "notify and run end": (run_end - quality[1]).total_seconds(),
    }
    producer = spans.get("dbt.dbt_producer_watcher")
    if producer:
        phases["of the dbt tasks: the one dbt build"] = (producer[1] - producer[0]).total_seconds()
    return phases


def measure_airflow(scale: float, seed: int, modes: list[str], repeats: int) -> list[dict[str, object]]:
    """`dataops run` and the Airflow DAG (per Cosmos mode, the default `repeats` times) on the same
    loaded data; the median run of each."""
    from dataops.airflow.dags import DEFAULT_COSMOS_MODE
    from dataops.airflow.local import BIN, airflow_env, dag_test, prepare

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as scratch:
        env = airflow_env(Path(scratch) / "airflow", Path(scratch) / "warehouse", DATAOPS_TASK_RETRIES="0")
        subprocess.run(
            [str(BIN / "dataops"), "load", "--scale", str(scale), "--seed", str(seed)],
            env=env,
            check=True,
            capture_output=True,
        )
        prepare(env)
        runs = sorted(_wall([str(BIN / "dataops"), "run", "--no-docs"], env) for _ in range(repeats))
        seconds, code = runs[len(runs) // 2]
        rows.append({"how": "`dataops run --no-docs`", "seconds": seconds, "ok": code == 0, "runs": len(runs)})
        for mode in modes:
            mode_env = {**env, "DATAOPS_COSMOS_MODE": mode}
            measured = []
            for _ in range(repeats if mode == DEFAULT_COSMOS_MODE else 1):
                result = dag_test(mode_env, "adventureworks_pipeline")
                assert result.run_span is not None
                duration = (result.run_span[1] - result.run_span[0]).total_seconds()
                measured.append(
                    {
                        "seconds": result.seconds,
                        "run_s": duration,
                        "ok": result.succeeded,
                        "tasks": len(result.task_spans),
                        "phases": _phases(result),
                    }
                )
            measured.sort(key=lambda row: float(row["run_s"]))  # type: ignore[arg-type]
            default = " (default)" if mode == DEFAULT_COSMOS_MODE else ""
            rows.append(
                {"how": f"Airflow DAG, Cosmos `{mode}`{default}", "runs": len(measured), **measured[len(measured) // 2]}
            )
    return rows


def render_airflow(scale: float, rows: list[dict[str, object]]) -> str:
    base = float(rows[0]["seconds"])  # type: ignore[arg-type]
    target_s = AIRFLOW_RATIO_TARGET * base
    intro = (
        f"Scale {scale:g}, the same loaded data, median of the runs shown. *wall* is each command's wall time "
        "(`airflow dags test adventureworks_pipeline` runs the tasks one after another in one process); *DAG run* "
        "is the run's own duration as Airflow records it, without the command's start-up. The DAG does "
        "freshness, dbt, quality and notify, so `dataops run` runs without docs. Target: at most "
        f"{AIRFLOW_RATIO_TARGET}x ({target_s:.1f} s)."
    )
    lines = [
        "| how | runs | tasks | wall | vs dataops run | DAG run | vs dataops run | succeeded |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        seconds = float(row["seconds"])  # type: ignore[arg-type]
        run_s = row.get("run_s")
        duration = f"{float(run_s):.1f} s | {float(run_s) / base:.1f}x" if run_s else "- | -"  # type: ignore[arg-type]
        lines.append(
            f"| {row['how']} | {row['runs']} | {row.get('tasks', '-')} | {seconds:.1f} s | "
            f"{seconds / base:.1f}x | {duration} | {'yes' if row['ok'] else 'NO'} |"
        )
    dags = rows[1:]
    best = min(dags, key=lambda r: float(r["run_s"]))  # type: ignore[arg-type]
    best_run = float(best["run_s"]) / base  # type: ignore[arg-type]
    phases: dict[str, float] = best["phases"]  # type: ignore[assignment]
    one_off = phases["before the first task"] + phases["execution API start (first task)"]
    without = float(best["run_s"]) - one_off  # type: ignore[arg-type]
    lines += [
        "",
        f"**Best: {best['how']}, {best_run:.1f}x by DAG run, {float(best['seconds']) / base:.1f}x by wall; target "
        f"{'met' if best_run <= AIRFLOW_RATIO_TARGET else 'NOT met'}.** Where its DAG run went:",
        "",
        "| part of the run | seconds |",
        "|---|---:|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in phases.items()),
        "",
        f"Of these, {one_off:.1f} s are `airflow dags test` starting itself inside the run (the run is stamped "
        "before the DAG is serialised, and the in-process execution API is built on the first task's first "
        "call), which a running Airflow pays once, not per run. Without them the run takes "
        f"{without:.1f} s, {without / base:.1f}x ({'within' if without <= target_s else 'still above'} "
        f"{AIRFLOW_RATIO_TARGET}x); the target is judged on the DAG run as recorded, not on this figure.",
        "",
        *AIRFLOW_FINDINGS,
    ]
    return _section(AIRFLOW_SECTION, "Airflow DAG versus `dataops run`", intro, lines)


AIRFLOW_FINDINGS = [
    "What each option costs, and what we changed:",
    "",
    "- **`build`** runs one `dbt build --select` per model, its tests included, in its own task. Each task costs "
    "about a second whatever the model: profiled, the in-process dbt invocation with partial parse (0.66 s, "
    "0.28 s of it writing manifest.json twice), Cosmos's `gc.collect()` after every dbt call (0.49 s in a "
    "process that holds Airflow and dbt), and Airflow's task start and finish (about 0.15 s). It fails exactly "
    "the task of the rule that broke; multi-parent tests get a task after all their parents.",
    "- **`after_each`** (a run and a test task per model) only adds tasks.",
    "- **`watcher`** (the default) runs one `dbt build` for the project in a producer task and gives each model "
    "a run and a test task that report that model's result. Three fixes made it the fastest and the default:",
    "  - *Sensors after the build.* Cosmos starts them beside the build and defers them to a triggerer every "
    "ten seconds: under `dags test` a sensor picked before the producer waited forever, and with an executor "
    "the deferrals took the run to 48 s. Ours start when the build is done, poke once, and read their result "
    "in about 0.05 s each.",
    "  - *A producer that reports what the sensors read.* Cosmos's turned every dbt event into JSON and pushed "
    "about 550 XComs (start, compiling, executing and finished events, status and compiled SQL per node, one "
    "per test), each a call to the execution API under one lock: the 2-3 s build took 9-13 s. "
    "`dataops.airflow.watcher` pushes a status, compiled SQL and event per model and one aggregate per "
    "model's tests (76 keys) and logs dbt's messages directly: 3.3-3.9 s.",
    "  - *Failures where they belong.* The producer fails only when dbt cannot run; a failing model or test "
    "fails its own model's task, and a rule that reads two models fails both models' test tasks. Freezing the "
    "startup objects during the build cut Cosmos's `gc.collect()` from 0.5 s to 0.1 s.",
    "- **Why the rest is out of reach here:** after those fixes the run is Airflow's fixed costs, per run and "
    "per task (about 0.06 s per task, 39 tasks), plus the three real steps, each in its own process in a real "
    "deployment: dbt's import and freshness, the build, and Great Expectations' import and checkpoint (about "
    "2 s that `dataops run` hides in a worker process during the build). Not tried: one parsed dbt manifest "
    "kept warm across tasks (`dbtRunner(manifest=...)`), which would need our own operator in place of "
    "Cosmos's.",
    "",
]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    import duckdb
    import numpy
    import pyarrow

    return (
        f"{cpu}, {os.cpu_count()} cores, {memory_kib / 1024 / 1024:.0f} GiB RAM; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"NumPy {numpy.__version__}, PyArrow {pyarrow.__version__}, DuckDB {duckdb.__version__}"
    )


def _section(name: str, title: str, intro: str, body: list[str]) -> str:
    """A BENCHMARKS.md section between the markers `_emit` replaces: the title, what is measured and
    the target, when and on which machine, then the figures."""
    return "\n".join(
        [
            f"<!-- benchmark:{name} -->",
            f"## {title}",
            "",
            f"{intro} Measured {datetime.now(UTC):%Y-%m-%d} on: {machine()}.",
            "",
            *body,
            f"<!-- /benchmark:{name} -->",
        ]
    )


def render(results: list[dict[str, float]]) -> str:
    intro = (
        f"Reproduce with `make benchmark` (`python scripts/benchmark.py`). Target: scale 100 under "
        f"{TARGET_SECONDS:.0f} s."
    )
    lines = [
        "| scale | orders | order lines | all rows | generate | load | total | peak RSS | warehouse |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['scale']:g} | {r['orders']:,.0f} | {r['order_lines']:,.0f} | {r['rows']:,.0f} | "
            f"{r['generate_s']:.1f} s | {r['load_s']:.1f} s | **{r['total_s']:.1f} s** | "
            f"{r['peak_rss_gib']:.1f} GiB | {r['warehouse_mib']:,.0f} MiB |"
        )
    return _section(SECTION, "Synthetic data: generate + load into DuckDB", intro, lines)


def write_section(path: Path, section: str) -> None:
    name = re.match(r"<!-- benchmark:([\w-]+) -->", section).group(1)  # type: ignore[union-attr]
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- benchmark:{name} -->.*?<!-- /benchmark:{name} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def _emit(section: str, path: Path | None) -> int:
    """Write the section into its place in the Markdown file, or print it."""
    if path:
        write_section(path, section)
    else:
        print(section)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable; default 1, 10, 100")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    parser.add_argument("--quality", action="store_true", help="quality stage vs build stage; default scales 1, 10")
    parser.add_argument("--airflow", action="store_true", help="the Airflow DAG vs dataops run; default scale 1")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--call", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.call:
        calls = {
            "build_for_quality": lambda: build_for_quality(args.one, args.seed, args.warehouse),
            "quality_memory": lambda: quality_memory(args.warehouse),
            "pandas_memory": lambda: pandas_memory(args.warehouse),
        }
        print(json.dumps(calls[args.call]()))
        return 0
    if args.one is not None:
        print(json.dumps(measure(args.one, args.seed)))
        return 0
    if args.airflow:
        scale = (args.scale or [1.0])[0]
        rows = measure_airflow(scale, args.seed, ["watcher", "build", "after_each"], repeats=3)
        for row in rows:
            print(f"{row['how']}: {float(row['seconds']):.1f} s ({'ok' if row['ok'] else 'FAILED'})", flush=True)
        section = render_airflow(scale, rows)
        return _emit(section, args.write)
    if args.quality:
        quality_results = []
        for scale in args.scale or [1.0, 10.0]:
            result = measure_quality(scale, args.seed)
            quality_results.append(result)
            print(
                f"scale {scale:g}: build {result['build_s']:.2f} s, quality {result['quality_s']:.2f} s "
                f"(warm {result['quality_warm_s']:.2f} s), quality peak {result['quality_peak_gib']:.2f} GiB, "
                f"pandas {result['pandas_peak_gib']:.2f} GiB",
                flush=True,
            )
        section = render_quality(quality_results)
        return _emit(section, args.write)
    results = []
    for scale in args.scale or [1.0, 10.0, 100.0]:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(scale), "--seed", str(args.seed)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results.append(result)
        print(
            f"scale {scale:g}: generate {result['generate_s']:.1f} s + load {result['load_s']:.1f} s "
            f"= {result['total_s']:.1f} s, peak {result['peak_rss_gib']:.1f} GiB",
            flush=True,
        )
    return _emit(render(results), args.write)


if __name__ == "__main__":
    sys.exit(main())
