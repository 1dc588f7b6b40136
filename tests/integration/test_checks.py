"""Each project-structure check passes on the project and fails on a project that breaks it."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataops.core.config import DBT_PROJECT_DIR, Settings
from dataops.core.errors import DataOpsError
from dataops.project.checks import CHECKS, run_checks
from dataops.project.runner import DbtProject

Manifest = dict[str, Any]


def _model(manifest: Manifest, name: str) -> dict[str, Any]:
    return next(n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == name)


def _drop_tests_of(model_name: str) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        model_id = _model(manifest, model_name)["unique_id"]
        for key in [
            k
            for k, n in manifest["nodes"].items()
            if model_id in n["depends_on"]["nodes"] and n["resource_type"] == "test"
        ]:
            del manifest["nodes"][key]

    return mutate


def _drop_unique_test(model_name: str) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        model_id = _model(manifest, model_name)["unique_id"]
        for key, node in list(manifest["nodes"].items()):
            metadata = node.get("test_metadata") or {}
            if metadata.get("name") == "unique" and node["depends_on"]["nodes"] == [model_id]:
                del manifest["nodes"][key]

    return mutate


def _rename(model_name: str, new_name: str) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        model = _model(manifest, model_name)
        model["name"] = new_name
        model["fqn"][-1] = new_name

    return mutate


def _drop_naming_exception(manifest: Manifest) -> None:
    _model(manifest, "customer_analytics")["config"]["meta"].clear()


def _leave_only_unit_tests(manifest: Manifest) -> None:
    """int_customer_metrics keeps its unit test: dbt-project-evaluator's coverage counts data tests only."""
    _drop_tests_of("int_customer_metrics")(manifest)
    model_id = _model(manifest, "int_customer_metrics")["unique_id"]
    assert any(model_id in u["depends_on"]["nodes"] for u in manifest["unit_tests"].values())


def _add_orphan(manifest: Manifest) -> None:
    orphan = copy.deepcopy(_model(manifest, "stg_territories"))
    orphan["unique_id"] = "model.adventureworks.stg_unused"
    orphan["name"] = "stg_unused"
    orphan["fqn"][-1] = "stg_unused"
    manifest["nodes"][orphan["unique_id"]] = orphan


def _blank_model_description(manifest: Manifest) -> None:
    _model(manifest, "fct_orders")["description"] = "  "


def _blank_source_description(manifest: Manifest) -> None:
    next(iter(manifest["sources"].values()))["description"] = ""


def _drop_freshness(manifest: Manifest) -> None:
    source = next(s for s in manifest["sources"].values() if s["name"] == "Store")
    source["freshness"] = {"warn_after": {"count": None}, "error_after": {"count": None}}


BREAKAGES: list[tuple[str, Callable[[Manifest], None], str]] = [
    ("models-have-tests", _drop_tests_of("dim_territories"), "dim_territories"),
    ("models-have-tests", _leave_only_unit_tests, "int_customer_metrics"),
    ("models-have-primary-keys", _drop_unique_test("fct_orders"), "fct_orders"),
    ("models-have-primary-keys", _drop_unique_test("stg_email_addresses"), "stg_email_addresses"),
    ("naming", _rename("stg_orders", "orders_raw"), "orders_raw"),
    ("naming", _drop_naming_exception, "customer_analytics"),
    ("no-orphans", _add_orphan, "stg_unused"),
    ("described", _blank_model_description, "fct_orders"),
    ("described", _blank_source_description, "."),
    ("source-freshness", _drop_freshness, "sales.Store"),
]


def test_the_project_passes_every_check(project_manifest: Manifest) -> None:
    assert run_checks(project_manifest) == []


def test_every_check_has_a_breakage_below() -> None:
    assert {check.name for check in CHECKS} == {name for name, _, _ in BREAKAGES}


@pytest.mark.parametrize(("check", "breakage", "culprit"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_check_fails_on_a_project_that_breaks_it(
    project_manifest: Manifest, check: str, breakage: Callable[[Manifest], None], culprit: str
) -> None:
    manifest = copy.deepcopy(project_manifest)
    breakage(manifest)
    named = [v for v in run_checks(manifest) if v.check == check]
    assert named, f"{check} found nothing"
    assert any(culprit in v.node for v in named), named


def test_checks_catch_a_bad_model_in_a_real_project(tmp_path: Path, settings: Settings) -> None:
    """An undescribed, untested, unused, misnamed model added to a copy of the project is named
    by five checks once dbt has really parsed it."""
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "staging" / "sales" / "orders_copy.sql").write_text(
        "select * from {{ ref('stg_orders') }}\n", encoding="utf-8"
    )
    violations = run_checks(DbtProject(settings, project_dir=project).manifest_dict())
    assert {(v.check, v.node) for v in violations} == {
        ("models-have-tests", "orders_copy"),
        ("models-have-primary-keys", "orders_copy"),
        ("naming", "orders_copy"),
        ("no-orphans", "orders_copy"),
        ("described", "orders_copy"),
    }


def _evaluator_seed(manifest: Manifest) -> dict[str, Any]:
    return next(
        node
        for nodes in manifest["disabled"].values()
        for node in nodes
        if node["name"] == "dbt_project_evaluator_exceptions"
    )


NAMING_ROW = "fct_model_naming_conventions,resource_name,"


@pytest.mark.parametrize(
    ("dropped", "added", "culprit", "message"),
    [
        ("customer_analytics", None, "customer_analytics", "dbt-project-evaluator would flag it"),
        (None, "stg_orders", "stg_orders", "no model by that name declares meta.naming_exception"),
    ],
    ids=["missing-from-the-seed", "only-in-the-seed"],
)
def test_a_naming_exception_is_declared_both_ways(
    project_manifest: Manifest, tmp_path: Path, dropped: str | None, added: str | None, culprit: str, message: str
) -> None:
    """The naming exception beside the model (meta) and dbt-project-evaluator's (its exceptions seed)
    are one exception: either without the other is a violation."""
    manifest = copy.deepcopy(project_manifest)
    seed = _evaluator_seed(manifest)
    rows = (Path(seed["root_path"]) / seed["original_file_path"]).read_text(encoding="utf-8").splitlines()
    rows = [row for row in rows if dropped is None or not row.startswith(NAMING_ROW + dropped)]
    rows += [f"{NAMING_ROW}{added},excused for no reason"] if added else []
    copied = tmp_path / seed["original_file_path"]
    copied.parent.mkdir(parents=True)
    copied.write_text("\n".join(rows) + "\n", encoding="utf-8")
    seed["root_path"] = str(tmp_path)
    naming = [v for v in run_checks(manifest) if v.check == "naming"]
    assert [v.node for v in naming] == [culprit] and message in naming[0].message, naming


def test_an_exceptions_seed_missing_from_disk_is_named(project_manifest: Manifest, tmp_path: Path) -> None:
    manifest = copy.deepcopy(project_manifest)
    _evaluator_seed(manifest)["root_path"] = str(tmp_path)
    with pytest.raises(DataOpsError, match=r"dbt_project_evaluator_exceptions\.csv: the manifest names this seed"):
        run_checks(manifest)
