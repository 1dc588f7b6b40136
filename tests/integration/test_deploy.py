"""`dataops deploy` and `dataops changes` for real, in a copy of the project (its own git repository,
found through DATAOPS_PROJECT_ROOT) on a DuckDB `ci` warehouse of scale-0.1 data: the first deploy
builds everything; with one staging model edited the next builds that model and its descendants
only, and publishes the marts a full build publishes; a change that breaks a test publishes
nothing, sends the failure to a real webhook receiver and is recorded. Each step is the CLI in a
process of its own, as CI runs it; the steps build on each other, in this order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataops.history.records import RunRecord
from project_copy import ProjectCopy, copy_project  # tests/project_copy.py
from webhook_receiver import serve

EDITED = Path("dbt/models/staging/sales/stg_territories.sql")
NAME_COLUMN = '"Name" as territory_name'
# Not a no-op: the deployed marts must show it, or a deploy that rebuilt nothing would pass too.
UPPER_NAMES = 'upper("Name") as territory_name'
BROKEN_KEY = '"TerritoryID" as territory_id'


@dataclass
class Project(ProjectCopy):
    def deploy(self, *args: str, extra_env: dict[str, str] | None = None) -> tuple[int, RunRecord]:
        done = self.dataops("deploy", "--target", "ci", *args, extra_env=extra_env)
        latest = self.history.latest("ci", kind="deploy")
        assert latest is not None, done.stdout + done.stderr
        return done.returncode, latest

    def edit(self, old: str, new: str) -> None:
        path = self.root / EDITED
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")

    def parses(self) -> int:
        """dbt parses so far on the ci target: dbt logs where it wrote its parse timings once per parse."""
        log = self.warehouse / "artifacts" / "ci" / "logs" / "dbt.log"
        return log.read_text(encoding="utf-8").count("Performance info: ") if log.is_file() else 0

    def manifest(self, record: RunRecord) -> dict[str, object]:
        assert record.deployment is not None and record.deployment.artifacts is not None
        return json.loads((Path(record.deployment.artifacts) / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The copy (dbt/, environments.yml, gx/; committed by a known author on `main`), its sources
    loaded at scale 0.1, and its first deployment."""
    root = tmp_path_factory.mktemp("project")
    copy = Project(**vars(copy_project(root, "Dana Deployer", "dana@example.com")))
    loaded = copy.dataops("load", "--scale", "0.1", "--target", "ci")
    assert loaded.returncode == 0, loaded.stderr
    yield copy


@pytest.fixture(scope="module")
def first(project: Project) -> RunRecord:
    code, record = project.deploy()
    assert code == 0, record.error
    return record


def _models(manifest: dict[str, object]) -> set[str]:
    nodes = manifest["nodes"]
    assert isinstance(nodes, dict)
    return {uid for uid, node in nodes.items() if node["resource_type"] == "model"}


def _descendants(manifest: dict[str, object], unique_id: str) -> set[str]:
    children = manifest["child_map"]
    assert isinstance(children, dict)
    found, todo = {unique_id}, [unique_id]
    while todo:
        for child in children[todo.pop()]:
            if child.startswith("model.") and child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_the_first_deploy_builds_everything_and_keeps_its_manifest(project: Project, first: RunRecord) -> None:
    deployment = first.deployment
    assert deployment is not None
    assert (first.kind, first.status, deployment.outcome, deployment.build) == ("deploy", "passed", "deployed", "full")
    assert deployment.reason == "first deployment to ci"
    assert set(deployment.nodes_built) == _models(project.manifest(first))
    assert deployment.published_version == 1 and deployment.tests_failed == 0 and deployment.tests_passed > 100
    assert deployment.git_commit == project.git("rev-parse", "HEAD") and not deployment.dirty
    assert (deployment.branch, deployment.author) == ("main", "Dana Deployer <dana@example.com>")
    assert deployment.commit_time == project.git("show", "-s", "--format=%cI", "HEAD")
    assert deployment.notification == "not sent: no webhook set (DATAOPS_WEBHOOK_URL)"
    stages = [stage.name for stage in first.stages]
    assert stages[:5] == ["doctor", "parse", "compile", "checks", "plan"]
    assert {"build", "quality", "publish"} <= set(stages) and stages.count("parse") == 1
    assert (Path(deployment.artifacts or "") / "run_results.json").is_file()


