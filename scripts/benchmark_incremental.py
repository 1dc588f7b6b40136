"""What an incremental run costs against a full build and against the engine's own time for the
same SQL, and that it publishes the same marts.

Per engine and scale, in a warehouse of its own: the day's data is loaded and built whole (the
first run, a full refresh); then the next day (`next_day`: `--append` % new orders, `--update` %
changed old orders) is loaded and built incrementally; then the same data is built again with
`--full-refresh`, whose data diff against the incremental version must be zero rows. On DuckDB the
full refresh's compiled SQL is then run directly in one connection (scripts/raw_sql.py, a process
of its own), on a copy of the same warehouse. Each run's stages are timed (the build stage's copy
of the published version into the candidate apart). At scales 1 and 10 on DuckDB, dbt build alone
is then timed per thread count (`--no-sweep` skips it). The figures are printed as JSON (and
written to `--json`), and with `--write` the section of BENCHMARKS.md.

    python scripts/benchmark_incremental.py [--scale 1 --scale 10 --scale 100]
        [--engine duckdb --engine postgres] [--append 1] [--update 0 --update 1] [--json FILE]
        [--write BENCHMARKS.md] [--no-sweep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmark import _emit, _section  # the shared BENCHMARKS.md framing

ROOT = Path(__file__).resolve().parent.parent
SECTION = "incremental"
BUILD_SHARE_TARGET = 0.10
RAW_RATIO_TARGETS = {100.0: 1.3, 10.0: 2.0}
# The singular tests that read only an incremental build's changed rows call this macro (dbt/macros/incremental.sql).
CHANGED_ROWS_MACRO = "macro.adventureworks.changed_rows"


def _postgres_server() -> Any:
    """The throwaway server the tests start (tests/postgres_server.py)."""
    spec = importlib.util.spec_from_file_location("postgres_server", ROOT / "tests" / "postgres_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["postgres_server"] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _timed_copies(seconds: list[float]) -> Iterator[None]:
    """Time every engine's `prepare_incremental` (the copy of the published version) as it runs."""
    from dataops.warehouse import duckdb as duckdb_module
    from dataops.warehouse import postgres as postgres_module

    originals: list[tuple[type, Callable[..., None]]] = []
    for cls in (duckdb_module.DuckDBWarehouse, postgres_module.PostgresWarehouse):
        original = cls.prepare_incremental
        originals.append((cls, original))

        def timed(self: Any, *args: Any, _original: Callable[..., None] = original) -> None:
            started = time.perf_counter()
            try:
                _original(self, *args)
            finally:
                seconds.append(time.perf_counter() - started)

        cls.prepare_incremental = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, original in originals:
            cls.prepare_incremental = original  # type: ignore[method-assign]


def _node_seconds(settings: Any) -> dict[str, float]:
    """Where the build's time went, from dbt's run_results.json and manifest.json of the run just
    finished: seconds summed per kind of node (nodes run on several threads, so the sums add up to
    more than the stage's wall time)."""
    folder = settings.artifacts_dir / "dbt"
    results = json.loads((folder / "run_results.json").read_text(encoding="utf-8"))["results"]
    nodes = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["nodes"]
    sums: dict[str, float] = {}
    for result in results:
        node = nodes.get(result["unique_id"], {})
        kind = node.get("resource_type") or result["unique_id"].split(".")[0]
        config = node.get("config", {})
        if kind == "model":
            kind = f"models ({config.get('materialized')})"
        elif kind == "test":
            where = config.get("where") or ""
            parents = node.get("depends_on", {}).get("nodes", [])
            layer = (
                "marts"
                if any(".fct_" in p or ".dim_" in p or "customer_analytics" in p for p in parents)
                else ("staging and intermediate")
            )
            if not node.get("test_metadata"):
                reads = (
                    "the changed rows"
                    if CHANGED_ROWS_MACRO in node.get("depends_on", {}).get("macros", [])
                    else "every row"
                )
                kind = f"singular tests on {reads}"
            elif "__changed_rows__" in where:
                kind = "mart tests on the changed rows"
            else:
                kind = f"{layer} tests on every row"
        sums[kind] = round(sums.get(kind, 0.0) + float(result.get("execution_time") or 0.0), 2)
    return dict(sorted(sums.items()))


