"""What a slim deployment costs against a full one, written into BENCHMARKS.md (`make benchmark`):
in a copy of the project (its own git repository, DATAOPS_PROJECT_ROOT) on a DuckDB `ci` warehouse,
at each scale, after a first deployment, side by side in one run:

- `dataops deploy` with one staging model changed (slim: state:modified+) and `dataops deploy
  --full` with another change of that model, alternately, `--repeat` times each: the whole deploy
  (wall time of the process), the build stage alone, and every other stage (the fixed costs), as
  the deployment record times them; target: the slim deploy at most 20% of the full one;
- the guide's deploy.sh on the same change as the slim deploy, against the same state: dbt deps,
  dbt compile, dbt test --select state:modified+, a copy of target/, dbt run, dbt test, dbt docs
  generate, each the real dbt CLI (.venv/bin/dbt) in a process of its own, against the same
  project, profiles and warehouse;
- with `--baseline REF`, the same slim and full deploys with the dataops code of commit REF (its
  src/ first on PYTHONPATH), in a copy of their own at the first scale: before against after on
  the same machine in the same run.

    python scripts/benchmark_deploy.py [--scale 10 --scale 100] [--repeat 3] [--baseline REF] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import _emit, _section  # the shared BENCHMARKS.md framing

SECTION = "deploy"
LARGE_SCALE = 100.0
# Shown when the run leaves scale 100 out.
LARGE_SCALE_NOTE = (
    "Scale 100 is not in this run (`--scale 10 --scale 100` adds it; its first deployment alone takes minutes "
    "here): the fixed part of a deploy stays, the build part grows with the data."
)
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


def _latest_deployment(env: dict[str, str]) -> dict[str, Any]:
    """The newest deployment's record, read by the same dataops code that wrote it."""

    def dataops(*args: str) -> Any:
        done = subprocess.run([str(BIN / "dataops"), *args], env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    run_id = dataops("history", "--target", "ci", "--limit", "1", "--format", "json")["runs"][0]["run_id"]
    return dataops("history", "show", run_id, "--format", "json")


@dataclass
class Deploy:
    """One `dataops deploy` process: its wall time, and its record's build, stages and clock."""

    wall: float
    build: str
    models: int
    clock: float  # the deployment's own clock: from its first check to its record
    stages: dict[str, float]
    parses: int  # dbt parses, counted in dbt's log (one `Performance info:` line per parse)

    @property
    def outside(self) -> float:
        """Python's start, the imports, the record, the notification and the summary printed."""
        return self.wall - self.clock

    @property
    def unstaged(self) -> float:
        """Inside the clock but in no stage: provenance, the target's lock, the wait for Data Docs."""
        return self.clock - sum(self.stages.values())


def _parses(root: Path) -> int:
    log = root / "warehouse" / "artifacts" / "ci" / "logs" / "dbt.log"
    return log.read_text(encoding="utf-8").count("Performance info: ") if log.is_file() else 0


def _deploy(root: Path, env: dict[str, str], full: bool) -> Deploy:
    parses = _parses(root)
    wall = _run([str(BIN / "dataops"), "deploy", "--target", "ci", *(["--full"] if full else [])], env, root)
    record = _latest_deployment(env)
    deployment = record["deployment"]
    return Deploy(
        wall,
        deployment["build"],
        len(deployment["nodes_built"]),
        float(deployment["seconds"]),
        {stage["name"]: float(stage["seconds"]) for stage in record["stages"]},
        _parses(root) - parses,
    )


def _dbt_settings(env: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The ci target's environment for dbt and its vars, as dataops gives them (read in a process
    of its own: dataops reads DATAOPS_PROJECT_ROOT once, at import)."""
    code = (
        "import json; from dataops.core.config import load_settings; s = load_settings('ci'); "
        "print(json.dumps([s.dbt_env, s.dbt_vars]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dbt_env, dbt_vars = json.loads(done.stdout)
    return dbt_env, dbt_vars


def _dbt_common(root: Path, env: dict[str, str], target: Path) -> tuple[dict[str, str], list[str]]:
    """The environment and the arguments that make a `dbt` process run the ci target as dataops does."""
    extra_env, dbt_vars = _dbt_settings(env)
    project = root / "dbt"
    return {**env, **extra_env}, [
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target",
        "ci",
        "--target-path",
        str(target),
        "--vars",
        json.dumps(dbt_vars),
    ]


def _dbt_floor(root: Path, env: dict[str, str], state: str) -> float:
    """The least any slim deploy asks of dbt: one `dbt ls --select state:modified+` process (dbt's
    start and imports, a partial parse after a change of the model, the selection). A first process
    leaves the partial parse's state; the measured one follows another change of the model, which
    is then undone."""
    dbt_env, common = _dbt_common(root, env, root / "floor_target")
    command = [str(BIN / "dbt"), "ls", *common, "--select", "state:modified+", "--state", state, "--quiet"]
    _run(command, dbt_env, root)
    _edit(root, CHANGES["full"])
    seconds = _run(command, dbt_env, root)
    _edit(root, CHANGES["slim"])
    return seconds


def _guide_script(root: Path, env: dict[str, str], state: str, failures: list[str]) -> dict[str, float]:
    """The guide's deploy.sh, step by step, as dbt CLI processes (no Slack step: nothing to send to).
    A step that fails is noted and the next runs, so that every step is timed."""
    project = root / "dbt"
    target = root / "guide_target"
    dbt_env, common = _dbt_common(root, env, target)
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


@dataclass
class Scale:
    scale: float
    first: float
    slim: list[Deploy] = field(default_factory=list)
    full: list[Deploy] = field(default_factory=list)
    guide: dict[str, float] = field(default_factory=dict)
    guide_failures: list[str] = field(default_factory=list)
    dbt_floor: float | None = None


def measure(scale: float, repeat: int, code: Path | None = None, guide: bool = True) -> Scale:
    """Slim and full deploys, alternately (each with a change of the model against the deployment
    before it), then the guide's script. `code`: a src/ folder to run dataops from instead."""
    with tempfile.TemporaryDirectory(prefix="dataops-bench-deploy-") as folder:
        root = Path(folder)
        env = _copy_project(root)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        _run([str(BIN / "dataops"), "load", "--scale", f"{scale:g}", "--target", "ci"], env, root)
        first = _deploy(root, env, full=False)
        result = Scale(scale, first.wall)
        state = str(_latest_deployment(env)["deployment"]["artifacts"])
        changes = list(CHANGES.values())
        for turn in range(2 * repeat):
            _edit(root, changes[turn % 2])
            measured = _deploy(root, env, full=turn % 2 == 1)
            (result.full if turn % 2 else result.slim).append(measured)
        for deploy, expected in [*((d, "slim") for d in result.slim), *((d, "full") for d in result.full)]:
            if deploy.build != expected:
                raise SystemExit(f"expected a {expected} build at scale {scale:g}, got a {deploy.build} one")
        if guide:
            # The slim deploys' change, against the state they were first compared with.
            _edit(root, CHANGES["slim"])
            result.dbt_floor = _dbt_floor(root, env, state)
            result.guide = _guide_script(root, env, state, result.guide_failures)
    return result


def _baseline_code(ref: str, folder: Path) -> Path:
    """The src/ of commit `ref`, extracted (nothing in the checkout changes)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float]) -> str:
    """The median, and the range when measured more than once."""
    shown = f"{_median(values):.1f} s"
    return shown if len(values) == 1 else f"{shown} ({min(values):.1f}-{max(values):.1f})"


def _stage_median(deploys: list[Deploy], name: str) -> float:
    return _median([d.stages.get(name, 0.0) for d in deploys])


def _fixed(deploys: list[Deploy]) -> float:
    """Everything but the build stage: what a deploy costs whatever it builds."""
    return _median([d.wall - d.stages.get("build", 0.0) for d in deploys])


def _stage_names(scales: list[Scale]) -> list[str]:
    names: list[str] = []
    for result in scales:
        for deploy in [*result.slim, *result.full]:
            names.extend(name for name in deploy.stages if name not in names)
    return names


def render(scales: list[Scale], baseline: tuple[str, Scale] | None = None) -> str:
    repeat = len(scales[0].slim)
    intro = (
        "Reproduce with `make benchmark` (`python scripts/benchmark_deploy.py`): a copy of the project on a DuckDB "
        f"`ci` warehouse per scale, each command a process of its own, after a first deployment; {repeat} slim "
        f"and {repeat} full deploys alternately per scale, medians (range). Wall time is the process's; the stages "
        "are the deployment record's. Target: a slim deploy of one changed staging model "
        f"(`stg_territories`) at most {SHARE_TARGET:.0%} of a full deploy."
    )
    lines = [
        "| scale | models built, slim / full | **slim deploy** | full deploy | **slim / full** | build stage, slim "
        "| build stage, full | build slim / full | everything but the build, slim / full | first deploy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in scales:
        slim, full = _median([d.wall for d in r.slim]), _median([d.wall for d in r.full])
        build_slim, build_full = _stage_median(r.slim, "build"), _stage_median(r.full, "build")
        lines.append(
            f"| {r.scale:g} | {r.slim[0].models} / {r.full[0].models} | **{_spread([d.wall for d in r.slim])}** | "
            f"{_spread([d.wall for d in r.full])} | **{slim / full:.0%}** | {build_slim:.2f} s | {build_full:.2f} s | "
            f"{build_slim / build_full:.0%} | {_fixed(r.slim):.1f} s / {_fixed(r.full):.1f} s | {r.first:.1f} s |"
        )
    header = " | ".join(f"scale {r.scale:g} slim | scale {r.scale:g} full" for r in scales)
    lines += [
        "",
        "Where a deploy's time goes (medians, seconds; `parse` is the deployment's only parse, reused by the compile, "
        "the project checks, the plan's `dbt ls` and the build):",
        "",
        f"| stage | {header} |",
        "|---|" + "---:|" * (2 * len(scales)),
    ]
    for name in _stage_names(scales):
        cells = " | ".join(f"{_stage_median(r.slim, name):.2f} | {_stage_median(r.full, name):.2f}" for r in scales)
        lines.append(f"| {name} | {cells} |")
    for label, value in (
        ("inside the deployment's clock, in no stage (provenance, the target's lock, the wait for Data Docs)", "in"),
        ("outside it (Python's start and imports, the record, the notification, the summary printed)", "out"),
    ):
        cells = " | ".join(
            " | ".join(
                f"{_median([(d.unstaged if value == 'in' else d.outside) for d in deploys]):.2f}"
                for deploys in (r.slim, r.full)
            )
            for r in scales
        )
        lines.append(f"| {label} | {cells} |")
    if baseline is not None:
        ref, before = baseline
        now = next(r for r in scales if r.scale == before.scale)
        lines += [
            "",
            f"Before and after, same machine, same run, scale {before.scale:g}: the dataops code of `{ref}` against "
            "this one:",
            "",
            "| code | slim deploy | full deploy | slim / full | everything but the build, slim "
            "| dbt parses per deploy |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, r in ((f"`{ref}`", before), ("this commit", now)):
            slim, full = _median([d.wall for d in r.slim]), _median([d.wall for d in r.full])
            parses = "/".join(str(n) for n in sorted({d.parses for d in [*r.slim, *r.full]}))
            lines.append(
                f"| {label} | {_spread([d.wall for d in r.slim])} | {_spread([d.wall for d in r.full])} | "
                f"{slim / full:.0%} | {_fixed(r.slim):.1f} s | {parses} |"
            )
    for r in scales:
        if not r.guide:
            continue
        full = _median([d.wall for d in r.full])
        total = sum(r.guide.values())
        lines += [
            "",
            f"The guide's deploy.sh on the slim deploy's change at scale {r.scale:g}: {total:.1f} s, "
            f"{total / full:.0%} of `dataops deploy --full` (each step a `dbt` process; it publishes nothing, records "
            "nothing, and tests after `dbt run` has already replaced what was there). Steps that failed: "
            + (", ".join(r.guide_failures) or "none")
            + " (its `dbt test --select state:modified+` runs before `dbt run`, on whatever the warehouse holds then).",
            "",
            "| step | wall time |",
            "|---|---:|",
            *(f"| {step} | {seconds:.1f} s |" for step, seconds in r.guide.items()),
        ]
    if all(r.scale != LARGE_SCALE for r in scales):
        lines += ["", LARGE_SCALE_NOTE]
    lines += ["", _verdict(scales), ""]
    return _section(SECTION, "Slim deploy versus full deploy and the guide's script", intro, lines)


def _verdict(scales: list[Scale]) -> str:
    """Whether the target is met, and what stops it: the numbers of this run."""
    parts = []
    for r in scales:
        slim, full = _median([d.wall for d in r.slim]), _median([d.wall for d in r.full])
        build_slim, build_full = _stage_median(r.slim, "build"), _stage_median(r.full, "build")
        floor = _fixed(r.slim) / full
        parts.append(
            f"at scale {r.scale:g} the slim deploy is {slim / full:.0%} of the full one "
            f"({'within' if slim / full <= SHARE_TARGET else 'not within'} the {SHARE_TARGET:.0%} target): "
            f"{_fixed(r.slim):.1f} s of its {slim:.1f} s is what every deploy costs whatever it builds "
            f"({floor:.0%} of the full deploy on its own), and its build stage is {build_slim:.1f} s against "
            f"{build_full:.1f} s ({build_slim / build_full:.0%})"
            + (
                f"; dbt's own least for a slim selection (one `dbt ls --select state:modified+` process: start, "
                f"partial parse, selection) is {r.dbt_floor:.1f} s, {r.dbt_floor / full:.0%} of the full deploy"
                if r.dbt_floor is not None
                else ""
            )
        )
    return "Target: " + "; ".join(parts) + "."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable (default: 10)")
    parser.add_argument("--repeat", type=int, default=3, help="slim and full deploys per scale")
    parser.add_argument("--baseline", help="a commit whose dataops code to measure too, at the first scale")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    scales = args.scale or [10.0]
    measured = [measure(scale, args.repeat) for scale in scales]
    baseline = None
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="dataops-bench-baseline-") as folder:
            code = _baseline_code(args.baseline, Path(folder))
            baseline = (args.baseline, measure(scales[0], args.repeat, code=code, guide=False))
    return _emit(render(measured, baseline), args.write)


if __name__ == "__main__":
    sys.exit(main())
