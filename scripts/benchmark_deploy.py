"""What a slim deployment saves, written into BENCHMARKS.md (`make benchmark`): in a copy of the
project (its own git repository, DATAOPS_PROJECT_ROOT) on a DuckDB `ci` warehouse at scale 10,
after a first deployment,

- `dataops deploy` with one staging model changed (slim: state:modified+) against `dataops deploy
  --full` with another change of that model; target: the slim deploy at most 20% of the full one;
- the guide's deploy.sh on the same change as the slim deploy, against the same state: dbt deps,
  dbt compile, dbt test --select state:modified+, a copy of target/, dbt run, dbt test, dbt docs
  generate, each the real dbt CLI (.venv/bin/dbt) in a process of its own, against the same
  project, profiles and warehouse.

    python scripts/benchmark_deploy.py [--scale 10] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import _emit, _section  # the shared BENCHMARKS.md framing

SECTION = "deploy"
SHARE_TARGET = 0.20
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = Path("dbt/models/staging/sales/stg_territories.sql")
ORIGINAL = '"Name" as territory_name'
CHANGES = {"slim": 'upper("Name") as territory_name', "full": 'lower("Name") as territory_name'}


def _run(command: list[str], env: dict[str, str], cwd: Path, failures: list[str] | None = None) -> float:
    """Wall seconds of one command; a failure stops the benchmark, unless `failures` collects it."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 and failures is not None:
        failures.append(f"`{' '.join(command[:2]).rsplit('/', 1)[-1]}` exited {done.returncode}")
    elif done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        )
    return seconds


def _copy_project(root: Path) -> dict[str, str]:
    for name in ("dbt", "gx"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copy2(ROOT / "environments.yml", root / "environments.yml")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATAOPS_", "GIT_"))}
    env.update(
        DATAOPS_PROJECT_ROOT=str(root),
        DATAOPS_WAREHOUSE_DIR=str(root / "warehouse"),
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
    )
    for command in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "chore: benchmark copy"]):
        subprocess.run(["git", "-C", str(root), *command], env=env, check=True)
    return env


def _edit(root: Path, change: str) -> None:
    path = root / MODEL
    text = path.read_text(encoding="utf-8")
    current = next(old for old in (ORIGINAL, *CHANGES.values()) if old in text)
    path.write_text(text.replace(current, change), encoding="utf-8")