@contextmanager
def _timed_plans(seconds: list[float]) -> Iterator[None]:
    """Time the plan (the watermark, the continuity check and the reconciliation of the published
    marts with their sources) as the run calls it."""
    from dataops.commands import run as run_module

    original = run_module.plan_incremental

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    run_module.plan_incremental = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        run_module.plan_incremental = original


def _run(settings: Any, **options: Any) -> dict[str, Any]:
    from dataops.commands.run import Pipeline, RunOptions

    copies: list[float] = []
    plans: list[float] = []
    started = time.perf_counter()
    with _timed_copies(copies), _timed_plans(plans):
        summary = Pipeline(settings).run(RunOptions(docs=False, **options))
    total = time.perf_counter() - started
    stages = {stage.name: round(stage.seconds, 2) for stage in summary.stages}
    build = next(stage for stage in summary.stages if stage.name == "build")
    diffs = {d.mart: [d.added, d.removed, d.changed] for d in (summary.publish.diffs if summary.publish else [])}
    failed = [f"{f.check}: {f.message}" for f in summary.findings if f.level == "error"]
    return {
        "exit_code": int(summary.exit_code),
        "published": summary.publish.status if summary.publish else None,
        "seconds": round(total, 2),
        "stages": stages,
        "build_detail": build.detail,
        "copy_seconds": round(sum(copies), 2),
        "plan_seconds": round(sum(plans), 2),
        "diffs": diffs,
        "failed": failed,
        "node_seconds": _node_seconds(settings),
    }


def _raw(settings: Any) -> dict[str, Any]:
    """The full refresh just finished, its compiled SQL run directly (scripts/raw_sql.py)."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "raw_sql.py"),
            str(settings.artifacts_dir / "dbt" / "manifest.json"),
            str(settings.duckdb_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


THREADS = (1, 2, 4, 8)
SWEEP_SCALES = (1.0, 10.0)  # where dbt's cost per node is most of the build


def _thread_sweep(settings: Any, repeat: int = 2) -> dict[str, float]:
    """dbt build's wall seconds (a full refresh of the warehouse as it is) per `--threads`, the
    counts alternated, the median of `repeat`: whether more threads hide the cost per node."""
    import dataclasses

    from dataops.project.runner import DbtProject

    seconds: dict[int, list[float]] = {threads: [] for threads in THREADS}
    for _ in range(repeat):
        for threads in THREADS:
            project = DbtProject(dataclasses.replace(settings, threads=threads))
            project.parse()
            started = time.perf_counter()
            result = project.build(full_refresh=True)
            seconds[threads].append(time.perf_counter() - started)
            if not result.success:
                raise RuntimeError(f"dbt build with {threads} threads failed")
    return {str(threads): round(statistics.median(values), 2) for threads, values in seconds.items()}


def measure(
    engine: str, scale: float, seed: int, append: float, updates: list[float], sweep: bool = False
) -> dict[str, Any]:
    from dataops.commands.load import load_tables
    from dataops.core.config import load_settings
    from dataops.sources.generate import generate_tables, next_day

    settings = load_settings("dev" if engine == "duckdb" else "postgres")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    started = time.perf_counter()
    tables = generate_tables(scale, seed=seed, as_of=now - timedelta(hours=4 * (len(updates) + 1)))
    load_tables(settings, tables, f"scale {scale:g}")
    result: dict[str, Any] = {"engine": engine, "scale": scale, "load_seconds": round(time.perf_counter() - started, 2)}
    result["first"] = _run(settings)
    result["days"] = []
    for day, update in enumerate(updates, start=1):
        tables = next_day(tables, append, update, seed=seed, as_of=now - timedelta(hours=4 * (len(updates) - day + 1)))
        load_tables(settings, tables, f"day {day}")
        incremental = _run(settings)
        refreshed = _run(settings, full_refresh=True)
        raw = _raw(settings) if engine == "duckdb" else None
        build_share = incremental["stages"]["build"] / refreshed["stages"]["build"]
        result["days"].append(
            {
                "append_pct": append,
                "update_pct": update,
                "incremental": incremental,
                "full_refresh": refreshed,
                "raw": raw,
                "build_share": round(build_share, 3),
                "run_share": round(incremental["seconds"] / refreshed["seconds"], 3),
                "equal": all(diff == [0, 0, 0] for diff in refreshed["diffs"].values()) and bool(refreshed["diffs"]),
            }
        )
        print(json.dumps(result["days"][-1]), file=sys.stderr, flush=True)
    if sweep and engine == "duckdb" and scale in SWEEP_SCALES:
        result["threads"] = _thread_sweep(settings)
    return result


def _day_label(day: dict[str, Any]) -> str:
    label = f"append {day['append_pct']:g}"
    return label + (f" + update {day['update_pct']:g}" if day["update_pct"] else "")


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _floor(results: list[dict[str, Any]]) -> list[str]:
    """What any build of the project costs whatever the data: the smallest scale's full build, the
    same nodes on almost no rows, against the largest scale's full build."""
    duckdb_results = sorted((r for r in results if r["engine"] == "duckdb"), key=lambda r: r["scale"])
    if len(duckdb_results) < 2:
        return []
    smallest, largest = duckdb_results[0], duckdb_results[-1]
    floor = min(day["full_refresh"]["stages"]["build"] for day in smallest["days"])
    raw = min(day["raw"]["seconds"] for day in smallest["days"] if day["raw"])
    full = statistics.median(day["full_refresh"]["stages"]["build"] for day in largest["days"])
    return [
        f"The floor: at scale {smallest['scale']:g} the full build of the same nodes takes {floor:.2f} s where their "
        f"raw SQL takes {raw:.2f} s, so {floor - raw:.2f} s of every build is dbt's cost per node, whatever the "
        f"data; that alone is {floor / full:.0%} of the full build at scale {largest['scale']:g} ({full:.2f} s), "
        "the least an incremental build of every node there can take.",
        "",
    ]


