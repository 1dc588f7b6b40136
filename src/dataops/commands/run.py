"""`dataops run`: load, freshness, build and test into the candidate, quality, docs, publish, record;
each stage timed and reported. The run holds its target from the first stage to the last."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dataops.commands.load import LoadReport, load_folder, load_generated
from dataops.core.config import Settings
from dataops.core.errors import DataOpsError, ExitCode
from dataops.history.provenance import Usage, git_commit
from dataops.history.records import PublishRecord, RunRecord, Trigger, new_run_id
from dataops.history.store import HistoryStore
from dataops.project.progress import NodeProgress
from dataops.project.results import (
    Finding,
    QualityCounts,
    RunSummary,
    StageResult,
    StageStatus,
    build_detail,
    freshness_detail,
    interpret_build,
    interpret_freshness,
    manifest_models,
    quality_detail,
    row_counts,
    stage_status,
    what_stopped,
)
from dataops.project.runner import DbtProject
from dataops.project.samples import with_samples
from dataops.publish.audit import marts_of
from dataops.publish.incremental import LOOKBACK_VAR, IncrementalPlan, plan_incremental
from dataops.publish.lock import hold_target
from dataops.publish.versions import publish_candidate
from dataops.warehouse import LockHolder, connect

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest

    from dataops.quality.suites import QualityWorker

DEFAULT_SCALE = 1.0
DEFAULT_SEED = 42


class Reporter(Protocol):
    """Receives progress as the pipeline goes; the CLI draws it, tests may ignore it."""

    def stage_started(self, name: str) -> None: ...

    def node_progress(self, progress: NodeProgress) -> None: ...

    def stage_finished(self, stage: StageResult) -> None: ...

    def waiting_for(self, holder: LockHolder | None) -> None: ...


class SilentReporter:
    def stage_started(self, name: str) -> None:
        pass

    def node_progress(self, progress: NodeProgress) -> None:
        pass

    def stage_finished(self, stage: StageResult) -> None:
        pass

    def waiting_for(self, holder: LockHolder | None) -> None:
        pass


@dataclass(frozen=True)
class SlimBuild:
    """A build of what changed only (`dataops deploy`): dbt builds `state:modified+` against the
    manifest in `state_dir`, into a candidate that first gets a copy of every other mart from the
    published version, and the run is published like a full one. The caller has checked that the
    published version and the warehouse are as that manifest built them; `confirm` checks it again
    once the run holds the target, before anything is built, and raises when it no longer holds."""

    state_dir: Path
    rebuilt_marts: frozenset[str]
    confirm: Callable[[], None] | None = None


@dataclass(frozen=True)
class RunOptions:
    data_dir: Path | None = None
    scale: float | None = None
    seed: int = DEFAULT_SEED
    select: list[str] = field(default_factory=list)
    docs: bool = True
    quality: bool = True
    trigger: Trigger = field(default_factory=lambda: Trigger("cli"))
    # Publish even though a column of a mart was dropped or retyped (a breaking change, on purpose).
    allow_breaking: bool = False
    # Another run holds the target: wait for it, rather than stop with a usage error.
    wait: bool = False
    # What the history records the run as (`deploy` for dataops deploy), and under which id.
    kind: str = "run"
    run_id: str | None = None
    slim: SlimBuild | None = None
    # Rebuild every row of the incremental marts, rather than merge what changed into the
    # published version's (publish/incremental.py).
    full_refresh: bool = False


def parse_detail(manifest: Manifest) -> str:
    kinds = [node.resource_type for node in manifest.nodes.values()]
    return (
        f"{kinds.count('model')} models, {kinds.count('test')} tests, "
        f"{len(manifest.unit_tests)} unit tests, {len(manifest.sources)} sources"
    )


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        reporter: Reporter | None = None,
        quality_worker: QualityWorker | None = None,
        history: HistoryStore | None = None,
        project: DbtProject | None = None,
    ) -> None:
        self.settings = settings
        self.history = history or HistoryStore()
        self.reporter = reporter or SilentReporter()
        # A project parsed already (`dataops deploy` parses once, before its checks) is not parsed again.
        self.project = project or DbtProject(settings)
        self.project.on_progress = self.reporter.node_progress
        # A caller may start the worker before importing this module (and dbt with it): the
        # earlier it starts, the more of Great Expectations' import the build hides.
        self._quality_worker = quality_worker
        self._published_rows: dict[str, int] = {}
        # The marts a slim build copied unchanged from the published version, for the audit.
        self._copied_marts: frozenset[str] = frozenset()

    def run(self, options: RunOptions) -> RunSummary:
        """Every stage in turn; the run is recorded however it ends. A stage that raises stops the
        run: the record names the error, and the error goes on to the caller."""
        # A store that cannot be used fails the run before it builds anything, not after.
        self.history.open_for_writing()
        run_id = options.run_id or new_run_id()
        # A run refused because another holds the target did nothing: it is not recorded.
        try:
            with hold_target(
                self.settings, run_id, options.wait, on_wait=self.reporter.waiting_for, history=self.history
            ):
                return self._recorded_run(run_id, options)
        finally:
            if self._quality_worker is not None:  # the target was busy: the run never started
                self._quality_worker.finish()
                self._quality_worker = None

    def _recorded_run(self, run_id: str, options: RunOptions) -> RunSummary:
        usage = Usage.start()
        self._published_rows = {}
        self._copied_marts = frozenset()
        summary = RunSummary(
            run_id=run_id,
            target=self.settings.target,
            started_at=datetime.now(UTC),
            trigger=options.trigger,
            git_commit=git_commit(),
            kind=options.kind,
        )
        # Recorded before it starts, as crashed with no end: a run killed outright (SIGKILL, the
        # machine gone) never gets to record how it ended, and must not vanish from the history.
        self.history.record(
            RunRecord(
                run_id=run_id,
                target=summary.target,
                kind=summary.kind,
                trigger=summary.trigger,
                started_at=summary.started_at,
                finished_at=None,
                status="crashed",
                exit_code=int(ExitCode.INTERNAL),
                git_commit=summary.git_commit,
            )
        )
        try:
            self._run(summary, options)
        except BaseException as error:
            if summary.error_kind is None:  # raised before its first stage started
                summary.error_kind, summary.error = what_stopped(error)
            raise
        finally:
            # A run that raised (a user error, a dead warehouse) must not leave the worker waiting.
            if self._quality_worker is not None:
                # The worker renders the Data Docs after its verdict (or was never asked: a stage failed).
                docs_finding = self._quality_worker.finish()
                self._quality_worker = None
                if docs_finding is not None:
                    summary.findings.append(docs_finding)
            try:
                # Counted once: by the publish stage, or here if the run did not get that far.
                # A published candidate is a version now: its marts as the publish stage counted them.
                summary.row_counts = summary.row_counts or {**self._row_counts(), **self._published_rows}
            except Exception as error:  # the counts must never hide how the run itself ended
                summary.findings.append(Finding("warn", "row counts", f"not counted: {what_stopped(error)[1]}"))
            summary.finished_at = datetime.now(UTC)
            summary.cpu_seconds, summary.peak_memory_bytes = usage.cpu_seconds(), usage.peak_memory_bytes()
            self.history.record(summary.to_record())
        return summary

    def _run(self, summary: RunSummary, options: RunOptions) -> None:
        if options.data_dir is not None and options.scale is not None:
            raise DataOpsError("give either --data or --scale, not both")
        steps: list[tuple[str, Callable[[RunSummary], tuple[StageStatus, str]]]] = [
            ("load", lambda s: self._load(s, options)),
            *([("parse", self._parse)] if self.project.manifest is None else []),
            ("freshness", self._freshness),
            ("build", lambda s: self._build(s, options.select, options.slim, self._full_refresh_reason(options))),
        ]
        if options.quality:
            if self._quality_worker is None:
                from dataops.quality.suites import QualityWorker

                self._quality_worker = QualityWorker.for_settings(self.settings)
            steps.append(("quality", self._quality))
        elif self._quality_worker is not None:
            self._quality_worker.finish()
            self._quality_worker = None
        # Docs before publish: the catalog describes the candidate's relations, which are gone (a
        # version now) once it is published. A run whose docs failed is not published.
        if options.docs:
            steps.append(("docs", self._docs))
        steps.append(("publish", lambda s: self._publish(s, options)))
        stopped_by: str | None = None
        for position, (name, step) in enumerate(steps):
            # Publish always has its say: when an earlier stage failed, it says which checks stopped it.
            if stopped_by is not None and name != "publish":
                self._finish(summary, StageResult(name, "skipped", 0.0, stopped_by))
                continue
            self.reporter.stage_started(name)
            started = time.perf_counter()
            try:
                status, detail = step(summary)
            except BaseException as error:
                summary.error_kind, summary.error = what_stopped(error)
                self._finish(summary, StageResult(name, "failed", time.perf_counter() - started, summary.error))
                for later, _ in steps[position + 1 :]:
                    self._finish(summary, StageResult(later, "skipped", 0.0, f"the {name} stage stopped the run"))
                if summary.publish is None and any(later == "publish" for later, _ in steps[position + 1 :]):
                    # Publish never had its say; the record still says nothing was published, and why.
                    summary.publish = self._not_published(f"the {name} stage")
                raise
            self._finish(summary, StageResult(name, status, time.perf_counter() - started, detail))
            if status == "failed":
                stopped_by = "an earlier stage failed"

    def _not_published(self, stopped_by: str) -> PublishRecord:
        try:
            previous = next((v.number for v in connect(self.settings).versions() if v.current), None)
        except Exception:  # a warehouse that cannot say must not hide how the run ended
            previous = None
        return PublishRecord(
            "not published", previous_version=previous, reason=f"not published: stopped by {stopped_by}"
        )

    def _finish(self, summary: RunSummary, stage: StageResult) -> None:
        summary.stages.append(stage)
        self.reporter.stage_finished(stage)

    def _load(self, summary: RunSummary, options: RunOptions) -> tuple[StageStatus, str]:
        report: LoadReport
        if self.settings.source_database:
            if options.data_dir is not None or options.scale is not None:
                raise DataOpsError(
                    f"target '{self.settings.target}' reads its sources in place from "
                    f"{self.settings.source_database}; it takes no --data or --scale"
                )
            summary.source_description = f"sources read in place from {self.settings.source_database}"
            return "ok", summary.source_description
        if options.data_dir is not None:
            report = load_folder(self.settings, options.data_dir)
        elif options.scale is not None:
            report = load_generated(self.settings, options.scale, options.seed)
        else:
            missing = connect(self.settings).missing_source_tables()
            if not missing:
                summary.source_description = "source tables already in the warehouse"
                return "ok", "kept the loaded source tables"
            report = load_generated(self.settings, DEFAULT_SCALE, options.seed)
        summary.source_description = report.description
        tables = len(report.row_counts)
        return "ok", f"{report.total_rows:,} rows in {tables} tables from {report.description}"

    def _parse(self, summary: RunSummary) -> tuple[StageStatus, str]:
        """Parse once; every later dbt command of this run reuses the manifest."""
        return "ok", parse_detail(self.project.parse())

    def _freshness(self, summary: RunSummary) -> tuple[StageStatus, str]:
        result = self.project.source_freshness()
        outcomes, findings = interpret_freshness(result, self.settings.stale_data)
        summary.freshness = outcomes
        summary.findings.extend(findings)
        return stage_status(findings), freshness_detail(outcomes)

    def _build(
        self, summary: RunSummary, select: list[str], slim: SlimBuild | None = None, full_refresh: str | None = None
    ) -> tuple[StageStatus, str]:
        """`full_refresh`: why every row of the incremental marts is rebuilt, if it is."""
        # Which load of the sources this build reads: the run holds the target, so it stays that one.
        summary.source_load = connect(self.settings).source_load()
        if slim is not None:
            return self._slim_build(summary, slim, full_refresh is not None)
        if not select:
            return self._whole_build(summary, full_refresh)
        copied = self._fill_candidate()
        result = self.project.build(select, full_refresh=full_refresh is not None)
        counts, findings, nodes = interpret_build(result)
        summary.counts = counts
        summary.findings.extend(findings)
        summary.nodes.extend(with_samples(self.settings, result, nodes))
        detail = build_detail(counts)
        if copied:
            detail += f"; first copied from the published version, missing in the candidate: {', '.join(copied)}"
        return stage_status(findings), detail

    @staticmethod
    def _full_refresh_reason(options: RunOptions) -> str | None:
        """Why this run rebuilds every row of the incremental marts; None: it merges what changed."""
        if options.full_refresh:
            return "--full-refresh"
        if options.kind == "deploy" and options.slim is None:
            # It may bring new SQL for an incremental mart: merged into rows the old SQL built,
            # the two would mix.
            return "a deploy's full build"
        if options.data_dir is not None or options.scale is not None:
            # Sources the run loads itself are a snapshot of their own, not known to continue the
            # published version's (a next day loaded with `dataops load` is merged).
            return "the run loaded its own sources (--data or --scale)"
        return None

    def _whole_build(self, summary: RunSummary, full_refresh: str | None) -> tuple[StageStatus, str]:
        """Every model: the incremental marts merged into a copy of the published version's, or,
        without one to start from (or with --full-refresh), every row rebuilt."""
        plan = self._prepare_incremental(full_refresh)
        # A full build refreshes: what a failed run left in the candidate is never merged into.
        result = self.project.build(full_refresh=not plan.incremental, run_vars=plan.dbt_vars())
        counts, findings, nodes = interpret_build(result)
        summary.counts = counts
        summary.findings.extend(findings)
        summary.nodes.extend(with_samples(self.settings, result, nodes))
        return stage_status(findings), f"{build_detail(counts)}; {plan.describe()}"

    def _fill_candidate(self, leave_out: frozenset[str] = frozenset()) -> list[str]:
        """A partial build's tests and the quality suites read the marts it does not rebuild: in a
        candidate that publishing emptied, those are the published version's."""
        assert self.project.manifest is not None
        marts = [mart.name for mart in marts_of(self.project.manifest, self.settings) if mart.name not in leave_out]
        return connect(self.settings).fill_candidate(self.settings.candidate_schema, marts)

    def _prepare_incremental(self, full_refresh: str | None) -> IncrementalPlan:
        """The plan, and for an incremental build the published version's copy in the candidate.
        The warehouse it asked goes when this returns, with what it had open (DuckDB's audit
        connection holds the candidate file, which dbt attaches next)."""
        assert self.project.manifest is not None
        incremental = [m.name for m in marts_of(self.project.manifest, self.settings) if m.incremental]
        warehouse = connect(self.settings)
        lookback = timedelta(days=int(self.project.var(LOOKBACK_VAR)))
        plan = plan_incremental(self.settings, warehouse, incremental, lookback, full_refresh=full_refresh)
        if plan.incremental:
            warehouse.prepare_incremental(self.settings.candidate_schema, plan.marts)
        return plan

    def _slim_build(self, summary: RunSummary, slim: SlimBuild, full_refresh: bool = False) -> tuple[StageStatus, str]:
        if slim.confirm is not None:
            slim.confirm()
        copied = self._fill_candidate(leave_out=slim.rebuilt_marts)
        result = self.project.build(["state:modified+"], state=slim.state_dir, full_refresh=full_refresh)
        counts, findings, nodes = interpret_build(result)
        # Only what dbt did not build again is still the published copy.
        self._copied_marts = frozenset(copied) - {n.name for n in nodes if n.kind == "model"}
        summary.counts = counts
        summary.findings.extend(findings)
        summary.nodes.extend(with_samples(self.settings, result, nodes))
        detail = f"state:modified+ only: {build_detail(counts)}"
        if copied:
            detail += f"; unchanged, copied from the published version: {', '.join(copied)}"
        return stage_status(findings), detail

    def _quality(self, summary: RunSummary) -> tuple[StageStatus, str]:
        assert self._quality_worker is not None
        report = self._quality_worker.run(self.settings, run_id=summary.run_id)
        summary.quality = QualityCounts(report.passed, report.warned, report.failed)
        summary.findings.extend(report.findings)
        summary.nodes.extend(outcome.to_node() for outcome in report.outcomes)
        return stage_status(report.findings), quality_detail(summary.quality, summary.quality_score)

    def _publish(self, summary: RunSummary, options: RunOptions) -> tuple[StageStatus, str]:
        """Write-audit-publish: the candidate becomes the published version only if nothing failed."""
        blocked_by = [f.check for f in summary.findings if f.level == "error"]
        blocked_by += [f"the {s.name} stage" for s in summary.stages if s.status == "failed" and not blocked_by]
        if options.select:
            blocked_by.append("--select (a partial build is tested, never published)")
        if not options.quality:
            blocked_by.append("--no-quality (the quality suites did not run)")
        if self.project.manifest is None:  # the parse stage failed: nothing was built
            blocked_by.append("the parse stage")
        marts = marts_of(self.project.manifest, self.settings) if self.project.manifest else []
        # The marts only (the record counts the sources too, after the run): what the smoke check compares.
        candidate = self.settings.candidate_schema
        counted = connect(self.settings).row_counts([f"{candidate}.{m.name}" for m in marts]) if not blocked_by else {}
        candidate_rows = {name.split(".", 1)[1]: n for name, n in counted.items()}
        outcome = publish_candidate(
            self.settings,
            summary.run_id,
            marts,
            candidate_rows,
            blocked_by,
            options.allow_breaking,
            started_at=summary.started_at,
            freshness=[o.to_node() for o in summary.freshness],
            history=self.history,
            copied=self._copied_marts,
        )
        summary.publish = outcome.record
        summary.findings.extend(outcome.findings)
        summary.nodes.extend(outcome.nodes)
        if outcome.published:
            self._published_rows = {f"{self.settings.consumer_schema}.{m}": n for m, n in candidate_rows.items()}
            return "ok", outcome.record.reason
        own_checks = any(f.level == "error" for f in outcome.findings)
        return ("failed" if own_checks else "skipped"), outcome.record.reason

    def _docs(self, summary: RunSummary) -> tuple[StageStatus, str]:
        result = self.project.docs_generate()
        if not result.success:
            summary.findings.append(Finding("error", "dbt docs generate", "docs generation failed"))
            return "failed", "see the dbt log"
        return "ok", f"catalog in {self.project.target_path}"

    def _row_counts(self) -> dict[str, int]:
        models = manifest_models(self.project.manifest) if self.project.manifest is not None else []
        return row_counts(self.settings, models)
