"""The dbt project as a team runs it, with the ecosystem's packages beside it (dbt Hub is out of
reach here, so they come from ../shared/dbt_packages as `local:` packages, into throwaway copies):

- dbt-labs' dbt-project-evaluator passes every one of its checks, with only the exceptions the
  project declares (its exceptions seed, each with the reason);
- with dbt_utils installed, every one of our tests compiles to exactly the SQL it compiles to
  without it (none of our generic tests' implementations shadows a dbt_utils one, nor the other
  way round), so the detection matrix's results hold unchanged; and a pipeline run passes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dbt.cli.main import dbtRunner

from dataops.core.config import DBT_PROJECT_DIR, PROJECT_ROOT, Settings
from dataops.project.runner import DbtProject

# tests/project_copy.py: tests/ is on sys.path under pytest's default import mode.
from project_copy import ProjectCopy, copy_project

pytestmark = pytest.mark.integration

PACKAGES_DIR = PROJECT_ROOT.parent / "shared" / "dbt_packages"
DBT_UTILS, EVALUATOR = "dbt_utils", "dbt_project_evaluator"
# The evaluator's 77 models and tests, and the exceptions seed they read (78, as its SOURCE.md
# counts them with the package's own seed): a run with fewer did not run every check.
EVALUATOR_NODES = 78
EXCEPTIONS_SEED = "dbt_project_evaluator_exceptions"


@pytest.fixture(autouse=True)
def _packages_at_hand() -> None:
    if not (PACKAGES_DIR / DBT_UTILS).is_dir() or not (PACKAGES_DIR / EVALUATOR).is_dir():
        pytest.skip(f"the dbt packages are not at {PACKAGES_DIR} (../shared/dbt_packages)")


def install_packages(project: Path, *packages: str) -> None:
    """What a team does to install `packages` (dbt_utils first: the evaluator depends on it), with
    `local:` in place of the Hub, then `dbt deps` (offline, local packages only)."""
    locals_ = [{"local": str(PACKAGES_DIR / name)} for name in packages]
    (project / "packages.yml").write_text(yaml.safe_dump({"packages": locals_}), encoding="utf-8")
    if EVALUATOR in packages:
        config_file = project / "dbt_project.yml"
        config: dict[str, Any] = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        # The evaluator's setup: its dispatch order for dbt's macros, and its own (empty)
        # exceptions seed off, so that it reads ours.
        config["dispatch"] = [{"macro_namespace": "dbt", "search_order": [EVALUATOR, "dbt"]}]
        config["seeds"][EVALUATOR] = {EXCEPTIONS_SEED: {"+enabled": False}}
        config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    done = dbtRunner().invoke(["deps", "--project-dir", str(project), "--log-level", "none"])
    assert done.success, done.exception
    assert sorted(p.name for p in (project / "dbt_packages").iterdir()) == sorted(packages)


def copy_dbt_project(destination: Path, *packages: str) -> Path:
    shutil.copytree(DBT_PROJECT_DIR, destination, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    install_packages(destination, *packages)
    return destination


def test_dbt_project_evaluator_passes_with_only_declared_exceptions(tmp_path: Path, settings: Settings) -> None:
    project = copy_dbt_project(tmp_path / "dbt", DBT_UTILS, EVALUATOR)
    evaluator = DbtProject(settings, dbt_vars={EVALUATOR: True}, project_dir=project)
    # The evaluator reads the graph alone: nothing of ours needs building first but the seed of
    # exceptions, which its models read and which lives in our project, not the package.
    result = evaluator.build(select=[f"package:{EVALUATOR}", EXCEPTIONS_SEED])
    statuses = {r.node.unique_id: (str(r.status), r.message) for r in result.result.results}
    not_passed = {node: status for node, status in statuses.items() if status[0] not in ("pass", "success")}
    assert not_passed == {}, "\n".join(f"{node}: {status} {message}" for node, (status, message) in not_passed.items())
    assert result.success and len(statuses) == EVALUATOR_NODES, sorted(statuses)
    # Our exceptions were the ones applied: the seed the evaluator read is ours, not its empty one.
    assert f"seed.adventureworks.{EXCEPTIONS_SEED}" in statuses


@pytest.fixture(scope="module")
def beside_dbt_utils(tmp_path_factory: pytest.TempPathFactory) -> ProjectCopy:
    """A copy of the whole project (dbt, gx, environments) with dbt_utils installed."""
    copy = copy_project(tmp_path_factory.mktemp("with-dbt-utils"), "Uma Utils", "uma@example.com")
    install_packages(copy.root / "dbt", DBT_UTILS)
    return copy


def _compiled_tests(project: DbtProject) -> dict[str, tuple[str, str]]:
    """Each of our tests' (generic test's name, compiled SQL), by unique id."""
    result = project.compile_offline()
    assert result.success, result.exception
    return {
        r.node.unique_id: (getattr(r.node, "test_metadata", None) and r.node.test_metadata.name, r.node.compiled_code)
        for r in result.result.results
        if r.node.resource_type in ("test", "unit_test") and r.node.package_name == "adventureworks"
    }


def test_with_dbt_utils_installed_every_test_compiles_to_the_same_sql(
    beside_dbt_utils: ProjectCopy, settings: Settings
) -> None:
    """The same SQL on the same data gives the same result: what the detection matrix proves of our
    tests without dbt_utils holds with it (scripts/detection_matrix.py run on such a copy agrees)."""
    alone = _compiled_tests(DbtProject(settings, compile_only=True))
    with_dbt_utils = _compiled_tests(DbtProject(settings, project_dir=beside_dbt_utils.root / "dbt", compile_only=True))
    # Every generic test we wrote in place of a package's is among them, dbt_utils' namesakes included.
    ours = {"accepted_range", "equal_rowcount", "recency", "matches_regex", "column_type"}
    assert ours <= {name for name, _ in alone.values()}
    assert with_dbt_utils == alone


def test_a_pipeline_run_passes_with_dbt_utils_installed(
    beside_dbt_utils: ProjectCopy, project_manifest: dict[str, Any]
) -> None:
    run = beside_dbt_utils.dataops("run", "--scale", "0.1", "--target", "ci", "--no-docs")
    assert run.returncode == 0, run.stdout + run.stderr
    record = beside_dbt_utils.history.latest("ci")
    assert record is not None and record.status == "passed" and record.publish is not None, record
    # Every model of ours, and nothing of the package's (dbt_utils has no models) nor a seed.
    models = sum(1 for node in project_manifest["nodes"].values() if node["resource_type"] == "model")
    assert record.publish.status == "published" and record.models_built == models, record