def _sweep_lines(results: list[dict[str, Any]]) -> list[str]:
    swept = [r for r in results if r.get("threads")]
    if not swept:
        return []
    return [
        "dbt build alone (a full refresh, in-process, median of 2, thread counts alternated) per `--threads` "
        "(the profile's is 4):",
        "",
        "| scale | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in THREADS) + " |",
        "|---:|" + "---:|" * len(THREADS),
        *(f"| {r['scale']:g} | " + " | ".join(f"{r['threads'][str(t)]:.2f} s" for t in THREADS) + " |" for r in swept),
        "",
    ]


def render(results: list[dict[str, Any]]) -> str:
    intro = (
        "Reproduce with `python scripts/benchmark_incremental.py --scale 1 --scale 10 --scale 100 --write "
        "BENCHMARKS.md` (`--engine postgres` adds PostgreSQL). Per engine and scale, in a warehouse of its own: "
        "the day's data built whole, then the next day (`next_day`: new orders, with and without changed old "
        "orders) loaded and built incrementally, then the same data built with `--full-refresh`, whose data diff "
        "against the incremental version must be zero rows; on DuckDB the full refresh's compiled SQL of the "
        "same models and data tests is then run directly in one DuckDB connection on a copy of that warehouse "
        "(`scripts/raw_sql.py`: no dbt, no threads, no artifacts). *build* is the run's build stage (dbt build "
        "of models, data and unit tests into the candidate; for an incremental run also the copy of the "
        "published version into it), *run* the whole `dataops run --no-docs`, in-process. Targets (issue #16): "
        f"an incremental build at most {BUILD_SHARE_TARGET:.0%} of a full build at scale 100; a full build at "
        "most 1.3x the raw SQL at scale 100 and 2x at scale 10."
    )
    lines = [
        "| engine | scale | next day | full refresh build / run | incremental build / run | **incremental / full "
        "build** | raw SQL: models + tests | **full build / raw** | data diff |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    verdicts: list[str] = []
    for result in results:
        for day in result["days"]:
            full, incremental, raw = day["full_refresh"], day["incremental"], day["raw"]
            ratio = full["stages"]["build"] / raw["seconds"] if raw else None
            raw_cells = (
                [
                    f"{raw['models_seconds']:.2f} + {raw['tests_seconds']:.2f} = {raw['seconds']:.2f} s",
                    f"**{ratio:.2f}x**",
                ]
                if raw and ratio
                else ["-", "-"]
            )
            cells = [
                result["engine"],
                f"{result['scale']:g}",
                _day_label(day),
                f"{full['stages']['build']:.2f} s / {full['seconds']:.1f} s",
                f"{incremental['stages']['build']:.2f} s / {incremental['seconds']:.1f} s",
                f"**{day['build_share']:.0%}**",
                *raw_cells,
                "0 rows" if day["equal"] else "DIFFERS",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            if result["scale"] == 100:
                verdicts.append(
                    f"{result['engine']} scale {result['scale']:g}, {_day_label(day)}: "
                    f"incremental {day['build_share']:.0%} of full, "
                    f"target {_met(day['build_share'] <= BUILD_SHARE_TARGET)}"
                )
            if ratio and result["scale"] in RAW_RATIO_TARGETS:
                target = RAW_RATIO_TARGETS[result["scale"]]
                verdicts.append(
                    f"{result['engine']} scale {result['scale']:g}, {_day_label(day)}: full build {ratio:.2f}x raw, "
                    f"target {target:g}x {_met(ratio <= target)}"
                )
    largest = max(results, key=lambda r: (r["scale"], r["engine"] == "duckdb"))
    day = largest["days"][-1]
    kinds = sorted(set(day["incremental"]["node_seconds"]) | set(day["full_refresh"]["node_seconds"]))
    lines += [
        "",
        f"Where the build's time goes, {largest['engine']} at scale {largest['scale']:g}, {_day_label(day)}: dbt's "
        "seconds per node summed by kind (4 threads on 2 cores, so the sums exceed the stage), and the "
        "incremental run's plan (the reconciliation of the published marts with their sources, "
        "`src/dataops/publish/incremental.py`) and copy of the published version, each on its own:",
        "",
        "| nodes | incremental | full refresh |",
        "|---|---:|---:|",
        *(
            f"| {kind} | {day['incremental']['node_seconds'].get(kind, 0):.2f} s | "
            f"{day['full_refresh']['node_seconds'].get(kind, 0):.2f} s |"
            for kind in kinds
        ),
        f"| plan: the reconciliation with the sources | {day['incremental'].get('plan_seconds', 0):.2f} s | - |",
        f"| copy of the published version | {day['incremental']['copy_seconds']:.2f} s | - |",
        "",
        "Targets: " + "; ".join(verdicts) + ".",
        "",
        *_floor(results),
        *_sweep_lines(results),
    ]
    return _section(SECTION, "Full build, incremental build and the raw SQL", intro, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, action="append", help="repeatable; default 1, 10, 100")
    parser.add_argument("--engine", action="append", choices=["duckdb", "postgres"])
    parser.add_argument("--append", type=float, default=1.0)
    parser.add_argument("--update", type=float, action="append", help="one next day per value (default: 0 and 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    parser.add_argument("--no-sweep", action="store_true", help="skip the dbt builds per thread count")
    args = parser.parse_args()
    results = []
    for engine in args.engine or ["duckdb"]:
        for scale in args.scale or [1.0, 10.0, 100.0]:
            results.append(_measure_apart(engine, scale, args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    _emit(render(results), args.write)
    return 0 if all(day["equal"] for result in results for day in result["days"]) else 1


def _measure_apart(engine: str, scale: float, args: argparse.Namespace) -> dict[str, Any]:
    """One engine at one scale, in a warehouse (and for PostgreSQL a server) of its own."""
    with tempfile.TemporaryDirectory(prefix=f"bench-incremental-{engine}-") as folder:
        os.environ["DATAOPS_WAREHOUSE_DIR"] = folder
        os.environ.pop("DATAOPS_HISTORY_URL", None)
        server = None
        if engine == "postgres":
            postgres = _postgres_server()
            server = postgres.start_server()
            os.environ.update(server.env)
            postgres.recreate_database(server.env)
        try:
            return measure(engine, scale, args.seed, args.append, args.update or [0.0, 1.0], not args.no_sweep)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