def test_changes_lists_the_edited_model_and_its_descendants(project: Project, first: RunRecord) -> None:
    project.edit(NAME_COLUMN, UPPER_NAMES)
    done = project.dataops("changes", "--base", "main")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "### Models Affected"
    assert "- [ ] `stg_territories` (modified)" in done.stdout
    assert "- [ ] `dim_territories` (downstream of a change)" in done.stdout
    assert len([line for line in done.stdout.splitlines() if line.startswith("- [ ]")]) == 2
    wrong = project.dataops("changes", "--base", "no-such-branch")
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "--base no-such-branch: no such commit" in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_slim_deploy_builds_only_the_edited_model_and_its_descendants(project: Project, first: RunRecord) -> None:
    parses_before = project.parses()
    code, record = project.deploy()
    # One parse serves the compile, the project checks, the plan's `dbt ls` and the build.
    assert project.parses() - parses_before == 1
    deployment = record.deployment
    assert code == 0 and deployment is not None, record.error
    assert (deployment.outcome, deployment.build, deployment.state_of) == ("deployed", "slim", first.run_id)
    assert deployment.changed_models == ["model.adventureworks.stg_territories"] and deployment.dirty
    expected = _descendants(project.manifest(first), "model.adventureworks.stg_territories")
    built = {node.unique_id for node in record.nodes if node.kind == "model" and node.level == "ok"}
    assert built == set(deployment.nodes_built) == expected
    assert len(built) < len(_models(project.manifest(first)))
    assert deployment.published_version == 2 and deployment.previous_version == 1
    # The change reached the published marts; nothing else moved.
    assert record.publish is not None
    diffs = {d.mart: (d.added, d.removed, d.changed) for d in record.publish.diffs}
    assert diffs.pop("dim_territories")[2] > 0 and set(diffs.values()) == {(0, 0, 0)}


def test_the_marts_a_slim_deploy_published_equal_those_of_a_full_build(project: Project) -> None:
    code, record = project.deploy("--full")
    deployment = record.deployment
    assert code == 0 and deployment is not None, record.error
    assert (deployment.build, deployment.reason) == ("full", "--full")
    assert set(deployment.nodes_built) == _models(project.manifest(record))
    assert record.publish is not None and len(record.publish.diffs) == 5
    assert all((d.added, d.removed, d.changed) == (0, 0, 0) for d in record.publish.diffs), record.publish.diffs


def test_a_deploy_that_breaks_a_test_publishes_nothing_and_says_so(project: Project) -> None:
    project.edit(BROKEN_KEY, "cast(null as integer) as territory_id")
    with serve() as receiver:
        code, record = project.deploy(extra_env={"DATAOPS_WEBHOOK_URL": receiver.url})
    deployment = record.deployment
    assert code == 1 and deployment is not None
    assert (record.status, deployment.outcome, deployment.build) == ("failed", "failed", "slim"), deployment.reason
    assert deployment.published_version is None and deployment.previous_version == 3 and deployment.tests_failed > 0
    versions = project.dataops("versions", "--target", "ci")
    assert "v3 (published)" in versions.stdout and "v4" not in versions.stdout
    assert deployment.notification == "sent" and len(receiver.received) == 1
    message = receiver.received[0].json
    assert message["text"].startswith(":red_circle: dataops deploy to ci failed: nothing published, consumers keep v3")
    for fact in (
        "*Environment:* ci",
        "*Changed models:* stg_territories",
        "failed",
        "*Data diff:*",
        "*Duration:*",
        "dataops rollback --target ci --to 2",
        "not_null on stg_territories.territory_id",
    ):
        assert fact in message["text"], fact
    assert [block["type"] for block in message["blocks"]] == ["header", "section", "context"]
    assert record.run_id in json.dumps(message)


