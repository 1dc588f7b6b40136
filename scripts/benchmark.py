"""Benchmark: synthetic generation + load into a fresh DuckDB warehouse, per scale.

Writes its results, with the machine they ran on, into its own section of BENCHMARKS.md:
    python scripts/benchmark.py --scale 1 --scale 100 --write BENCHMARKS.md
Each scale runs in a fresh subprocess so peak memory is that scale's own.
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

SECTION = "generate-load"
TARGET_SECONDS = 60.0


def measure(scale: float, seed: int) -> dict[str, float]:
    """Generate and load one scale in this process; return seconds and peak RSS."""
    from dataops.config import load_settings
    from dataops.generate import generate_tables
    from dataops.load import load_tables

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


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    import duckdb
    import numpy
    import pyarrow

    return (
        f"{cpu}, {os.cpu_count()} cores, {memory_kib / 1024 / 1024:.0f} GiB RAM; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"NumPy {numpy.__version__}, PyArrow {pyarrow.__version__}, DuckDB {duckdb.__version__}"
    )


def render(results: list[dict[str, float]]) -> str:
    lines = [
        f"<!-- benchmark:{SECTION} -->",
        "## Synthetic data: generate + load into DuckDB",
        "",
        f"Reproduce with `make benchmark` (`python scripts/benchmark.py`). Target: scale 100 under "
        f"{TARGET_SECONDS:.0f} s. Measured {datetime.now(UTC):%Y-%m-%d} on: {machine()}.",
        "",
        "| scale | orders | order lines | all rows | generate | load | total | peak RSS | warehouse |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['scale']:g} | {r['orders']:,.0f} | {r['order_lines']:,.0f} | {r['rows']:,.0f} | "
            f"{r['generate_s']:.1f} s | {r['load_s']:.1f} s | **{r['total_s']:.1f} s** | "
            f"{r['peak_rss_gib']:.1f} GiB | {r['warehouse_mib']:,.0f} MiB |"
        )
    lines.append(f"<!-- /benchmark:{SECTION} -->")
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- benchmark:{SECTION} -->.*?<!-- /benchmark:{SECTION} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable; default 1, 10, 100")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.seed)))
        return 0
    results = []
    for scale in args.scale or [1.0, 10.0, 100.0]:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(scale), "--seed", str(args.seed)],
            check=True, capture_output=True, text=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results.append(result)
        print(f"scale {scale:g}: generate {result['generate_s']:.1f} s + load {result['load_s']:.1f} s "
              f"= {result['total_s']:.1f} s, peak {result['peak_rss_gib']:.1f} GiB", flush=True)
    section = render(results)
    if args.write:
        write_section(args.write, section)
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
