"""The `dataops` command line: parses arguments, calls the library, prints. Nothing else."""

from __future__ import annotations

import csv
import io
import json
import sys
import traceback
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dataops.cli import render
from dataops.core.config import PROJECT_ROOT, load_settings, target_names, warehouse_dir
from dataops.core.errors import DataOpsError, ExitCode, InternalError

app = typer.Typer(
    name="dataops",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
docs_app = typer.Typer(help="The dbt project's documentation site.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")
history_app = typer.Typer(help="The run history: every run of a target, whoever started it.")
app.add_typer(history_app, name="history")
incident_app = typer.Typer(
    help="Incidents: a report drafted from the run history, lineage and git; resolved; listed.",
    no_args_is_help=True,
)
app.add_typer(incident_app, name="incident")
# Logs and CI have no terminal width; give the summary tables room instead of Rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
error_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        "-t",
        envvar="DATAOPS_TARGET",
        help=f"Environment from environments.yml ({', '.join(target_names()) or 'see the file'}); default dev.",
        show_default=False,
    ),
]
ScaleOption = Annotated[
    float | None,
    typer.Option(help="Generate synthetic data at this scale (1 ≈ the real sample).", min=0.0001),
]
SeedOption = Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")]
WaitOption = Annotated[
    bool,
    typer.Option("--wait", help="If another run holds the target, wait for it instead of exiting 2."),
]