def _latest_deployment(root: Path) -> dict[str, object]:
    done = subprocess.run(
        [str(BIN / "dataops"), "history", "--target", "ci", "--limit", "1", "--format", "json"],
        env={**os.environ, "DATAOPS_WAREHOUSE_DIR": str(root / "warehouse")},
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = json.loads(done.stdout)["runs"][0]["run_id"]
    shown = subprocess.run(
        [str(BIN / "dataops"), "history", "show", run_id, "--format", "json"],
        env={**os.environ, "DATAOPS_WAREHOUSE_DIR": str(root / "warehouse")},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)


def _guide_script(root: Path, env: dict[str, str], state: str, failures: list[str]) -> dict[str, float]:
    """The guide's deploy.sh, step by step, as dbt CLI processes (no Slack step: nothing to send to).
    A step that fails is noted and the next runs, so that every step is timed."""
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.update({k: v for k, v in env.items() if k.startswith("DATAOPS_")})
    from dataops.core.config import load_settings

    settings = load_settings("ci")
    dbt_env = {**env, **settings.dbt_env}
    project = root / "dbt"
    target = root / "guide_target"
    common = [
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target",
        "ci",
        "--target-path",
        str(target),
        "--vars",
        json.dumps(settings.dbt_vars),
    ]
    dbt = str(BIN / "dbt")
    steps: dict[str, float] = {}
    deps = [dbt, "deps", "--project-dir", str(project), "--profiles-dir", str(project)]
    steps["dbt deps"] = _run(deps, dbt_env, root, failures)
    steps["dbt compile"] = _run([dbt, "compile", *common], dbt_env, root, failures)
    steps["dbt test state:modified+"] = _run(
        [dbt, "test", *common, "--select", "state:modified+", "--state", state], dbt_env, root, failures
    )
    started = time.perf_counter()
    shutil.copytree(target, root / "guide_target_backup", dirs_exist_ok=True)
    steps["back up target/"] = time.perf_counter() - started
    steps["dbt run"] = _run([dbt, "run", *common], dbt_env, root, failures)
    steps["dbt test"] = _run([dbt, "test", *common], dbt_env, root, failures)
    steps["dbt docs generate"] = _run([dbt, "docs", "generate", *common], dbt_env, root, failures)
    return steps


def measure(scale: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="dataops-bench-deploy-") as folder:
        root = Path(folder)
        env = _copy_project(root)
        dataops = str(BIN / "dataops")
        _run([dataops, "load", "--scale", f"{scale:g}", "--target", "ci"], env, root)
        first = _run([dataops, "deploy", "--target", "ci"], env, root)
        state = str(_latest_deployment(root)["deployment"]["artifacts"])  # type: ignore[index]
        _edit(root, CHANGES["slim"])
        slim = _run([dataops, "deploy", "--target", "ci"], env, root)
        slim_record = _latest_deployment(root)["deployment"]
        _edit(root, CHANGES["full"])
        full = _run([dataops, "deploy", "--target", "ci", "--full"], env, root)
        full_record = _latest_deployment(root)["deployment"]
        _edit(root, CHANGES["slim"])  # the slim deploy's change, against the state it compared with
        failures: list[str] = []
        guide = _guide_script(root, env, state, failures)
    assert isinstance(slim_record, dict) and isinstance(full_record, dict)
    if slim_record["build"] != "slim" or full_record["build"] != "full":
        raise SystemExit(f"expected a slim and a full build, got {slim_record['build']} and {full_record['build']}")
    return {
        "scale": scale,
        "first": first,
        "slim": slim,
        "full": full,
        "guide": guide,
        "slim_models": len(slim_record["nodes_built"]),
        "full_models": len(full_record["nodes_built"]),
        "guide_failures": failures,
    }


def render(result: dict[str, object]) -> str:
    slim, full, first = float(result["slim"]), float(result["full"]), float(result["first"])  # type: ignore[arg-type]
    guide = result["guide"]
    assert isinstance(guide, dict)
    guide_total = sum(guide.values())
    share = slim / full
    intro = (
        f"Reproduce with `make benchmark` (`python scripts/benchmark_deploy.py`): a copy of the project on a "
        f"DuckDB `ci` warehouse at scale {result['scale']:g}, each command a process of its own, wall time, "
        f"after a first deployment ({first:.1f} s). Target: a slim deploy of one changed staging model at most "
        f"{SHARE_TARGET:.0%} of a full deploy."
    )
    lines = [
        "| deployment | models built | wall time | share of the full deploy |",
        "|---|---:|---:|---:|",
        f"| `dataops deploy` (slim: `stg_territories` changed) | {result['slim_models']} | **{slim:.1f} s** | "
        f"**{share:.0%}** |",
        f"| `dataops deploy --full` (the same model changed) | {result['full_models']} | {full:.1f} s | 100% |",
        f"| the guide's deploy.sh on the slim deploy's change | all ({result['full_models']}) | {guide_total:.1f} s | "
        f"{guide_total / full:.0%} |",
        "",
        "The guide's script, step by step (each a `dbt` process; it publishes nothing, records nothing, and "
        "tests after `dbt run` has already replaced what was there):",
        "",
        "| step | wall time |",
        "|---|---:|",
        *(f"| {step} | {seconds:.1f} s |" for step, seconds in guide.items()),
        "",
        "Steps that failed in the script: "
        + (", ".join(result["guide_failures"]) or "none")  # type: ignore[arg-type]
        + " (its `dbt test --select state:modified+` runs before `dbt run`, on whatever the warehouse holds then; "
        "see the dbt log of the run for the errors).",
        "",
        f"Slim deploy within target: **{'yes' if share <= SHARE_TARGET else 'no'}** ({share:.0%} of the full deploy). "
        "Both `dataops deploy` runs include what the script does not: doctor, the project checks, source freshness, "
        "the Great Expectations suites, the smoke checks and data diff, the atomic publish and the record.",
        "",
    ]
    return _section(SECTION, "Slim deploy versus full deploy and the guide's script", intro, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    return _emit(render(measure(args.scale)), args.write)


if __name__ == "__main__":
    sys.exit(main())
