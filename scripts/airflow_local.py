"""make airflow / make dag-test: Airflow on this machine, with the project's DAGs and settings.

python scripts/airflow_local.py standalone           # make airflow
python scripts/airflow_local.py dag-test [--scale N]  # make dag-test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from dataops.airflow.local import airflow_env, dag_test, load_throwaway, prepare, standalone, throwaway_env
from dataops.core.config import PROJECT_ROOT


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
        env = throwaway_env(Path(scratch))
        print(load_throwaway(env, args.scale), flush=True)
        prepare(env)
        result = dag_test(env, args.dag)
        for task, state in sorted(result.states.items()):
            print(f"{state or '-':<16} {task}")
        print(f"{args.dag}: {'all tasks succeeded' if result.succeeded else 'FAILED'}")
        return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