def _print_version(requested: bool) -> None:
    if requested:
        from importlib.metadata import version

        console.print(f"dataops {version('dataops')} (dbt-core {version('dbt-core')})", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run and operate the AdventureWorks analytics pipeline: dbt on DuckDB (the embedded default),
    PostgreSQL or SQL Server."""


class FileFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


class RecordFormat(StrEnum):
    table = "table"
    json = "json"


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def generate(
    scale: Annotated[
        float | None,
        typer.Option(help="1 ≈ the real sample (31,465 orders); default 1.", min=0.0001, show_default=False),
    ] = None,
    seed: SeedOption = 42,
    out: Annotated[Path, typer.Option(help="Folder to write Schema.Table files into.")] = PROJECT_ROOT
    / "data"
    / "generated",
    file_format: Annotated[
        FileFormat | None,
        typer.Option(
            "--format", help="parquet or csv; default parquet, and with --append the format of the --from files."
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Newest timestamp in the data (UTC); default now. Fix it for identical bytes."),
    ] = None,
    append: Annotated[
        float | None,
        typer.Option(
            help="The next day instead: PCT % more orders (for old and new customers) on the data in --from.",
            min=0,
            max=100,
            show_default=False,
        ),
    ] = None,
    update: Annotated[
        float,
        typer.Option(help="With --append: PCT % of the old orders changed (ModifiedDate bumped).", min=0, max=100),
    ] = 0.0,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="With --append: the day's source files (default: --out).", show_default=False),
    ] = None,
    inject: Annotated[
        str | None,
        typer.Option(help="Corrupt the data with these faults, comma-separated (see --list-faults)."),
    ] = None,
    list_faults: Annotated[
        bool, typer.Option("--list-faults", help="Describe the injectable faults and exit.")
    ] = False,
) -> None:
    """Write synthetic AdventureWorks source data (ten OLTP tables), optionally with faults; or,
    with --append, the next day of existing data."""
    from dataops.sources.faults import FAULTS
    from dataops.sources.faults import inject as inject_faults
    from dataops.sources.generate import folder_format, generate_tables, next_day, write_tables
    from dataops.sources.readers import read_source_folder

    if list_faults:
        render.fault_list(console, list(FAULTS.values()))
        return
    if append is None and (update or from_dir is not None):
        raise DataOpsError("--update and --from go with --append PCT (the next day of existing data)")
    if append is not None and scale is not None:
        raise DataOpsError("give --scale N (new data) or --append PCT (the next day of the data in --from), not both")
    faults = [name.strip() for name in inject.split(",") if name.strip()] if inject else []
    if append is None:
        with console.status(f"Generating scale {scale or 1.0:g} ..."):
            tables = inject_faults(generate_tables(scale or 1.0, seed=seed, as_of=as_of), faults, seed=seed)
            paths = write_tables(tables, out, (file_format or FileFormat.parquet).value)
    else:
        source = from_dir or out
        with console.status(f"Generating the next day of {source} ..."):
            today = read_source_folder(source)
            tables = inject_faults(next_day(today, append, update, seed=seed, as_of=as_of), faults, seed=seed)
            # One format per folder: the next day in place of a csv day is csv again.
            paths = write_tables(tables, out, file_format.value if file_format else folder_format(source))
        added = tables["Sales.SalesOrderHeader"].num_rows - today["Sales.SalesOrderHeader"].num_rows
        console.print(f"The next day of {source}: {added:,} new orders, {update:g}% of the old ones changed")
    title = f"Wrote {len(paths)} files to {out}"
    if faults:
        console.print(f"Injected: {', '.join(faults)}", style="yellow")
    row_counts = {name: table.num_rows for name, table in tables.items()}
    render.table_counts(console, row_counts, title)


@app.command()
def load(
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="Folder of Schema.Table.csv/.parquet files (or Microsoft's install files)."),
    ] = None,
    scale: ScaleOption = None,
    seed: SeedOption = 42,
    target: TargetOption = None,
) -> None:
    """Load source data into the warehouse: all ten tables, or none if any file is bad."""
    from dataops.commands.load import load_folder, load_generated

    if (from_dir is None) == (scale is None):
        raise DataOpsError("give --from DIR (files to load) or --scale N (generated data)")
    settings = load_settings(target)
    with console.status("Loading ..."):
        if from_dir is not None:
            report = load_folder(settings, from_dir)
        else:
            report = load_generated(settings, scale or 1.0, seed)
    render.table_counts(console, report.row_counts, f"Loaded {report.description} into {settings.target}")


@app.command()
def run(
    scale: ScaleOption = None,
    data: Annotated[Path | None, typer.Option(help="Load this folder of source files first.")] = None,
    seed: SeedOption = 42,
    target: TargetOption = None,
    select: Annotated[
        list[str] | None, typer.Option("--select", "-s", help="dbt selection for the build stage.")
    ] = None,
    docs: Annotated[bool, typer.Option(help="Generate dbt docs of the candidate before it is published.")] = True,
    quality: Annotated[bool, typer.Option(help="Run the Great Expectations suites after the build.")] = True,
    allow_breaking: Annotated[
        bool, typer.Option("--allow-breaking", help="Publish even if a mart's column was dropped or retyped.")
    ] = False,
    wait: WaitOption = False,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Rebuild every row of the incremental marts instead of merging what changed into "
            "the published version's.",
        ),
    ] = False,
) -> None:
    """The main job: load (if needed), freshness, dbt build with all tests into the candidate, quality
    checks, docs, smoke checks and publish, summary.

    The incremental marts (fct_orders, fct_order_lines, customer_analytics) merge the rows whose
    source changed since the published version was built (less a lookback) into a copy of it;
    --full-refresh rebuilds them whole, as the first run does.

    The marts are published (all at once, atomically) only when no check failed; otherwise consumers
    keep the version published before, and the summary names the checks that stopped it. A run with
    --select or --no-quality is checked but never published.

    Exit code 0 when everything passed (warnings allowed), 1 when a check failed, 2 on a usage or
    configuration error (another run holds the target, without --wait), 3 on an internal error (its
    traceback in the log it names).
    """
    settings = load_settings(target)
    worker = None
    if quality:
        from dataops.quality.suites import QualityWorker

        worker = QualityWorker.for_settings(settings)  # first: its import overlaps everything after
    from dataops.commands.run import Pipeline, RunOptions

    options = RunOptions(
        data_dir=data,
        scale=scale,
        seed=seed,
        select=select or [],
        docs=docs,
        quality=quality,
        allow_breaking=allow_breaking,
        wait=wait,
        full_refresh=full_refresh,
    )
    with render.ProgressReporter(console) as reporter:
        summary = Pipeline(settings, reporter, quality_worker=worker).run(options)
    render.run_summary(console, summary)
    raise typer.Exit(int(summary.exit_code))


@app.command()
def deploy(
    target: TargetOption = None,
    full: Annotated[bool, typer.Option("--full", help="Build every model, not only what changed.")] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding the manifest.json of the last deployment to the target (default: the "
            "one kept with it under the target's artifacts)."
        ),
    ] = None,
    wait: WaitOption = False,
) -> None:
    """Deploy the project to a target: pre-deployment checks (doctor, compile, project checks), a slim
    build of what changed since the last deployment (state:modified+; the first deploy or --full
    builds everything), every check, the atomic publish, docs, a deployment record and a notification.

    Exit code 0 when deployed (or nothing changed), 1 when a check failed (nothing published), 2 on a
    usage or configuration error, 3 on an internal error.
    """
    settings = load_settings(target)
    from dataops.quality.suites import QualityWorker

    worker = QualityWorker.for_settings(settings)  # first: its import overlaps the checks and the build
    from dataops.commands.deploy import Deployment, DeployOptions

    with render.ProgressReporter(console) as reporter:
        report = Deployment(settings, reporter, quality_worker=worker).run(
            DeployOptions(full=full, state=state, wait=wait)
        )
    render.deploy_summary(console, report)
    raise typer.Exit(report.exit_code)


@app.command()
def changes(
    base: Annotated[str, typer.Option(help="The branch, tag or commit to compare with.")] = "main",
    target: TargetOption = None,
) -> None:
    """Print the "Models Affected" list of the branch for the pull request template: state:modified+
    against the dbt project of the base commit, as markdown."""
    from dataops.commands.changes import branch_changes, markdown

    sys.stdout.write(markdown(branch_changes(load_settings(target), base)))


@app.command()
def check(target: TargetOption = None) -> None:
    """Check the dbt project's structure (tests, naming, docs, freshness) from its manifest."""
    from dataops.project.checks import CHECKS, run_checks
    from dataops.project.runner import DbtProject

    settings = load_settings(target)
    with console.status("Parsing the dbt project ..."):
        manifest = DbtProject(settings, compile_only=True).manifest_dict()
    violations = run_checks(manifest)
    render.check_results(console, CHECKS, violations)
    raise typer.Exit(int(ExitCode.FAILURES if violations else ExitCode.SUCCESS))


@app.command()
def quality(
    suite: Annotated[
        list[str] | None, typer.Option("--suite", help="Run only this suite (repeatable); default all.")
    ] = None,
    target: TargetOption = None,
    candidate: Annotated[
        bool, typer.Option("--candidate", help="Check the last build (the candidate), not the published marts.")
    ] = False,
) -> None:
    """Run the Great Expectations suites (gx/) on the published marts (or the candidate), in the warehouse.

    Results land as JSON and Data Docs under the target's artifacts. Exit 1 when an error-level
    expectation fails; warnings are reported.
    """
    from dataops.quality.suites import run_quality

    settings = load_settings(target)
    with console.status(f"Running expectations on {settings.target} ..."):
        report = run_quality(settings, suite or None, published=not candidate)
    render.quality_report(console, report)
    raise typer.Exit(int(ExitCode.FAILURES if report.failed else ExitCode.SUCCESS))


@app.command()
def doctor(target: TargetOption = None) -> None:
    """Check this machine against a target: packages, variables, driver, database, tools.

    Secrets are masked. Exit code 0 only when all is well, 2 otherwise.
    """
    from dataops.commands.doctor import diagnose

    report = diagnose(load_settings(target))
    render.doctor_report(console, report)
    raise typer.Exit(int(ExitCode.SUCCESS if report.healthy else ExitCode.USAGE))


@app.command("compile")
def compile_(
    target: TargetOption = None,
    validate: Annotated[
        bool, typer.Option(help="Parse every compiled model and test in the target's SQL dialect.")
    ] = False,
) -> None:
    """Compile the whole project for a target without connecting to it (SQL Server included).

    With --validate, every compiled file must parse in sqlfluff and sqlglot in the target's
    dialect and pass its portability rules (no `now()`, `::` casts, `||`, LIMIT ... on SQL Server).
    """
    from dataops.project.compile import compile_project

    settings = load_settings(target)
    with console.status(f"Compiling for {settings.target} ({settings.engine}) ..."):
        report = compile_project(settings, validate)
    render.compile_report(console, report)
    raise typer.Exit(int(ExitCode.FAILURES if report.problems else ExitCode.SUCCESS))


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="One SELECT statement.")],
    target: TargetOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """Run one read-only SELECT on the warehouse and print the rows."""
    from dataops.commands.query import run_query

    result = run_query(load_settings(target), sql)
    if output is OutputFormat.table:
        # Piped or redirected, there is no width to fit: print every name and value whole.
        render.query_table(console if sys.stdout.isatty() else Console(width=render.UNLIMITED_WIDTH), result)
    elif output is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        sys.stdout.write(buffer.getvalue())
    else:
        records = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(json.dumps(records, default=str, indent=2) + "\n")


