"""What the hourly `dbt_monitoring` DAG checks: the last dbt run's artifacts (run_results.json,
sources.json), read as plain JSON. dbt is deliberately not imported: the monitoring task must stay
light and keep working when dbt's Python API moves between versions; the artifact files are dbt's
stable, versioned interface."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataops.config import Settings, Severity
from dataops.errors import DataOpsError
from dataops.findings import Finding, Level, errors_in, failed_test_text, node_status_level, warnings_in

log = logging.getLogger(__name__)

RUN_RESULTS = "run_results.json"
SOURCES = "sources.json"
MANIFEST = "manifest.json"
# The pipeline runs daily: a day plus two hours of slack before a missed run counts as one.
DEFAULT_MAX_AGE_HOURS = 26.0

# Commands whose run_results.json says something about the data. `dataops compile` (dbt compile)
# rewrites the same file with every node "success", which would make the monitor report a clean
# run that never happened.
_BUILD_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot"})
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class MonitoringReport:
    """Findings from the artifacts of one target, and which files they came from."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    checked: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(errors_in(self.findings))

    @property
    def errors(self) -> list[Finding]:
        return errors_in(self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return warnings_in(self.findings)

    def summary(self) -> str:
        """One line for logs and notifications."""
        verdict = "FAILED" if self.failed else "passed"
        files = ", ".join(path.name for path in self.checked)
        text = f"dbt monitoring on {self.target} {verdict}: {len(self.errors)} error(s), "
        text += f"{len(self.warnings)} warning(s) in {files}"
        if self.findings:
            text += ": " + "; ".join(f"{f.check}: {f.message}" for f in self.findings)
        return text


def monitor(settings: Settings, max_age_hours: float | None = DEFAULT_MAX_AGE_HOURS) -> MonitoringReport:
    """Both artifacts of `settings`' target; a missing or unreadable one raises DataOpsError."""
    folder = settings.artifacts_dir / "dbt"
    run_results, sources = folder / RUN_RESULTS, folder / SOURCES
    findings = check_run_results(run_results, max_age_hours=max_age_hours)
    findings += check_source_freshness(sources, settings.stale_data, max_age_hours=max_age_hours)
    return MonitoringReport(settings.target, findings, [run_results, sources])


def check_artifacts(settings: Settings, max_age_hours: float | None = DEFAULT_MAX_AGE_HOURS) -> str:
    """For an Airflow task: raise DataOpsError naming every error finding, else return the summary
    (warnings included) for the task's log and XCom."""
    report = monitor(settings, max_age_hours=max_age_hours)
    if report.failed:
        raise DataOpsError(report.summary())
    return report.summary()


def check_run_results(
    path: Path,
    *,
    manifest_path: Path | None = None,
    max_age_hours: float | None = None,
    now: datetime | None = None,
) -> list[Finding]:
    """Errored models, failed and warned tests (data and unit tests) in a run_results.json.

    Tests are named as `dataops run` names them ("unique on stg_orders.order_id") when the
    manifest is at hand (default: manifest.json next to `path`), else by their dbt node name.
    Skipped nodes are not reported: dbt skips what depends on a failure, which is reported."""
    document = _read_artifact(path)
    results = _require_list(document, "results", path)
    findings: list[Finding] = []
    command = _command(document)
    if command and command not in _BUILD_COMMANDS:
        findings.append(Finding(
            "warn",
            "artifact command",
            f"{path.name} is from `dbt {command}`, not a build: it says nothing about the data; "
            "the last build's results were overwritten",
        ))
    problems: list[tuple[Level, str, str, dict[str, Any]]] = []  # (level, unique_id, kind, result)
    for index, result in enumerate(results):
        unique_id, status = _node_fields(result, index, path)
        level = node_status_level(status)  # the same verdict `dataops run` gives
        if level is not None:
            resource = unique_id.split(".", 1)[0]
            problems.append((level, unique_id, "unit test" if resource == "unit_test" else resource, result))
    if problems:
        # The manifest is large; read it only when there is something to name.
        tests = _tests(manifest_path or path.with_name(MANIFEST))
        for level, unique_id, kind, result in problems:
            name, text = _check_name(unique_id, kind, tests), _problem_text(result, tests.get(unique_id))
            findings.append(Finding(level, name, text))
    if not results:
        findings.append(Finding("error", "dbt build", f"{path.name} holds no result: the last dbt run ran nothing"))
    if max_age_hours is not None:
        findings += _age_findings(document, path, max_age_hours, now)
    return findings


def check_source_freshness(
    path: Path,
    stale_data: Severity,
    *,
    max_age_hours: float | None = None,
    now: datetime | None = None,
) -> list[Finding]:
    """Stale sources in a sources.json, judged like `dataops run` does: a source past its
    error_after is an error only where the environment says stale data is (`stale_data`); a source
    dbt could not check at all ("runtime error") is always an error."""
    if stale_data not in ("warn", "error"):
        raise DataOpsError(f"stale_data must be 'warn' or 'error', not {stale_data!r}")
    document = _read_artifact(path)
    results = _require_list(document, "results", path)
    findings: list[Finding] = []
    for index, result in enumerate(results):
        unique_id, status = _node_fields(result, index, path)
        if status == "pass":
            continue
        check = f"freshness of {_source_name(unique_id, index, path)}"
        if status == "runtime error":
            findings.append(Finding("error", check, _one_line(result.get("error")) or "dbt could not check it"))
        elif status in ("warn", "error"):
            level: Level = "error" if status == "error" and stale_data == "error" else "warn"
            findings.append(Finding(level, check, _staleness(result, status)))
        else:
            # A status this code does not know is not a pass: say so rather than stay silent.
            findings.append(Finding("error", check, f"unknown dbt freshness status '{status}'"))
    if max_age_hours is not None:
        findings += _age_findings(document, path, max_age_hours, now)
    return findings


def _read_artifact(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise DataOpsError(f"no {path.name} at {path}: has `dataops run` run for this target?") from error
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise DataOpsError(f"cannot read {path}: {reason}") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataOpsError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}): "
            "it was cut short or edited; re-run `dataops run` to rewrite it"
        ) from error
    if not isinstance(document, dict):
        raise DataOpsError(f"{path} is not a dbt artifact: expected a JSON object, found {type(document).__name__}")
    return document