@pytest.mark.parametrize("state", ["missing", "malformed"])
def test_a_missing_or_malformed_state_is_a_usage_error(project: Project, tmp_path: Path, state: str) -> None:
    folder = tmp_path / "state"
    if state == "malformed":
        folder.mkdir()
        (folder / "manifest.json").write_text('{"nodes": ', encoding="utf-8")
    done = project.dataops("deploy", "--target", "ci", "--state", str(folder))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and f"--state {folder}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_history_lists_the_deploys(project: Project) -> None:
    done = project.dataops("history", "--target", "ci", "--format", "json")
    runs = json.loads(done.stdout)["runs"]
    assert [run["kind"] for run in runs][:4] == ["deploy"] * 4
    assert [run["status"] for run in runs][:4] == ["failed", "passed", "passed", "passed"]


def test_the_checks_on_the_one_parse_still_stop_a_project_that_breaks_its_conventions(project: Project) -> None:
    """The project checks run on the deployment's only parse, and a model that breaks the
    conventions (no prefix, no test, no key, no description) fails the deploy before anything is built."""
    model = project.root / "dbt" / "models" / "marts" / "territory_summary.sql"
    model.write_text("select territory_id from {{ ref('dim_territories') }}\n", encoding="utf-8")
    try:
        code, record = project.deploy()
    finally:
        model.unlink()
    assert code == 1 and record.status == "failed" and record.deployment is not None
    assert record.deployment.reason == "not planned: the checks stopped it" and not record.deployment.nodes_built
    assert [(stage.name, stage.status) for stage in record.stages] == [
        ("doctor", "ok"),
        ("parse", "ok"),
        ("compile", "ok"),
        ("checks", "failed"),
    ]
    assert record.error is not None and "naming on territory_summary" in record.error
    assert "v3 (published)" in project.dataops("versions", "--target", "ci").stdout


def test_sources_loaded_again_with_the_same_row_counts_make_the_next_deploy_full(project: Project) -> None:
    """Other rows in the same numbers (another seed) are other data: the unchanged marts cannot be
    copied from the published version, so the deploy after such a load builds everything."""
    project.edit("cast(null as integer) as territory_id", BROKEN_KEY)
    code, good = project.deploy()  # full: the failed deploy came after the last good one
    assert code == 0 and good.deployment is not None and good.deployment.outcome == "deployed", good.error
    assert good.source_load is not None
    reloaded = project.dataops("load", "--scale", "0.1", "--seed", "7", "--target", "ci")
    assert reloaded.returncode == 0, reloaded.stderr
    project.edit(UPPER_NAMES, NAME_COLUMN)
    code, record = project.deploy()
    deployment = record.deployment
    assert code == 0 and deployment is not None, record.error
    assert (deployment.build, deployment.reason) == (
        "full",
        f"the source tables were loaded again since deployment {good.run_id}",
    )
    assert record.source_load not in (None, good.source_load)
    assert {uid.split(".")[0] for uid in deployment.nodes_built} == {"model"}
    assert set(deployment.nodes_built) == _models(project.manifest(record))


def test_a_changed_source_rebuilds_the_models_that_read_it(project: Project) -> None:
    """state:modified sees sources, seeds and tests too: a source whose definition changed selects
    every model downstream of it, not nothing."""
    sources = project.root / "dbt" / "models" / "staging" / "sales" / "_sales__sources.yml"
    text = sources.read_text(encoding="utf-8")
    old = "error_after: {count: 730, period: day}"
    assert text.count(old) == 1
    sources.write_text(text.replace(old, "error_after: {count: 731, period: day}"), encoding="utf-8")
    code, record = project.deploy()
    deployment = record.deployment
    assert code == 0 and deployment is not None, record.error
    assert (deployment.outcome, deployment.build) == ("deployed", "slim"), deployment.reason
    source = "source.adventureworks.sales.SalesTerritory"
    assert deployment.changed_models == [source]
    expected = _descendants(project.manifest(record), source) - {source}
    assert expected and set(deployment.nodes_built) == expected