@docs_app.command("serve")
def docs_serve(
    target: TargetOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=0, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
) -> None:
    """Serve the dbt docs that `dataops run` generated for a target, like `dbt docs serve` (Ctrl-C stops)."""
    from dataops.commands.docs import DocsServer

    with DocsServer(load_settings(target), host, port) as server:
        console.print(f"Serving the dbt docs of {server.target} at {server.url} (Ctrl-C stops)", highlight=False)
        server.serve_forever()


@app.command()
def exporter(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; 127.0.0.1 keeps it on this machine, 0.0.0.0 "
            "serves every interface (a container)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).", min=0, max=65535)] = 9108,
) -> None:
    """Serve the run history as Prometheus metrics at http://HOST:PORT/metrics (Ctrl-C stops).

    Read at every scrape from DATAOPS_HISTORY_URL (default: the SQLite file beside the warehouse):
    counters are totals over the history, so they survive a restart. A history that cannot be read
    is `dataops_history_up 0`; the reason is printed when that starts.
    """
    from dataops.ops.exporter import ExporterServer

    def notify(line: str) -> None:
        error_console.print(line, markup=False, highlight=False, soft_wrap=True)

    with ExporterServer(host, port, notify=notify) as server:
        console.print(
            f"Serving the run history at {server.store} as Prometheus metrics on {server.url} (Ctrl-C stops)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        server.serve_until_stopped()
    console.print("exporter stopped", highlight=False)


@app.command()
def versions(target: TargetOption = None) -> None:
    """List the kept versions of the marts, newest first: version, run, published at, rows per mart."""
    from dataops.publish.versions import list_versions

    settings = load_settings(target)
    render.versions_table(console, settings.target, list_versions(settings))


@app.command()
def rollback(
    to: Annotated[
        int | None,
        typer.Option("--to", help="The version to publish again (default: the one before the published one).", min=1),
    ] = None,
    target: TargetOption = None,
    wait: WaitOption = False,
) -> None:
    """Publish an earlier version of the marts again, all marts at once, and record it in the history."""
    from dataops.publish.versions import rollback as roll_back

    settings = load_settings(target)
    record = roll_back(settings, to=to, wait=wait)
    assert record.publish is not None
    console.print(
        f"rolled back {settings.target}: v{record.publish.version} is published again "
        f"(was v{record.publish.previous_version}); recorded as run {record.run_id}",
        highlight=False,
    )


SinceOption = Annotated[
    str, typer.Option("--since", help="The window to look back over: a number and h, d or w (30d, 12h, 2w).")
]


def _metrics_help() -> str:
    from dataops.ops.metrics import COST_RATE_ENV_VAR, DEFINITIONS, NOT_AVAILABLE

    lines = [f"{name}: {definition} ({unit})." for name, (unit, definition) in DEFINITIONS.items()]
    lines += [f"{name}: not available; it would need {needs}." for name, needs in NOT_AVAILABLE.items()]
    return (
        "The DataOps success metrics of a target, computed from the run history.\n\n"
        + "\n\n".join(lines)
        + f"\n\nCost needs {COST_RATE_ENV_VAR}. JSON: format dataops.metrics/v1 (README, DataOps metrics)."
    )


@app.command(help=_metrics_help())
def metrics(
    target: TargetOption = None,
    since: SinceOption = "30d",
    output: Annotated[
        RecordFormat, typer.Option("--format", "-f", help="table, or json (stable: see README).")
    ] = RecordFormat.table,
) -> None:
    from dataops.history.store import HistoryStore
    from dataops.ops.metrics import compute_metrics, parse_window

    settings = load_settings(target)
    report = compute_metrics(HistoryStore(), settings.target, parse_window(since), settings.artifacts_dir)
    if output is RecordFormat.table:
        render.metrics_table(console, report)
    else:
        _print_json(report.to_dict())


@app.command()
def report(
    target: TargetOption = None,
    since: SinceOption = "30d",
    out: Annotated[Path | None, typer.Option("--out", help="The HTML file (default: report-TARGET.html).")] = None,
) -> None:
    """Write one self-contained HTML report of a target (works offline): run duration by stage, checks
    over time, the quality score, freshness per source, rows per mart with the anomaly band, the
    DataOps metrics, incidents and the latest run's findings."""
    from dataops.history.store import HistoryStore
    from dataops.ops.metrics import parse_window
    from dataops.ops.report import write_report

    settings = load_settings(target)
    path = out or Path(f"report-{settings.target}.html")
    written = write_report(HistoryStore(), settings, parse_window(since), path)
    console.print(f"wrote the report of {settings.target} to {written}", highlight=False, soft_wrap=True)


@history_app.callback(invoke_without_command=True)
def history(
    context: typer.Context,
    target: TargetOption = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.", min=1)] = 20,
    output: Annotated[
        RecordFormat, typer.Option("--format", "-f", help="table, or json (stable: see README).")
    ] = RecordFormat.table,
) -> None:
    """List the target's runs, newest first: id, trigger, status, duration, models, failed checks, score.

    `dataops history show RUN_ID` shows one run with its findings.
    """
    if context.invoked_subcommand is not None:
        return
    from dataops.history.records import listing_document
    from dataops.history.store import HistoryStore

    settings = load_settings(target)
    rows = HistoryStore().runs(settings.target, limit=limit)
    if output is RecordFormat.table:
        render.history_table(console, settings.target, rows)
    else:
        _print_json(listing_document(rows))


@history_app.command("show")
def history_show(
    run_id: Annotated[str, typer.Argument(help="A run id from `dataops history`.")],
    output: Annotated[
        RecordFormat, typer.Option("--format", "-f", help="table, or json (stable: see README).")
    ] = RecordFormat.table,
) -> None:
    """Show one run: its stages, findings and the result of each failing or warning node."""
    from dataops.history.store import HistoryStore

    record = HistoryStore().get(run_id)
    if record is None:
        raise DataOpsError(f"no run {run_id} in the run history: list the runs with `dataops history`")
    if output is RecordFormat.table:
        render.history_run(console, record)
    else:
        _print_json(record.to_dict())


IncidentsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="DATAOPS_INCIDENTS_DIR",
        help="Folder of the incident reports (default: incidents/ of the project).",
        show_default=False,
    ),
]


