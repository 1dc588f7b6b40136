"""Data quality with Great Expectations: the suites in gx/ run inside the warehouse as SQL.

Suites and the checkpoint are stored in the repository in GX's own JSON format, checked by
`dataops.quality.config` before GX sees them. Each run builds an ephemeral GX context on the target's
warehouse (no connection detail is ever written to disk), validates every suite against the mart
its `meta.model` names, and keeps the run as a JSON record beside the run's other artifacts; the
Data Docs (`dataops.quality.docs`) are drawn from every record kept there.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError, InternalError
from dataops.core.findings import Finding, Level
from dataops.history.records import NodeRecord, SampleRecord
from dataops.quality.bounds import resolve_row_bounds
from dataops.quality.config import GX_DIR, CheckpointDocument, SuiteDocument, shown
from dataops.quality.config import load as load_gx_dir

__all__ = ["GX_DIR", "QualityReport", "QualityWorker", "run_quality", "validate", "warm_up"]

# A run's JSON record (`quality/<run id>.json`) says which layout it has, so that the Data Docs can
# tell a record of ours from any other JSON in that folder.
RECORD_FORMAT = "dataops-quality-run/1"
# What the worker answers: the report, a user error (one line), or a crash (one line; the
# traceback is in its log).
ANSWER_REPORT, ANSWER_ERROR, ANSWER_CRASH = "report", "error", "crash"


@dataclass(frozen=True)
class ExpectationOutcome:
    suite: str
    model: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: tuple[str, ...] = ()
    error: str | None = None
    # Bounds that follow the business (dataops.quality.bounds): what they were, whence, and how to set them.
    expected: str = ""

    @property
    def check(self) -> str:
        """Named like the dbt tests in the run summary: `<expectation> on <model>[.<column>]`."""
        where = f"{self.model}.{self.column}" if self.column else self.model
        return f"{self.expectation} on {where}"

    @property
    def level(self) -> Level | None:
        if self.success:
            return None
        return "error" if self.severity == "critical" or self.error else "warn"

    def to_node(self) -> NodeRecord:
        """The expectation as a node of the run history, beside dbt's tests."""
        return NodeRecord(
            unique_id=f"expectation.{self.suite}.{self.check}",
            kind="expectation",
            name=self.check,
            status="pass" if self.success else ("warn" if self.level == "warn" else "fail"),
            level=self.level or "ok",
            failures=self.unexpected_count,
            message="" if self.success else self.describe(),
            sample=self.sample(),
        )

    def sample(self) -> SampleRecord | None:
        """Some of the values a failing expectation found, as GX gave them (its
        partial_unexpected_list); None where GX gives none (an aggregate, a row count)."""
        if self.success or not self.examples:
            return None
        return SampleRecord.of([self.column or "unexpected value"], [[example] for example in self.examples])

    def describe(self) -> str:
        if self.error:
            return f"could not run: {self.error}"
        if self.unexpected_count is not None:
            text = f"{self.unexpected_count:,} unexpected of {self.element_count or 0:,}"
            if self.examples:
                text += " (e.g. " + ", ".join(repr(e) for e in self.examples[:3]) + ")"
            return text
        return f"observed {self.observed}" + (f", {self.expected}" if self.expected else "")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpectationOutcome:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        return cls(**{**values, "examples": tuple(values.get("examples") or ())})


def verdict_of(outcomes: list[ExpectationOutcome]) -> str:
    """The words the CLI's verdict means: failed when a critical check failed or could not run,
    passed with warnings when only warning-severity checks missed."""
    levels = {o.level for o in outcomes}
    if "error" in levels:
        return "failed"
    return "passed with warnings" if "warn" in levels else "passed"


