"""Data quality with Great Expectations: the suites in gx/ run inside the warehouse as SQL.

Suites and the checkpoint are stored in the repository in GX's own JSON format. Each run builds an
ephemeral GX context on the target's warehouse (no connection detail is ever written to disk),
validates every suite against the mart its `meta.model` names, and keeps the results as JSON and
as GX Data Docs beside the run's other artifacts.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataops.config import PROJECT_ROOT, Settings
from dataops.errors import DataOpsError
from dataops.findings import Finding, Level

GX_DIR = PROJECT_ROOT / "gx"
DEFAULT_CHECKPOINT = "daily_quality_checkpoint"
DATA_DOCS_SITE = "dataops_data_docs"


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

    def describe(self) -> str:
        if self.error:
            return f"could not run: {self.error}"
        if self.unexpected_count is not None:
            text = f"{self.unexpected_count:,} unexpected of {self.element_count or 0:,}"
            if self.examples:
                text += " (e.g. " + ", ".join(repr(e) for e in self.examples[:3]) + ")"
            return text
        return f"observed {self.observed}"


@dataclass
class QualityReport:
    checkpoint: str
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
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
    def findings(self) -> list[Finding]:
        return [Finding(o.level, o.check, o.describe()) for o in self.outcomes if o.level is not None]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataOpsError(f"cannot read {path.relative_to(PROJECT_ROOT)}: {error}") from error


def suite_documents(gx_dir: Path = GX_DIR) -> dict[str, dict[str, Any]]:
    """Every suite in gx/expectations, by name."""
    suites = {}
    for path in sorted((gx_dir / "expectations").glob("*.json")):
        document = _read_json(path)
        if not document.get("meta", {}).get("model"):
            raise DataOpsError(f"{path.name}: meta.model must name the mart the suite validates")
        suites[document["name"]] = document
    return suites


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
        error=" ".join(str(error).split())[:300] if error else None,
    )


@dataclass
class Validation:
    """A checkpoint run: its report, and what GX needs to render the run's Data Docs."""

    report: QualityReport
    context: Any
    run_results: list[Any]
    docs_dir: Path
    wants_data_docs: bool

    def build_data_docs(self) -> Path | None:
        """Render this run's results as Data Docs (static HTML); rendering reads no data."""
        if not self.wants_data_docs:
            return None
        self.context.build_data_docs(site_names=[DATA_DOCS_SITE], resource_identifiers=self.run_results)
        index = self.docs_dir / "index.html"
        self.report.data_docs_index = index if index.exists() else None
        return self.report.data_docs_index


def _context(docs_dir: Path) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX narrates at INFO level, one module even pinning its logger to INFO; our summary says
    # what matters.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    # The CLI draws its own progress; GX's per-metric bars would interleave with it.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name=DATA_DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _checkpoint_run(
    context: Any, datasource: Any, schema: str, documents: dict[str, dict[str, Any]], checkpoint: dict[str, Any]
) -> Any:
    """The checkpoint over `documents`, each suite on `schema`.<its meta.model>; closes the datasource."""
    import great_expectations as gx

    try:
        definitions = []
        for name, document in documents.items():
            model = document["meta"]["model"]
            asset = datasource.add_query_asset(name=model, query=f"select * from {schema}.{model}")
            suite = context.suites.add(gx.ExpectationSuite(**document))
            definitions.append(context.validation_definitions.add(gx.ValidationDefinition(
                name=name, data=asset.add_batch_definition_whole_table("whole table"), suite=suite,
            )))
        # GX's update_data_docs action rebuilds the whole site once per validation; the checkpoint
        # asks for it once per run, which `Validation.build_data_docs` honours with one build.
        return context.checkpoints.add(gx.Checkpoint(
            name=checkpoint["name"],
            validation_definitions=definitions,
            actions=[a for a in checkpoint.get("actions", []) if a.get("type") != "update_data_docs"],
            result_format=checkpoint.get("result_format", "SUMMARY"),
        )).run(expectation_parameters={"today": datetime.now(UTC).date().isoformat()})
    finally:
        # GX keeps its warehouse connections open (the datasource's own engine and its execution
        # engine's); DuckDB allows one configuration per file in a process, and one writer process
        # per file, so close them all before anyone else (dbt docs, the next stage) opens it.
        execution_engine = datasource.get_execution_engine()
        if hasattr(execution_engine, "close"):
            execution_engine.close()
        execution_engine.engine.dispose()
        datasource.get_engine().dispose()