@incident_app.command("new")
def incident_new(
    run: Annotated[
        str | None, typer.Option("--run", help="A failing run (default: the newest failing run of the target).")
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Default: the first failing check and the target.")
    ] = None,
    target: TargetOption = None,
    folder: IncidentsDirOption = None,
) -> None:
    """Open an incident for a failure: writes incidents/YYYY-MM-DD-<slug>.md (severity, impact with the
    downstream models and exposures, timeline, hints at the cause, action items) and records it."""
    from dataops.ops.incidents import open_incident

    incident = open_incident(load_settings(target), run_id=run, title=title, folder=folder)
    render.incident_opened(console, incident)


@incident_app.command("resolve")
def incident_resolve(
    incident_id: Annotated[str, typer.Argument(help="An incident id from `dataops incident list`.")],
    note: Annotated[str, typer.Option("--note", help="What fixed it.")] = "",
    folder: IncidentsDirOption = None,
) -> None:
    """Stamp an incident resolved, in its report and in the run history."""
    from dataops.ops.incidents import resolve_incident

    render.incident_resolved(console, resolve_incident(incident_id, note=note, folder=folder))


@incident_app.command("list")
def incident_list(target: TargetOption = None) -> None:
    """List the incidents, newest first: id, severity, opened, resolved and how long each was open."""
    from dataops.ops.incidents import list_incidents

    settings = load_settings(target) if target else None
    render.incidents_table(console, list_incidents(settings.target if settings else None))


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, default=str, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point, and the one place errors become exit codes (see dataops.core.errors): a user error
    prints one line and exits 2; an internal error prints one line naming the log that holds its
    traceback and exits 3."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="dataops", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        error_console.print("aborted")
        return 130
    except typer.TyperException as error:
        # Usage errors (bad option, non-numeric value, unknown command) exit 2, like click's.
        _print_error(f"error: {error.format_message()}")
        return int(getattr(error, "exit_code", ExitCode.USAGE))
    except DataOpsError as error:
        _print_error(f"error: {error}")
        return int(ExitCode.USAGE)
    except InternalError as error:
        log = error.log or _log_traceback(error)
        _print_error(f"internal error: {_one_line(error)}; the details are in {log}")
        return int(ExitCode.INTERNAL)
    except Exception as error:
        log = _log_traceback(error)
        _print_error(f"internal error: {type(error).__name__}: {_one_line(error)}; the traceback is in {log}")
        return int(ExitCode.INTERNAL)
    return code if isinstance(code, int) else 0


def _print_error(line: str) -> None:
    error_console.print(" ".join(line.split()), markup=False, highlight=False, soft_wrap=True)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _log_traceback(error: BaseException) -> Path:
    """Append the traceback to the warehouse folder's crash log, which holds nothing else; where that
    folder cannot be written (a file in its place, a read-only disk), to a file in the temp folder."""
    header = f"--- {datetime.now().astimezone().isoformat(timespec='seconds')} dataops {' '.join(sys.argv[1:])}\n"
    text = header + "".join(traceback.format_exception(error))
    path = warehouse_dir() / "logs" / "dataops-errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(text)
        return path
    except OSError:
        import tempfile

        descriptor, fallback = tempfile.mkstemp(prefix="dataops-error-", suffix=".log")
        with open(descriptor, "w", encoding="utf-8") as log:
            log.write(text)
        return Path(fallback)


if __name__ == "__main__":
    sys.exit(main())
