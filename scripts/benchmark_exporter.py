"""A `dataops exporter` scrape with 10,000 runs in the history, written into BENCHMARKS.md
(`make benchmark`); target under 50 ms.

One real scale-1 run, copied into 10,000 runs an hour apart as `benchmark_history.py` fills its store;
then the median of several scrapes of a real `dataops exporter` process over HTTP, of the collector
alone (the history read and the text exposition, in this process) and of the store's read alone.

    python scripts/benchmark_exporter.py [--runs 10000] [--scrapes 21] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import _emit, _section  # the shared BENCHMARKS.md framing
from benchmark_history import fill_store  # the same 10,000 runs as the history's benchmark

SECTION = "exporter"
TARGET_SECONDS = 0.05


def _median(measure: Callable[[], object], repeats: int) -> float:
    measure()  # a first one warms the page cache and the imports; what Prometheus sees is the steady state
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        measure()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def measure(runs: int, scrapes: int) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, generate_latest

    from dataops.commands.run import Pipeline, RunOptions
    from dataops.core.config import load_settings
    from dataops.history.store import HistoryStore
    from dataops.ops.exporter import HistoryCollector

    summary = Pipeline(load_settings("dev")).run(RunOptions(scale=1.0, docs=False))
    if summary.exit_code:
        raise SystemExit(f"the benchmark run failed: {summary.findings}")
    fill_started = time.perf_counter()
    fill_store(runs - 1)
    fill_s = time.perf_counter() - fill_started

    store = HistoryStore()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HistoryCollector(store))
    exposition = generate_latest(registry)
    if (
        b"dataops_history_up 1.0" not in exposition
        or f'status="passed",target="dev"}} {runs}.0'.encode() not in exposition
    ):
        raise SystemExit("the collector did not read the whole history:\n" + exposition.decode()[:2000])
    figures = {
        "runs": runs,
        "fill_s": fill_s,
        "series": exposition.count(b"\n") - exposition.count(b"\n#"),
        "bytes": len(exposition),
        "store_s": _median(store.target_summaries, scrapes),
        "collector_s": _median(lambda: generate_latest(registry), scrapes),
        "store_mib": (Path(os.environ["DATAOPS_WAREHOUSE_DIR"]) / "history.sqlite").stat().st_size / 2**20,
    }
    dataops = str(Path(sys.executable).with_name("dataops"))
    process = subprocess.Popen(
        [dataops, "exporter", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url = next(word for word in process.stdout.readline().split() if word.startswith("http://"))
        figures["http_s"] = _median(lambda: _scrape(url), scrapes)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return figures


def render(figures: dict[str, float], scrapes: int) -> str:
    intro = (
        "Reproduce with `python scripts/benchmark_exporter.py` (part of `make benchmark`). Target: a scrape of "
        f"`dataops exporter` under {TARGET_SECONDS * 1000:.0f} ms with 10,000 runs in the history (SQLite, the "
        "default)."
    )
    met = "meets" if figures["http_s"] < TARGET_SECONDS else "misses"
    lines = [
        f"{figures['runs']:,.0f} runs in the store ({figures['store_mib']:.0f} MiB: one real scale-1 run copied an "
        f"hour apart, filled in {figures['fill_s']:.0f} s); each scrape exposes {figures['series']:,.0f} series "
        f"({figures['bytes'] / 1024:.0f} KiB). Medians of {scrapes} scrapes after a first one:",
        "",
        "| what | median |",
        "|---|---:|",
        f"| a scrape of a `dataops exporter` process over HTTP (`GET /metrics`, a new connection each) | "
        f"**{figures['http_s'] * 1000:.1f} ms** |",
        f"| the collector alone: the history read and the text exposition, in-process | "
        f"{figures['collector_s'] * 1000:.1f} ms |",
        f"| the store's read alone (`HistoryStore.target_summaries`: connect, counts, the latest runs, one "
        f"document) | {figures['store_s'] * 1000:.1f} ms |",
        "",
        f"The scrape {met} the {TARGET_SECONDS * 1000:.0f} ms target on this machine. As the history grows, "
        "only one index scan grows with it: the totals are counted from the covering index `ix_dataops_runs_latest` "
        "and the failed nodes from `ix_dataops_nodes_kind_status` (schema v5), never from the run documents, and "
        "the latest run's document is the only one read.",
        "",
    ]
    return _section(SECTION, "Exporter: a scrape of the run history", intro, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=21)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dataops-exporter-benchmark-") as folder:
        os.environ["DATAOPS_WAREHOUSE_DIR"] = folder
        os.environ.pop("DATAOPS_HISTORY_URL", None)
        figures = measure(args.runs, args.scrapes)
    return _emit(render(figures, args.scrapes), args.write)


if __name__ == "__main__":
    sys.exit(main())