def _require_list(document: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise DataOpsError(f"{path} is not a dbt {path.name}: '{key}' is {found}, expected a list")
    return value


def _node_fields(result: Any, index: int, path: Path) -> tuple[str, str]:
    if not isinstance(result, dict):
        raise DataOpsError(f"{path}: results[{index}] is not an object")
    unique_id, status = result.get("unique_id"), result.get("status")
    for key, value in (("unique_id", unique_id), ("status", status)):
        if not isinstance(value, str) or not value:
            raise DataOpsError(f"{path}: results[{index}] has no '{key}'")
    return unique_id, status


def _source_name(unique_id: str, index: int, path: Path) -> str:
    """`source.<project>.<source>.<table>` -> `<source>.<table>`, the name `dataops run` uses."""
    parts = unique_id.split(".", 3)
    if len(parts) != 4 or parts[0] != "source":
        raise DataOpsError(f"{path}: results[{index}] unique_id '{unique_id}' is not a source's")
    return f"{parts[2]}.{parts[3]}"


def _command(document: dict[str, Any]) -> str | None:
    args = document.get("args")
    which = args.get("which") if isinstance(args, dict) else None
    return which if isinstance(which, str) else None


@dataclass(frozen=True)
class _GenericTest:
    display_name: str  # "<test> on <model>.<column>", as `dataops run` names it
    test_name: str
    details: dict[str, Any]  # its arguments and meta


def _tests(manifest: Path) -> dict[str, _GenericTest]:
    """The generic tests of the manifest, by unique_id, if it is readable. Only nicer names and
    messages depend on it, so an absent or unreadable manifest is not an error."""
    try:
        nodes = json.loads(manifest.read_text(encoding="utf-8")).get("nodes", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        log.debug("test names from node ids only: cannot read %s: %s", manifest, error)
        return {}
    tests: dict[str, _GenericTest] = {}
    for unique_id, node in nodes.items() if isinstance(nodes, dict) else ():
        if not isinstance(node, dict):
            continue
        metadata, attached = node.get("test_metadata"), node.get("attached_node")
        if isinstance(metadata, dict) and metadata.get("name") and isinstance(attached, str):
            model = attached.split(".")[-1]
            column = node.get("column_name")
            where = f"{model}.{column}" if column else model
            kwargs, config = metadata.get("kwargs"), node.get("config")
            meta = config.get("meta") if isinstance(config, dict) else None
            details = {**(kwargs if isinstance(kwargs, dict) else {}), **(meta if isinstance(meta, dict) else {})}
            tests[unique_id] = _GenericTest(f"{metadata['name']} on {where}", metadata["name"], details)
    return tests


def _problem_text(result: dict[str, Any], test: _GenericTest | None) -> str:
    """A failed or warned test by what it found; anything else by dbt's message or its status."""
    status = result.get("status")
    failures = result.get("failures")
    if status in ("fail", "warn") and isinstance(failures, int):
        return failed_test_text(test.test_name if test else None, failures, test.details if test else {})
    return _one_line(result.get("message")) or f"dbt status '{status}'"


def _check_name(unique_id: str, kind: str, tests: dict[str, _GenericTest]) -> str:
    """Tests by their display name; everything else as "<kind> <name>" ("model stg_orders")."""
    if kind == "test":
        test = tests.get(unique_id)
        return test.display_name if test else _node_name(unique_id, kind)
    return f"{kind} {_node_name(unique_id, kind)}"


def _node_name(unique_id: str, kind: str) -> str:
    parts = unique_id.split(".")
    if kind == "test" and len(parts) >= 4:
        return parts[2]  # generic tests end in a hash: test.<project>.<name>.<hash>
    return parts[-1] if len(parts) >= 3 else unique_id


def _staleness(result: dict[str, Any], status: str) -> str:
    """As `dataops run` says it: "newest row 2026-10-26 02:27:33, 30 days old (error after 12 hours)"."""
    parts = []
    newest = result.get("max_loaded_at")
    if isinstance(newest, str):
        parts.append(f"newest row {newest[:19].replace('T', ' ')}")
    age = result.get("max_loaded_at_time_ago_in_s")
    if isinstance(age, int | float):
        parts.append(f"{_age(age / 3600)} old")
    text = ", ".join(parts) or f"dbt status '{status}'"
    criteria = result.get("criteria")
    threshold = criteria.get(f"{status}_after") if isinstance(criteria, dict) else None
    if isinstance(threshold, dict) and threshold.get("count") is not None and threshold.get("period"):
        text += f" ({status} after {threshold['count']} {threshold['period']}s)"
    return text


def _age_findings(document: dict[str, Any], path: Path, max_age_hours: float, now: datetime | None) -> list[Finding]:
    """An old artifact means the job that writes it stopped running: every other finding would
    then describe the past, so this is an error however clean that past was."""
    metadata = document.get("metadata")
    generated = metadata.get("generated_at") if isinstance(metadata, dict) else None
    if not isinstance(generated, str):
        raise DataOpsError(f"{path} has no metadata.generated_at: cannot tell how old it is")
    try:
        generated_at = datetime.fromisoformat(generated)
    except ValueError as error:
        raise DataOpsError(f"{path}: metadata.generated_at '{generated}' is not an ISO timestamp") from error
    if generated_at.tzinfo is None:
        generated_at = generated_at.replace(tzinfo=UTC)  # dbt writes UTC
    hours = ((now or datetime.now(UTC)) - generated_at).total_seconds() / 3600
    if hours <= max_age_hours:
        return []
    return [Finding(
        "error",
        "artifact age",
        f"{path.name} was written {_age(hours)} ago (at {generated_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC), more than "
        f"{max_age_hours:g} hours: the dbt job has not run since; check the pipeline DAG",
    )]


def _age(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} minutes"
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:,.0f} days"


def _one_line(text: Any) -> str:
    """dbt's messages on one line, without the terminal colours of unit-test diffs."""
    return " ".join(_ANSI_ESCAPE.sub("", str(text)).split()) if text else ""