@dataclass
class QualityReport:
    checkpoint: str
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    run_id: str = ""
    run_time: datetime | None = None
    target: str = ""
    # The suite documents as they ran, by name: the record keeps them for the Data Docs.
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    results_path: Path | None = None
    data_docs_index: Path | None = None

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.success)

    @property
    def warned(self) -> int:
        return sum(1 for o in self.outcomes if o.level == "warn")

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.level == "error")

    @property
    def verdict(self) -> str:
        return verdict_of(self.outcomes)

    @property
    def findings(self) -> list[Finding]:
        return [Finding(o.level, o.check, o.describe()) for o in self.outcomes if o.level is not None]

    def to_record(self, great_expectations: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run as JSON: our verdict and outcomes, the suites as they ran, and GX's own result."""
        return {
            "format": RECORD_FORMAT,
            "run_id": self.run_id,
            "run_time": self.run_time.isoformat() if self.run_time else None,
            "target": self.target,
            "checkpoint": self.checkpoint,
            "verdict": self.verdict,
            "passed": self.passed,
            "warned": self.warned,
            "failed": self.failed,
            "outcomes": [{**asdict(o), "level": o.level} for o in self.outcomes],
            "suites": self.definitions,
            "great_expectations": great_expectations,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> QualityReport:
        """A report from `to_record`'s JSON; ValueError for any other document."""
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f'not a dataops quality record (no "format": "{RECORD_FORMAT}")')
        try:
            return cls(
                checkpoint=str(record["checkpoint"]),
                outcomes=[ExpectationOutcome.from_dict(o) for o in record["outcomes"]],
                run_id=str(record["run_id"]),
                run_time=datetime.fromisoformat(record["run_time"]) if record.get("run_time") else None,
                target=str(record.get("target") or ""),
                definitions=dict(record.get("suites") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"a damaged dataops quality record ({type(error).__name__}: {error})") from error


def _resolved_bounds(meta: dict[str, Any]) -> str:
    """`expected 1,000 to any rows, from the default; DATAOPS_CUSTOMER_ROWS=MIN..MAX sets them` for
    an expectation whose bounds were resolved at run time (dataops.quality.bounds), else nothing."""
    if "bounds_from" not in meta:
        return ""
    how = f"; {meta['variable']}=MIN..MAX sets them" if meta.get("variable") else ""
    return f"expected {meta['bounds_from']}{how}"


def _outcome(suite: str, model: str, result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    details = result.result or {}
    error = None
    if result.exception_info and result.exception_info.get("raised_exception"):
        error = result.exception_info.get("exception_message")
    elif result.exception_info and not result.success and not details:
        messages = [v.get("exception_message") for v in result.exception_info.values() if isinstance(v, dict)]
        error = "; ".join(m for m in messages if m) or None
    severity = getattr(config, "severity", None)
    return ExpectationOutcome(
        suite=suite,
        model=model,
        expectation=config.type,
        column=config.kwargs.get("column"),
        severity=getattr(severity, "value", severity) or "critical",
        success=bool(result.success),
        observed=details.get("observed_value"),
        unexpected_count=details.get("unexpected_count"),
        element_count=details.get("element_count"),
        examples=tuple(str(v) for v in details.get("partial_unexpected_list") or []),
        expected=_resolved_bounds(config.meta or {}),
        error=" ".join(str(error).split())[:300] if error else None,
    )


@dataclass
class Validation:
    """A checkpoint run: its report, and what the Data Docs are drawn from."""

    report: QualityReport
    quality_dir: Path
    suites: dict[str, SuiteDocument]
    wants_data_docs: bool

    def build_data_docs(self) -> Path | None:
        """Redraw the Data Docs over every run kept in the quality folder (static HTML; no data read)."""
        if not self.wants_data_docs:
            return None
        from dataops.quality.docs import build_site

        self.report.data_docs_index = build_site(self.quality_dir, self.suites)
        return self.report.data_docs_index


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX narrates at INFO level, one module even pinning its logger to INFO; our summary says
    # what matters.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    # The CLI draws its own progress; GX's per-metric bars would interleave with it.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _gx_problem(error: Exception) -> str:
    """What GX (or pydantic under it) says is wrong with a document, on one line, by key."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors())
        except (TypeError, KeyError):
            pass
    return " ".join(str(error).split())


def _gx_suite(suite: SuiteDocument) -> Any:
    """The GX suite of a checked document, every expectation built by us first: GX's own constructor
    drops one it cannot build with a log line, and a check silently gone must never pass."""
    import great_expectations as gx
    from great_expectations.exceptions import GreatExpectationsError
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for index, expectation in enumerate(suite.expectations):
        try:
            expectations.append(ExpectationConfiguration(**expectation).to_domain_obj())
        except (GreatExpectationsError, TypeError, ValueError) as error:
            raise DataOpsError(
                f"{shown(suite.path)}: expectations[{index}] ({expectation['type']}): {_gx_problem(error)}"
            ) from error
    try:
        built = gx.ExpectationSuite(
            **{key: value for key, value in suite.document.items() if key != "expectations"},
            expectations=expectations,
        )
    except (GreatExpectationsError, TypeError, ValueError) as error:
        raise DataOpsError(f"{shown(suite.path)}: {_gx_problem(error)}") from error
    if len(built.expectations) != len(expectations):
        raise InternalError(
            f"GX kept {len(built.expectations)} of the {len(expectations)} expectations of {suite.name}"
        )
    return built


def _checkpoint_run(
    context: Any,
    datasource: Any,
    schema: str,
    suites: dict[str, SuiteDocument],
    checkpoint: CheckpointDocument,
    run_id: Any,
) -> Any:
    """The checkpoint over `suites`, each on `schema`.<its meta.model>; closes the datasource."""
    import great_expectations as gx
    from great_expectations.exceptions import GreatExpectationsError

    try:
        definitions = []
        for suite in suites.values():
            # One asset per suite, named after it: two suites may validate the same mart.
            asset = datasource.add_query_asset(name=suite.name, query=f"select * from {schema}.{suite.model}")
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(
                        name=suite.name,
                        data=asset.add_batch_definition_whole_table("whole table"),
                        suite=context.suites.add(_gx_suite(suite)),
                    )
                )
            )
        try:
            # The update_data_docs action is ours to honour (`Validation.build_data_docs`, once per
            # run, over the whole history): GX's would draw its own site for this run only.
            gx_checkpoint = gx.Checkpoint(
                name=checkpoint.name,
                validation_definitions=definitions,
                actions=[a for a in checkpoint.actions if a["type"] != "update_data_docs"],
                result_format=checkpoint.result_format,
            )
        except (GreatExpectationsError, TypeError, ValueError) as error:
            raise DataOpsError(f"{shown(checkpoint.path)}: {_gx_problem(error)}") from error
        return context.checkpoints.add(gx_checkpoint).run(
            expectation_parameters={"today": datetime.now(UTC).date().isoformat()}, run_id=run_id
        )
    finally:
        # GX keeps its warehouse connections open (the datasource's own engine and its execution
        # engine's); DuckDB allows one configuration per file in a process, and one writer process
        # per file, so close them all before anyone else (dbt docs, the next stage) opens it.
        execution_engine = datasource.get_execution_engine()
        if hasattr(execution_engine, "close"):
            execution_engine.close()
        execution_engine.engine.dispose()
        datasource.get_engine().dispose()


def _report(checkpoint: str, suites: dict[str, SuiteDocument], result: Any) -> QualityReport:
    report = QualityReport(checkpoint=checkpoint, definitions={name: s.document for name, s in suites.items()})
    counts = dict.fromkeys(suites, 0)
    for validation in result.run_results.values():
        suite = suites[validation.suite_name]
        for expectation_result in validation.results:
            report.outcomes.append(_outcome(suite.name, suite.model, expectation_result))
            counts[suite.name] += 1
    # Fail closed: a suite GX skipped, or an expectation it left out, would otherwise read as passed.
    short = [
        f"{name} ({counts[name]} of {len(s.expectations)})"
        for name, s in suites.items()
        if counts[name] != len(s.expectations)
    ]
    if short:
        raise InternalError(f"GX returned results for only some expectations: {', '.join(short)}")
    return report


def _require_marts(settings: Settings, warehouse: Any, suites: dict[str, SuiteDocument], schema: str) -> None:
    """One line before GX starts when a mart is not there: GX would fail every expectation on it,
    each with the same SQL error."""
    models = list(dict.fromkeys(suite.model for suite in suites.values()))
    missing = warehouse.missing_relations(schema, models)
    if missing:
        build = "dataops run" + ("" if settings.target == "dev" else f" --target {settings.target}")
        raise DataOpsError(
            f"the marts are not built yet in {settings.target} (missing {', '.join(missing)}): run `{build}` first"
        )


def _write_atomically(path: Path, text: str) -> None:
    """Readers (the Data Docs, a monitor) see the old file or the new one, never half of one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def validate(
    settings: Settings,
    suites: list[str] | None = None,
    run_id: str | None = None,
    gx_dir: Path = GX_DIR,
    published: bool = False,
) -> Validation:
    """Run the checkpoint (or only `suites`) on the target's marts (the candidate, or the published
    version), inside the warehouse, and keep
    the run's record as JSON. Data Docs are left to `Validation.build_data_docs`: the verdict does
    not wait for HTML."""
    from dataops.warehouse import connect, release_dbt_connections

    # An orchestrator may have run dbt in this very process (Cosmos does): DuckDB allows one
    # connection configuration per file, so let go of dbt's before GX opens its own.
    release_dbt_connections(settings)
    documents, checkpoint = load_gx_dir(gx_dir)
    selected = resolve_row_bounds(settings, checkpoint.select(documents, suites), run_id or "")
    warehouse = connect(settings)
    schema = settings.consumer_schema if published else settings.candidate_schema
    _require_marts(settings, warehouse, selected, schema)
    # Only now Great Expectations (seconds to import): whatever is wrong before is said at once.
    from great_expectations.core.run_identifier import RunIdentifier

    run_time = datetime.now(UTC)
    run_id = run_id or run_time.strftime("%Y%m%dT%H%M%SZ")
    context = _context()
    datasource = warehouse.gx_datasource(context, f"{settings.target}_warehouse", published=published)
    result = _checkpoint_run(
        context,
        datasource,
        schema,
        selected,
        checkpoint,
        RunIdentifier(run_name=run_id, run_time=run_time),
    )

    report = _report(checkpoint.name, selected, result)
    report.run_id, report.run_time, report.target = run_id, run_time, settings.target
    quality_dir = settings.artifacts_dir / "quality"
    quality_dir.mkdir(parents=True, exist_ok=True)
    report.results_path = quality_dir / f"{run_id}.json"
    # GX's own account, with the run id it filed the results under (its describe_dict leaves it out).
    gx_result = {**result.describe_dict(), "run_id": result.run_id.to_json_dict()}
    _write_atomically(report.results_path, json.dumps(report.to_record(gx_result), indent=2, default=str))
    return Validation(report, quality_dir, documents, checkpoint.wants_data_docs)


def run_quality(
    settings: Settings,
    suites: list[str] | None = None,
    run_id: str | None = None,
    gx_dir: Path = GX_DIR,
    published: bool = False,
) -> QualityReport:
    """Validate, then draw the Data Docs: the pipeline's quality stage and task check the candidate;
    `dataops quality` and data_quality_checks, the published version (`published`)."""
    validation = validate(settings, suites, run_id, gx_dir, published)
    validation.build_data_docs()
    return validation.report


def warm_up(gx_dir: Path = GX_DIR) -> QualityReport:
    """Pay what a process's first checkpoint costs once (GX's metric and SQL machinery), on empty
    look-alike tables in a scratch DuckDB file: the worker does this while dbt still holds the
    warehouse, so the quality stage itself only runs the checks."""
    import tempfile

    from great_expectations.core.run_identifier import RunIdentifier

    from dataops.warehouse import duckdb_gx

    documents, checkpoint = load_gx_dir(gx_dir)
    selected = resolve_row_bounds(None, checkpoint.select(documents, None))
    columns: dict[str, dict[str, str]] = {}
    for suite in selected.values():
        _look_alike_columns(suite, columns.setdefault(suite.model, {}))
    tables = {
        model: ", ".join(f'"{name}" {kind}' for name, kind in types.items()) or "id integer"
        for model, types in columns.items()
    }
    with tempfile.TemporaryDirectory(prefix="dataops-gx-warm-up-") as scratch:
        context = _context()
        datasource = duckdb_gx.add_empty_tables_datasource(context, "warm_up", Path(scratch), "warm_up", tables)
        result = _checkpoint_run(
            context, datasource, "warm_up", selected, checkpoint, RunIdentifier(run_name="warm-up")
        )
        return _report(checkpoint.name, selected, result)


def _look_alike_columns(suite: SuiteDocument, types: dict[str, str]) -> None:
    """The columns a suite names, typed by what it compares them with: numbers where it averages
    them or bounds them by numbers, a date where the bound is the run's `today`, text otherwise."""
    for expectation in suite.expectations:
        kwargs = expectation.get("kwargs", {})
        if not kwargs.get("column"):
            continue
        bounds = [kwargs.get("min_value"), kwargs.get("max_value")]
        if any(isinstance(bound, dict) and "$PARAMETER" in bound for bound in bounds):
            kind = "date"
        elif "mean" in expectation["type"] or any(isinstance(bound, int | float) for bound in bounds):
            kind = "double"
        else:
            kind = "varchar"
        types.setdefault(kwargs["column"], kind)


class QualityWorker:
    """Runs the suites in a process of its own (`python -m dataops.quality.worker`), started when
    the pipeline starts.

    Importing Great Expectations, and a first checkpoint, are seconds of pure Python. In a separate
    process they happen on the other core while dbt parses and builds (a thread would fight dbt for
    the GIL), and the quality stage then only pays for its checks; the worker draws the Data Docs
    after it has answered, while the run goes on. A plain subprocess rather than multiprocessing:
    spawn would re-import the caller's __main__, which any script embedding the pipeline trips on.

    A user error in the worker stays a DataOpsError here; a crash (any other exception, or a worker
    that dies without answering) is an InternalError naming the log that holds the traceback.
    """

    @classmethod
    def for_settings(cls, settings: Settings) -> QualityWorker:
        return cls(settings.artifacts_dir / "logs" / "quality_worker.log")

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        # Appended to, never replaced: the traceback a crashed run names must outlive the next run.
        self._log = log_path.open("ab")
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        self._log.write(f"--- {started} quality worker of dataops pid {os.getpid()}\n".encode())
        self._log.flush()
        self._asked = False
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dataops.quality.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    def run(self, settings: Settings, suites: list[str] | None = None, run_id: str | None = None) -> QualityReport:
        """The verdict, as soon as the checks are done (the worker then goes on to the Data Docs)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._asked = True
        try:
            self._process.stdin.write(pickle.dumps((settings, suites, run_id)))
            self._process.stdin.close()
            output = self._process.stdout.read()
        except BrokenPipeError:
            output = b""
        try:
            kind, payload = pickle.loads(output)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
            self.finish()
            raise InternalError(
                f"the quality worker stopped without an answer ({self._exit_status()})", log=self.log_path
            ) from error
        if kind == ANSWER_REPORT:
            return payload
        self.finish()
        if kind == ANSWER_ERROR:
            raise DataOpsError(payload)
        raise InternalError(f"the quality checks crashed: {payload}", log=self.log_path)

    def _exit_status(self) -> str:
        code = self._process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def finish(self) -> Finding | None:
        """Wait for the Data Docs of a run that was asked for; stop a worker that never was (an
        earlier stage failed). A warning when the docs could not be drawn."""
        if not self._asked and self._process.poll() is None:
            self._process.kill()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self._process.wait()
        self._log.close()
        if self._asked and self._process.returncode != 0:
            return Finding("warn", "quality Data Docs", f"not drawn; see {self.log_path}")
        return None
