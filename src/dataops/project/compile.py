"""`dataops compile`: compile the whole project for a target without its server, and prove that
every compiled model and test is SQL the target's engine accepts; on SQL Server, so is every
statement dataops itself sends to publish the project's marts, roll back, drop versions and hold
the target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlfluff.core import FluffConfig, Linter
from sqlglot.errors import ParseError

from dataops.core.config import DBT_PROJECT_DIR, Settings
from dataops.core.errors import DataOpsError
from dataops.project.results import manifest_models, mart_names
from dataops.project.runner import DbtProject

# A clearly fake value for each connection variable the target needs but nobody set: dbt renders
# the profile before compiling, but an offline compile never connects.
OFFLINE_PLACEHOLDER = "offline-compile-placeholder"


@dataclass(frozen=True)
class Dialect:
    sqlfluff: str
    sqlglot: str
    extra_rules: Callable[[str], list[tuple[int, str]]] | None = None


def _tsql_rules(sql: str) -> list[tuple[int, str]]:
    from dataops.warehouse.sqlserver_dialect import portability_problems

    return [(problem.line, problem.message) for problem in portability_problems(sql)]


DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect("duckdb", "duckdb"),
    "postgres": Dialect("postgres", "postgres"),
    "sqlserver": Dialect("tsql", "tsql", _tsql_rules),
}


@dataclass(frozen=True)
class CompiledNode:
    unique_id: str
    path: str
    sql: str


@dataclass(frozen=True)
class ValidationProblem:
    path: str
    line: int
    validator: str
    message: str


@dataclass
class CompileReport:
    target: str
    engine: str
    nodes: list[CompiledNode] = field(default_factory=list)
    problems: list[ValidationProblem] = field(default_factory=list)
    validated: bool = False
    # The batches dataops itself sends (SQL Server: publish, rollback, drop, lock), validated too.
    scripts: list[str] = field(default_factory=list)


def compile_offline(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> list[CompiledNode]:
    return _compile(settings, project_dir)[0]


def _compile(
    settings: Settings, project_dir: Path, project: DbtProject | None = None
) -> tuple[list[CompiledNode], Any]:
    """The compiled nodes, and the manifest they came from (`project`'s own parse when it has one)."""
    if project is None:
        # Into its own folder: a deploy-time compile must not replace the last run's artifacts.
        project = DbtProject(settings, project_dir=project_dir, compile_only=True)
        project.extra_env = {name: OFFLINE_PLACEHOLDER for name in settings.missing_variables()}
    result = project.compile_offline()
    if not result.success or result.result is None:
        failures = [
            f"{r.node.name}: {' '.join((r.message or '').split())}"
            for r in (result.result.results if result.result else [])
            if str(r.status) != "success"
        ]
        raise DataOpsError(f"dbt could not compile for target '{settings.target}': {'; '.join(failures)}")
    return [
        CompiledNode(r.node.unique_id, r.node.original_file_path, r.node.compiled_code or "")
        for r in result.result.results
    ], project.manifest


def validate(nodes: list[CompiledNode], engine: str) -> list[ValidationProblem]:
    """Parse every node with sqlfluff and sqlglot in the engine's dialect, then apply the
    engine's own portability rules."""
    dialect = DIALECTS[engine]
    linter = Linter(config=FluffConfig(overrides={"dialect": dialect.sqlfluff}))
    problems: list[ValidationProblem] = []
    for node in nodes:
        label = node.path
        if node.unique_id.startswith("test."):
            label += f" ({node.unique_id.split('.')[-1]})"
        for violation in linter.parse_string(node.sql).violations:
            message = " ".join(violation.desc().split())
            problems.append(ValidationProblem(label, violation.line_no or 1, "sqlfluff", message))
        try:
            sqlglot.parse(node.sql, read=dialect.sqlglot)
        except ParseError as error:
            first = error.errors[0] if error.errors else {}
            problems.append(
                ValidationProblem(label, int(first.get("line") or 1), "sqlglot", str(first.get("description") or error))
            )
            continue
        if dialect.extra_rules is not None:
            problems.extend(
                ValidationProblem(label, line, f"{engine} rules", message)
                for line, message in dialect.extra_rules(node.sql)
            )
    return problems


# The role the GRANTs are rendered for when the target names none (they are checked either way).
EXAMPLE_READER_ROLE = "reader"


def _mart_keys_and_columns(manifest: Any, marts: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each mart's key (the column of its `unique` test) and its documented columns: what the data
    diff compares."""
    by_id = {uid: node for uid, node in manifest.nodes.items() if node.resource_type == "model"}
    names = {uid: node.alias or node.name for uid, node in by_id.items()}
    keys: dict[str, list[str]] = {}
    for node in manifest.nodes.values():
        metadata = getattr(node, "test_metadata", None)
        attached, column = getattr(node, "attached_node", None), getattr(node, "column_name", None)
        if metadata is not None and metadata.name == "unique" and attached in names and column:
            keys.setdefault(names[attached], [column])
    columns = {names[uid]: list(node.columns) for uid, node in by_id.items() if names[uid] in marts}
    return {mart: key for mart, key in keys.items() if mart in marts}, columns


def validate_sqlserver_scripts(scripts: list[Any]) -> list[ValidationProblem]:
    """Every batch dataops sends to SQL Server (`sqlserver.Script`s), statement by statement:
    sqlfluff and sqlglot, the portability rules, and what a batch and an atomic one require."""
    from dataops.warehouse.sqlserver_dialect import batch_problems

    return [
        ValidationProblem(f"dataops T-SQL: {script.name}", problem.line, problem.validator, problem.message)
        for script in scripts
        for problem in batch_problems(script.statements, script.atomic)
    ]


def sqlserver_scripts(settings: Settings, manifest: Any) -> list[Any]:
    """The publishing and locking batches, rendered for the project's marts as the target runs them."""
    from dataops.warehouse.sqlserver import publishing_scripts

    marts = mart_names(settings, manifest_models(manifest))
    keys, columns = _mart_keys_and_columns(manifest, marts)
    database = dict(settings.described_profile(mask="****")).get("database") or settings.target
    return publishing_scripts(
        settings.consumer_schema,
        settings.candidate_schema,
        marts,
        settings.reader_role or EXAMPLE_READER_ROLE,
        database,
        keys,
        columns,
    )


def compile_project(
    settings: Settings, run_validation: bool, project_dir: Path = DBT_PROJECT_DIR, project: DbtProject | None = None
) -> CompileReport:
    nodes, manifest = _compile(settings, project_dir, project)
    report = CompileReport(settings.target, settings.engine, nodes=nodes)
    if run_validation:
        report.problems = validate(report.nodes, settings.engine)
        if settings.engine == "sqlserver":
            scripts = sqlserver_scripts(settings, manifest)
            report.problems += validate_sqlserver_scripts(scripts)
            report.scripts = [script.name for script in scripts]
        report.validated = True
    return report
