"""Project-structure checks, read from dbt's manifest: the conventions that keep the project sane.

Each check takes the manifest as the JSON artifact (a dict) and returns its violations, so the same
code runs on `target/manifest.json` and on the in-process parse (the naming check also reads the
one seed file the manifest points at).

Where a rule is also one of dbt-project-evaluator's, it is the evaluator's rule (its defaults:
test coverage counts data tests, every model has a primary key, the same prefixes by folder), so
that the two never disagree on a rule they share; README, dbt packages, says where these checks
go further.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataops.core.errors import DataOpsError

Manifest = dict[str, Any]

LAYER_PREFIXES: dict[str, tuple[str, ...]] = {
    "staging": ("stg_",),
    "intermediate": ("int_",),
    "marts": ("fct_", "dim_"),
}
# A model may opt out of its layer's prefix with `config: {meta: {naming_exception: "<why>"}}`,
# so each exception is listed, with its reason, next to the model it excuses.
NAMING_EXCEPTION_META = "naming_exception"
# dbt-project-evaluator declares its exceptions in a seed of this name, one row per excused finding.
EVALUATOR_EXCEPTIONS_SEED = "dbt_project_evaluator_exceptions"
EVALUATOR_NAMING_MODEL = "fct_model_naming_conventions"
# A primary key is unique + not_null on one column, or a composite key (the evaluator's defaults).
COMPOSITE_KEY_TESTS = ("unique_combination_of_columns",)


@dataclass(frozen=True)
class Violation:
    check: str
    node: str
    message: str


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: Callable[[Manifest], Iterator[tuple[str, str]]]


def _models(manifest: Manifest) -> Iterator[dict[str, Any]]:
    project = manifest_project(manifest)
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["package_name"] == project:
            yield node


def manifest_project(manifest: Manifest) -> str:
    return manifest["metadata"].get("project_name") or next(
        n["package_name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"
    )


def _layer(model: dict[str, Any]) -> str | None:
    parts = model["fqn"][1:-1]
    return next((part for part in parts if part in LAYER_PREFIXES), None)


def _tests_by_model(manifest: Manifest) -> dict[str, list[dict[str, Any]]]:
    tested: dict[str, list[dict[str, Any]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test":
            for parent in node["depends_on"]["nodes"]:
                tested.setdefault(parent, []).append(node)
    for unit_test in manifest.get("unit_tests", {}).values():
        for parent in unit_test["depends_on"]["nodes"]:
            tested.setdefault(parent, []).append(unit_test)
    return tested


def models_have_tests(manifest: Manifest) -> Iterator[tuple[str, str]]:
    # Data tests only, as the evaluator's test coverage counts: a unit test checks the SQL's logic
    # on fixed rows, never the data the model holds.
    tested = _tests_by_model(manifest)
    for model in _models(manifest):
        if not any(test["resource_type"] == "test" for test in tested.get(model["unique_id"], [])):
            yield model["name"], "has no data tests"


def models_have_primary_key_tests(manifest: Manifest) -> Iterator[tuple[str, str]]:
    tested = _tests_by_model(manifest)
    for model in _models(manifest):
        tests_per_column: dict[str, set[str]] = {}
        composite_key = False
        for test in tested.get(model["unique_id"], []):
            metadata = test.get("test_metadata") or {}
            composite_key |= metadata.get("name") in COMPOSITE_KEY_TESTS
            if test.get("column_name") and metadata.get("name") in ("unique", "not_null"):
                tests_per_column.setdefault(test["column_name"], set()).add(metadata["name"])
        if not composite_key and not any(kinds == {"unique", "not_null"} for kinds in tests_per_column.values()):
            yield model["name"], "has no primary key: no column with both unique and not_null tests"


def _evaluator_exceptions(manifest: Manifest) -> list[dict[str, str]] | None:
    """The rows of the project's dbt-project-evaluator exceptions seed, read from its file; None when
    the project has no such seed. It is disabled unless the evaluator is installed, and read either way."""
    project = manifest_project(manifest)
    seeds = [
        node
        for node in [*manifest["nodes"].values(), *(n for ns in manifest.get("disabled", {}).values() for n in ns)]
        if node["resource_type"] == "seed"
        and node["name"] == EVALUATOR_EXCEPTIONS_SEED
        and node["package_name"] == project
    ]
    if not seeds:
        return None
    path = Path(seeds[0]["root_path"]) / seeds[0]["original_file_path"]
    if not path.is_file():
        raise DataOpsError(
            f"{path}: the manifest names this seed but it is not there; check the project it was parsed from"
        )
    with path.open(newline="", encoding="utf-8") as rows:
        return list(csv.DictReader(rows))


def _like(pattern: str, value: str) -> bool:
    """SQL's LIKE, as the evaluator applies `id_to_exclude`."""
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch("".join(parts), value) is not None