def _selected(suites: list[str] | None, gx_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    documents = suite_documents(gx_dir)
    unknown = sorted(set(suites or []) - set(documents))
    if unknown:
        raise DataOpsError(f"unknown suite {', '.join(unknown)}: choose from {', '.join(documents)}")
    checkpoint_document = _read_json(gx_dir / "checkpoints" / f"{DEFAULT_CHECKPOINT}.json")
    selected = {ref["name"]: documents[ref["name"]] for ref in checkpoint_document["validation_definitions"]
                if not suites or ref["name"] in suites}
    return selected, checkpoint_document


def _report(checkpoint: str, documents: dict[str, dict[str, Any]], result: Any) -> QualityReport:
    report = QualityReport(checkpoint=checkpoint)
    for validation in result.run_results.values():
        suite_name = validation.suite_name
        for expectation_result in validation.results:
            report.outcomes.append(_outcome(suite_name, documents[suite_name]["meta"]["model"], expectation_result))
    return report


def validate(
    settings: Settings, suites: list[str] | None = None, run_id: str | None = None, gx_dir: Path = GX_DIR
) -> Validation:
    """Run the checkpoint (or only `suites`) on the target's marts, inside the warehouse, and keep
    the results as JSON. Data Docs are left to `Validation.build_data_docs`: the verdict does not
    wait for HTML."""
    from dataops.warehouse import connect, release_dbt_connections

    # An orchestrator may have run dbt in this very process (Cosmos does): DuckDB allows one
    # connection configuration per file, so let go of dbt's before GX opens its own.
    release_dbt_connections(settings)
    selected, checkpoint_document = _selected(suites, gx_dir)
    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    quality_dir = settings.artifacts_dir / "quality"
    docs_dir = quality_dir / "data_docs"
    context = _context(docs_dir)
    datasource = connect(settings).gx_datasource(context, f"{settings.target}_warehouse")
    result = _checkpoint_run(context, datasource, settings.consumer_schema, selected, checkpoint_document)

    report = _report(checkpoint_document["name"], selected, result)
    quality_dir.mkdir(parents=True, exist_ok=True)
    report.results_path = quality_dir / f"{run_id}.json"
    report.results_path.write_text(json.dumps(result.describe_dict(), indent=2, default=str), encoding="utf-8")
    wants_docs = any(a.get("type") == "update_data_docs" for a in checkpoint_document.get("actions", []))
    return Validation(report, context, list(result.run_results), docs_dir, wants_docs)


def run_quality(
    settings: Settings, suites: list[str] | None = None, run_id: str | None = None, gx_dir: Path = GX_DIR
) -> QualityReport:
    """Validate, then render the Data Docs: `dataops quality` and the Airflow task."""
    validation = validate(settings, suites, run_id, gx_dir)
    validation.build_data_docs()
    return validation.report


def warm_up(gx_dir: Path = GX_DIR) -> QualityReport:
    """Pay what a process's first checkpoint costs once (GX's metric, SQL and rendering machinery),
    on empty look-alike tables in a scratch DuckDB file: the worker does this while dbt still holds
    the warehouse, so the quality stage itself only runs the checks."""
    import tempfile

    from dataops.warehouse import duckdb_gx

    documents, checkpoint_document = _selected(None, gx_dir)
    with tempfile.TemporaryDirectory(prefix="dataops-gx-warm-up-") as scratch:
        context = _context(Path(scratch) / "data_docs")
        tables = {document["meta"]["model"]: _look_alike_columns(document) for document in documents.values()}
        datasource = duckdb_gx.add_empty_tables_datasource(context, "warm_up", Path(scratch), "warm_up", tables)
        result = _checkpoint_run(context, datasource, "warm_up", documents, checkpoint_document)
        report = _report(checkpoint_document["name"], documents, result)
        Validation(report, context, list(result.run_results), Path(scratch) / "data_docs", True).build_data_docs()
    return report


def _look_alike_columns(document: dict[str, Any]) -> str:
    """The columns a suite names, typed by what it compares them with: numbers where it averages
    them or bounds them by numbers, a date where the bound is the run's `today`, text otherwise."""
    types: dict[str, str] = {}
    for expectation in document.get("expectations", []):
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
    return ", ".join(f'"{name}" {kind}' for name, kind in types.items()) or "id integer"


class QualityWorker:
    """Runs the suites in a process of its own (`python -m dataops.quality_worker`), started when
    the pipeline starts.

    Importing Great Expectations, and a first checkpoint, are seconds of pure Python. In a separate
    process they happen on the other core while dbt parses and builds (a thread would fight dbt for
    the GIL), and the quality stage then only pays for its checks; the worker renders the Data Docs
    after it has answered, while the run goes on. A plain subprocess rather than multiprocessing:
    spawn would re-import the caller's __main__, which any script embedding the pipeline trips on.
    """

    @classmethod
    def for_settings(cls, settings: Settings) -> QualityWorker:
        return cls(settings.artifacts_dir / "logs" / "quality_worker.log")

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self._asked = False
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dataops.quality_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
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
            succeeded, payload = pickle.loads(output)
        except (pickle.UnpicklingError, EOFError) as error:
            self.finish()
            raise DataOpsError(
                f"the quality worker stopped (exit code {self._process.returncode}); see {self._log.name}"
            ) from error
        if not succeeded:
            self.finish()
            raise DataOpsError(payload)
        return payload

    def finish(self) -> Finding | None:
        """Wait for the Data Docs of a run that was asked for; stop a worker that never was (an
        earlier stage failed). A warning when the docs could not be rendered."""
        if not self._asked and self._process.poll() is None:
            self._process.kill()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self._process.wait()
        self._log.close()
        if self._asked and self._process.returncode != 0:
            return Finding("warn", "GX Data Docs", f"not rendered; see {self._log.name}")
        return None


