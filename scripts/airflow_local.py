"""make airflow / make dag-test: Airflow on this machine, with the project's DAGs and settings.

    python scripts/airflow_local.py standalone           # make airflow
    python scripts/airflow_local.py dag-test [--scale N]  # make dag-test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from dataops.airflow_local import BIN, airflow_env, dag_test, prepare, standalone
from dataops.config import PROJECT_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["standalone", "dag-test"])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--dag", default="adventureworks_pipeline")
    args = parser.parse_args()
    if args.command == "standalone":
        env = airflow_env(PROJECT_ROOT / "warehouse" / "airflow", PROJECT_ROOT / "warehouse")
        prepare(env)
        return standalone(env)
    with tempfile.TemporaryDirectory(prefix="dataops-dag-test-") as scratch:
        env = airflow_env(Path(scratch) / "airflow", Path(scratch) / "warehouse", DATAOPS_TASK_RETRIES="0")
        subprocess.run([str(BIN / "dataops"), "load", "--scale", str(args.scale)], env=env, check=True)
        prepare(env)
        result = dag_test(env, args.dag)
        for task, state in sorted(result.states.items()):
            print(f"{state or '-':<16} {task}")
        print(f"{args.dag}: {'all tasks succeeded' if result.succeeded else 'FAILED'}")
        return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