def models_follow_naming(manifest: Manifest) -> Iterator[tuple[str, str]]:
    exceptions = _evaluator_exceptions(manifest)
    naming_patterns = [
        row["id_to_exclude"]
        for row in exceptions or []
        if row["fct_name"] == EVALUATOR_NAMING_MODEL and row["column_name"] == "resource_name"
    ]
    seed = f"the {EVALUATOR_EXCEPTIONS_SEED} seed"
    for model in _models(manifest):
        layer = _layer(model)
        if layer is None:
            yield model["name"], "is outside the staging/intermediate/marts folders"
            continue
        prefixes = LAYER_PREFIXES[layer]
        if model["name"].startswith(prefixes):
            continue
        excused = model["config"].get("meta", {}).get(NAMING_EXCEPTION_META)
        in_seed = any(_like(pattern, model["name"]) for pattern in naming_patterns)
        if not excused:
            expected = " or ".join(prefixes)
            yield (
                model["name"],
                (
                    f"is in {layer}/ but does not start with {expected} "
                    f"(or declare meta.{NAMING_EXCEPTION_META} with the reason)"
                ),
            )
        elif exceptions is not None and not in_seed:
            # One exception, declared both ways: ours beside the model, the evaluator's in its seed.
            yield (
                model["name"],
                (
                    f"declares meta.{NAMING_EXCEPTION_META} but {seed} has no "
                    f"{EVALUATOR_NAMING_MODEL},resource_name row for it: dbt-project-evaluator would flag it"
                ),
            )
    excused_models = {
        model["name"] for model in _models(manifest) if model["config"].get("meta", {}).get(NAMING_EXCEPTION_META)
    }
    for pattern in naming_patterns:
        if not any(_like(pattern, name) for name in excused_models):
            yield (
                pattern,
                f"is excused from naming in {seed} but no model by that name declares meta.{NAMING_EXCEPTION_META}",
            )


def no_orphan_models(manifest: Manifest) -> Iterator[tuple[str, str]]:
    used: set[str] = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            used.update(node["depends_on"]["nodes"])
    for model in _models(manifest):
        if _layer(model) != "marts" and model["unique_id"] not in used:
            yield model["name"], "is not a mart and no model uses it"


def everything_described(manifest: Manifest) -> Iterator[tuple[str, str]]:
    for model in _models(manifest):
        if not model.get("description", "").strip():
            yield model["name"], "has no description"
    for source in manifest["sources"].values():
        name = f"{source['source_name']}.{source['name']}"
        if not source.get("description", "").strip():
            yield name, "has no description"
        if not source.get("source_description", "").strip():
            yield source["source_name"], "(the source) has no description"


def sources_have_freshness(manifest: Manifest) -> Iterator[tuple[str, str]]:
    for source in manifest["sources"].values():
        name = f"{source['source_name']}.{source['name']}"
        freshness = source.get("freshness") or {}
        limits = [freshness.get(k) or {} for k in ("warn_after", "error_after")]
        if not any(limit.get("count") for limit in limits):
            yield name, "has no freshness (warn_after / error_after)"
        elif not source.get("loaded_at_field") and not source.get("loaded_at_query"):
            yield name, "has freshness but no loaded_at_field to measure it by"


CHECKS: tuple[Check, ...] = (
    Check("models-have-tests", "every model has at least one data test", models_have_tests),
    Check(
        "models-have-primary-keys",
        "every model has unique + not_null on one column (or a composite key test)",
        models_have_primary_key_tests,
    ),
    Check(
        "naming",
        "stg_ / int_ / fct_ or dim_ by layer; exceptions in meta and the evaluator's seed",
        models_follow_naming,
    ),
    Check("no-orphans", "every non-mart model is used by another model", no_orphan_models),
    Check("described", "every model and source has a description", everything_described),
    Check("source-freshness", "every source table has freshness", sources_have_freshness),
)


def run_checks(manifest: Manifest) -> list[Violation]:
    """All violations of all checks, in check order; empty when the project is in shape."""
    return [Violation(check.name, node, message) for check in CHECKS for node, message in check.run(manifest)]
