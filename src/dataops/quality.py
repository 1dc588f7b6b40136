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


def run_quality(
    settings: Settings,
    suites: list[str] | None = None,
    run_id: str | None = None,
    gx_dir: Path = GX_DIR,
) -> QualityReport:
    """Run the checkpoint (or only `suites`) on the target's marts, inside the warehouse."""
    import great_expectations as gx

    from dataops.warehouse import connect, release_dbt_connections

    # An orchestrator may have run dbt in this very process (Cosmos does): DuckDB allows one
    # connection configuration per file, so let go of dbt's before GX opens its own.
    release_dbt_connections(settings)
    documents = suite_documents(gx_dir)
    unknown = sorted(set(suites or []) - set(documents))
    if unknown:
        raise DataOpsError(f"unknown suite {', '.join(unknown)}: choose from {', '.join(documents)}")
    checkpoint_document = _read_json(gx_dir / "checkpoints" / f"{DEFAULT_CHECKPOINT}.json")
    selected = [ref["name"] for ref in checkpoint_document["validation_definitions"]
                if not suites or ref["name"] in suites]

    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    quality_dir = settings.artifacts_dir / "quality"
    docs_dir = quality_dir / "data_docs"
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
    datasource = connect(settings).gx_datasource(context, f"{settings.target}_warehouse")
    try:
        definitions = []
        models: dict[str, str] = {}
        for name in selected:
            document = documents[name]
            model = document["meta"]["model"]
            models[name] = model
            asset = datasource.add_query_asset(
                name=model, query=f"select * from {settings.consumer_schema}.{model}"
            )
            suite = context.suites.add(gx.ExpectationSuite(**document))
            definitions.append(context.validation_definitions.add(gx.ValidationDefinition(
                name=name, data=asset.add_batch_definition_whole_table("whole table"), suite=suite,
            )))
        # GX's update_data_docs action rebuilds the whole site once per validation; the checkpoint
        # asks for it once per run, so it is honoured below with one build of this run's results.
        actions = checkpoint_document.get("actions", [])
        build_docs = any(action.get("type") == "update_data_docs" for action in actions)
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=checkpoint_document["name"],
            validation_definitions=definitions,
            actions=[action for action in actions if action.get("type") != "update_data_docs"],
            result_format=checkpoint_document.get("result_format", "SUMMARY"),
        ))
        result = checkpoint.run(expectation_parameters={"today": datetime.now(UTC).date().isoformat()})
        if build_docs:
            context.build_data_docs(
                site_names=[DATA_DOCS_SITE], resource_identifiers=list(result.run_results)
            )
    finally:
        # GX keeps its warehouse connections open (the datasource's own engine and its execution
        # engine's); DuckDB allows one configuration per file in a process, so close them all.
        execution_engine = datasource.get_execution_engine()
        if hasattr(execution_engine, "close"):
            execution_engine.close()
        execution_engine.engine.dispose()
        datasource.get_engine().dispose()

    report = QualityReport(checkpoint=checkpoint_document["name"])
    for validation in result.run_results.values():
        suite_name = validation.suite_name
        for expectation_result in validation.results:
            report.outcomes.append(_outcome(suite_name, models[suite_name], expectation_result))
    quality_dir.mkdir(parents=True, exist_ok=True)
    report.results_path = quality_dir / f"{run_id}.json"
    report.results_path.write_text(json.dumps(result.describe_dict(), indent=2, default=str), encoding="utf-8")
    index = docs_dir / "index.html"
    report.data_docs_index = index if index.exists() else None
    return report


class QualityWorker:
    """Runs the suites in a process of its own (`python -m dataops.quality_worker`), started when
    the pipeline starts.

    Importing Great Expectations is seconds of pure Python. In a separate process it happens on
    the other core while dbt parses and builds (a thread would fight dbt for the GIL), and the
    quality stage then only pays for its checks. A plain subprocess rather than multiprocessing:
    spawn would re-import the caller's __main__, which any script embedding the pipeline trips on.
    """

    @classmethod
    def for_settings(cls, settings: Settings) -> QualityWorker:
        return cls(settings.artifacts_dir / "logs" / "quality_worker.log")

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dataops.quality_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )

    def run(self, settings: Settings, suites: list[str] | None = None, run_id: str | None = None) -> QualityReport:
        try:
            request = pickle.dumps((settings, suites, run_id))
            output, _ = self._process.communicate(request)
        finally:
            self._log.close()
        try:
            succeeded, payload = pickle.loads(output)
        except (pickle.UnpicklingError, EOFError) as error:
            raise DataOpsError(
                f"the quality worker stopped (exit code {self._process.returncode}); see {self._log.name}"
            ) from error
        if not succeeded:
            raise DataOpsError(payload)
        return payload

    def close(self) -> None:
        """Stop a worker that will not be asked to run (an earlier stage failed)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._log.close()
