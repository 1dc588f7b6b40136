"""`dataops compile`: compile the whole project for a target without its server, and prove that
every compiled model and test is SQL the target's engine accepts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlfluff.core import FluffConfig, Linter
from sqlglot.errors import ParseError

from dataops.core.config import DBT_PROJECT_DIR, Settings
from dataops.core.errors import DataOpsError
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


def compile_offline(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> list[CompiledNode]:
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
    ]


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
            problems.append(ValidationProblem(
                label, int(first.get("line") or 1), "sqlglot", str(first.get("description") or error)
            ))
            continue
        if dialect.extra_rules is not None:
            problems.extend(
                ValidationProblem(label, line, f"{engine} rules", message)
                for line, message in dialect.extra_rules(node.sql)
            )
    return problems


def compile_project(
    settings: Settings, run_validation: bool, project_dir: Path = DBT_PROJECT_DIR
) -> CompileReport:
    report = CompileReport(settings.target, settings.engine, nodes=compile_offline(settings, project_dir))
    if run_validation:
        report.problems = validate(report.nodes, settings.engine)
        report.validated = True
    return report
