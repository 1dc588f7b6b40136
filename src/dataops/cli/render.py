"""How the CLI draws things: progress while the pipeline runs, and the tables it prints after."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import TaskID

    from dataops.commands.deploy import DeployReport
    from dataops.commands.doctor import DoctorReport
    from dataops.history.records import DeploymentRecord, IncidentRecord, PublishRecord, RunRecord, RunSummaryRow
    from dataops.ops.incidents import Incident
    from dataops.ops.metrics import MetricsReport
    from dataops.project.checks import Check, Violation
    from dataops.project.compile import CompileReport
    from dataops.project.progress import NodeProgress
    from dataops.project.results import RunSummary, StageResult
    from dataops.quality.suites import QualityReport
    from dataops.sources.faults import Fault
    from dataops.warehouse import LockHolder, QueryResult, Version

# For output with no terminal to fit (a pipe, a file): wide enough that nothing is cut.
UNLIMITED_WIDTH = 100_000

_STATUS_STYLE = {"ok": "green", "warn": "yellow", "failed": "bold red", "skipped": "dim"}
_LEVEL_STYLE = {"ok": "green", "warn": "yellow", "error": "bold red"}


class ProgressReporter:
    """A progress line per stage; the build's bar advances as dbt finishes each node."""

    def __init__(self, console: Console) -> None:
        # Imported here: the read-only commands (`dataops history`) must start fast, and draw no bars.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}", style="dim"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.current: str | None = None

    def __enter__(self) -> ProgressReporter:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def stage_started(self, name: str) -> None:
        self.current = name
        self.tasks[name] = self.progress.add_task(name, total=None, detail="")

    def node_progress(self, progress: NodeProgress) -> None:
        if self.current is None:
            return
        task = self.tasks[self.current]
        if progress.total is not None:
            self.progress.update(task, total=progress.total)
        if progress.finished:
            self.progress.update(task, advance=1, detail=progress.unique_id.split(".")[-1][:40])

    def waiting_for(self, holder: LockHolder | None) -> None:
        who = holder.describe() if holder else "another run"
        self.progress.console.print(f"waiting for {escape(who)}, which holds the target ...")

    def stage_finished(self, stage: StageResult) -> None:
        # Task ids start at 0: look the stage up by name, never by the truth of its id.
        task = self.tasks[stage.name] if stage.name in self.tasks else self.progress.add_task(stage.name, detail="")
        done = self.progress.tasks[task].completed or 1
        style = _STATUS_STYLE[stage.status]
        self.progress.update(task, total=done, completed=done, detail=f"[{style}]{stage.status}[/] {stage.detail}")


class _Stage(Protocol):
    name: str
    status: str
    seconds: float
    detail: str


class _Finding(Protocol):
    level: str
    check: str
    message: str


