"""The GitHub Actions workflows: valid against the schemas check-jsonschema ships (offline), and wired
as CONTRIBUTING.md says a change travels: lint and test on every change, docs as an artifact,
`dataops deploy` to staging from develop and to production from main behind required reviewers,
each deploy job reading exactly the variables its target's profile and the notification need."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataops.cli.main import app
from dataops.core.config import load_settings
from dataops.ops.notify import WEBHOOK_ENV_VAR

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
CHECK_JSONSCHEMA = ROOT / ".venv" / "bin" / "check-jsonschema"
# deploy job -> (branch, GitHub environment, dbt target)
DEPLOYS = {
    "deploy-dev": ("develop", "staging", "staging"),
    "deploy-prod": ("main", "production", "prod"),
}
SECRET_FIELDS = ("PASSWORD",)


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job's steps with each local composite action's steps in its place."""
    steps: list[dict[str, Any]] = []
    for step in job.get("steps", []):
        uses = step.get("uses", "")
        steps += _steps(_load(ROOT / uses / "action.yml")["runs"]) if uses.startswith("./") else [step]
    return steps


def _ci() -> dict[str, Any]:
    return _load(ROOT / ".github" / "workflows" / "ci.yml")


@pytest.mark.skipif(not CHECK_JSONSCHEMA.exists(), reason="run `make install` first")
@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", ACTIONS)],
    ids=["workflows", "actions"],
)
def test_every_workflow_and_action_passes_its_schema_offline(schema: str, files: list[Path], tmp_path: Path) -> None:
    assert files
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The validation above can fail: a job without `runs-on` is refused."""
    broken = _ci()
    del broken["jobs"]["test"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "runs-on" in result.stdout + result.stderr


def test_lint_runs_ruff_sqlfluff_and_the_workflow_check_and_test_runs_make_test() -> None:
    jobs = _ci()["jobs"]
    lint = " ".join(step.get("run", "") for step in _steps(jobs["lint"]))
    assert "make lint" in lint and "pre-commit run" in lint
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for command in (
        "ruff check",
        "scripts/sqlfluff_dbt.py lint dbt/models",
        "--builtin-schema vendor.github-workflows",
    ):
        assert command in target, f"make lint does not run {command}"
    assert any(step.get("run", "").strip() == "make test" for step in _steps(jobs["test"]))


def test_the_docs_job_uploads_the_generated_docs_site() -> None:
    steps = _steps(_ci()["jobs"]["docs"])
    assert any(".venv/bin/dataops run --target ci" in step.get("run", "") for step in steps)
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    for name in ("index.html", "manifest.json", "catalog.json"):
        assert f"warehouse/artifacts/ci/dbt/{name}" in upload["with"]["path"]
    assert upload["with"]["if-no-files-found"] == "error"


@pytest.mark.parametrize("job_name", sorted(DEPLOYS))
def test_each_deploy_job_deploys_its_target_from_its_branch_after_lint_and_test(job_name: str) -> None:
    branch, environment, target = DEPLOYS[job_name]
    job = _ci()["jobs"][job_name]
    assert set(job["needs"]) == {"lint", "test"}
    assert f"github.ref == 'refs/heads/{branch}'" in job["if"] and "github.event_name == 'push'" in job["if"]
    assert job["environment"] == environment
    # One deployment per target at a time, and a newer push never cancels one half-way.
    assert job["concurrency"]["cancel-in-progress"] is False
    (deploy,) = [step for step in job["steps"] if step.get("uses") == "./.github/actions/deploy"]
    assert deploy["with"]["target"] == target
    runs = [step.get("run", "") for step in _steps(job)]
    assert any(shlex.split(run)[:3] == [".venv/bin/dataops", "deploy", "--target"] for run in runs if run.strip())


@pytest.mark.parametrize("job_name", sorted(DEPLOYS))
def test_each_deploy_job_reads_its_targets_credentials_and_the_webhook_from_the_environment(job_name: str) -> None:
    target = DEPLOYS[job_name][2]
    env = _ci()["jobs"][job_name]["env"]
    profile = {v.name: v for v in load_settings(target).profile_variables()}
    dbt_names = {name for name in env if name.startswith("DBT_")}
    # Every variable the profile requires, and none it does not read (a typo would be silently unused).
    assert {name for name, v in profile.items() if v.required} <= dbt_names <= set(profile)
    for name in dbt_names:
        source = "secrets" if any(field in name for field in SECRET_FIELDS) else "vars"
        assert re.fullmatch(rf"\$\{{\{{ {source}\.{name}( \|\| '[^']*')? \}}\}}", env[name]), f"{name}: {env[name]}"
    assert env[WEBHOOK_ENV_VAR] == f"${{{{ secrets.{WEBHOOK_ENV_VAR} }}}}"
    assert env["DATAOPS_HISTORY_URL"] == "${{ secrets.DATAOPS_HISTORY_URL }}"


def test_a_running_deployment_is_never_cancelled_by_a_newer_push() -> None:
    cancel = _ci()["concurrency"]["cancel-in-progress"]
    assert "refs/heads/main" in cancel and "refs/heads/develop" in cancel


def test_every_dataops_command_a_workflow_runs_exists() -> None:
    known = {command.name or command.callback.__name__ for command in app.registered_commands}
    known |= {group.name for group in app.registered_groups}
    used = set()
    for path in WORKFLOWS:
        for job in _load(path)["jobs"].values():
            for step in _steps(job):
                used |= set(re.findall(r"\.venv/bin/dataops (\w[\w-]*)", step.get("run", "")))
    assert {"deploy", "run", "load"} <= used
    assert used <= known, f"the workflows run dataops commands that do not exist: {sorted(used - known)}"
