"""What an incremental run costs against a full build, and that it publishes the same marts.

Per engine, in a warehouse of its own: the day's data at `--scale` is loaded and built whole (the
first run, a full refresh); then the next day (`next_day`: `--append` % new orders, `--update` %
changed old orders) is loaded and built incrementally; then the same data is built again with
`--full-refresh`, whose data diff against the incremental version must be zero rows. Each run's
stages are timed (the build stage's copy of the published version into the candidate apart), and
the figures are printed as JSON (and written to `--json`), for BENCHMARKS.md.

    python scripts/benchmark_incremental.py [--scale 100] [--engine duckdb --engine postgres]
                                            [--append 1] [--update 0 --update 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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
                kind = "singular tests (every row)"
            elif "__changed_rows__" in where:
                kind = "mart tests on the changed rows"
            else:
                kind = f"{layer} tests on every row"
        sums[kind] = round(sums.get(kind, 0.0) + float(result.get("execution_time") or 0.0), 2)
    return dict(sorted(sums.items()))


def _run(settings: Any, **options: Any) -> dict[str, Any]:
    from dataops.commands.run import Pipeline, RunOptions

    copies: list[float] = []
    started = time.perf_counter()
    with _timed_copies(copies):
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
        "diffs": diffs,
        "failed": failed,
        "node_seconds": _node_seconds(settings),
    }


def measure(engine: str, scale: float, seed: int, append: float, updates: list[float]) -> dict[str, Any]:
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
        build_share = incremental["stages"]["build"] / refreshed["stages"]["build"]
        result["days"].append(
            {
                "append_pct": append,
                "update_pct": update,
                "incremental": incremental,
                "full_refresh": refreshed,
                "build_share": round(build_share, 3),
                "run_share": round(incremental["seconds"] / refreshed["seconds"], 3),
                "equal": all(diff == [0, 0, 0] for diff in refreshed["diffs"].values()) and bool(refreshed["diffs"]),
            }
        )
        print(json.dumps(result["days"][-1]), file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--engine", action="append", choices=["duckdb", "postgres"])
    parser.add_argument("--append", type=float, default=1.0)
    parser.add_argument("--update", type=float, action="append", help="one next day per value (default: 0 and 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for engine in args.engine or ["duckdb"]:
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
                results.append(measure(engine, args.scale, args.seed, args.append, args.update or [0.0, 1.0]))
            finally:
                if server is not None:
                    server.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if all(day["equal"] for result in results for day in result["days"]) else 1


if __name__ == "__main__":
    sys.exit(main())