def _stages_table(title: str, stages: Sequence[_Stage]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("stage", "status", "elapsed", "detail"):
        table.add_column(column, justify="right" if column == "elapsed" else "left")
    for stage in stages:
        style = _STATUS_STYLE.get(stage.status, "")
        table.add_row(stage.name, f"[{style}]{stage.status}[/]", f"{stage.seconds:.1f}s", escape(stage.detail))
    return table


def _findings_table(findings: Sequence[_Finding]) -> Table:
    """Failures first, then warnings, each by the name of the check that raised it."""
    table = Table(title="warnings and failures", title_justify="left")
    for column in ("level", "check", "what"):
        table.add_column(column)
    for finding in sorted(findings, key=lambda f: (f.level != "error", f.check)):
        style = "bold red" if finding.level == "error" else "yellow"
        table.add_row(f"[{style}]{finding.level}[/]", escape(finding.check), escape(finding.message))
    return table


def run_summary(console: Console, summary: RunSummary) -> None:
    console.print(_stages_table(f"dataops run {summary.run_id} on {summary.target}", summary.stages))

    counts, quality = summary.counts, summary.quality
    models = f"models: {counts.models_built} built, {counts.models_errored} errored, {counts.models_skipped} skipped"
    checks = Table(title=f"checks ({models})", title_justify="left")
    for column in ("check", "passed", "warned", "failed"):
        checks.add_column(column, justify="left" if column == "check" else "right")
    checks.add_row(
        "dbt data tests",
        str(counts.tests_passed),
        _coloured(counts.tests_warned, "yellow"),
        _coloured(counts.tests_failed, "red"),
    )
    checks.add_row("dbt unit tests", str(counts.unit_tests_passed), "-", _coloured(counts.unit_tests_failed, "red"))
    checks.add_row(
        "GX expectations",
        str(quality.expectations_passed),
        _coloured(quality.expectations_warned, "yellow"),
        _coloured(quality.expectations_failed, "red"),
    )
    score = summary.quality_score
    checks.add_row("[bold]data quality score[/]", f"[bold]{score:.1%}[/]" if score is not None else "-", "", "")
    console.print(checks)

    if summary.freshness:
        freshness = Table(title="source freshness", title_justify="left")
        for column in ("source", "dbt status", f"in {summary.target}", "detail"):
            freshness.add_column(column)
        for outcome in summary.freshness:
            style = _LEVEL_STYLE[outcome.level]
            freshness.add_row(outcome.source, outcome.status, f"[{style}]{outcome.level}[/]", escape(outcome.message))
        console.print(freshness)

    if summary.findings:
        console.print(_findings_table(summary.findings))

    if summary.publish is not None:
        _publish_lines(console, summary.target, summary.publish)

    elapsed = sum(stage.seconds for stage in summary.stages)
    if summary.exit_code == 0:
        verdict = f"[bold green]PASSED[/] with {len(summary.warnings)} warning(s)"
    else:
        verdict = f"[bold red]FAILED[/]: {len(summary.failures)} failure(s), {len(summary.warnings)} warning(s)"
    console.print(f"{verdict} in {elapsed:.1f}s; exit code {int(summary.exit_code)}")


def _coloured(value: int, style: str) -> str:
    return f"[{style}]{value}[/]" if value else "0"


def table_counts(console: Console, row_counts: dict[str, int], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in row_counts.items():
        table.add_row(name, f"{rows:,}")
    table.add_row("[bold]total[/]", f"[bold]{sum(row_counts.values()):,}[/]")
    console.print(table)


def check_results(console: Console, checks: tuple[Check, ...], violations: list[Violation]) -> None:
    table = Table(title="project structure checks", title_justify="left")
    for column in ("check", "rule", "result"):
        table.add_column(column)
    for check in checks:
        failed = [v for v in violations if v.check == check.name]
        result = f"[red]{len(failed)} violation(s)[/]" if failed else "[green]ok[/]"
        table.add_row(check.name, check.description, result)
    console.print(table)
    for violation in violations:
        text = escape(f"{violation.check}: {violation.node} {violation.message}")
        console.print(f"[red]✗[/] {text}", highlight=False)
    if not violations:
        console.print("[bold green]All checks passed.[/]")


def fault_list(console: Console, faults: list[Fault]) -> None:
    table = Table(title="faults for `dataops generate --inject`", title_justify="left")
    for column in ("fault", "what it does", "caught by", "run outcome (dev/ci)"):
        table.add_column(column)
    for fault in faults:
        table.add_row(fault.name, fault.description, "\n".join(fault.caught_by), fault.outcome)
    console.print(table)


def quality_report(console: Console, report: QualityReport) -> None:
    table = Table(title=f"checkpoint {report.checkpoint}", title_justify="left")
    for column in ("suite", "expectation", "severity", "result", "detail"):
        table.add_column(column)
    for outcome in report.outcomes:
        result = {None: "[green]pass[/]", "warn": "[yellow]warn[/]", "error": "[bold red]fail[/]"}[outcome.level]
        table.add_row(outcome.suite, escape(outcome.check), outcome.severity, result, escape(outcome.describe()))
    console.print(table)
    if report.results_path:
        console.print(f"results: {report.results_path}", style="dim", highlight=False)
    if report.data_docs_index:
        console.print(f"Data Docs: {report.data_docs_index}", style="dim", highlight=False)
    verdict = "[bold red]FAILED[/]" if report.failed else "[bold green]PASSED[/]"
    console.print(
        f"{verdict}: {report.passed} passed, {report.warned} warned, {report.failed} failed "
        f"of {len(report.outcomes)} expectations"
    )


def doctor_report(console: Console, report: DoctorReport) -> None:
    settings = Table(title=f"target {report.target}", title_justify="left", show_header=False)
    settings.add_column("setting")
    settings.add_column("value")
    for key, value in report.settings:
        settings.add_row(key, escape(value))
    console.print(settings)
    checks = Table(title="checks", title_justify="left")
    for column in ("area", "check", "status"):
        checks.add_column(column)
    checks.add_column("detail", overflow="fold")  # a long path broken over lines, never cut off
    styles = {"ok": "green", "fail": "bold red", "info": "dim"}
    for finding in report.findings:
        checks.add_row(
            finding.area, finding.name, f"[{styles[finding.status]}]{finding.status}[/]", escape(finding.detail)
        )
    console.print(checks)
    failures = sum(1 for finding in report.findings if finding.status == "fail")
    if failures:
        console.print(f"[bold red]{failures} problem(s)[/] to fix before using target '{report.target}'.")
    else:
        console.print(f"[bold green]All good:[/] target '{report.target}' is ready.")


def compile_report(console: Console, report: CompileReport) -> None:
    models = sum(1 for node in report.nodes if node.unique_id.startswith("model."))
    tests = len(report.nodes) - models
    console.print(
        f"Compiled {models} models and {tests} tests for target [bold]{report.target}[/] "
        f"({report.engine}) without connecting."
    )
    if not report.validated:
        return
    if not report.problems:
        scripts = (
            (
                f", and so do the {len(report.scripts)} batches dataops sends to publish, roll back, "
                "drop versions and hold the target"
            )
            if report.scripts
            else ""
        )
        console.print(
            f"[bold green]Valid:[/] all {len(report.nodes)} compiled files parse in sqlfluff and "
            f"sqlglot as {report.engine} SQL and pass its portability rules{scripts}."
        )
        return
    table = Table(title=f"{len(report.problems)} problem(s)", title_justify="left")
    for column in ("file", "line", "validator", "problem"):
        table.add_column(column)
    for problem in report.problems:
        table.add_row(problem.path, str(problem.line), problem.validator, escape(problem.message))
    console.print(table)


def query_table(console: Console, result: QueryResult) -> None:
    table = Table(show_lines=False)
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*("" if value is None else escape(str(value)) for value in row))
    console.print(table)
    console.print(f"{len(result.rows):,} row(s)", style="dim")


_RUN_STATUS_STYLE = {"passed": "green", "warned": "yellow", "failed": "bold red", "crashed": "bold magenta"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def history_table(console: Console, target: str, rows: list[RunSummaryRow]) -> None:
    if not rows:
        console.print(f"No runs of {target} in the run history yet: `dataops run --target {target}` makes one.")
        return
    table = Table(title=f"runs of {target}, newest first", title_justify="left")
    numbers = ("duration", "models", "failed checks", "score")
    for column in ("run", "started (UTC)", "trigger", "status", *numbers):
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        style = _RUN_STATUS_STYLE.get(row.status, "")
        table.add_row(
            row.run_id,
            row.started_at[:19].replace("T", " "),
            row.trigger if row.kind == "run" else f"{row.trigger} ({row.kind})",
            f"[{style}]{row.status}[/]",
            _duration(row.seconds),
            str(row.models_built),
            _coloured(row.tests_failed, "red"),
            f"{row.quality_score:.1%}" if row.quality_score is not None else "-",
        )
    console.print(table)


def history_run(console: Console, record: RunRecord) -> None:
    style = _RUN_STATUS_STYLE.get(record.status, "")
    console.print(
        f"run [bold]{record.run_id}[/] of {record.target} ({record.kind}, {record.trigger.describe()}): "
        f"[{style}]{record.status}[/], exit code {record.exit_code}, {_duration(record.seconds)}",
        highlight=False,
    )
    console.print(
        f"started {record.started_at:%Y-%m-%d %H:%M:%S} UTC, commit {record.git_commit or 'unknown'}, "
        f"CPU {record.cpu_seconds or 0:.1f}s, peak memory {(record.peak_memory_bytes or 0) / 2**20:,.0f} MiB",
        style="dim",
        highlight=False,
    )
    if record.error:
        console.print(f"[bold red]stopped by:[/] {escape(record.error)}", highlight=False)
    console.print(_stages_table("stages", record.stages))
    kinds = ("model", "test", "unit_test", "source", "expectation")
    counts = ", ".join(
        f"{record.count(kind)} {kind.replace('_', ' ')}s ({record.count(kind, 'error')} failed)" for kind in kinds
    )
    console.print(f"nodes: {counts}", highlight=False)
    if record.findings:
        console.print(_findings_table(record.findings))
    if record.publish is not None:
        _publish_lines(console, record.target, record.publish)
    if record.row_counts:
        console.print(
            "rows: " + ", ".join(f"{name} {rows:,}" for name, rows in record.row_counts.items()),
            style="dim",
            highlight=False,
        )
    if record.deployment is not None:
        _deployment_lines(console, record.deployment)


def _deployment_lines(console: Console, deployment: DeploymentRecord) -> None:
    style = "bold green" if deployment.outcome in ("deployed", "unchanged") else "bold red"
    commit = (deployment.git_commit or "unknown")[:12] + (" + uncommitted changes" if deployment.dirty else "")
    lines = [
        f"deployment: [{style}]{deployment.outcome}[/], {deployment.build} build ({escape(deployment.reason)})",
        f"commit {commit} of {deployment.commit_time or '?'} on {deployment.branch or '?'} by "
        f"{escape(deployment.author or '?')}",
        "changed models: "
        + (", ".join(m.rsplit(".", 1)[-1] for m in deployment.changed_models) or "none")
        + f"; {len(deployment.nodes_built)} models built; tests {deployment.tests_passed} passed, "
        f"{deployment.tests_failed} failed",
        f"artifacts: {deployment.artifacts or 'none kept'}",
        f"notification: {escape(deployment.notification or 'none')}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def deploy_summary(console: Console, report: DeployReport) -> None:
    """The pipeline's summary when it ran (else the deployment's own stages), then the deployment."""
    record = report.record
    if report.summary is not None:
        run_summary(console, report.summary)
    else:
        console.print(_stages_table(f"dataops deploy {record.run_id} on {record.target}", record.stages))
        if record.error:
            console.print(f"[bold red]stopped by:[/] {escape(record.error)}", highlight=False)
    assert record.deployment is not None
    from dataops.commands.deploy import PRE_DEPLOYMENT_STAGES

    shown = [s for s in record.stages if s.name in PRE_DEPLOYMENT_STAGES]
    console.print(_stages_table("pre-deployment", shown))
    _deployment_lines(console, record.deployment)
    console.print(f"rollback: {escape(report.rollback)}", highlight=False, soft_wrap=True)
    verdict = (
        "[bold green]DEPLOYED[/]"
        if record.deployment.outcome == "deployed"
        else (
            "[bold green]NOTHING TO DEPLOY[/]"
            if record.deployment.outcome == "unchanged"
            else "[bold red]NOT DEPLOYED[/]"
        )
    )
    console.print(
        f"{verdict} to {record.target} in {_duration(record.deployment.seconds)}; exit code {record.exit_code}"
    )


def _publish_lines(console: Console, target: str, publish: PublishRecord) -> None:
    if publish.diffs:
        diff = Table(title="data diff against the published version (by primary key)", title_justify="left")
        for column in ("mart", "key", "added", "removed", "changed", "columns changed"):
            diff.add_column(column, justify="right" if column in ("added", "removed", "changed") else "left")
        for d in publish.diffs:
            columns = ", ".join(f"{name} {count:,}" for name, count in sorted(d.changed_columns.items()))
            diff.add_row(
                d.mart, ", ".join(d.key), f"{d.added:,}", f"{d.removed:,}", f"{d.changed:,}", escape(columns) or "-"
            )
        console.print(diff)
    if publish.status == "rolled back":
        console.print(f"[bold green]rolled back[/] {target} to v{publish.version} (was v{publish.previous_version})")
    elif publish.status == "published":
        console.print(
            f"[bold green]published[/] v{publish.version} to {target}"
            + (f" (was v{publish.previous_version})" if publish.previous_version else "")
        )
    else:
        kept = f"v{publish.previous_version}" if publish.previous_version else "nothing (no version yet)"
        console.print(
            f"[bold red]not published[/]: {escape(publish.reason.removeprefix('not published: '))}; "
            f"consumers keep {kept}"
        )


def incident_opened(console: Console, incident: Incident) -> None:
    record = incident.record
    console.print(
        f"opened incident {record.incident_id} ({record.severity}) on {record.target}: {escape(record.title)}",
        highlight=False,
        soft_wrap=True,
    )
    for check in incident.failed:
        reached = ", ".join(c.label for c in check.consumers) or "no exposure"
        console.print(f"  {escape(check.node.name)} reaches {escape(reached)}", highlight=False, soft_wrap=True)
    console.print(f"report: {record.path}", highlight=False, soft_wrap=True)


def incident_resolved(console: Console, record: IncidentRecord) -> None:
    from dataops.ops.incident_report import duration

    assert record.seconds_open is not None
    console.print(
        f"resolved incident {record.incident_id} after {duration(record.seconds_open)}: {escape(record.resolution)}",
        highlight=False,
        soft_wrap=True,
    )


def incidents_table(console: Console, incidents: Sequence[IncidentRecord]) -> None:
    from datetime import UTC, datetime

    from dataops.ops.incident_report import duration

    if not incidents:
        console.print("no incident in the run history", highlight=False)
        return
    table = Table(title="incidents, newest first", title_justify="left")
    for column in ("incident", "target", "severity", "opened (UTC)", "resolved (UTC)", "duration", "title"):
        # The id is what `incident resolve` takes: never wrapped, so it can be copied whole.
        table.add_column(column, overflow="fold", no_wrap=column != "title")
    for incident in incidents:
        if incident.seconds_open is not None and incident.resolved_at is not None:
            resolved, took = f"{incident.resolved_at.astimezone(UTC):%Y-%m-%d %H:%M}", duration(incident.seconds_open)
        else:
            open_for = (datetime.now(UTC) - incident.opened_at).total_seconds()
            resolved, took = "[yellow]open[/]", f"open for {duration(open_for)}"
        table.add_row(
            incident.incident_id,
            incident.target,
            _SEVERITY_STYLE.get(incident.severity, "{}").format(incident.severity),
            f"{incident.opened_at.astimezone(UTC):%Y-%m-%d %H:%M}",
            resolved,
            took,
            escape(incident.title),
        )
    console.print(table)


_SEVERITY_STYLE = {"critical": "[bold red]{}[/]", "major": "[yellow]{}[/]"}


def versions_table(console: Console, target: str, versions: Sequence[Version]) -> None:
    if not versions:
        console.print(f"No published version of {target} yet: `dataops run` publishes one once every check passed.")
        return
    table = Table(title=f"versions of {target}, newest first", title_justify="left")
    for column in ("version", "run", "published at", "rows per mart"):
        table.add_column(column)
    for version in versions:
        rows = ", ".join(f"{name.split('.')[-1]} {count:,}" for name, count in sorted(version.row_counts.items()))
        label = f"[bold green]{version.label} (published)[/]" if version.current else version.label
        table.add_row(label, version.run_id, version.published_at or "-", rows)
    console.print(table)


def _metric_value(value: float | None, unit: str) -> str:
    if value is None:
        return "[dim]none in the window[/]"
    if unit == "seconds":
        return _duration(value)
    if unit == "ratio":
        return f"{value:.0%}"
    return f"{value:,.3g}"


def _detail_value(key: str, value: object) -> str:
    if isinstance(value, float):
        return _metric_value(value, "ratio" if key.endswith("share") else "")
    return "-" if value is None else str(value)


def metrics_table(console: Console, report: MetricsReport) -> None:
    table = Table(
        title=f"DataOps metrics of {escape(report.target)}, {report.since:%Y-%m-%d %H:%M} to "
        f"{report.until:%Y-%m-%d %H:%M} UTC ({report.runs} pipeline runs)",
        title_justify="left",
    )
    for column in ("metric", "value", "unit", "detail"):
        table.add_column(column)
    for metric in report.metrics:
        if not metric.available:
            table.add_row(metric.name, "[dim]not available[/]", "", escape(f"needs {metric.needs}"))
            continue
        detail = ", ".join(
            f"{key} {_detail_value(key, value)}"
            for key, value in metric.detail.items()
            if not isinstance(value, (list, dict)) and key != "manifest"
        )
        table.add_row(metric.name, _metric_value(metric.value, metric.unit), metric.unit, escape(detail))
    console.print(table)
