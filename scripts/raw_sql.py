"""The engine's own time for a build: the SQL dbt compiled, run directly in one DuckDB connection.

Reads the manifest of a finished `dataops run` on DuckDB and runs, in a copy of its warehouse file
(the candidate file a fresh, empty one), every model's compiled SQL as `CREATE OR REPLACE VIEW` or
`TABLE ... AS` in dependency order, then every data test's as `SELECT count(*)` of its failing
rows: the work of a build without dbt around it (no parse, no threads, no adapter, no
artifacts, no `__dbt_tmp` swap). dbt's unit tests are left out: the manifest keeps no SQL for them
(they read fixtures, not the data). Prints JSON: seconds for the models and for the tests, and
the tests that found rows.

    python scripts/raw_sql.py MANIFEST WAREHOUSE_FILE [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

MATERIALIZED_AS = {"view": "VIEW", "table": "TABLE", "incremental": "TABLE"}


def executable_nodes(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The models and data tests the build compiled, parents before children."""
    nodes = {
        unique_id: node
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "test") and node.get("compiled_code")
    }
    graph = {uid: [p for p in node["depends_on"]["nodes"] if p in nodes] for uid, node in nodes.items()}
    return [nodes[uid] for uid in TopologicalSorter(graph).static_order()]


def statement(node: dict[str, Any]) -> str:
    sql = node["compiled_code"].rstrip().rstrip(";")
    if node["resource_type"] == "test":
        return f"SELECT count(*) FROM (\n{sql}\n) AS raw_test"
    kind = MATERIALIZED_AS[node["config"]["materialized"]]
    return f"CREATE OR REPLACE {kind} {node['relation_name']} AS (\n{sql}\n)"


def run_raw(manifest: dict[str, Any], warehouse: Path, scratch: Path) -> dict[str, Any]:
    import duckdb

    nodes = executable_nodes(manifest)
    # The same catalog names as dbt's: the warehouse file's stem, and `candidate` attached.
    copy = scratch / warehouse.name
    shutil.copyfile(warehouse, copy)
    started = time.perf_counter()
    connection = duckdb.connect(str(copy))
    connection.execute(f"ATTACH '{scratch / 'candidate.duckdb'}' AS candidate")
    for database, schema in sorted({(n["database"], n["schema"]) for n in nodes if n["resource_type"] == "model"}):
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"."{schema}"')
    seconds = {"model": 0.0, "test": 0.0}
    failing: dict[str, int] = {}
    for node in nodes:
        node_started = time.perf_counter()
        result = connection.execute(statement(node)).fetchall()
        seconds[node["resource_type"]] += time.perf_counter() - node_started
        if node["resource_type"] == "test" and result[0][0]:
            failing[node["name"]] = int(result[0][0])
    connection.close()
    return {
        "models": sum(n["resource_type"] == "model" for n in nodes),
        "tests": sum(n["resource_type"] == "test" for n in nodes),
        "models_seconds": round(seconds["model"], 2),
        "tests_seconds": round(seconds["test"], 2),
        "seconds": round(time.perf_counter() - started, 2),
        "failing_tests": failing,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="manifest.json of the run (artifacts/<target>/dbt/)")
    parser.add_argument("warehouse", type=Path, help="the DuckDB warehouse file the run built in")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="raw-sql-") as scratch:
        result = run_raw(manifest, args.warehouse, Path(scratch))
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
